"""Denoising of element maps: ``maps.denoise`` and ``maps.denoise_deep``.

A denoiser is a plugin (:class:`~hyperspy_edxtomo.plugins.contract.Denoiser`),
registered through the ``edxtomo_denoisers`` hook exactly like a
reconstruction algorithm::

    from traits.api import Range
    from hyperspy_edxtomo.plugins import Denoiser, DenoisingResult

    class Median(Denoiser):
        name = "median"
        summary = "median filter"
        size = Range(1, 99, 3, desc="filter width in pixels")

        def denoise_counts(self, counts, context):
            ...  # (element, tilt, y, x) float64 -> DenoisingResult(expected counts of the same shape)

Parameters are traits (see :class:`~hyperspy_edxtomo.plugins.contract.ParameterisedMethod`):
validated by :meth:`create`, with errors naming the parameter.

Whatever the method, :func:`denoise` returns the *expected counts per pixel*:
every (element, tilt) map is rescaled to the raw count total of that map, so
that a denoised map keeps the dose of the data (the reconstruction and the
Poisson statistics downstream rely on it).
"""

from __future__ import annotations

import logging
from os import PathLike

import numpy as np

from hyperspy_edxtomo.base.conventions import to_nm
from hyperspy_edxtomo.base.counts import check_counts, is_counts
from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.base.private_api import is_lazy
from hyperspy_edxtomo.base.progress import show_progress
from hyperspy_edxtomo.base.provenance import append_history
from hyperspy_edxtomo.denoising.count_split_net import CountSplitDenoiserModel
from hyperspy_edxtomo.plugins.contract import Context, Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.manager import (
    denoisers,
    get_denoiser,  # the one lookup, re-exported for maps.denoise users
)
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method

_logger = logging.getLogger(__name__)

#: fewest counts per element a count-splitting method accepts
MIN_COUNTS_TO_SPLIT = 20


class NotCountsWarning(UserWarning):
    """The maps hold non-integer values: they are not raw X-ray counts."""


def list_denoisers():
    """``{name: summary}`` of the installed denoisers."""
    return {name: cls.summary for name, cls in denoisers().items()}


def check_denoising_input(counts, assumes_counts=True, splits_counts=False, elements=None):
    """Validate element-map counts; returns them as float64.

    NaN/inf and negative values and 1 x 1-pixel maps raise; non-integer values warn
    (:class:`NotCountsWarning`) when the method assumes counts; too few counts
    raise when the method splits counts.
    """
    c = np.asarray(counts)
    if c.ndim != 4:
        raise InputError(f"Element maps must be shaped (element, tilt, y, x), got shape {c.shape}.")
    if c.size == 0:
        raise InputError("The element maps are empty.")
    if c.shape[2] == c.shape[3] == 1:
        # every method would give each map back unchanged (rescaled to its own total): refuse the no-op
        raise InputError("The element maps are 1 x 1 pixel: there is no image to denoise. Denoise maps of at "
                         "least 2 pixels, or use these as they are.")
    c = check_counts(c, "element maps", integer=False)
    if assumes_counts and not is_counts(c):
        warn(
            "The element maps are not integer counts (e.g. background-subtracted, normalised or already "
            "denoised). This method models Poisson counts"
            + (" and splits every count binomially into training input and target; the values are rounded "
               "to integers for the split, so its statistics (and the denoised result) are only approximate"
               if splits_counts else "; its noise model does not hold for these values")
            + ". get_element_maps() keeps raw counts by default (the background is attached, not subtracted).",
            NotCountsWarning,
        )
    if splits_counts:
        totals = np.round(c).sum(axis=(1, 2, 3))
        names = elements if elements is not None else [str(i) for i in range(c.shape[0])]
        few = [f"{n} ({int(t)})" for n, t in zip(names, totals) if t < MIN_COUNTS_TO_SPLIT]
        if few:
            raise InputError(
                f"Too few counts to split for element(s) {', '.join(few)}: count splitting needs at least "
                f"{MIN_COUNTS_TO_SPLIT} counts per element (all tilts together). Drop the element or use a "
                "classical denoiser (e.g. method='gaussian')."
            )
    return c


def rescale_to_totals(denoised, counts):
    """Rescale every (element, tilt) map of ``denoised`` to the total of ``counts``."""
    out = np.clip(np.asarray(denoised, np.float64), 0, None)
    raw = counts.sum(axis=(2, 3), keepdims=True)
    den = out.sum(axis=(2, 3), keepdims=True)
    scale = np.where(den > 0, raw / np.where(den > 0, den, 1.0), 0.0)
    out = out * scale
    # a map the method zeroed entirely while the data had counts: fall back to a flat map
    flat = (den <= 0) & (raw > 0)
    if np.any(flat):
        n_pix = counts.shape[2] * counts.shape[3]
        out = np.where(flat, raw / n_pix, out)
    return out


@signal_method(ElementMapTiltSeries)
def denoise(maps: ElementMapTiltSeries, method: str = "gaussian", show_progressbar: bool | None = None,
            **parameters) -> ElementMapTiltSeries:
    """Denoise the maps with an installed denoiser plugin.

    Parameters
    ----------
    method : str
        A denoiser name: ``"gaussian"``, ``"moving_average"`` (the paper's
        11 x 11 average), ``"pca"``, ``"nmf"``, ``"bm3d"`` (optional package),
        ``"deep"`` (see :meth:`denoise_deep`) or any plugin's
        (``hyperspy_edxtomo.denoising.list_denoisers()``).
    show_progressbar : None or bool
        None: HyperSpy's preference.
    **parameters
        The method's parameters (validated; errors list them).

    Returns
    -------
    ElementMapTiltSeries
        Expected counts per pixel (float32): every (element, tilt) map
        sums to its raw count total. Method and parameters (and seed) in
        ``history``.
    """
    denoiser = get_denoiser(method).create(**parameters)
    return apply_denoiser(maps, denoiser, show_progressbar=show_progressbar)[0]


def apply_denoiser(maps: ElementMapTiltSeries, denoiser: Denoiser, show_progressbar: bool | None = None,
                   seed: int | None = None) -> tuple[ElementMapTiltSeries, DenoisingResult]:
    """Run a configured denoiser on ``maps``: ``(denoised maps, DenoisingResult)``.

    The counts are checked for the method (:func:`check_denoising_input`), the
    result's maps are rescaled to the raw count total of every (element,
    tilt) map, the method, its parameters and what it chose go into the
    history. Lazy maps give lazy maps (computed now: a denoiser sees every
    view of an element at once).

    Parameters
    ----------
    maps : ElementMapTiltSeries
    denoiser : Denoiser
        An instance, e.g. ``get_denoiser("gaussian").create(sigma=1.5)``.
    show_progressbar : None or bool
    seed : None or int
        The context's seed; None: the denoiser's own ``seed`` parameter when
        it has one (``seeded``), else 0.
    """
    if seed is None:
        seed = int(denoiser.seed) if denoiser.seeded else 0
    method = denoiser.name
    elements = list(maps.elements)
    counts = check_denoising_input(maps.to_numpy(), denoiser.assumes_counts, denoiser.splits_counts, elements)
    scale, units = to_nm(*maps.pixel_size)
    context = Context(elements=tuple(elements), tilts_deg=maps.tilts, pixel_size_nm=scale if units == "nm" else None,
                      seed=seed, show_progressbar=show_progress(show_progressbar))
    result = denoiser.denoise_counts(counts, context)
    if not isinstance(result, DenoisingResult):
        raise TypeError(f"Denoiser {method!r} returned {type(result).__name__}; denoise_counts must return a "
                        "hyperspy_edxtomo.plugins.DenoisingResult.")
    out = np.asarray(result.counts, np.float64)
    if out.shape != counts.shape:
        raise RuntimeError(f"Denoiser {method!r} returned shape {out.shape} for maps of shape {counts.shape}.")
    if not np.all(np.isfinite(out)):
        raise RuntimeError(f"Denoiser {method!r} returned NaN or infinite values.")
    out = rescale_to_totals(out, counts).astype(np.float32)
    denoised = maps.deepcopy()
    if is_lazy(denoised):
        denoised.compute()
    denoised.data = out
    denoised.metadata.General.title = f"{maps.metadata.General.title} (denoised: {method})"
    append_history(denoised, "denoising", method, {**denoiser.parameter_values(), **result.chosen})
    _logger.info("denoised %s with %s%s", elements, method, f" (chose {sorted(result.chosen)})" if result.chosen else "")
    return (denoised.as_lazy() if is_lazy(maps) else denoised), result


@signal_method(ElementMapTiltSeries)
def denoise_deep(maps: ElementMapTiltSeries, model: CountSplitDenoiserModel | str | PathLike | None = None,
                 return_model: bool = False, show_progressbar: bool | None = None,
                 **parameters) -> ElementMapTiltSeries | tuple[ElementMapTiltSeries, CountSplitDenoiserModel]:
    """Self-supervised deep denoising by Poisson count splitting.

    A small U-Net (elements as channels) is trained on these maps: each
    count goes at random to the network input or to the target, the loss
    is the Poisson likelihood of the target, early stopping on held-out
    counts (see :mod:`hyperspy_edxtomo.denoising.count_split_net`).

    Parameters
    ----------
    model : None, str, path or CountSplitDenoiserModel
        A trained model (or a file written by its ``save``): applied
        without training. Its elements must be those of the maps.
    return_model : bool
        Also return the trained model (to ``save`` or reuse).
    show_progressbar : None or bool
    **parameters
        Settings of the ``"deep"`` denoiser: ``training``
        (``"count_split"``, ``"frame_split"`` with ``frames=``, or
        ``"blind_spot"``), ``frames`` (repeated frames: an array (frame,
        element, tilt, y, x) or one maps signal per frame, summing to
        these maps), ``joint`` (all-element sum as an extra channel),
        ``blind_spot_fraction``, ``thinned_inference``, ``levels``,
        ``channels``, ``steps``, ``batch_size``, ``patch_size``,
        ``learning_rate``, ``split_fraction``, ``validation_fraction``,
        ``eval_every``, ``patience``, ``tta``, ``seed``, ``cuda`` (None:
        CUDA when present). ``edxtomo denoisers`` lists them with their
        defaults.

    Returns
    -------
    ElementMapTiltSeries or (ElementMapTiltSeries, CountSplitDenoiserModel)
    """

    cls = get_denoiser("deep")
    if model is not None:
        extra = set(parameters) - {"cuda"}
        if extra:
            raise InputError(f"With model=, training settings {sorted(extra)} do not apply; only cuda= does.")
        if not isinstance(model, CountSplitDenoiserModel):
            model = CountSplitDenoiserModel.load(model)
        model.check_elements(maps.elements)
    den = cls.create(**parameters)
    den.model = model
    out, result = apply_denoiser(maps, den, show_progressbar=show_progressbar)
    return (out, result.model) if return_model else out
