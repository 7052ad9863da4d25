"""Self-supervised deep denoising of element maps by Poisson count splitting.

No clean map exists to train on, so the network learns from the user's own
noisy counts. Every training step splits each detected X-ray count at random
into the network *input* (probability ``split_fraction`` = p) or the *target*
(binomial thinning). For Poisson data with rate ``lam`` the two parts are
independent Poisson data with rates ``p lam`` and ``(1 - p) lam``, so a network
fed ``input / p`` and scored by the Poisson negative log-likelihood of the
target under ``(1 - p) mu`` is minimised, in expectation, by ``mu = E[lam | input]``:
an unbiased Noise2Noise for counting data, which needs neither clean targets
nor repeated frames. At inference the full counts go in and the output is the
expected counts per pixel (rescaled to the raw total of each map by
:func:`hyperspy_edxtomo.denoisers.denoise`).

This replaces the paper's Q^D (a pix2pix cGAN trained on pairs made from
multi-frame accumulations, whose weights were never published): count
splitting makes the same kind of noisy/less-noisy pairs from a single
acquisition, and its loss is the likelihood of the counts themselves.

The elements are channels of one 2D U-Net (they inform each other, as in the
paper); all tilts are training images. A fixed count-split part of the data
(``validation_fraction``) is held out for early stopping: the held-out Poisson
deviance picks the best weights.
"""

import math
import time

import numpy as np

FORMAT = "hyperspy_edxtomo.count_split_unet"
VERSION = 1

DEFAULT_CONFIG = {
    "levels": 3,
    "channels": 16,
    "steps": 1500,
    "batch_size": 8,
    "patch_size": 64,
    "learning_rate": 2e-3,
    "split_fraction": 0.5,
    "validation_fraction": 0.1,
    "eval_every": 100,
    "patience": 4,
    "tta": True,
    "seed": 0,
}


def _torch():
    import torch

    return torch


def _build_unet(n_channels, channels, levels):
    torch = _torch()
    nn = torch.nn

    def block(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect"),
            nn.LeakyReLU(0.1),
            nn.Conv2d(cout, cout, 3, padding=1, padding_mode="reflect"),
            nn.LeakyReLU(0.1),
        )

    class UNet(nn.Module):
        """Small 2D U-Net: ``levels`` resolutions, ``channels`` features at the
        top, doubled at every level down; output: log-rate offsets per element."""

        def __init__(self):
            super().__init__()
            widths = [channels * 2**i for i in range(levels)]
            self.enc = nn.ModuleList()
            cin = n_channels
            for w in widths:
                self.enc.append(block(cin, w))
                cin = w
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for w_low, w in zip(widths[:0:-1], widths[-2::-1]):
                self.up.append(nn.ConvTranspose2d(w_low, w, 2, stride=2))
                self.dec.append(block(2 * w, w))
            self.out = nn.Conv2d(widths[0], n_channels, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x):
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x)
                if i < len(self.enc) - 1:
                    skips.append(x)
                    x = torch.nn.functional.avg_pool2d(x, 2)
            for up, dec in zip(self.up, self.dec):
                x = up(x)
                x = dec(torch.cat([x, skips.pop()], dim=1))
            return self.out(x)

    return UNet()


def _device(cuda):
    torch = _torch()
    if cuda is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("cuda=True but torch finds no CUDA device; use cuda=None (automatic) or False.")
        return torch.device("cuda")
    return torch.device("cpu")


def _dihedral(x, k, flip):
    torch = _torch()
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _undihedral(x, k, flip):
    torch = _torch()
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, -k, dims=(-2, -1))


class CountSplitDenoiserModel:
    """A count-splitting U-Net denoiser of element maps: train with :meth:`fit`,
    apply with :meth:`predict` or ``maps.denoise_deep(model=...)``, keep with
    :meth:`save` / :meth:`load`.

    Parameters
    ----------
    elements : list of str
        The element of each input channel, in order.
    **config
        Architecture and training settings (see :data:`DEFAULT_CONFIG`).
    """

    def __init__(self, elements, **config):
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"Unknown setting(s) {sorted(unknown)}; known: {', '.join(DEFAULT_CONFIG)}.")
        self.elements = [str(e) for e in elements]
        self.config = {**DEFAULT_CONFIG, **config}
        self.net = None
        self.training_log = {}

    # -- construction -------------------------------------------------------
    def _new_net(self):
        torch = _torch()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.config["seed"]))
            return _build_unet(len(self.elements), int(self.config["channels"]), int(self.config["levels"]))

    @property
    def is_trained(self):
        return self.net is not None

    def check_elements(self, elements):
        """The channel order for ``elements``; a ValueError when they do not match."""
        elements = [str(e) for e in elements]
        if sorted(elements) != sorted(self.elements):
            raise ValueError(
                f"This denoiser was trained on elements {self.elements} but the maps hold {elements}: "
                "a model applies only to maps of the same elements. Train a new one with denoise_deep() "
                "(without model=), or select the matching elements."
            )
        return [self.elements.index(e) for e in elements]

    # -- helpers ------------------------------------------------------------
    def _multiple(self):
        return 2 ** (int(self.config["levels"]) - 1)

    def _forward_full(self, counts, means, device, tta):
        """Log-rate offsets for full images ``counts`` (T, E, Y, X) numpy -> mu (T, E, Y, X)."""
        torch = _torch()
        m = self._multiple()
        t, e, ny, nx = counts.shape
        py, px = (-ny) % m, (-nx) % m
        x = torch.from_numpy((counts / means[None, :, None, None]).astype(np.float32))
        if py or px:
            mode = "reflect" if (py < ny and px < nx) else "replicate"
            x = torch.nn.functional.pad(x, (0, px, 0, py), mode=mode)
        transforms = [(k, f) for f in (False, True) for k in range(4)] if tta else [(0, False)]
        out = np.zeros((t, e, ny, nx))
        self.net.eval()
        with torch.no_grad():
            for i in range(t):
                xi = x[i : i + 1].to(device)
                acc = 0.0
                for k, f in transforms:
                    y = _undihedral(self.net(_dihedral(xi, k, f)), k, f)
                    acc = acc + torch.exp(y.clamp(-30, 15))
                out[i] = (acc / len(transforms))[0, :, :ny, :nx].double().cpu().numpy()
        return out * means[None, :, None, None]

    # -- training -----------------------------------------------------------
    def fit(self, counts, show_progressbar=False, cuda=None):
        """Train on ``counts`` shaped (element, tilt, y, x) (integer-valued).

        Returns self. ``training_log`` holds the losses, the held-out
        deviances, the best step and the time taken.
        """
        torch = _torch()
        from hyperspy.external.progressbar import progressbar

        cfg = self.config
        counts = np.round(np.asarray(counts, np.float64)).astype(np.int64)
        if counts.ndim != 4 or counts.shape[0] != len(self.elements):
            raise ValueError(f"counts must be shaped ({len(self.elements)}, tilt, y, x), got {counts.shape}.")
        start = time.perf_counter()
        device = _device(cuda)
        rng = np.random.default_rng(int(cfg["seed"]))
        data = counts.transpose(1, 0, 2, 3)  # (T, E, Y, X)
        vf = float(cfg["validation_fraction"])
        if vf > 0:
            held = rng.binomial(data, vf)
            train = data - held
        else:
            held, train = None, data
        means = np.maximum(train.mean(axis=(0, 2, 3)), 1e-6)
        t, e, ny, nx = train.shape
        m = self._multiple()
        patch = min(int(cfg["patch_size"]), ny, nx)
        patch -= patch % m
        if patch < m:
            raise ValueError(f"Maps of {ny}x{nx} pixels are too small for a U-Net with {cfg['levels']} levels.")
        p = float(cfg["split_fraction"])
        self.net = self._new_net().to(device)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(cfg["learning_rate"]))
        steps = int(cfg["steps"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=float(cfg["learning_rate"]) * 0.05)
        means_t = torch.from_numpy(means.astype(np.float32)).to(device)[None, :, None, None]
        log_means = torch.log(means_t)
        bs = int(cfg["batch_size"])
        losses, evals = [], []
        best = (math.inf, 0, None)
        bad_evals = 0
        pbar = progressbar(total=steps, disable=not show_progressbar, desc="Training denoiser")
        try:
            for step in range(1, steps + 1):
                ti = rng.integers(0, t, bs)
                yi = rng.integers(0, ny - patch + 1, bs)
                xi = rng.integers(0, nx - patch + 1, bs)
                crop = np.stack([train[a, :, b : b + patch, c : c + patch] for a, b, c in zip(ti, yi, xi)])
                inp = rng.binomial(crop, p)
                tgt = crop - inp
                k, f = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
                x = torch.from_numpy(inp.astype(np.float32)).to(device) / (p * means_t)
                y = torch.from_numpy(tgt.astype(np.float32)).to(device)
                x, y = _dihedral(x, k, f), _dihedral(y, k, f)
                out = self.net(x)
                log_mu = log_means + out.clamp(-30, 15)
                # Poisson NLL of the target under (1 - p) mu, constants dropped
                loss = ((1 - p) * torch.exp(log_mu) - y * log_mu).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                pbar.update(1)
                if step % 10 == 0 or step == steps:
                    pbar.set_postfix(loss=f"{np.mean(losses[-10:]):.4g}", refresh=False)
                if held is not None and (step % int(cfg["eval_every"]) == 0 or step == steps):
                    mu = self._forward_full(train, means, device, tta=False) * (vf / (1 - vf))
                    dev = _deviance(held, mu) / held.size
                    evals.append((step, dev))
                    if dev < best[0]:
                        best = (dev, step, {k_: v.detach().clone() for k_, v in self.net.state_dict().items()})
                        bad_evals = 0
                    else:
                        bad_evals += 1
                        if bad_evals >= int(cfg["patience"]):
                            break
                    pbar.set_postfix(loss=f"{np.mean(losses[-10:]):.4g}", held_out=f"{dev:.4g}", refresh=False)
        finally:
            pbar.close()
        if best[2] is not None:
            self.net.load_state_dict(best[2])
        self.net = self.net.cpu() if device.type != "cpu" else self.net
        self.training_log = {
            "losses": losses,
            "held_out_deviance": evals,
            "best_step": best[1] if best[2] is not None else len(losses),
            "steps_run": len(losses),
            "device": device.type,
            "seconds": time.perf_counter() - start,
        }
        return self

    # -- inference ----------------------------------------------------------
    def predict(self, counts, elements=None, cuda=None):
        """Expected counts (element, tilt, y, x) for ``counts`` of the same
        elements (``elements`` in the order of the first axis; default: the
        model's)."""
        if not self.is_trained:
            raise RuntimeError("This denoiser is not trained: call fit() or load() first.")
        counts = np.asarray(counts, np.float64)
        order = self.check_elements(self.elements if elements is None else elements)
        if counts.ndim != 4 or counts.shape[0] != len(order):
            raise ValueError(f"counts must be shaped ({len(order)}, tilt, y, x), got {counts.shape}.")
        device = _device(cuda)
        # channels in the model's order
        inverse = np.argsort(order)
        data = counts[inverse].transpose(1, 0, 2, 3)
        means = np.maximum(data.mean(axis=(0, 2, 3)), 1e-6)
        self.net.to(device)
        try:
            mu = self._forward_full(data, means, device, tta=bool(self.config["tta"]))
        finally:
            self.net.cpu()
        return mu.transpose(1, 0, 2, 3)[order]

    # -- persistence --------------------------------------------------------
    def save(self, path):
        """Write weights, settings and elements to ``path`` (torch format)."""
        torch = _torch()
        if not self.is_trained:
            raise RuntimeError("Nothing to save: this denoiser is not trained.")
        torch.save(
            {
                "format": FORMAT,
                "version": VERSION,
                "elements": list(self.elements),
                "config": dict(self.config),
                "state_dict": self.net.state_dict(),
                "training": {k: v for k, v in self.training_log.items() if k != "losses"},
            },
            str(path),
        )

    @classmethod
    def load(cls, path):
        """A trained denoiser written by :meth:`save`."""
        torch = _torch()
        try:
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise ValueError(f"{path} is not a saved hyperspy_edxtomo denoiser ({err}).") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise ValueError(f"{path} is not a saved hyperspy_edxtomo denoiser.")
        if blob.get("version", 0) > VERSION:
            raise ValueError(f"{path} was written by a newer version (format {blob['version']}).")
        model = cls(blob["elements"], **blob["config"])
        model.net = model._new_net()
        model.net.load_state_dict(blob["state_dict"])
        model.training_log = dict(blob.get("training", {}))
        return model

    def __repr__(self):
        state = "trained" if self.is_trained else "untrained"
        return f"CountSplitDenoiserModel(elements={self.elements}, {state}, levels={self.config['levels']}, channels={self.config['channels']})"


def _deviance(y, mu, eps=1e-9):
    y = np.asarray(y, np.float64)
    mu = np.clip(mu, eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2 * np.sum(term - (y - mu)))
