"""The paper's deep reconstructions: the stages of ``two_step`` and the
end-to-end 3D network ``T``.

``two_step`` (Han et al. 2021, Fig. 1d, eqs. 3-5)::

    y  --Q^D-->  y_d  --MBIR-->  M  --R (every 1 deg)-->  R M  --Q^S-->  enhanced  --FBP-->  volume

``Q^S`` is a 2D U-Net on projection images (elements as channels) trained
*only* on self-consistency at the measured angles, ``Q^S(P_theta M) ~ y_d``,
with a Poisson likelihood loss; no ground truth. It is multiplicative
(``Q^S(p) = p exp(net(p))``, the last layer starting at zero): untrained it
is the identity, so whatever it changes it learned from the measured views,
and it cannot put counts where the MBIR volume projects none.

End-to-end (Fig. 1c, eq. 6): a residual 3D U-Net ``T`` learns
``FBP(Q^D y) -> two_step volume`` on the user's own series, then
reconstructs a new series in one pass. :func:`train_end_to_end` builds the
pairs by running ``two_step``; :class:`EndToEndModel` saves and loads the
weights (with the elements, voxel size and the trained ``Q^D``).
"""

import time
from collections.abc import Sequence
from os import PathLike

import numpy as np

from hyperspy_edxtomo.base.counts import poisson_deviance
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.progress import show_progress
from hyperspy_edxtomo.deep.networks import (
    build_unet,
    crop_to,
    deterministic_kernels,
    load_state,
    load_weights,
    pad_to_multiple,
    random_flips,
    save_weights,
    seeded,
    torch_device,
    train,
)
from hyperspy_edxtomo.denoising.api import apply_denoiser
from hyperspy_edxtomo.denoising.count_split_net import CountSplitDenoiserModel
from hyperspy_edxtomo.plugins.manager import get_denoiser
from hyperspy_edxtomo.signals.element_maps import (
    ElementMapTiltSeries,
    element_maps_from_array,
)
from hyperspy_edxtomo.signals.volume import ElementVolume

FORMAT = "hyperspy_edxtomo.end_to_end"
VERSION = 1


def _torch():
    import torch

    return torch


# -- what the deep algorithms (two_step, end_to_end) share --------------------------------
#: fewest views a deep reconstruction accepts: the networks learn from the views
MIN_TILTS = 3


def check_tilt_count(projector, method):
    if projector.n_tilts < MIN_TILTS:
        raise InputError(
            f"{method} needs at least {MIN_TILTS} tilts, got {projector.n_tilts}: its networks learn from the "
            "measured views. Use 'fbp' or 'sirt' for so few views."
        )


def denoise_stage(counts, elements, projector, name, parameters, seed, show_progressbar, model=None):
    """Q^D: ``(denoised counts, trained model or None, parameters used)``.

    ``name`` is an installed denoiser or ``"none"``; ``model`` a trained
    ``CountSplitDenoiserModel`` applied by the ``deep`` denoiser without training.
    """
    if name == "none":
        return np.asarray(counts, np.float32), None, {"method": "none"}
    cls = get_denoiser(name)
    params = dict(parameters)
    if cls.seeded:
        params.setdefault("seed", seed)
    den = cls.create(**params)
    if model is not None:
        model.check_elements(elements)
        den.model = model
    maps = element_maps_from_array(np.asarray(counts), projector.tilts_deg, elements)
    # a seeded denoiser's context seed is its own seed parameter (the reconstruction's unless given)
    out, result = apply_denoiser(maps, den, show_progressbar=show_progressbar, seed=None if cls.seeded else seed)
    return np.asarray(out.data, np.float32), result.model, {"method": name, **den.parameter_values(), **result.chosen}


def dense_angles(step_deg):
    """Re-projection angles: every ``step_deg`` over [-90, 90)."""
    n = int(round(180.0 / float(step_deg)))
    return -90.0 + np.arange(n) * (180.0 / n)


# -- Q^S: projection enhancement --------------------------------------------------------------
def train_enhancer(inputs, targets, channels=16, levels=3, steps=300, batch_size=8, patch_size=64,
                   learning_rate=1e-3, seed=0, device="cpu", show_progressbar=False):
    """Train Q^S on the measured angles: ``inputs`` are the MBIR re-projections
    ``P_theta M`` and ``targets`` the (denoised) measured views, both
    ``(tilt, element, y, x)``, non-negative, same dose.

    Returns
    -------
    net : torch.nn.Module
        Apply with :func:`apply_enhancer`.
    scale : ndarray
        Per-element normalisation (mean of the inputs).
    log : dict
        Losses, and the Poisson deviance of the targets under the plain
        re-projection and under the enhanced one, per element.
    """
    torch = _torch()
    t0 = time.perf_counter()
    with seeded(seed) as rng:
        n_t, n_e, ny, nx = inputs.shape
        scale = np.maximum(inputs.mean(axis=(0, 2, 3)), 1e-12)
        norm = scale[None, :, None, None]
        x_all = torch.from_numpy((inputs / norm).astype(np.float32))
        t_all = torch.from_numpy((targets / norm).astype(np.float32))
        net = build_unet(2, n_e, n_e, channels, levels).to(device)
        multiple = 2 ** (int(levels) - 1)
        patch = min(int(patch_size), ny, nx)
        patch -= patch % multiple
        if patch < multiple:
            raise InputError(f"Views of {ny}x{nx} pixels are too small for a U-Net with {levels} levels.")

        def batches():
            ti = rng.integers(0, n_t, batch_size)
            yi = rng.integers(0, ny - patch + 1, batch_size)
            xi = rng.integers(0, nx - patch + 1, batch_size)
            xb = torch.stack([x_all[a, :, b : b + patch, c : c + patch] for a, b, c in zip(ti, yi, xi)])
            tb = torch.stack([t_all[a, :, b : b + patch, c : c + patch] for a, b, c in zip(ti, yi, xi)])
            # mirror images are projections of the mirrored object: valid views
            xb, tb = random_flips(rng, (-1, -2), xb, tb)
            return xb.to(device), tb.to(device)

        def poisson_nll(net, x, t):
            mu = _enhance(net, x)
            return (mu - t * torch.log(mu)).mean()  # constants dropped

        losses = train(net, batches, poisson_nll, steps, learning_rate, "Training Q^S (projection enhancer)",
                       show_progressbar)["losses"]
        enhanced = apply_enhancer(net, scale, inputs, device)
        log = {
            "losses": losses,
            "seconds": round(time.perf_counter() - t0, 3),
            "deviance_reprojection": deviance_per_element(targets, inputs),
            "deviance_enhanced": deviance_per_element(targets, enhanced),
        }
        return net, scale, log


def _enhance(net, x, floor=1e-3):
    torch = _torch()
    return (x + floor) * torch.exp(net(x).clamp(-8, 8))


def apply_enhancer(net, scale, projections, device="cpu", batch=4):
    """Q^S on every projection ``(angle, element, y, x)``; same shape out."""
    torch = _torch()
    levels = len(net.enc)
    norm = scale[None, :, None, None]
    out = np.empty(projections.shape, np.float32)
    with torch.no_grad(), deterministic_kernels():
        for i in range(0, projections.shape[0], batch):
            x = torch.from_numpy((projections[i : i + batch] / norm).astype(np.float32)).to(device)
            x, sizes = pad_to_multiple(x, 2 ** (levels - 1))
            y = crop_to(_enhance(net, x), sizes)
            out[i : i + batch] = (y.cpu().numpy() * norm).astype(np.float32)
    return out


def deviance_per_element(counts, expected):
    """Poisson deviance of projections shaped (view, element, y, x), one value per element."""
    return [float(d) for d in poisson_deviance(counts, expected, axis=(0, 2, 3))]


def wedge_check(reprojections, enhanced, angles_deg, measured_deg):
    """How much Q^S changes the re-projections, inside the measured range and
    in the missing wedge: ``sum |Q^S(R) - R| / sum R`` per element."""
    angles = np.asarray(angles_deg)
    lo, hi = float(np.min(measured_deg)), float(np.max(measured_deg))
    inside = (angles >= lo - 1e-6) & (angles <= hi + 1e-6)
    rows = {}
    for name, sel in (("measured range", inside), ("missing wedge", ~inside)):
        if not np.any(sel):
            continue
        diff = np.abs(enhanced[sel] - reprojections[sel]).sum(axis=(0, 2, 3))
        ref = np.maximum(reprojections[sel].sum(axis=(0, 2, 3)), 1e-12)
        rows[name] = [float(v) for v in diff / ref]
    per_angle = np.abs(enhanced - reprojections).sum(axis=(1, 2, 3)) / np.maximum(
        reprojections.sum(axis=(1, 2, 3)), 1e-12
    )
    return {"relative_change": rows, "relative_change_per_angle": per_angle.tolist(), "angles_deg": angles.tolist()}


# -- T: the end-to-end network ----------------------------------------------------------------
DEFAULT_E2E = {
    "channels": 8,
    "levels": 3,
    "steps": 400,
    "batch_size": 2,
    "patch_size": 32,
    "learning_rate": 2e-3,
    "seed": 0,
}


class EndToEndModel:
    """Residual 3D U-Net ``T``: ``FBP(Q^D y)`` to the ``two_step`` volume, the
    elements as channels.

    Parameters
    ----------
    elements : list of str
        Channel order.
    voxel_size_nm : float or None
        Voxel size of the training volumes (new data must match within 10 %).
    **config
        ``channels``, ``levels``, ``steps``, ``batch_size``, ``patch_size``,
        ``learning_rate``, ``seed`` (see :data:`DEFAULT_E2E`).
    """
    def __init__(self, elements, voxel_size_nm=None, **config):
        unknown = set(config) - set(DEFAULT_E2E)
        if unknown:
            raise InputError(f"Unknown end-to-end settings {sorted(unknown)}; known: {sorted(DEFAULT_E2E)}.")
        self.elements = [str(e) for e in elements]
        self.voxel_size_nm = None if voxel_size_nm is None else float(voxel_size_nm)
        self.config = {**DEFAULT_E2E, **config}
        self.net = None
        self.training_log = {}
        self.denoiser_blob = None  # the Q^D model trained with it, as saved bytes

    def _new_net(self):
        c = self.config
        n = len(self.elements)
        return build_unet(3, n, n, int(c["channels"]), int(c["levels"]))

    @property
    def is_trained(self):
        return self.net is not None

    def check_compatible(self, elements, voxel_size_nm=None):
        """The channel order for ``elements``; ValueError for other elements or voxel sizes."""
        elements = [str(e) for e in elements]
        if sorted(elements) != sorted(self.elements):
            raise InputError(
                f"These end-to-end weights were trained on elements {self.elements}, the data hold {elements}. "
                "Train weights for these elements with hyperspy_edxtomo.train_end_to_end(...)."
            )
        if self.voxel_size_nm and voxel_size_nm and abs(voxel_size_nm / self.voxel_size_nm - 1) > 0.1:
            raise InputError(
                f"These end-to-end weights were trained at {self.voxel_size_nm:.4g} nm voxels, the data have "
                f"{voxel_size_nm:.4g} nm: the network's learned feature sizes would not match. Rebin the maps "
                "or train weights at this pixel size with train_end_to_end(...)."
            )
        return [self.elements.index(e) for e in elements]

    # -- training ---------------------------------------------------------------
    def fit(self, inputs, targets, cuda=None, show_progressbar=False):
        """Train on pairs: lists of ``(element, z, y, x)`` arrays (FBP inputs,
        two_step targets) in this model's element order."""
        torch = _torch()
        c = self.config
        t0 = time.perf_counter()
        device = torch_device(cuda)
        with seeded(c["seed"]) as rng:
            n_e = len(self.elements)
            xs, ts = [], []
            for x, t in zip(inputs, targets):
                x, t = np.asarray(x, np.float32), np.asarray(t, np.float32)
                if x.shape != t.shape or x.ndim != 4 or x.shape[0] != n_e:
                    raise InputError(f"Training pair of shapes {x.shape} and {t.shape}: need equal (element={n_e}, z, y, x).")
                s = _scale(x)[:, None, None, None]
                xs.append(torch.from_numpy(x / s))
                ts.append(torch.from_numpy(t / s))
            if not xs:
                raise InputError("No training pairs.")
            multiple = 2 ** (int(c["levels"]) - 1)
            patch = min(int(c["patch_size"]), *[min(x.shape[1:]) for x in xs])
            patch -= patch % multiple
            if patch < multiple:
                raise InputError(f"Volumes too small for a 3D U-Net with {c['levels']} levels.")
            self.net = self._new_net().to(device)
            # patches where the particle is: half the batch centred on voxels with signal
            weights = [np.clip(t.sum(0).numpy(), 0, None).ravel() for t in ts]

            def batches():
                xb, tb = [], []
                for b in range(int(c["batch_size"])):
                    k = int(rng.integers(0, len(xs)))
                    start = _patch_start(xs[k].shape[1:], patch, rng, weights[k] if b % 2 == 0 else None)
                    sl = (slice(None),) + tuple(slice(s0, s0 + patch) for s0 in start)
                    xb.append(xs[k][sl])
                    tb.append(ts[k][sl])
                # flips map a missing wedge symmetric about z onto itself: valid pairs
                xb, tb = random_flips(rng, (-1, -2, -3), torch.stack(xb), torch.stack(tb))
                return xb.to(device), tb.to(device)

            def residual_mse(net, x, t):
                return torch.mean((x + net(x) - t) ** 2)

            losses = train(self.net, batches, residual_mse, c["steps"], c["learning_rate"],
                           "Training T (end-to-end 3D U-Net)", show_progressbar)["losses"]
            self.net = self.net.cpu().eval()
            self.training_log = {
                "losses": losses,
                "n_pairs": len(xs),
                "device": device.type,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            return self

    # -- inference --------------------------------------------------------------
    def predict(self, volume, elements=None, cuda=None, constrain=True):
        """``T`` on an FBP volume ``(element, z, y, x)`` (elements in the order
        given, default the model's); same shape out."""
        torch = _torch()
        if not self.is_trained:
            raise RuntimeError("These end-to-end weights are not trained: call fit() or load() first.")
        order = self.check_compatible(self.elements if elements is None else elements)
        volume = np.asarray(volume, np.float32)
        if volume.ndim != 4 or volume.shape[0] != len(order):
            raise InputError(f"volume must be shaped ({len(order)}, z, y, x), got {volume.shape}.")
        device = torch_device(cuda)
        x = volume[np.argsort(order)]
        s = _scale(x)[:, None, None, None]
        xt = torch.from_numpy(x / s)[None]
        multiple = 2 ** (int(self.config["levels"]) - 1)
        self.net.to(device)
        try:
            with torch.no_grad(), deterministic_kernels():
                xt, sizes = pad_to_multiple(xt.to(device), multiple)
                y = crop_to(xt + self.net(xt), sizes)[0].cpu().numpy()
        finally:
            self.net.cpu()
        y = y * s
        if constrain:
            np.maximum(y, 0, out=y)
        return y[order].astype(np.float32)

    # -- persistence ------------------------------------------------------------
    def save(self, path):
        """Write the weights, elements, voxel size, settings (and ``Q^D``) to ``path``."""
        if not self.is_trained:
            raise RuntimeError("Nothing to save: these end-to-end weights are not trained.")
        save_weights(path, FORMAT, VERSION, self.net, self.training_log, elements=self.elements,
                     voxel_size_nm=self.voxel_size_nm, config=dict(self.config), denoiser=self.denoiser_blob)

    @classmethod
    def load(cls, path):
        """Weights written by :meth:`save`; clear errors for anything else."""
        blob = load_weights(path, FORMAT, VERSION, "an end-to-end weights file", missing=(
            "Train them with hyperspy_edxtomo.train_end_to_end(series, out=path) (it runs two_step on your "
            "series first)."))
        model = cls(blob["elements"], blob.get("voxel_size_nm"), **blob["config"])
        model.net = load_state(model._new_net(), blob["state_dict"], path)
        model.training_log = dict(blob.get("training", {}))
        model.denoiser_blob = blob.get("denoiser")
        return model

    # -- the Q^D trained with it ------------------------------------------------
    def set_denoiser(self, denoiser_model):
        """Keep a trained ``CountSplitDenoiserModel`` inside the weights file."""
        if denoiser_model is None:
            self.denoiser_blob = None
            return
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = os.path.join(tmp, "qd.pt")
            denoiser_model.save(p)
            with open(p, "rb") as f:
                self.denoiser_blob = f.read()

    def get_denoiser(self):
        """The stored ``Q^D`` model, or None."""
        if not self.denoiser_blob:
            return None
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            p = os.path.join(tmp, "qd.pt")
            with open(p, "wb") as f:
                f.write(bytes(self.denoiser_blob))
            return CountSplitDenoiserModel.load(p)

    def __repr__(self):
        state = "trained" if self.is_trained else "untrained"
        return f"EndToEndModel(elements={self.elements}, {state}, voxel_size_nm={self.voxel_size_nm}, {self.config})"


def _scale(x):
    """Per-element scale of a volume: its 99.9th percentile of |x| (robust to FBP streaks)."""
    s = np.array([np.percentile(np.abs(v), 99.9) for v in x], np.float32)
    return np.where(s > 0, s, 1.0).astype(np.float32)


def _patch_start(shape, patch, rng, weights=None):
    if weights is not None and weights.sum() > 0:
        idx = int(rng.choice(weights.size, p=weights / weights.sum()))
        centre = np.unravel_index(idx, shape)
        return [int(np.clip(c - patch // 2, 0, n - patch)) for c, n in zip(centre, shape)]
    return [int(rng.integers(0, n - patch + 1)) for n in shape]


def check_e2e_settings(config, prefix=""):
    """The end-to-end settings ``config`` (a subset of :data:`DEFAULT_E2E`) checked, whole floats made ints.

    Raises an InputError naming the setting (after ``prefix``, e.g. the
    command-line option) for an unknown name, a size or count that is not a
    whole number >= 1 (``steps=0`` would save an untrained network), a
    negative seed or a learning rate that is not a positive number.

    Examples
    --------
    >>> from hyperspy_edxtomo.reconstruction.deep_models import check_e2e_settings
    >>> check_e2e_settings({"steps": 1e3})
    {'steps': 1000}
    """
    unknown = sorted(set(config) - set(DEFAULT_E2E))
    if unknown:
        raise InputError(f"{prefix}unknown end-to-end settings {unknown}; known: {sorted(DEFAULT_E2E)}.")
    checked = {}
    for name, value in config.items():
        if isinstance(value, float) and value.is_integer() and name != "learning_rate":
            value = int(value)  # steps=1e3
        if name == "learning_rate":
            need = "a positive number"
            ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                  and np.isfinite(value) and value > 0)
        else:
            low = 0 if name == "seed" else 1
            need = f"a whole number >= {low}"
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
        if not ok:
            why = " (steps=0 would save an untrained network)" if name == "steps" else ""
            raise InputError(f"{prefix}{name}={value!r}: {name} must be {need}{why}; default {DEFAULT_E2E[name]!r}.")
        checked[name] = value
    return checked


def _check_two_step_results(results, series, two_step):
    """``results`` as a list of ``(volume, intermediates)``, one per series, each checked; None if not given."""
    if results is None:
        return None
    if two_step is not None:
        raise InputError("train_end_to_end: give two_step (parameters to reconstruct with) or results (two_step "
                         "results already computed), not both.")
    if isinstance(results, tuple) and len(results) == 2 and isinstance(results[0], ElementVolume):
        results = [results]
    results = list(results)
    if len(results) != len(series):
        raise InputError(f"train_end_to_end: {len(results)} two_step results for {len(series)} tilt series; "
                         "give one per series, in the same order.")
    for i, (item, maps) in enumerate(zip(results, series)):
        what = f"two_step result {i}"
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], ElementVolume)
                and isinstance(item[1], dict)):
            raise InputTypeError(f"train_end_to_end: {what} must be the (volume, intermediates) pair of "
                                 "maps.reconstruct('two_step', return_intermediates=True).")
        vol, inter = item
        step = vol.history[-1] if vol.history else {}
        if step.get("method") != "two_step":
            raise InputError(f"train_end_to_end: {what} was made by {step.get('method')!r}, not two_step.")
        if not isinstance(inter.get("fbp_denoised"), ElementVolume):
            raise InputError(f"train_end_to_end: {what} has no 'fbp_denoised' volume among its intermediates (the "
                             "network's input).")
        if sorted(vol.elements) != sorted(maps.elements):
            raise InputError(f"train_end_to_end: {what} holds elements {list(vol.elements)}, its series "
                             f"{list(maps.elements)}.")
        tilts = np.asarray(step.get("parameters", {}).get("tilts_deg", []), float)
        if tilts.shape != maps.tilts.shape or not np.allclose(tilts, maps.tilts, atol=0.01):
            raise InputError(f"train_end_to_end: {what} was reconstructed from other tilts than its series.")
        if vol.data.shape[2:] != maps.data.shape[2:]:
            raise InputError(f"train_end_to_end: {what} is shaped {vol.data.shape}, its series' views "
                             f"{maps.data.shape[2:]}: it is not a reconstruction of this series.")
        if inter["fbp_denoised"].data.shape != vol.data.shape or list(inter["fbp_denoised"].elements) != list(
                vol.elements):
            raise InputError(f"train_end_to_end: {what}'s fbp_denoised does not match its volume (shape "
                             f"{inter['fbp_denoised'].data.shape} against {vol.data.shape}).")
    return results


def train_end_to_end(series: ElementMapTiltSeries | Sequence[ElementMapTiltSeries], out: str | PathLike | None = None,
                     two_step: dict | None = None, show_progressbar: bool | None = None, cuda: bool | None = None,
                     results: tuple | Sequence[tuple] | None = None, **config) -> EndToEndModel:
    """Train the end-to-end network ``T`` on your own tilt series.

    Each series is reconstructed with ``two_step`` (the target) and by FBP of
    its ``Q^D``-denoised maps (the input); ``T`` learns input to target.

    Parameters
    ----------
    series : ElementMapTiltSeries or list of them
        Raw-count element maps (same elements, same pixel size).
    out : str or path, optional
        Where to save the weights (:meth:`EndToEndModel.save`).
    two_step : dict, optional
        Parameters for the ``two_step`` reconstructions.
    results : tuple or list of tuples, optional
        ``two_step`` results already computed for these series, one per
        series in the same order, each the ``(volume, intermediates)`` pair
        that ``maps.reconstruct("two_step", return_intermediates=True)``
        returns: their volumes are the targets and their ``fbp_denoised``
        the inputs, so nothing is reconstructed again (``two_step`` must
        then not be given). Each is checked against its series (method,
        elements, tilts, view size).
    show_progressbar : None or bool
    cuda : None or bool
        None: CUDA when present.
    **config
        Settings of ``T``: see :data:`DEFAULT_E2E`.

    Returns
    -------
    EndToEndModel
        Trained; ``training_log`` holds the losses and timings.

    Examples
    --------
    >>> import hyperspy_edxtomo as het
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.quantum_dot_element_maps(size=32, counts_per_tilt=20000, seed=1)
    >>> fast = {"enhancer_steps": 5, "denoiser": "gaussian", "lam": 0.1, "mbir_iterations": 10}
    >>> model = het.train_end_to_end(maps, steps=5, two_step=fast)

    A ``two_step`` result you already have is used as it is:

    >>> result = maps.reconstruct("two_step", return_intermediates=True, **fast)
    >>> model = het.train_end_to_end(maps, steps=5, results=result)
    >>> model.training_log["targets"]
    'given two_step results'
    """
    # before the two_step reconstructions that make the targets: a bad setting fails at once
    config = check_e2e_settings(config)
    if isinstance(series, ElementMapTiltSeries):
        series = [series]
    series = list(series)
    if not series:
        raise InputError("train_end_to_end needs at least one tilt series.")
    for s in series:
        if not isinstance(s, ElementMapTiltSeries):
            raise InputTypeError(f"train_end_to_end needs ElementMapTiltSeries, got {type(s).__name__}.")
    elements = list(series[0].elements)
    for s in series[1:]:
        if sorted(s.elements) != sorted(elements):
            raise InputError(f"All series must hold the same elements: {elements} vs {list(s.elements)}.")
    given = _check_two_step_results(results, series, two_step)
    show = show_progress(show_progressbar)
    t0 = time.perf_counter()
    params = dict(two_step or {})
    inputs, targets, qd = [], [], None
    for i, s in enumerate(series):
        if given is None:
            vol, inter = s.reconstruct(method="two_step", return_intermediates=True, cuda=cuda,
                                       show_progressbar=show, **params)
        else:
            vol, inter = given[i]
        order = [list(vol.elements).index(e) for e in elements]
        inputs.append(inter["fbp_denoised"].to_numpy()[order])
        targets.append(vol.to_numpy()[order])
        qd = inter.get("denoiser_model") or qd
    scale, units = series[0].pixel_size
    model = EndToEndModel(elements, scale if units == "nm" else None, **config)
    model.fit(inputs, targets, cuda=cuda, show_progressbar=show)
    model.set_denoiser(qd)
    model.training_log["targets"] = "reconstructed with two_step" if given is None else "given two_step results"
    model.training_log["two_step_parameters"] = (
        params if given is None else [vol.history[-1]["parameters"]["parameters"] for vol, _ in given])
    model.training_log["seconds_total"] = round(time.perf_counter() - t0, 3)
    if out is not None:
        model.save(out)
    return model
