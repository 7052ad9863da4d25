"""Small U-Nets (2D and 3D) shared by the deep methods.

Elements are channels. The last layer starts at zero, so an untrained
network is the identity of whatever residual form its user wraps it in
(``x * exp(net(x))`` for the projection enhancer, ``x + net(x)`` for the
end-to-end network): training only ever has to learn a correction.

Same seed, same network, on a GPU too: training runs cuDNN's deterministic
kernels (:func:`deterministic_kernels`; so does applying a network), and on
CUDA the layers whose gradients torch adds with atomics there (reflect and
replicate padding, 3D average pooling; the 2D pooling goes the same way) are
written as slices and means, whose gradients add in a fixed order. On the CPU
torch's own layers are used: they are deterministic, and faster there.
"""

import contextlib
import math

import numpy as np

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.progress import progress_bar


def _torch():
    import torch

    return torch


def build_unet(dim, in_channels, out_channels, channels=16, levels=3, padding_mode="replicate"):
    """A U-Net with ``levels`` resolutions and ``channels`` features at the top
    (doubled at every level down); inputs must be multiples of
    ``2 ** (levels - 1)`` in every spatial dimension (:func:`pad_to_multiple`).

    Parameters
    ----------
    dim : {2, 3}
    in_channels, out_channels : int
    channels, levels : int
    padding_mode : str
        Of the 3x3 convolutions (``"reflect"``, ``"replicate"``, ``"zeros"``).

    Returns
    -------
    torch.nn.Module
    """
    torch = _torch()
    nn = torch.nn
    if dim not in (2, 3):
        raise InputError(f"dim must be 2 or 3, got {dim!r}")
    Conv = _padded_conv(nn.Conv2d if dim == 2 else nn.Conv3d)
    Up = nn.ConvTranspose2d if dim == 2 else nn.ConvTranspose3d
    # channels-last runs oneDNN's fast convolutions on the CPU (2-3x for 3D)
    layout = torch.channels_last if dim == 2 else torch.channels_last_3d

    def block(cin, cout):
        return nn.Sequential(
            Conv(cin, cout, 3, padding=1, padding_mode=padding_mode),
            nn.LeakyReLU(0.1),
            Conv(cout, cout, 3, padding=1, padding_mode=padding_mode),
            nn.LeakyReLU(0.1),
        )

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [int(channels) * 2**i for i in range(int(levels))]
            self.enc = nn.ModuleList()
            cin = in_channels
            for w in widths:
                self.enc.append(block(cin, w))
                cin = w
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
                self.up.append(Up(w_low, w, 2, stride=2))
                self.dec.append(block(2 * w, w))
            self.out = Conv(widths[0], out_channels, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x):
            x = x.contiguous(memory_format=layout)
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x)
                if i < len(self.enc) - 1:
                    skips.append(x)
                    x = halve(x)
            for up, dec in zip(self.up, self.dec):
                x = up(x)
                x = dec(torch.cat([x, skips.pop()], dim=1))
            return self.out(x).contiguous()

    return UNet().to(memory_format=layout)


def _padded_conv(Conv):
    """``Conv`` whose reflect/replicate padding is made of slices on CUDA (see the module's note)."""

    class PaddedConv(Conv):
        def forward(self, x):
            by_slices = self.padding_mode in ("reflect", "replicate") and not isinstance(self.padding, str)
            if by_slices and x.is_cuda:
                return conv_padded_by_slices(self, x)
            return super().forward(x)

    PaddedConv.__name__ = PaddedConv.__qualname__ = Conv.__name__
    return PaddedConv


def conv_padded_by_slices(conv, x):
    """What ``conv(x)`` computes, its padding made by :func:`pad_by_slices`."""
    torch = _torch()
    for d, width in zip(range(2, x.ndim), conv.padding):
        x = pad_by_slices(x, d, width, conv.padding_mode)
    op = torch.nn.functional.conv2d if x.ndim == 4 else torch.nn.functional.conv3d
    return op(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def pad_by_slices(x, dim, width, mode):
    """``x`` padded by ``width`` on both sides of ``dim`` ("reflect" or "replicate")."""
    torch = _torch()
    n = x.shape[dim]
    if mode == "reflect":
        low = [x.narrow(dim, i, 1) for i in range(width, 0, -1)]
        high = [x.narrow(dim, n - 1 - i, 1) for i in range(1, width + 1)]
    elif mode == "replicate":
        low = [x.narrow(dim, 0, 1)] * width
        high = [x.narrow(dim, n - 1, 1)] * width
    else:
        raise InputError(f"padding mode {mode!r} is not 'reflect', 'replicate' or 'zeros'")
    return torch.cat(low + [x] + high, dim=dim)


def halve(x):
    """2x average pooling of every spatial dim: torch's on the CPU, :func:`mean_pool` on CUDA."""
    torch = _torch()
    if x.is_cuda:
        return mean_pool(x)
    return (torch.nn.functional.avg_pool2d if x.ndim == 4 else torch.nn.functional.avg_pool3d)(x, 2)


def mean_pool(x):
    """2x average pooling as means of reshaped blocks (odd ends dropped, as ``avg_pool``)."""
    spatial = x.shape[2:]
    x = x[(slice(None), slice(None)) + tuple(slice(0, 2 * (n // 2)) for n in spatial)]
    shape = list(x.shape[:2])
    for n in spatial:
        shape += [n // 2, 2]
    return x.reshape(shape).mean(dim=tuple(range(3, 3 + 2 * len(spatial), 2)))


@contextlib.contextmanager
def deterministic_kernels():
    """cuDNN's deterministic kernels inside the block (no autotuning); the
    user's settings are put back after it."""
    torch = _torch()
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = before


def pad_to_multiple(x, multiple):
    """Pad the spatial dims of a torch tensor (N, C, ...) at their ends by
    replication to multiples of ``multiple``; returns (padded, original sizes)."""
    torch = _torch()
    sizes = tuple(x.shape[2:])
    pads = []
    for n in reversed(sizes):
        pads += [0, (-n) % multiple]
    if any(pads):
        x = torch.nn.functional.pad(x, pads, mode="replicate")
    return x, sizes


def crop_to(x, sizes):
    """Undo :func:`pad_to_multiple`."""
    index = (slice(None), slice(None)) + tuple(slice(0, n) for n in sizes)
    return x[index]


def torch_device(cuda):
    """``cuda=None``: CUDA when torch finds it; True: require it; False: CPU."""
    torch = _torch()
    if cuda is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cuda:
        if not torch.cuda.is_available():
            raise InputError("cuda=True but torch finds no CUDA device; use cuda=None (automatic) or False.")
        return torch.device("cuda")
    return torch.device("cpu")


@contextlib.contextmanager
def seeded(seed):
    """Inside the block torch draws from ``seed`` (same seed, same result on a device); yields a numpy
    Generator of the same seed. torch's global generators (CPU and CUDA) are put back as they were after
    the block: a user's own random state is not changed by training a network here."""
    torch = _torch()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield np.random.default_rng(int(seed))


def train(net, batches, loss_fn, steps, learning_rate, description, show_progressbar=False, evaluate=None,
          eval_every=None, patience=None):
    """The one training loop of the package's networks (Q^D, Q^S, T).

    Adam with cosine decay over ``steps``; ``batches()`` gives a tuple of
    tensors on the net's device, ``loss_fn(net, *batch)`` the loss. A
    progress bar shows the running loss.

    With ``evaluate`` (a callable returning a held-out score, lower is
    better) the net is scored every ``eval_every`` steps and at the last
    one; training stops after ``patience`` scores without improvement and
    the best state is restored (early stopping on held-out data).

    Returns
    -------
    dict
        ``losses`` (per step), ``evaluations`` (``(step, score)`` pairs) and
        ``best_step`` (the step whose state the net holds).
    """
    torch = _torch()

    steps = int(steps)
    opt = torch.optim.Adam(net.parameters(), lr=float(learning_rate))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=float(learning_rate) * 0.05)
    losses, evaluations = [], []
    best_score, best_step, best_state, bad = math.inf, 0, None, 0
    net.train()
    with deterministic_kernels(), progress_bar(total=steps, desc=description, show=show_progressbar) as pbar:
        for step in range(1, steps + 1):
            loss = loss_fn(net, *batches())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            pbar.update(1)
            if step % 10 == 0 or step == steps:
                pbar.set_postfix(loss=f"{np.mean(losses[-10:]):.4g}", refresh=False)
            if evaluate is not None and (step % int(eval_every) == 0 or step == steps):
                score = float(evaluate())
                evaluations.append((step, score))
                if score < best_score:
                    best_score, best_step, bad = score, step, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
                pbar.set_postfix(loss=f"{np.mean(losses[-10:]):.4g}", held_out=f"{score:.4g}", refresh=False)
                if bad >= int(patience):
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"losses": losses, "evaluations": evaluations, "best_step": best_step if best_state is not None else len(losses)}


def random_flips(rng, dims, *tensors):
    """The same random flips (each of ``dims`` with probability 1/2) of every tensor."""
    torch = _torch()
    flip = [d for d in dims if rng.integers(0, 2)]
    return tuple(torch.flip(t, flip) if flip else t for t in tensors)


def save_weights(path, fmt, version, net, training_log, **fields):
    """Write a network's ``state_dict`` with its format tag, version, training
    record (losses left out) and ``fields`` (elements, settings ...)."""
    torch = _torch()
    blob = {"format": fmt, "version": version, **fields, "state_dict": net.state_dict(),
            "training": {k: v for k, v in training_log.items() if k != "losses"}}
    torch.save(blob, str(path))


def load_weights(path, fmt, version, what, missing=None):
    """Read a file written by :func:`save_weights` (``weights_only``: no code
    runs). Clear errors for a missing file (``missing`` is added to the
    message), another kind of file, or a newer format."""
    torch = _torch()
    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        if missing:
            raise FileNotFoundError(f"No {what} at {path}. {missing}") from None
        raise
    except Exception as err:
        raise InputError(f"{path} is not {what} of hyperspy_edxtomo ({err}).") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        raise InputError(f"{path} is not {what} of hyperspy_edxtomo.")
    if blob.get("version", 0) > version:
        raise InputError(f"{path} was written by a newer version (format {blob['version']}).")
    return blob


def load_state(net, state_dict, path):
    """``net.load_state_dict`` with an error that says the file does not fit."""
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as err:
        raise InputError(f"{path}: the weights do not fit the network their settings describe ({err}).") from None
    return net.eval()
