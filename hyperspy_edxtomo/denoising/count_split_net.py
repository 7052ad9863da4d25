"""Self-supervised deep denoising of element maps: count splitting, frame
splitting and a blind-spot variant.

No clean map exists to train on, so the network learns from the user's own
noisy counts. Three ways of making training pairs (``training=``):

``"count_split"`` (default)
    Every training step splits each detected X-ray count at random into the
    network *input* (probability ``split_fraction`` = p) or the *target*
    (binomial thinning). For Poisson data with rate ``lam`` the two parts are
    independent Poisson data with rates ``p lam`` and ``(1 - p) lam``, so a
    network fed ``input / p`` and scored by the Poisson negative
    log-likelihood of the target under ``(1 - p) mu`` is minimised, in
    expectation, by ``mu = E[lam | input]``: an unbiased Noise2Noise for
    counting data, which needs neither clean targets nor repeated frames.
``"frame_split"``
    When the acquisition kept its repeated frames (``frames`` shaped
    (frame, element, tilt, y, x)), input and target are the sums of two
    disjoint random subsets of the frames (each frame goes to the input with
    probability ``split_fraction``); the dose of each part is its share of
    the counts. Unlike count splitting, this stays unbiased when the noise is
    not exactly Poisson (detector dead time, drift or beam damage between
    frames), because the two parts are truly separate measurements.
``"blind_spot"``
    Noise2Self: a random ``blind_spot_fraction`` of the pixels is hidden
    from the input (replaced by the mean of their visible 8 neighbours) and
    the loss is the Poisson NLL of the hidden pixels' values. The network
    never sees the value it predicts, so it cannot learn the identity; no
    counts are removed from the input. It needs no integers: the loss is a
    Bregman divergence, minimised by the conditional mean of any
    non-negative values whose noise is independent from pixel to pixel
    (counts minus an independent background estimate), so it is the
    training for maps that are not counts. Early stopping holds out a fixed
    ``validation_fraction`` of the pixels, never a training target, scored
    hidden in the same way; half of them are left for a comparison no choice
    has seen (``held_out_pixels``, :meth:`blind_spot_predict`).

At inference the full counts go in and the output is the expected counts per
pixel (rescaled to the raw total of each map by
:func:`hyperspy_edxtomo.denoising.api.denoise`).

This replaces the paper's Q^D (a pix2pix cGAN trained on pairs made from
multi-frame accumulations, whose weights were never published): count
splitting makes the same kind of noisy/less-noisy pairs from a single
acquisition, and its loss is the likelihood of the counts themselves.

The elements are channels of one 2D U-Net (they inform each other, as in the
paper). With ``joint=True`` the network also gets the map of all elements
summed (the particle's shape, with more counts than any single element) and
predicts a total rate times per-element fractions (a softmax), so that the
elements share the shape. All tilts are training images. A fixed count-split
part of the data (``validation_fraction``) is held out for early stopping:
the held-out Poisson deviance picks the best weights.
"""

import time

import numpy as np

from hyperspy_edxtomo.base.counts import count_split, poisson_deviance
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.deep.networks import (
    build_unet,
    deterministic_kernels,
    load_state,
    load_weights,
    save_weights,
    seeded,
    torch_device,
)
from hyperspy_edxtomo.deep.networks import train as train_net

FORMAT = "hyperspy_edxtomo.count_split_unet"
VERSION = 2

TRAININGS = ("count_split", "frame_split", "blind_spot")

DEFAULT_CONFIG = {
    "levels": 3,
    "channels": 12,
    "steps": 800,
    "batch_size": 8,
    "patch_size": 64,
    "learning_rate": 2e-3,
    "split_fraction": 0.5,
    "validation_fraction": 0.1,
    "eval_every": 100,
    "patience": 3,
    "tta": True,
    "seed": 0,
    "training": "count_split",
    "joint": True,
    "blind_spot_fraction": 0.0625,
    "thinned_inference": 0,
}

#: settings of format-1 files (written before these options existed)
_VERSION1_CONFIG = {"training": "count_split", "joint": False, "blind_spot_fraction": 0.0625, "thinned_inference": 0}


def _torch():
    import torch

    return torch


def _dihedral(x, k, flip):
    torch = _torch()
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def _undihedral(x, k, flip):
    torch = _torch()
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, -k, dims=(-2, -1))


def _neighbour_sum(x):
    """Sum of the 8 neighbours of every pixel of ``x`` (..., y, x), reflecting edges."""
    p = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)], mode="reflect")
    ny, nx = x.shape[-2:]
    s = sum(p[..., 1 + dy : 1 + dy + ny, 1 + dx : 1 + dx + nx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    return s - x


def _hide(x, hidden):
    """``x`` with the ``hidden`` pixels (boolean, broadcast over ``x``) replaced by the mean of their visible
    neighbours: no hidden value enters the result, so a prediction of a hidden pixel never sees its own
    noise, even where hidden pixels touch."""
    visible = (~hidden).astype(np.float64)
    n = _neighbour_sum(np.broadcast_to(visible, x.shape))
    fill = _neighbour_sum(x * visible) / np.maximum(n, 1.0)
    # a pixel whose neighbours are all hidden too: the mean of the visible image
    fallback = (x * visible).sum(axis=(-2, -1), keepdims=True) / np.maximum(
        np.broadcast_to(visible, x.shape).sum(axis=(-2, -1), keepdims=True), 1.0)
    return np.where(hidden, np.where(n > 0, fill, fallback), x)


class CountSplitDenoiserModel:
    """A self-supervised U-Net denoiser of element maps: train with :meth:`fit`,
    apply with :meth:`predict` or ``maps.denoise_deep(model=...)``, keep with
    :meth:`save` / :meth:`load`.

    Parameters
    ----------
    elements : list of str
        The element of each input channel, in order.
    **config
        Architecture and training settings (see :data:`DEFAULT_CONFIG`):
        ``training`` is ``"count_split"``, ``"frame_split"`` (needs
        ``frames`` in :meth:`fit`) or ``"blind_spot"``.
    """

    def __init__(self, elements, **config):
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise InputError(f"Unknown setting(s) {sorted(unknown)}; known: {', '.join(DEFAULT_CONFIG)}.")
        self.elements = [str(e) for e in elements]
        self.config = {**DEFAULT_CONFIG, **config}
        if self.config["training"] not in TRAININGS:
            raise InputError(f"training={self.config['training']!r} is not one of {TRAININGS}.")
        self.net = None
        self.training_log = {}
        self.held_out_pixels = None

    # -- construction -------------------------------------------------------
    @property
    def _joint(self):
        return bool(self.config["joint"]) and len(self.elements) > 1

    def _new_net(self):
        e = len(self.elements)
        n_in, n_out = (e + 1, e + 1) if self._joint else (e, e)
        with seeded(self.config["seed"]):
            return build_unet(2, n_in, n_out, int(self.config["channels"]), int(self.config["levels"]), padding_mode="reflect")

    @property
    def is_trained(self):
        return self.net is not None

    def check_elements(self, elements):
        """The channel order for ``elements``; a ValueError when they do not match."""
        elements = [str(e) for e in elements]
        if sorted(elements) != sorted(self.elements):
            raise InputError(
                f"This denoiser was trained on elements {self.elements} but the maps hold {elements}: "
                "a model applies only to maps of the same elements. Train a new one with denoise_deep() "
                "(without model=), or select the matching elements."
            )
        return [self.elements.index(e) for e in elements]

    # -- helpers ------------------------------------------------------------
    def _multiple(self):
        return 2 ** (int(self.config["levels"]) - 1)

    def _inputs(self, x, means_t):
        """Network input from dose-normalised counts ``x`` (B, E, y, x) = counts / (dose * means)."""
        torch = _torch()
        if not self._joint:
            return x
        w = means_t / means_t.sum()
        return torch.cat([x, (x * w).sum(dim=1, keepdim=True)], dim=1)

    def _log_mu(self, out, log_means_t):
        """Log expected counts (B, E, y, x) from the network output."""
        torch = _torch()
        if not self._joint:
            return log_means_t + out.clamp(-30, 15)
        log_total = torch.logsumexp(log_means_t, dim=1, keepdim=True) + out[:, :1].clamp(-30, 15)
        log_frac = torch.log_softmax(out[:, 1:].clamp(-30, 30) + log_means_t, dim=1)
        return log_total + log_frac

    def _forward_full(self, counts, means, device, tta, dose=1.0):
        """Expected counts (T, E, Y, X) at full dose for images ``counts`` (T, E, Y, X)
        holding ``dose`` times the full-dose counts."""
        torch = _torch()
        m = self._multiple()
        t, e, ny, nx = counts.shape
        py, px = (-ny) % m, (-nx) % m
        x = torch.from_numpy((counts / (dose * means[None, :, None, None])).astype(np.float32))
        if py or px:
            mode = "reflect" if (py < ny and px < nx) else "replicate"
            x = torch.nn.functional.pad(x, (0, px, 0, py), mode=mode)
        means_t = torch.from_numpy(means.astype(np.float32)).to(device)[None, :, None, None]
        log_means_t = torch.log(means_t)
        transforms = [(k, f) for f in (False, True) for k in range(4)] if tta else [(0, False)]
        out = np.zeros((t, e, ny, nx))
        self.net.eval()
        with torch.no_grad(), deterministic_kernels():
            for i in range(t):
                xi = self._inputs(x[i : i + 1].to(device), means_t)
                acc = 0.0
                for k, f in transforms:
                    y = _undihedral(self.net(_dihedral(xi, k, f)), k, f)
                    acc = acc + torch.exp(self._log_mu(y, log_means_t))
                out[i] = (acc / len(transforms))[0, :, :ny, :nx].double().cpu().numpy()
        return out

    # -- training -----------------------------------------------------------
    def fit(self, counts, show_progressbar=False, cuda=None, frames=None):
        """Train on ``counts`` shaped (element, tilt, y, x) (integer-valued).

        Parameters
        ----------
        counts : array
            (element, tilt, y, x) counts.
        show_progressbar : bool
        cuda : None or bool
            None: CUDA when available.
        frames : None or array
            (frame, element, tilt, y, x) counts of the repeated frames that
            sum to ``counts``; needed by ``training="frame_split"`` (at
            least 2 frames), ignored otherwise.

        Returns
        -------
        self
            ``training_log`` holds the losses, the held-out deviances, the
            best step and the time taken.
        """
        torch = _torch()
        cfg = self.config
        mode = cfg["training"]
        counts = np.asarray(counts, np.float64)
        if mode != "blind_spot":
            # splitting needs whole counts; the blind spot takes the values as they are
            counts = np.round(counts).astype(np.int64)
        if counts.ndim != 4 or counts.shape[0] != len(self.elements):
            raise InputError(f"counts must be shaped ({len(self.elements)}, tilt, y, x), got {counts.shape}.")
        if mode == "frame_split":
            if frames is None:
                raise InputError("training='frame_split' needs frames=(frame, element, tilt, y, x) counts.")
            frames = np.round(np.asarray(frames, np.float64)).astype(np.int64)
            if frames.ndim != 5 or frames.shape[1:] != counts.shape:
                raise InputError(f"frames must be shaped (frame, *{counts.shape}), got {frames.shape}.")
            if frames.shape[0] < 2:
                raise InputError(f"Frame splitting needs at least 2 frames, got {frames.shape[0]}.")
            data = frames.transpose(2, 0, 1, 3, 4)  # (T, F, E, Y, X)
        else:
            data = counts.transpose(1, 0, 2, 3)[:, None]  # (T, 1, E, Y, X)
        start = time.perf_counter()
        device = torch_device(cuda)
        rng = np.random.default_rng(int(cfg["seed"]))
        vf = float(cfg["validation_fraction"])
        held = held_pixels = stop_pixels = None
        if vf > 0 and mode == "blind_spot":
            # a fixed set of pixels (all elements of a pixel together), never a training target: early
            # stopping scores half of them, the other half no choice has seen (held_out_pixels)
            held_pixels = rng.random((data.shape[0], 1) + data.shape[-2:]) < vf
            stop_pixels = held_pixels & (rng.random(held_pixels.shape) < 0.5)
            train = data
        elif vf > 0:
            held, train = count_split(data, vf, rng)
            held, train = held.sum(axis=1), train.astype(np.int64)  # the training thins train binomially
        else:
            train = data
        train_sum = train.sum(axis=1)  # (T, E, Y, X)
        means = np.maximum(train_sum.mean(axis=(0, 2, 3)), 1e-6)
        t, n_frames, e, ny, nx = train.shape
        # share of the counts of every frame of every tilt (frame splitting)
        frame_totals = train.sum(axis=(2, 3, 4)).astype(np.float64)
        frame_share = frame_totals / np.maximum(frame_totals.sum(axis=1, keepdims=True), 1)
        m = self._multiple()
        patch = min(int(cfg["patch_size"]), ny, nx)
        patch -= patch % m
        if patch < m:
            raise InputError(f"Maps of {ny}x{nx} pixels are too small for a U-Net with {cfg['levels']} levels.")
        p = float(cfg["split_fraction"])
        bsf = float(cfg["blind_spot_fraction"])
        self.net = self._new_net().to(device)
        steps = int(cfg["steps"])
        means_t = torch.from_numpy(means.astype(np.float32)).to(device)[None, :, None, None]
        log_means = torch.log(means_t)
        bs = int(cfg["batch_size"])

        def batch():
            ti = rng.integers(0, t, bs)
            yi = rng.integers(0, ny - patch + 1, bs)
            xi = rng.integers(0, nx - patch + 1, bs)
            dose = np.ones(bs)
            mask = None
            if mode == "frame_split":
                crop = np.stack([train[a, :, :, b : b + patch, c : c + patch] for a, b, c in zip(ti, yi, xi)])
                sel = rng.random((bs, n_frames)) < p
                for i in range(bs):  # both parts need at least one frame
                    if sel[i].all() or not sel[i].any():
                        sel[i, rng.integers(0, n_frames)] = not sel[i].any()
                inp = np.einsum("bf,bfeyx->beyx", sel.astype(np.int64), crop)
                tgt = crop.sum(axis=1) - inp
                dose = np.clip((frame_share[ti] * sel).sum(axis=1), 1e-3, 1 - 1e-3)
            else:
                crop = np.stack([train_sum[a, :, b : b + patch, c : c + patch] for a, b, c in zip(ti, yi, xi)])
                if mode == "count_split":
                    inp = rng.binomial(crop, p)
                    tgt = crop - inp
                    dose[:] = p
                else:  # blind spot
                    mask = rng.random((bs, 1, patch, patch)) < bsf
                    inp = _hide(crop, mask)
                    tgt = crop
                    dose[:] = 1.0
                    if held_pixels is not None:  # held-out pixels are never targets
                        mask = mask & ~np.stack([held_pixels[a, :, b : b + patch, c : c + patch]
                                                 for a, b, c in zip(ti, yi, xi)])
            k, f = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
            dose_t = torch.from_numpy(dose.astype(np.float32)).to(device)[:, None, None, None]
            x = torch.from_numpy(inp.astype(np.float32)).to(device) / (dose_t * means_t)
            y = torch.from_numpy(tgt.astype(np.float32)).to(device)
            mk = None if mask is None else _dihedral(torch.from_numpy(mask.astype(np.float32)).to(device), k, f)
            return _dihedral(x, k, f), _dihedral(y, k, f), dose_t, mk

        def loss(net, x, y, dose_t, mk):
            log_mu = self._log_mu(net(self._inputs(x, means_t)), log_means)
            if mk is None:
                # Poisson NLL of the target under (1 - dose) mu, constants dropped
                return ((1 - dose_t) * torch.exp(log_mu) - y * log_mu).mean()
            nll = torch.exp(log_mu) - y * log_mu
            return (nll * mk).sum() / (mk.sum() * e).clamp(min=1.0)

        def held_out_deviance():
            if stop_pixels is not None:
                # the early-stopping pixels hidden as in training, scored on their own values
                mu = self._forward_full(_hide(train_sum, stop_pixels), means, device, tta=False)
                sel = np.broadcast_to(stop_pixels, train_sum.shape)
                return poisson_deviance(train_sum[sel], mu[sel]) / max(int(sel.sum()), 1)
            mu = self._forward_full(train_sum, means, device, tta=False) * (vf / (1 - vf))
            return poisson_deviance(held, mu) / held.size

        validated = held is not None or held_pixels is not None
        log = train_net(self.net, batch, loss, steps, cfg["learning_rate"], "Training denoiser", show_progressbar,
                        evaluate=held_out_deviance if validated else None, eval_every=cfg["eval_every"],
                        patience=cfg["patience"])
        self.net = self.net.cpu() if device.type != "cpu" else self.net
        # (tilt, y, x): held-out pixels neither trained on nor used to stop (blind spot); None otherwise
        self.held_out_pixels = None if held_pixels is None else (held_pixels & ~stop_pixels)[:, 0]
        self.training_log = {
            "losses": log["losses"],
            "held_out_deviance": log["evaluations"],
            "best_step": log["best_step"],
            "steps_run": len(log["losses"]),
            "device": device.type,
            "training": mode,
            "frames": int(n_frames) if mode == "frame_split" else None,
            "seconds": time.perf_counter() - start,
        }
        return self

    # -- inference ----------------------------------------------------------
    def predict(self, counts, elements=None, cuda=None):
        """Expected counts (element, tilt, y, x) for ``counts`` of the same
        elements (``elements`` in the order of the first axis; default: the
        model's).

        With ``thinned_inference`` = n > 0 the output is the mean over n
        binomial thinnings of the counts at ``split_fraction`` (the input
        dose the network was trained on), each with the 8 flips/rotations
        when ``tta``; otherwise the full counts go in once (per flip).
        """
        if not self.is_trained:
            raise RuntimeError("This denoiser is not trained: call fit() or load() first.")
        counts = np.asarray(counts, np.float64)
        order = self.check_elements(self.elements if elements is None else elements)
        if counts.ndim != 4 or counts.shape[0] != len(order):
            raise InputError(f"counts must be shaped ({len(order)}, tilt, y, x), got {counts.shape}.")
        device = torch_device(cuda)
        # channels in the model's order
        inverse = np.argsort(order)
        data = counts[inverse].transpose(1, 0, 2, 3)
        means = np.maximum(data.mean(axis=(0, 2, 3)), 1e-6)
        tta = bool(self.config["tta"])
        n_thin = int(self.config["thinned_inference"])
        self.net.to(device)
        try:
            if n_thin > 0:
                p = float(self.config["split_fraction"])
                rng = np.random.default_rng(int(self.config["seed"]) + 1)
                ints = np.round(data).astype(np.int64)
                mu = sum(self._forward_full(rng.binomial(ints, p), means, device, tta, dose=p) for _ in range(n_thin))
                mu = mu / n_thin
            else:
                mu = self._forward_full(data, means, device, tta)
        finally:
            self.net.cpu()
        return mu.transpose(1, 0, 2, 3)[order]

    def blind_spot_predict(self, counts, hidden, elements=None, cuda=None):
        """Expected counts (element, tilt, y, x) of the ``hidden`` pixels (boolean (tilt, y, x)) predicted
        with those pixels hidden (their visible neighbours' mean in their place): a prediction that never
        saw the value it predicts, to score against it (e.g. on :attr:`held_out_pixels`)."""
        if not self.is_trained:
            raise RuntimeError("This denoiser is not trained: call fit() or load() first.")
        counts = np.asarray(counts, np.float64)
        hidden = np.asarray(hidden, bool)
        if hidden.shape != counts.shape[1:]:
            raise InputError(f"hidden must be shaped (tilt, y, x) = {counts.shape[1:]}, got {hidden.shape}.")
        return self.predict(_hide(counts, hidden[None]), elements=elements, cuda=cuda)

    # -- persistence --------------------------------------------------------
    def save(self, path):
        """Write weights, settings and elements to ``path`` (torch format)."""
        if not self.is_trained:
            raise RuntimeError("Nothing to save: this denoiser is not trained.")
        save_weights(path, FORMAT, VERSION, self.net, self.training_log, elements=list(self.elements),
                     config=dict(self.config))

    @classmethod
    def load(cls, path):
        """A trained denoiser written by :meth:`save`."""
        blob = load_weights(path, FORMAT, VERSION, "a saved denoiser")
        version = blob.get("version", 0)
        config = dict(blob["config"])
        if version < 2:
            config = {**_VERSION1_CONFIG, **config}
        model = cls(blob["elements"], **config)
        model.net = load_state(model._new_net(), blob["state_dict"], path)
        model.training_log = dict(blob.get("training", {}))
        return model

    def __repr__(self):
        state = "trained" if self.is_trained else "untrained"
        c = self.config
        return (
            f"CountSplitDenoiserModel(elements={self.elements}, {state}, training={c['training']!r}, "
            f"joint={c['joint']}, levels={c['levels']}, channels={c['channels']})"
        )
