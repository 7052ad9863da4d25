"""The views an alignment is estimated on: input checks, the summed stack, and the prepared views.

Every estimator sees the same thing: the views summed over elements (or
energy channels), or the HAADF reference images, as a ``(tilt, y, x)``
float stack, binned, smoothed and with the background removed
(:func:`prepare_views`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.counts import DOSE_RATIO_WARN, is_counts
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries

__all__ = ["BACKGROUND", "BACKGROUND_NOISE_K", "IDENTICAL_Z", "MIN_VIEW_PX", "series_kind", "tilt_axis_index", "view_shape",
           "check_references", "summed_counts", "background_node", "summed_background", "check_stack",
           "warn_doses", "homogeneity_z", "same_image", "nothing_to_align_on", "bin_views", "background_free",
           "prepare_views"]

BACKGROUND = f"{NODE}.background"
#: background noise (robust standard deviations of the border) removed before centres of mass
BACKGROUND_NOISE_K = 2.0
#: count views are "all the same image" when the homogeneity test is below this many standard deviations
IDENTICAL_Z = 3.0


# ---------------------------------------------------------------------------------
# the series


def series_kind(series) -> str:
    """``"maps"``, ``"edx"`` or ``"images"`` (a plain Signal2D navigated by the views); TypeError otherwise."""
    if isinstance(series, ElementMapTiltSeries):
        return "maps"
    if isinstance(series, EDXTiltSeries):
        return "edx"
    am = getattr(series, "axes_manager", None)
    if am is not None and am.navigation_dimension == 1 and am.signal_dimension == 2:
        return "images"  # e.g. a separate HAADF tilt series: a Signal2D navigated by the views
    raise InputTypeError(f"Alignment needs an ElementMapTiltSeries, an EDXTiltSeries or a Signal2D with one navigation "
                    f"axis (the views), got {type(series).__name__} with axes {am}.")


def tilt_axis_index(series) -> int:
    """Index of the tilt axis in ``series.data`` (element maps: after the elements)."""
    return 1 if series_kind(series) == "maps" else 0


def view_shape(series) -> tuple[int, tuple[int, int]]:
    """(number of views, (y, x) pixels of a view)."""
    data = series.data
    i = tilt_axis_index(series)
    return data.shape[i], tuple(data.shape[i + 1 : i + 3])


def check_references(series) -> np.ndarray | None:
    """The reference images as a ``(tilt, y, x)`` float64 array (None without), checked against the views."""
    refs = series.reference_images
    if refs is None:
        return None
    n, shape = view_shape(series)
    r = refs.data
    if r.ndim != 3 or r.shape[0] != n:
        raise InputError(
            f"The reference images ({r.shape[0] if r.ndim == 3 else r.shape} views) do not match the series "
            f"({n} views): metadata.{NODE}.reference_images needs one image per tilt."
        )
    if tuple(r.shape[1:]) != shape:
        raise InputError(
            f"The reference images are {tuple(r.shape[1:])} pixels but the views are {shape}: "
            "they must have the same size (rebin or crop the HAADF images to the maps' pixels first)."
        )
    return np.asarray(r.compute() if hasattr(r, "compute") else r, dtype=np.float64)


def summed_counts(series) -> np.ndarray:
    """(tilt, y, x) float64: counts summed over elements (or energy channels)."""
    data = series.data
    if series_kind(series) == "maps":
        summed = data.sum(axis=0)
    else:
        summed = data.sum(axis=-1)
    if hasattr(summed, "compute"):
        summed = summed.compute()
    return np.asarray(summed, dtype=np.float64)


def background_node(series):
    """``(node, array)`` of ``metadata.Tomography.background`` (numpy or dask), or ``(None, None)``;
    refused when it is not shaped like the data (it would no longer belong to them)."""
    node = series.metadata.get_item(BACKGROUND, None)
    if node is None:
        return None, None
    data = node.data if hasattr(node, "axes_manager") else node
    if not hasattr(data, "shape"):
        data = np.asarray(data)
    if tuple(data.shape) != tuple(series.data.shape):
        raise InputError(
            f"metadata.{BACKGROUND} is shaped {tuple(data.shape)} but the data are shaped "
            f"{tuple(series.data.shape)}: it does not belong to these views. Remove it "
            f"(del s.metadata.{BACKGROUND}) or give the background of these data."
        )
    return node, data


def summed_background(series) -> np.ndarray | None:
    """(tilt, y, x) float64 expected background counts of the summed views (element maps), or None."""
    if series_kind(series) != "maps":
        return None
    _, data = background_node(series)
    if data is None:
        return None
    summed = data.sum(axis=0)
    if hasattr(summed, "compute"):
        summed = summed.compute()
    return np.asarray(summed, dtype=np.float64)


# ---------------------------------------------------------------------------------
# checks of the (tilt, y, x) stack


#: smallest view edge (pixels) alignment works on: a shift or a tilt axis needs a few pixels to move across
MIN_VIEW_PX = 4


def check_stack(stack: np.ndarray, what: str) -> None:
    """At least 3 views of at least MIN_VIEW_PX pixels a side, all finite, none empty; ValueError naming
    the views otherwise."""
    n = stack.shape[0]
    if n < 3:
        raise InputError(f"Alignment needs at least 3 views, got {n}.")
    if min(stack.shape[1:]) < MIN_VIEW_PX:
        raise InputError(f"The {what} are {stack.shape[1]}x{stack.shape[2]} pixels: too small to align (at least "
                         f"{MIN_VIEW_PX}x{MIN_VIEW_PX} pixel views).")
    if not np.all(np.isfinite(stack)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(stack))[:, 0]})
        raise InputError(f"The {what} contain NaN or infinite values (views {bad}).")
    empty = [int(t) for t in range(n) if not np.any(stack[t])]
    if empty:
        raise InputError(f"View(s) {empty} of the {what} are empty (all zero): remove them before aligning.")


def warn_doses(totals, tilts) -> list[int]:
    """Warn, naming them, about views whose totals are more than DOSE_RATIO_WARN times below the largest.

    The warning points two frames above the caller (``align``'s caller when
    called from ``estimate_alignment``).
    """
    totals = np.asarray(totals, float)
    hi = int(np.argmax(totals))
    low = [int(t) for t in np.flatnonzero(totals * DOSE_RATIO_WARN < totals[hi])]
    if low:
        warnings.warn(
            f"View(s) {low} (tilts {[round(float(tilts[t]), 2) for t in low]} deg, totals "
            f"{[round(float(totals[t]), 1) for t in low]}) hold more than {DOSE_RATIO_WARN:g}x fewer counts than view "
            f"{hi} ({totals[hi]:.1f}): the doses differ. The alignment scales every view to its own total "
            "(estimates and held-out criterion), but check the acquisition (beam blanked, another dwell time).",
            stacklevel=4,
        )
    return low


def homogeneity_z(counts: np.ndarray, max_px: int = 32) -> float:
    """z-score of Pearson's chi-square test that every view is the same image up to its total
    (a views x pixels contingency table on views binned to at most ``max_px`` pixels)."""
    n, ny, nx = counts.shape
    b = max(1, int(np.ceil(max(ny, nx) / max_px)))
    c = bin_views(np.round(counts), b).reshape(n, -1).astype(np.float64)
    col = c.sum(0)
    keep = col > 0
    if keep.sum() < 2:
        return 0.0
    c = c[:, keep]
    e = np.outer(c.sum(1), col[keep]) / c.sum()
    x2 = float(((c - e) ** 2 / e).sum())
    dof = (n - 1) * (keep.sum() - 1)
    return (x2 - dof) / np.sqrt(2 * dof)


def same_image(stack: np.ndarray) -> bool:
    """True when every view is the same image up to its total (exact copies, to float precision)."""
    v = stack / stack.sum((1, 2), keepdims=True)
    return bool(np.ptp(v, axis=0).max() <= 1e-6 * np.abs(v).max())


def nothing_to_align_on(stack: np.ndarray) -> tuple[str, str]:
    """(kind, reason): ``"identical"`` (every view the same image: nothing to align on),
    ``"indistinct"`` (counts whose views Poisson noise alone could explain: too little signal to
    tell them apart, but real shifts may still be found) or ``"distinct"``."""
    if same_image(stack):
        return "identical", "nothing to align on: every view is the same image"
    if is_counts(stack):
        z = homogeneity_z(stack)
        if z < IDENTICAL_Z:
            return "indistinct", (f"the views cannot be told apart from Poisson noise (homogeneity chi-square z = "
                                  f"{z:.2f} < {IDENTICAL_Z:g})")
        return "distinct", f"the views differ (homogeneity chi-square z = {z:.1f})"
    return "distinct", "the views differ"


# ---------------------------------------------------------------------------------
# what the estimators see


def bin_views(stack: np.ndarray, b: int) -> np.ndarray:
    """Views summed over ``b`` x ``b`` pixels (the remainder cropped)."""
    if b <= 1:
        return stack
    n, ny, nx = stack.shape
    return stack[:, : ny // b * b, : nx // b * b].reshape(n, ny // b, b, nx // b, b).sum((2, 4))


def background_free(stack: np.ndarray, sigma: float) -> np.ndarray:
    """Smoothed views, minus the background (median of a border strip), clipped at zero."""
    out = np.empty_like(stack, dtype=np.float64)
    n, ny, nx = stack.shape
    w = max(1, min(ny, nx) // 10)
    border = np.ones((ny, nx), bool)
    border[w:-w, w:-w] = False
    for t in range(n):
        s = ndimage.gaussian_filter(stack[t].astype(np.float64), sigma) if sigma else stack[t].astype(np.float64)
        edge = s[border]
        med = np.median(edge)
        # above the background's noise too: clipped noise left over the whole width of the view
        # would pull every centre of mass towards the middle of the field
        s = s - (med + BACKGROUND_NOISE_K * 1.4826 * np.median(np.abs(edge - med)))
        out[t] = np.clip(s, 0, None)
        if not out[t].any():
            out[t] = ndimage.gaussian_filter(stack[t], sigma) if sigma else stack[t]
    return out


def prepare_views(stack: np.ndarray, b: int, sigma: float) -> np.ndarray:
    """Views binned by ``b`` (per-pixel scale kept), smoothed and background-free: what every estimator sees."""
    return background_free(bin_views(stack, b).astype(np.float64) / b**2, sigma)
