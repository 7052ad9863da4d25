"""Denoising of element maps: the :class:`Denoiser` base class and ``maps.denoise``.

A denoiser is a small class, registered through the ``edxtomo_denoisers``
hook exactly like a reconstruction algorithm::

    from traits.api import Range
    from hyperspy_edxtomo.denoisers import Denoiser

    class Median(Denoiser):
        name = "median"
        summary = "median filter"
        size = Range(1, 99, 3, desc="filter width in pixels")

        def denoise_counts(self, counts, elements, show_progressbar=False):
            ...  # (element, tilt, y, x) float64 -> same shape, expected counts

Parameters are traits (see :class:`~hyperspy_edxtomo.algorithms.ParameterisedMethod`):
validated by :meth:`create`, with errors naming the parameter.

Whatever the method, :func:`denoise` returns the *expected counts per pixel*:
every (element, tilt) map is rescaled to the raw count total of that map, so
that a denoised map keeps the dose of the data (the reconstruction and the
Poisson statistics downstream rely on it).
"""

import warnings

import numpy as np

from .algorithms import ParameterisedMethod
from .counts import is_counts
from .metadata import append_history

#: fewest counts per element a count-splitting method accepts
MIN_COUNTS_TO_SPLIT = 20


class NotCountsWarning(UserWarning):
    """The maps hold non-integer values: they are not raw X-ray counts."""


class Denoiser(ParameterisedMethod):
    """Base class: subclass it, set ``name`` and ``summary``, declare traits,
    implement :meth:`denoise_counts`."""

    #: True: the method models Poisson counts (a warning for non-integer maps)
    assumes_counts = False
    #: True: the method splits counts binomially (errors for too few counts)
    splits_counts = False

    def denoise_counts(self, counts, elements, show_progressbar=False):
        """Denoise ``counts`` (element, tilt, y, x) float64 into expected
        counts of the same shape (float, >= 0)."""
        raise NotImplementedError


def get_denoiser(method):
    """The denoiser class called ``method``; a ValueError lists the installed ones."""
    from .plugin_manager import get_denoiser as _get_denoiser

    return _get_denoiser(method)


def list_denoisers():
    """``{name: summary}`` of the installed denoisers."""
    from .plugin_manager import denoisers

    return {name: cls.summary for name, cls in denoisers().items()}


def check_counts(counts, assumes_counts=True, splits_counts=False, elements=None):
    """Validate element-map counts; returns them as float64.

    NaN/inf and negative values raise; non-integer values warn
    (:class:`NotCountsWarning`) when the method assumes counts; too few counts
    raise when the method splits counts.
    """
    c = np.asarray(counts)
    if c.ndim != 4:
        raise ValueError(f"Element maps must be shaped (element, tilt, y, x), got shape {c.shape}.")
    if c.size == 0:
        raise ValueError("The element maps are empty.")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(c))[0])
        raise ValueError(
            f"The element maps contain NaN or infinite values (first at element, tilt, y, x = {bad}); "
            "denoising needs finite X-ray counts."
        )
    if np.any(c < 0):
        n = int((c < 0).sum())
        raise ValueError(
            f"The element maps contain {n} negative values: X-ray counts are >= 0. Background-subtracted maps "
            "can be made non-negative with negative='clip' or, better, kept as raw counts with the background "
            "modelled (get_element_maps() does so by default)."
        )
    if assumes_counts and not is_counts(c):
        warnings.warn(
            "The element maps are not integer counts (e.g. background-subtracted, normalised or already "
            "denoised). This method models Poisson counts"
            + (" and splits every count binomially into training input and target; the values are rounded "
               "to integers for the split, so its statistics (and the denoised result) are only approximate"
               if splits_counts else "; its noise model does not hold for these values")
            + ". get_element_maps() keeps raw counts by default (the background is attached, not subtracted).",
            NotCountsWarning,
            stacklevel=3,
        )
    if splits_counts:
        totals = np.round(c).sum(axis=(1, 2, 3))
        names = elements if elements is not None else [str(i) for i in range(c.shape[0])]
        few = [f"{n} ({int(t)})" for n, t in zip(names, totals) if t < MIN_COUNTS_TO_SPLIT]
        if few:
            raise ValueError(
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


def denoise(maps, method="gaussian", show_progressbar=None, _instance=None, **parameters):
    """Implementation of :meth:`ElementMapTiltSeries.denoise`."""
    cls = get_denoiser(method)
    den = _instance if _instance is not None else cls.create(**parameters)
    elements = list(maps.elements)
    counts = check_counts(maps.to_numpy(), cls.assumes_counts, cls.splits_counts, elements)
    from .progress import show_progress

    out = den.denoise_counts(counts, elements, show_progressbar=show_progress(show_progressbar))
    out = np.asarray(out, np.float64)
    if out.shape != counts.shape:
        raise RuntimeError(f"Denoiser {method!r} returned shape {out.shape} for maps of shape {counts.shape}.")
    if not np.all(np.isfinite(out)):
        raise RuntimeError(f"Denoiser {method!r} returned NaN or infinite values.")
    out = rescale_to_totals(out, counts).astype(np.float32)
    result = maps.deepcopy()
    if result._lazy:
        result.compute()
    result.data = out
    result.metadata.General.title = f"{maps.metadata.General.title} (denoised: {method})"
    append_history(result, "denoising", method, den.parameter_values())
    # lazy in, lazy out (computed now: a denoiser sees every view of an element at once)
    return result.as_lazy() if maps._lazy else result
