"""Alignment of tilt series: per-view shifts, tilt-axis offset and in-plane rotation.

``series.align(method=...)`` estimates a rigid transform of every view and
moves every element (every energy channel of a spectrum-image series, the
HAADF reference images, the X-ray background ``metadata.Tomography.background``)
by the same amounts; ``apply_alignment`` moves any other series of the same
views by exactly the same amounts.

The transform of view ``t`` is, in this order:

1. rotate the view about its centre so that a tilt axis at ``rotation_deg``
   (degrees counter-clockwise from the rows' direction, the convention of
   :func:`~hyperspy_edxtomo.reconstruction.api.reconstruct`) runs along the rows;
2. shift it by ``shift_y_px[t]`` rows and ``shift_x_px[t]`` columns.

Both steps use bilinear weights with zeros outside the field of view
(never wrap-around): counts that stay inside the field of view are conserved,
counts moved out of it are lost, and the border strip moved in is zero.

How the weights are used (``resample=``):

``"counts"`` (default for element maps of integer counts)
    every detected count moves, as a whole, to one of the four pixels around
    its new position, drawn with the bilinear weights (seeded). The result is
    integer counts again, Poisson with the bilinearly interpolated expected
    counts, so everything downstream that relies on counting statistics
    (count-splitting cross-validation of ``lam="auto"``, ``denoise_deep``,
    Poisson deviances) stays valid after alignment.
``"bilinear"`` (default otherwise: spectrum images, non-integer maps)
    plain bilinear interpolation: non-integer values.

After alignment the tilt axis runs along the centre column, ``axis_offset_px``
(already included in the shifts) is where it was found before the shifts.

Methods (``method=``):

``"xcorr"``
    cross-correlation of neighbouring views, the view further from 0 degrees
    stretched across the axis by the ratio of the cosines of the tilts,
    chained from the view nearest 0 degrees; on the HAADF reference images
    when the series carries them, else on the summed, smoothed counts.
``"com"``
    centre of mass of each view (background removed), fitted across the axis
    to the path of a rigid object ``x0 cos(theta) + z0 sin(theta)`` about the
    centre column and held constant along the axis.
``"axis"``
    ``com``, then the in-plane rotation and the tilt-axis offset from the
    common-line condition (every row band of a rigid object traces
    ``a(y) + x0 cos(theta) + z0 sin(theta)``; a robust straight line through
    the ``a(y)`` of the bands that are whole in every view, see
    :func:`estimate_axis`). On counts, the rotation's standard error from
    count-split halves is stored (``rotation_se_deg``): it measures the count
    noise only, not what the field holds.
``"projection_matching"``
    SIRT (the shared :class:`~hyperspy_edxtomo.reconstruction.projector.Projector` and
    :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt`, a fixed number of iterations),
    re-projected at the measured angles, each view registered to its
    re-projection, repeated until the shifts change by less than ``tol_px``.
``"auto"`` (default)
    a validated chain that cannot make things worse on its own criterion:
    starting from "doing nothing" (the identity), the stages *shifts* (``com``
    and ``xcorr``, on the HAADF reference images and on the counts), *axis
    offset*, *in-plane rotation* and *projection matching* each propose
    candidates, and a candidate replaces the alignment accepted so far only
    when it lowers the held-out criterion (:class:`HeldOutCriterion`) by more
    than ``ACCEPT_SE`` (2) standard errors of the paired difference over the
    folds. When the views are integer counts, the candidates are estimated on
    one binomial half of the counts and scored on the other half, which the
    estimates never saw; the accepted stages are then estimated again on all
    counts. Every stage is recorded in ``metadata.Tomography.alignment.validation``
    (candidates, scores, difference, standard error, accepted, reason) and in
    one ``logging`` line (logger ``hyperspy_edxtomo.alignment.policy``).

``rotation=`` fixes the in-plane rotation instead of estimating it.

Views that carry nothing to align on (every view the same image, within
Poisson noise for counts) keep the identity with a warning, whatever the
method; views whose totals differ by more than ``DOSE_RATIO_WARN`` (10) times
are named in a warning.
"""

import logging
import time
import warnings

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.counts import DOSE_RATIO_WARN, is_counts
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.provenance import append_history, plain_record
from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method

logger = logging.getLogger("hyperspy_edxtomo.alignment.policy")

METHODS = ("auto", "xcorr", "com", "axis", "projection_matching")
#: standard error (degrees) of an estimated rotation above which align() warns
ROTATION_SE_WARN_DEG = 1.0
#: background noise (robust standard deviations of the border) removed before centres of mass
BACKGROUND_NOISE_K = 2.0
#: ``auto`` accepts a stage when it lowers the held-out criterion by more than this many standard errors
ACCEPT_SE = 2.0
#: count views are "all the same image" when the homogeneity test is below this many standard deviations
IDENTICAL_Z = 3.0
ALIGNMENT = f"{NODE}.alignment"
BACKGROUND = f"{NODE}.background"
#: where ``auto`` estimates candidates, in order of preference (HAADF first, as etspy does)
SOURCES = ("reference_images", "summed_counts")
#: a row band is cut by the field edge when this fraction of its counts lies in the outer columns
EDGE_FRACTION = 0.02
#: a row band's mass moving by this many robust standard deviations between views: something entered or left
MASS_OUTLIER_K = 5.0


# ---------------------------------------------------------------------------------
# the transform


def transform_view(img, rotation_deg, shift_y, shift_x):
    """Rotate (about the centre) then shift one view; bilinear, zero outside."""
    img = np.asarray(img, dtype=np.float32)
    if rotation_deg:
        img = ndimage.rotate(img, -rotation_deg, reshape=False, order=1, mode="constant", cval=0.0)
    if shift_y or shift_x:
        img = ndimage.shift(img, (shift_y, shift_x), order=1, mode="constant", cval=0.0)
    return img


def transform_counts(counts, rotation_deg, shift_y, shift_x, rng):
    """The transform of :func:`transform_view` for integer counts: each count
    moves whole to one of the four pixels around its new position, drawn
    with the bilinear weights; counts landing outside the view are lost.

    In expectation this is the bilinear transform; the result is integer
    (Poisson counts stay Poisson).
    """
    counts = np.asarray(counts)
    ny, nx = counts.shape
    out = np.zeros((ny, nx), np.float32)
    ys, xs = np.nonzero(counts)
    if ys.size == 0:
        return out
    n = np.round(counts[ys, xs]).astype(np.int64)
    # forward map of the pull transform in transform_view: scipy's rotate
    # samples the input at M (o - c) + c, M = [[cos a, sin a], [-sin a, cos a]]
    # with a = -rotation_deg, so a source pixel lands at M^T (i - c) + c
    a = np.deg2rad(-float(rotation_deg))
    cs, sn = np.cos(a), np.sin(a)
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    dy, dx = ys - cy, xs - cx
    py = cs * dy - sn * dx + cy + float(shift_y)
    px = sn * dy + cs * dx + cx + float(shift_x)
    y0, x0 = np.floor(py).astype(np.int64), np.floor(px).astype(np.int64)
    fy, fx = py - y0, px - x0
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=1)
    w = np.clip(w, 0, None)
    w /= w.sum(axis=1, keepdims=True)
    split = rng.multinomial(n, w)
    for k, (oy, ox) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        ty, tx, m = y0 + oy, x0 + ox, split[:, k]
        keep = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx) & (m > 0)
        np.add.at(out, (ty[keep], tx[keep]), m[keep])
    return out


def transform_stack(stack, rotation_deg, shifts_y, shifts_x, extra_axes=0, resample="bilinear", seeds=None):
    """Apply the transform to an array shaped ``(tilt, y, x, *extra)`` (numpy).

    ``resample="counts"`` (views only, no extra axes) moves whole counts, one
    seeded generator per view: ``seeds[t]``.
    """
    stack = np.asarray(stack)
    out = np.empty(stack.shape, dtype=np.float32)
    if resample == "counts":
        for t in range(stack.shape[0]):
            rng = np.random.default_rng(seeds[t] if seeds is not None else t)
            out[t] = transform_counts(stack[t], rotation_deg, shifts_y[t], shifts_x[t], rng)
        return out
    for t in range(stack.shape[0]):
        view = stack[t].astype(np.float32)
        if extra_axes:
            if rotation_deg:
                view = ndimage.rotate(view, -rotation_deg, axes=(1, 0), reshape=False, order=1, mode="constant")
            if shifts_y[t] or shifts_x[t]:
                view = ndimage.shift(view, (shifts_y[t], shifts_x[t]) + (0,) * extra_axes, order=1, mode="constant")
            out[t] = view
        else:
            out[t] = transform_view(view, rotation_deg, shifts_y[t], shifts_x[t])
    return out


def _view_seeds(seed, lead_index, t0, t1):
    # one generator per (element, view): the same draws eager and lazy, whatever the chunks
    return [[int(seed), int(lead_index), int(t)] for t in range(t0, t1)]


def _transform_data(data, tilt_axis, rotation_deg, shifts_y, shifts_x, resample="bilinear", seed=0):
    """Transform numpy or dask ``data`` whose axes from ``tilt_axis`` are (tilt, y, x, *extra)."""
    extra = data.ndim - tilt_axis - 3
    if resample == "counts" and extra:
        raise ValueError("resample='counts' moves the counts of 2D views; spectrum images use 'bilinear'.")
    sy, sx = np.asarray(shifts_y, float), np.asarray(shifts_x, float)
    n_t = data.shape[tilt_axis]
    if isinstance(data, np.ndarray):
        lead = data.shape[:tilt_axis]
        flat = data.reshape((-1,) + data.shape[tilt_axis:])
        out = np.stack([transform_stack(f, rotation_deg, sy, sx, extra, resample, _view_seeds(seed, i, 0, n_t))
                        for i, f in enumerate(flat)])
        return out.reshape(lead + out.shape[1:])
    import dask.array as da

    # one chunk holds whole images (all y, x, extra) and some tilts
    chunks = {i: (1 if i < tilt_axis else ("auto" if i == tilt_axis else -1)) for i in range(data.ndim)}
    data = data.rechunk(chunks)

    lead_shape = data.shape[:tilt_axis]

    def block(b, block_info=None):
        loc = block_info[0]["array-location"]
        t0, t1 = loc[tilt_axis]
        lead = b.shape[:tilt_axis]
        # lead chunks are single entries: the flat index of this block's lead position
        lead_index = int(np.ravel_multi_index([l0 for l0, _ in loc[:tilt_axis]], lead_shape)) if lead_shape else 0
        flat = b.reshape((-1,) + b.shape[tilt_axis:])
        res = np.stack([transform_stack(f, rotation_deg, sy[t0:t1], sx[t0:t1], extra, resample,
                                        _view_seeds(seed, lead_index, t0, t1)) for f in flat])
        return res.reshape(lead + res.shape[1:])

    return da.map_blocks(block, data, dtype=np.float32)


def _rotation_matrix(rotation_deg):
    # the (row, column) matrix of scipy's rotate(img, -rotation_deg): output o samples M (o - c) + c
    a = np.deg2rad(-float(rotation_deg))
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def _warp_binned(img, rotation_deg, shift_y, shift_x, b, raw_shape, inverse=False, order=3):
    """The transform of :func:`transform_view` (or its inverse) on a view binned ``b`` x ``b``
    from a ``raw_shape`` view: the centre and the shifts are those of the raw pixels, so
    binning (with its cropped remainder) does not move the geometry."""
    M = _rotation_matrix(rotation_deg)
    c = (np.asarray(raw_shape, float) - 1) / 2
    h = np.full(2, (b - 1) / 2)  # raw position of binned pixel 0's centre
    s = np.array([shift_y, shift_x], float)
    if inverse:  # raw(q) = aligned(M^T (q - c) + c + s)
        matrix, offset = M.T, (M.T @ (h - c) + c + s - h) / b
    else:  # aligned(o) = raw(M (o - s - c) + c)
        matrix, offset = M, (M @ (h - s - c) + c - h) / b
    mode = "grid-constant" if order > 1 else "constant"
    return ndimage.affine_transform(np.asarray(img, np.float64), matrix, offset=offset, order=order, mode=mode,
                                    cval=0.0)


# ---------------------------------------------------------------------------------
# input checks and the image stack alignment is estimated on


def _kind(series):
    from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
    from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries

    if isinstance(series, ElementMapTiltSeries):
        return "maps"
    if isinstance(series, EDXTiltSeries):
        return "edx"
    am = getattr(series, "axes_manager", None)
    if am is not None and am.navigation_dimension == 1 and am.signal_dimension == 2:
        return "images"  # e.g. a separate HAADF tilt series: a Signal2D navigated by the views
    raise TypeError(f"Alignment needs an ElementMapTiltSeries, an EDXTiltSeries or a Signal2D with one navigation "
                    f"axis (the views), got {type(series).__name__} with axes {am}.")


def _tilt_axis_index(series):
    return 1 if _kind(series) == "maps" else 0


def _view_shape(series):
    data = series.data
    i = _tilt_axis_index(series)
    return data.shape[i], tuple(data.shape[i + 1 : i + 3])


def _check_references(series):
    refs = series.reference_images
    if refs is None:
        return None
    n, shape = _view_shape(series)
    r = refs.data
    if r.ndim != 3 or r.shape[0] != n:
        raise ValueError(
            f"The reference images ({r.shape[0] if r.ndim == 3 else r.shape} views) do not match the series "
            f"({n} views): metadata.{NODE}.reference_images needs one image per tilt."
        )
    if tuple(r.shape[1:]) != shape:
        raise ValueError(
            f"The reference images are {tuple(r.shape[1:])} pixels but the views are {shape}: "
            "they must have the same size (rebin or crop the HAADF images to the maps' pixels first)."
        )
    return np.asarray(r.compute() if hasattr(r, "compute") else r, dtype=np.float64)


def _summed_counts(series):
    """(tilt, y, x) float64: counts summed over elements (or energy channels)."""
    data = series.data
    if _kind(series) == "maps":
        summed = data.sum(axis=0)
    else:
        summed = data.sum(axis=-1)
    if hasattr(summed, "compute"):
        summed = summed.compute()
    return np.asarray(summed, dtype=np.float64)


def _background_node(series):
    """The array of ``metadata.Tomography.background`` (numpy or dask) or None; refused when
    it is not shaped like the data (it would no longer belong to them)."""
    node = series.metadata.get_item(BACKGROUND, None)
    if node is None:
        return None, None
    data = node.data if hasattr(node, "axes_manager") else node
    if not hasattr(data, "shape"):
        data = np.asarray(data)
    if tuple(data.shape) != tuple(series.data.shape):
        raise ValueError(
            f"metadata.{BACKGROUND} is shaped {tuple(data.shape)} but the data are shaped "
            f"{tuple(series.data.shape)}: it does not belong to these views. Remove it "
            f"(del s.metadata.{BACKGROUND}) or give the background of these data."
        )
    return node, data


def _summed_background(series):
    """(tilt, y, x) float64 expected background counts of the summed views (element maps), or None."""
    if _kind(series) != "maps":
        return None
    _, data = _background_node(series)
    if data is None:
        return None
    summed = data.sum(axis=0)
    if hasattr(summed, "compute"):
        summed = summed.compute()
    return np.asarray(summed, dtype=np.float64)


def _check_stack(stack, what):
    n = stack.shape[0]
    if n < 3:
        raise ValueError(f"Alignment needs at least 3 views, got {n}.")
    if not np.all(np.isfinite(stack)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(stack))[:, 0]})
        raise ValueError(f"The {what} contain NaN or infinite values (views {bad}).")
    empty = [int(t) for t in range(n) if not np.any(stack[t])]
    if empty:
        raise ValueError(f"View(s) {empty} of the {what} are empty (all zero): remove them before aligning.")


def _warn_doses(totals, tilts):
    """Warn, naming them, about views whose totals are more than DOSE_RATIO_WARN times below the largest."""
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


def _homogeneity_z(counts, max_px=32):
    """z-score of Pearson's chi-square test that every view is the same image up to its total
    (a views x pixels contingency table on views binned to at most ``max_px`` pixels)."""
    n, ny, nx = counts.shape
    b = max(1, int(np.ceil(max(ny, nx) / max_px)))
    c = _bin(np.round(counts), b).reshape(n, -1).astype(np.float64)
    col = c.sum(0)
    keep = col > 0
    if keep.sum() < 2:
        return 0.0
    c = c[:, keep]
    e = np.outer(c.sum(1), col[keep]) / c.sum()
    x2 = float(((c - e) ** 2 / e).sum())
    dof = (n - 1) * (keep.sum() - 1)
    return (x2 - dof) / np.sqrt(2 * dof)


def _same_image(stack):
    """True when every view is the same image up to its total (exact copies, to float precision)."""
    v = stack / stack.sum((1, 2), keepdims=True)
    return bool(np.ptp(v, axis=0).max() <= 1e-6 * np.abs(v).max())


def _nothing_to_align_on(stack):
    """(kind, reason): ``"identical"`` (every view the same image: nothing to align on),
    ``"indistinct"`` (counts whose views Poisson noise alone could explain: too little signal to
    tell them apart, but real shifts may still be found) or ``"distinct"``."""
    if _same_image(stack):
        return "identical", "nothing to align on: every view is the same image"
    if is_counts(stack):
        z = _homogeneity_z(stack)
        if z < IDENTICAL_Z:
            return "indistinct", (f"the views cannot be told apart from Poisson noise (homogeneity chi-square z = "
                                  f"{z:.2f} < {IDENTICAL_Z:g})")
        return "distinct", f"the views differ (homogeneity chi-square z = {z:.1f})"
    return "distinct", "the views differ"


def _background_free(stack, sigma):
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


def _bin(stack, b):
    if b <= 1:
        return stack
    n, ny, nx = stack.shape
    return stack[:, : ny // b * b, : nx // b * b].reshape(n, ny // b, b, nx // b, b).sum((2, 4))


# ---------------------------------------------------------------------------------
# estimators on a (tilt, y, x) stack; all return shifts to apply (rows, columns)


def register(ref, img, upsample=20):
    """Shift (dy, dx) that moves ``img`` onto ``ref`` (cross-correlation, zero-padded, sub-pixel)."""
    from skimage.registration import phase_cross_correlation

    ny, nx = ref.shape
    pad = ((ny // 2, ny // 2), (nx // 2, nx // 2))
    a = np.pad(np.asarray(ref, float), pad)
    b = np.pad(np.asarray(img, float), pad)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    return float(shift[0]), float(shift[1])


def _stretch_x(img, factor):
    """Stretch a view across the axis (columns) by ``factor`` about the centre column."""
    if abs(factor - 1) < 1e-9:
        return img
    ny, nx = img.shape
    c = (nx - 1) / 2
    matrix = np.array([[1.0, 0.0], [0.0, 1.0 / factor]])
    offset = np.array([0.0, c - c / factor])
    return ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant")


def estimate_xcorr(stack, tilts):
    """Chained cross-correlation of neighbouring views, cosine-stretched."""
    n = stack.shape[0]
    cos = np.cos(np.deg2rad(tilts))
    sy, sx = np.zeros(n), np.zeros(n)
    i0 = int(np.argmin(np.abs(tilts)))
    for step, rng in ((-1, range(i0 - 1, -1, -1)), (1, range(i0 + 1, n))):
        for t in rng:
            ref = transform_view(stack[t - step], 0, sy[t - step], sx[t - step])
            factor = cos[t - step] / cos[t]
            dy, dx = register(ref, _stretch_x(stack[t], factor))
            sy[t], sx[t] = dy, dx / factor
    return sy, sx


def _com(stack):
    n, ny, nx = stack.shape
    yy, xx = np.mgrid[:ny, :nx]
    tot = stack.sum((1, 2))
    return (stack * yy).sum((1, 2)) / tot, (stack * xx).sum((1, 2)) / tot


def rigid_path_fit(cy, cx, tilts, centre_x=None):
    """Fit centres to a rigid body's path: ``(a +) x0 cos + z0 sin`` across, constant along.

    Returns (fitted_y, fitted_x, residual_rms_px). With ``centre_x`` the axis
    is held at that column; otherwise its column ``a`` is fitted too.
    """
    th = np.deg2rad(tilts)
    if centre_x is None:
        A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
        coef, *_ = np.linalg.lstsq(A, cx, rcond=None)
        fx = A @ coef
    else:
        A = np.stack([np.cos(th), np.sin(th)], 1)
        coef, *_ = np.linalg.lstsq(A, cx - centre_x, rcond=None)
        fx = centre_x + A @ coef
    fy = np.full_like(cy, cy.mean())
    rms = float(np.sqrt(np.mean((cx - fx) ** 2 + (cy - fy) ** 2)))
    return fy, fx, rms


def estimate_com(stack, tilts):
    """Centre-of-mass shifts putting the object on a rigid path about the centre column."""
    cy, cx = _com(stack)
    nx = stack.shape[2]
    fy, fx, _ = rigid_path_fit(cy, cx, tilts, centre_x=(nx - 1) / 2)
    return fy - cy, fx - cx


def _band_fits(views, tilts, band):
    """Per row band: the axis column ``a`` of its rigid fit and its standard error, and whether the band is whole.

    Returns a dict of arrays, one entry per band with counts in every view:
    ``y`` (band centre from the centre row), ``a`` (from the centre column),
    ``se`` (standard error of ``a`` from the fit's residuals), ``edge``
    (largest fraction of the band's counts in the outer columns over the
    views), ``mass`` (largest change of the band's counts between views, in
    robust standard deviations of such changes over all bands, after a robust
    per-view dose factor: a rigid object keeps the counts of every row at
    every tilt).
    """
    n, ny, nx = views.shape
    th = np.deg2rad(tilts)
    A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
    var_a = float(np.linalg.inv(A.T @ A)[0, 0])
    xx = np.arange(nx)
    edge_w = max(1, nx // 32)
    floor = 0.02 * views.sum() / n / (ny / band)
    ys, a, se, edge, masses = [], [], [], [], []
    for y0 in range(0, ny - band + 1, band):
        prof = views[:, y0 : y0 + band].sum(1)  # (tilt, x)
        m = prof.sum(1)
        if np.any(m <= floor):
            continue
        cx = (prof * xx).sum(1) / m
        coef, *_ = np.linalg.lstsq(A, cx, rcond=None)
        res = cx - A @ coef
        ys.append(y0 + (band - 1) / 2 - (ny - 1) / 2)
        a.append(coef[0] - (nx - 1) / 2)
        se.append(np.sqrt(float(res @ res) / max(n - 3, 1) * var_a))
        edge.append(float(((prof[:, :edge_w].sum(1) + prof[:, -edge_w:].sum(1)) / m).max()))
        masses.append(m)
    if not ys:
        return None
    M = np.array(masses)  # (band, tilt)
    R = M / np.median(M, axis=1, keepdims=True)
    R = R / np.median(R, axis=0, keepdims=True)  # a robust dose factor per view
    dev = R - 1
    scale = 1.4826 * np.median(np.abs(dev))
    mass = np.abs(dev).max(1) / max(scale, 1e-12)
    return {"y": np.array(ys), "a": np.array(a), "se": np.array(se), "edge": np.array(edge), "mass": mass}


def _robust_line(x, y, se, k=1.345, iterations=30):
    """Huber line ``y = intercept + slope x``, weights ``1 / se**2``: (slope, intercept, slope's se)."""
    w0 = 1.0 / np.maximum(se, 1e-3 * max(float(np.median(se)), 1e-9)) ** 2
    h = np.ones_like(y)
    X = np.stack([np.ones_like(x), x], 1)
    coef = np.zeros(2)
    for _ in range(iterations):
        w = w0 * h
        WX = X * w[:, None]
        coef = np.linalg.solve(X.T @ WX + 1e-12 * np.eye(2), WX.T @ y)
        r = (y - X @ coef) * np.sqrt(w0)
        scale = 1.4826 * np.median(np.abs(r))
        if scale <= 0:
            break
        h_new = np.minimum(1.0, k / np.maximum(np.abs(r) / scale, 1e-12))
        if np.allclose(h_new, h, atol=1e-4):
            break
        h = h_new
    w = w0 * h
    cov = np.linalg.inv(X.T @ (X * w[:, None]) + 1e-12 * np.eye(2))
    r = (y - X @ coef) * np.sqrt(w)
    s2 = float(r @ r) / max(len(y) - 2, 1)
    return float(coef[1]), float(coef[0]), float(np.sqrt(cov[1, 1] * s2))


def estimate_axis(stack, tilts, sy, sx, passes=10, tol_deg=0.02, show=False, rotation=None, band=3,
                  return_info=False):
    """In-plane rotation and tilt-axis offset from the sinogram of every row band (common-line condition).

    After the shifts, every row band of a rigid object's views traces
    ``a(y) + x0 cos(theta) + z0 sin(theta)`` with its centre of mass;
    ``a(y)`` is where the tilt axis crosses row ``y``. A straight line through
    the ``a(y)`` gives the offset (at the centre row) and the in-plane
    rotation (its slope); repeated until the corrections vanish. With
    ``rotation`` given, only the offset is estimated.

    Only bands that are whole in every view enter the line: bands with more
    than ``EDGE_FRACTION`` of their counts in the outer columns of any view
    (a particle cut by the field edge) and bands whose counts change between
    views by more than ``MASS_OUTLIER_K`` robust standard deviations (a
    particle entering or leaving the field; a rigid object keeps the counts
    of every row at every tilt) are left out. The line is a Huber fit
    weighted by each band's standard error, so a band whose centres do not
    follow a rigid path (what the rest of the field does) weighs little, and
    a chain or rod along the axis, which gives many consistent bands, cannot
    tilt it.

    Returns ``(rotation_deg, offset_px)``, with ``return_info`` also a dict
    (bands used and left out, the slope's standard error in degrees).
    """
    n, ny, nx = stack.shape
    rot, off = (0.0 if rotation is None else float(rotation)), 0.0
    info = {"bands_used": 0, "bands_cut_by_edge": 0, "bands_changing_mass": 0, "rotation_fit_se_deg": float("nan"),
            "passes": 0}
    for _ in range(passes):
        views = transform_stack(stack, rot, sy, sx - off)
        fits = _band_fits(views, tilts, band)
        if fits is None:
            break
        whole = (fits["edge"] <= EDGE_FRACTION) & (fits["mass"] <= MASS_OUTLIER_K)
        info.update(bands_used=int(whole.sum()), bands_cut_by_edge=int((fits["edge"] > EDGE_FRACTION).sum()),
                    bands_changing_mass=int((fits["mass"] > MASS_OUTLIER_K).sum()))
        if whole.sum() < 3:
            break
        slope, intercept, slope_se = _robust_line(fits["y"][whole], fits["a"][whole], fits["se"][whole])
        info["rotation_fit_se_deg"] = float(np.rad2deg(slope_se))
        info["passes"] += 1
        step = float(np.rad2deg(np.arctan(slope))) if rotation is None else 0.0
        rot += step
        off += float(intercept)
        if abs(step) < tol_deg and abs(intercept) < 0.02:
            break
    return (rot, off, info) if return_info else (rot, off)


def _sirt_reproject(sinograms, train_tilts, predict_tilts, iterations):
    """SIRT (non-negative, ``iterations``) of ``sinograms`` (slice, tilt, x) with the shared
    projector's matrix, re-projected at ``predict_tilts``: (slice, predicted tilt, x).

    The update of :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt`, ``x <- max(x + C A^T R (y - A x), 0)``,
    with scipy's single-threaded sparse products: these problems are small (binned views) and
    many, where thread pools cost more than they give on a busy machine, and a fixed number of
    iterations here cannot be moved by defaults changed elsewhere.
    """
    from hyperspy_edxtomo.reconstruction.projector import Projector

    B, T, nx = sinograms.shape
    P = Projector(train_tilts, n_x=nx, cuda=False)
    A, At = P.matrix
    row, col = np.asarray(A.sum(axis=1)).ravel(), np.asarray(A.sum(axis=0)).ravel()
    R = np.where(row > 1e-6, 1.0 / np.maximum(row, 1e-6), 0.0).astype(np.float32)[:, None]
    C = np.where(col > 1e-6, 1.0 / np.maximum(col, 1e-6), 0.0).astype(np.float32)[:, None]
    y = np.ascontiguousarray(np.asarray(sinograms, np.float32).reshape(B, -1).T)
    x = np.zeros((A.shape[1], B), np.float32)
    for _ in range(int(iterations)):
        x += C * (At @ (R * (y - A @ x)))
        np.maximum(x, 0, out=x)
    Q = Projector(predict_tilts, n_x=nx, cuda=False)
    return np.ascontiguousarray((Q.matrix[0] @ x).T).reshape(B, len(np.atleast_1d(predict_tilts)), nx)


def estimate_projection_matching(stack, tilts, rotation_deg, sy, sx, method="sirt", iterations=30,
                                 max_iter=8, tol_px=0.1, sigma=1.0, show=False):
    """Refine shifts by registering each view to the re-projection of a reconstruction.

    ``method="sirt"`` (default): SIRT of ``iterations`` through the shared
    projector and :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt` directly (defaults
    changed elsewhere cannot move it); every view is first scaled to the mean
    total, so that views of another dose do not dominate. Another method
    name goes through :func:`~hyperspy_edxtomo.reconstruction.api.reconstruct`.
    """
    from hyperspy_edxtomo.base.progress import finish, progress_bar
    from hyperspy_edxtomo.reconstruction.projector import Projector

    n, ny, nx = stack.shape
    sy, sx = np.array(sy, float), np.array(sx, float)
    n_done = 0
    bar = progress_bar(total=max_iter, desc="Projection matching", show=show)
    for _ in range(max_iter):
        views = transform_stack(stack, rotation_deg, sy, sx).astype(np.float64)
        tot = views.sum((1, 2))
        views = views * (tot.mean() / np.where(tot > 0, tot, tot.mean()))[:, None, None]
        if method == "sirt":
            reproj = _sirt_reproject(views.transpose(1, 0, 2), tilts, tilts, iterations).transpose(1, 0, 2)
        else:
            from hyperspy_edxtomo.reconstruction.api import reconstruct
            from hyperspy_edxtomo.signals.element_maps import element_maps_from_array

            maps = element_maps_from_array(views[None].astype(np.float32), tilts, ["Zn"])
            vol = reconstruct(maps, method=method, cuda=False, show_progressbar=False,
                              **({"iterations": iterations} if method in ("sirt", "tv", "l1") else {}))
            rec = np.ascontiguousarray(vol.to_numpy()[0].transpose(1, 0, 2), np.float32)  # (y, z, x)
            reproj = Projector(tilts, n_x=nx, cuda=False).forward(rec).transpose(1, 0, 2)
        d = np.array([register(ndimage.gaussian_filter(reproj[t], sigma), ndimage.gaussian_filter(views[t], sigma))
                      for t in range(n)])
        d[:, 0] -= d[:, 0].mean()  # a common shift along the axis is free
        sy += d[:, 0]
        sx += d[:, 1]
        n_done += 1
        bar.update(1)
        if np.max(np.abs(d)) < tol_px:
            break
    finish(bar)
    bar.close()
    return sy, sx, n_done


def _prepared(stack, b, sigma):
    """Views binned by ``b`` (per-pixel scale kept), smoothed and background-free: what every estimator sees."""
    return _background_free(_bin(stack, b).astype(np.float64) / b**2, sigma)


def _rotation_se(counts, tilts, b, sigma, n_splits=4, seed=0):
    """Standard error (degrees) of :func:`estimate_axis`'s rotation on ``counts``
    (tilt, y, x), from count-split halves; None when the views are not
    integer counts. Each half has half the counts, so the difference of the
    two halves' estimates has four times the variance of the full estimate.
    It measures the count noise only: not how the estimate moves with what
    the field holds.
    """
    if not is_counts(counts):
        return None
    ints = np.round(counts).astype(np.int64)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_splits):
        half = rng.binomial(ints, 0.5)
        r = []
        for h in (half, ints - half):
            sm = _prepared(h, b, sigma)
            sy, sx = estimate_com(sm, tilts)
            r.append(estimate_axis(sm, tilts, sy, sx)[0])
        diffs.append(r[0] - r[1])
    return float(np.sqrt(np.mean(np.square(diffs)) / 4))


def _chain(smooth, tilts, method, rotation, pm_iterations, tol_px, show):
    """The estimators of a single ``method`` on one smoothed (tilt, y, x) stack:
    (shifts y, shifts x, rotation, axis offset, projection-matching rounds)."""
    n = smooth.shape[0]
    zero = np.zeros(n)
    rot, off, n_pm = (rotation or 0.0), 0.0, 0
    # a given rotation applies first; the shift estimators work on the rotated views
    base = transform_stack(smooth, rot, zero, zero) if rot else smooth
    if method == "xcorr":
        sy, sx = estimate_xcorr(base, tilts)
    elif method == "com":
        sy, sx = estimate_com(base, tilts)
    else:
        sy, sx = estimate_com(base, tilts)
    if method == "axis":
        rot, off = estimate_axis(smooth, tilts, sy, sx, show=show, rotation=rotation)
        # centres again after the rotation: the rotation moves them
        rs = transform_stack(smooth, rot, zero, zero)
        sy, sx_c = estimate_com(rs, tilts)
        sx = sx_c - off
    if method == "projection_matching":
        sy, sx, n_pm = estimate_projection_matching(smooth, tilts, rot, sy, sx, max_iter=pm_iterations,
                                                    tol_px=tol_px, show=show)
    return sy, sx, rot, off, n_pm


# ---------------------------------------------------------------------------------
# the held-out criterion


def _as_4d(a, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"{what} must be shaped (tilt, y, x) or (element, tilt, y, x), got {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or infinite values.")
    return a


LOSSES = ("auto", "poisson", "quasi_poisson", "least_squares")


class _Prediction:
    """A candidate's held-out predictions in the raw (unaligned) frame of the binned views."""

    def __init__(self, rotation_deg, shifts_y, shifts_x, pred, valid):
        self.rotation_deg, self.shifts_y, self.shifts_x = rotation_deg, shifts_y, shifts_x
        self.pred, self.valid = pred, valid


class HeldOutCriterion:
    """Score candidate alignments by predicting held-out views of the user's own data.

    For a candidate (rotation, shifts), every view is moved by it; for each
    fold, the views outside the fold are reconstructed (SIRT through the
    shared :class:`~hyperspy_edxtomo.reconstruction.projector.Projector`, a fixed number of
    iterations, on binned views) and re-projected at the fold's tilts; each
    prediction is moved back into the view's own, unmoved frame and compared
    with the measured ``targets`` there. The targets are never interpolated,
    and two candidates are compared on the pixels both predict (inside the
    field of view of every moved view), each prediction scaled to the
    measured total of those pixels: counts moved out of the field by a
    candidate cannot make it look better, and views of different doses are
    each compared at their own dose.

    Only views between the lowest and the highest tilt are held out:
    predicting the extreme views would mean extrapolating into the missing
    wedge. Folds interleave them (one view per fold, at most ``n_folds``).

    Parameters
    ----------
    views : array-like
        ``(tilt, y, x)`` or ``(element, tilt, y, x)``: what the
        reconstructions are made from (e.g. all counts).
    tilts : array-like
        Tilt angle of each view, degrees.
    targets : None or array-like
        What the predictions are scored on, shaped like ``views``: e.g. a
        count-split half of the counts that the alignment estimates never
        saw. None: ``views`` (the held-out views are then scored on data an
        estimate may have seen).
    background, target_background : None or array-like
        Expected background counts of ``views`` and of ``targets`` (the
        support film, the continuum), shaped like them: subtracted before
        reconstructing, added to the predictions. ``target_background`` is
        needed when ``targets`` and ``background`` are both given (for a
        count-split half ``p``, ``p * background``).
    bin_to : int
        Views are binned (summed) to at most this many pixels.
    iterations : int
        SIRT iterations of every reconstruction.
    sigma : float
        Gaussian smoothing (binned pixels) of the views before they are
        moved (cubic splines, which add no blur of their own: a candidate
        gains nothing from the smoothing of interpolation).
    n_folds : None or int
        Most folds; None: 12.
    loss : {"auto", "poisson", "quasi_poisson", "least_squares"}
        ``"auto"``: the Poisson deviance for integer counts, the same
        formula (quasi-Poisson) for other non-negative data, least squares
        otherwise. One per cent of the mean target per pixel is added to every
        prediction, so a stray count where a candidate predicts exactly
        nothing cannot dominate the comparison.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment.policy import HeldOutCriterion
    >>> maps = datasets.simulate_scene("dot", size=32, max_shift_px=3, counts_per_tilt=5000, seed=1)
    >>> views = maps.to_numpy().sum(0)
    >>> truth = maps.metadata.Simulation.misalignment
    >>> crit = HeldOutCriterion(views, maps.tilts)
    >>> ident = crit.predict()
    >>> right = crit.predict(0.0, -np.array(truth.shift_y_px), -np.array(truth.shift_x_px))
    >>> c = crit.compare(right, ident)
    >>> c["difference"] < -2 * c["se"]   # the true correction predicts held-out views better
    True
    """

    def __init__(self, views, tilts, targets=None, background=None, target_background=None, bin_to=64,
                 iterations=100, sigma=1.0, n_folds=None, loss="auto"):
        views = _as_4d(views, "views")
        E, T, ny, nx = views.shape
        tilts = np.asarray(tilts, float).ravel()
        if tilts.size != T:
            raise ValueError(f"{tilts.size} tilt angles for {T} views.")
        if T < 3:
            raise ValueError(f"The held-out criterion needs at least 3 views, got {T}.")
        same = targets is None
        targets = views if same else _as_4d(targets, "targets")
        if targets.shape != views.shape:
            raise ValueError(f"targets are shaped {targets.shape} but the views {views.shape}.")
        bg = None if background is None else _as_4d(background, "background")
        if bg is not None and bg.shape != views.shape:
            raise ValueError(f"background is shaped {bg.shape} but the views {views.shape}.")
        if same:
            tbg = bg
        else:
            if bg is not None and target_background is None:
                raise ValueError("With targets and a background, give target_background too (the expected "
                                 "background of the targets; for a count-split half p of the counts, p * background).")
            tbg = None if target_background is None else _as_4d(target_background, "target_background")
            if tbg is not None and tbg.shape != views.shape:
                raise ValueError(f"target_background is shaped {tbg.shape} but the views {views.shape}.")
        if loss not in LOSSES:
            raise ValueError(f"Unknown loss {loss!r}: choose one of {LOSSES}.")
        if loss == "auto":
            loss = "poisson" if is_counts(targets) else ("quasi_poisson" if np.all(targets >= 0) else "least_squares")
        self.loss = loss
        self.tilts = tilts
        self.raw_shape = (ny, nx)
        self.b = b = max(1, int(np.ceil(max(ny, nx) / bin_to))) if bin_to else 1
        my, mx = ny // b, nx // b

        def binned(a):
            return a[..., : my * b, : mx * b].reshape(E, T, my, b, mx, b).sum((3, 5))

        signal = views if bg is None else np.clip(views - bg, 0, None)
        dose = signal.sum((0, 2, 3))
        empty = [int(t) for t in np.flatnonzero(dose <= 0)]
        if empty:
            raise ValueError(f"View(s) {empty} hold no counts (above the background): remove them before aligning.")
        train = binned(signal) / (dose / dose.mean())[None, :, None, None]  # every view at the mean dose
        if sigma:
            train = ndimage.gaussian_filter(train, (0, 0, sigma, sigma))
        self._train = train
        self._targets = binned(targets)
        self._tbg = None if tbg is None else binned(tbg)
        self.iterations = int(iterations)
        order = np.argsort(tilts)
        interior = order[1:-1]
        k = max(1, min(len(interior), int(n_folds or 12)))
        self.folds = [np.sort(interior[i::k]) for i in range(k)]

    @property
    def description(self):
        return (f"held-out views (SIRT {self.iterations} of the other views, binned {self.b}x{self.b}, "
                f"{len(self.folds)} folds, {self.loss} loss, views outside the lowest and highest tilt)")

    def predict(self, rotation_deg=0.0, shifts_y=None, shifts_x=None):
        """Predictions of every held-out view for one candidate: the rotation (degrees, one for all
        views or one per view, e.g. a manual alignment) and the shifts (raw pixels) of
        :func:`transform_view`."""
        E, T, my, mx = self._train.shape
        sy = np.zeros(T) if shifts_y is None else np.asarray(shifts_y, float)
        sx = np.zeros(T) if shifts_x is None else np.asarray(shifts_x, float)
        if sy.shape != (T,) or sx.shape != (T,):
            raise ValueError(f"Give one shift per view ({T}), got {sy.shape} and {sx.shape}.")
        rots = np.asarray(rotation_deg, float)
        if rots.ndim == 0:
            rots = np.full(T, float(rots))
        if rots.shape != (T,) or not np.all(np.isfinite(rots)):
            raise ValueError(f"Give one finite rotation, or one per view ({T}), got {np.shape(rotation_deg)}.")
        rot = rots[0] if np.all(rots == rots[0]) else rots
        b, raw = self.b, self.raw_shape
        aligned = np.empty_like(self._train)
        field = np.ones((my, mx), bool)
        ones = np.ones((my, mx))
        for t in range(T):
            for e in range(E):
                aligned[e, t] = _warp_binned(self._train[e, t], rots[t], sy[t], sx[t], b, raw)
            field &= _warp_binned(ones, rots[t], sy[t], sx[t], b, raw, order=1) > 0.999
        np.clip(aligned, 0, None, out=aligned)
        pred = np.zeros((E, T, my, mx))
        valid = np.zeros((T, my, mx), bool)
        every = np.arange(T)
        for fold in self.folds:
            train = np.setdiff1d(every, fold)
            sino = aligned[:, train].transpose(0, 2, 1, 3).reshape(E * my, len(train), mx)
            rep = _sirt_reproject(sino, self.tilts[train], self.tilts[fold], self.iterations)
            rep = rep.reshape(E, my, len(fold), mx).transpose(0, 2, 1, 3)
            for j, t in enumerate(fold):
                for e in range(E):
                    pred[e, t] = _warp_binned(rep[e, j], rots[t], sy[t], sx[t], b, raw, inverse=True)
                valid[t] = _warp_binned(field.astype(float), rots[t], sy[t], sx[t], b, raw, inverse=True,
                                        order=1) > 0.999
        np.clip(pred, 0, None, out=pred)
        return _Prediction(rot, sy, sx, pred, valid)

    def _view_loss(self, e, t, m, p):
        y = self._targets[e, t][m]
        bg = self._tbg[e, t][m] if self._tbg is not None else np.zeros_like(y)
        p = p[m]
        if self.loss == "least_squares":
            r = y - bg
            pp = float(p @ p)
            s = float(r @ p) / pp if pp > 0 else 0.0
            return float(((r - s * p) ** 2).sum())
        from hyperspy_edxtomo.reconstruction.solvers import poisson_deviance

        floor = 0.01 * max(float(y.mean()), 1e-12)
        net = max(float(y.sum() - bg.sum()) - floor * y.size, 0.0)
        sp = float(p.sum())
        mu = (net / sp) * p if sp > 0 else np.zeros_like(p)
        return poisson_deviance(y, mu + bg + floor)

    def fold_losses(self, prediction, mask=None):
        """Loss of each fold (summed over its views and elements) on ``mask`` (default: the pixels it predicts)."""
        mask = prediction.valid if mask is None else mask
        E = self._targets.shape[0]
        out = []
        for fold in self.folds:
            total = 0.0
            for t in fold:
                if mask[t].any():
                    total += sum(self._view_loss(e, t, mask[t], prediction.pred[e, t]) for e in range(E))
            out.append(total)
        return np.array(out)

    def compare(self, a, b):
        """Paired comparison of two predictions on the pixels both predict: a dict with
        ``score`` (a's loss), ``reference_score`` (b's), ``difference`` (a - b, summed over
        the folds; negative: a predicts better), ``se`` (its standard error from the
        spread of the fold differences; infinite with fewer than 3 folds), ``z``,
        ``relative_difference``, ``better`` (difference below ``-ACCEPT_SE`` standard
        errors), per-fold losses, folds and pixels."""
        mask = a.valid & b.valid
        la, lb = self.fold_losses(a, mask), self.fold_losses(b, mask)
        d = la - lb
        K = d.size
        se = float(np.std(d, ddof=1) * np.sqrt(K)) if K >= 3 else float("inf")
        diff = float(d.sum())
        z = diff / se if 0 < se < np.inf else 0.0
        return {
            "score": float(la.sum()), "reference_score": float(lb.sum()), "difference": diff, "se": se,
            "z": float(z), "relative_difference": diff / float(lb.sum()) if lb.sum() > 0 else 0.0,
            "better": bool(np.isfinite(se) and diff < -ACCEPT_SE * se), "n_folds": int(K),
            "fold_losses": la.tolist(), "reference_fold_losses": lb.tolist(), "pixels": int(mask.sum()),
        }


def alignment_score(views, tilts, rotation_deg=0.0, shifts_y=None, shifts_x=None, reference=None, targets=None,
                    background=None, target_background=None, bin_to=64, iterations=100, sigma=1.0, n_folds=None,
                    loss="auto"):
    """Held-out score of a candidate alignment, paired against a reference alignment.

    See :class:`HeldOutCriterion` for the criterion: held-out views of the
    user's own data, predicted from the other views moved by the candidate,
    compared in the views' unmoved frame on the pixels both alignments
    predict.

    Parameters
    ----------
    views : array-like
        ``(tilt, y, x)`` or ``(element, tilt, y, x)``, not aligned.
    tilts : array-like
        Degrees, one per view.
    rotation_deg, shifts_y, shifts_x
        The candidate, as stored by :func:`align` (``rotation_deg``,
        ``shift_y_px``, ``shift_x_px``); None shifts are zeros.
    reference : None, dict or tuple
        What the candidate is compared with: ``(rotation_deg, shifts_y,
        shifts_x)`` or a dict with the keys of :func:`align`'s record.
        None: the identity (doing nothing).
    targets, background, target_background, bin_to, iterations, sigma, n_folds, loss
        See :class:`HeldOutCriterion`.

    Returns
    -------
    dict
        ``score`` and ``reference_score`` (summed losses, lower is better),
        ``difference`` (candidate minus reference; negative: the candidate
        predicts the held-out views better) and its standard error ``se``
        over the folds, ``z``, ``better`` (difference below
        ``-ACCEPT_SE`` standard errors), per-fold losses, ``criterion``.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment.policy import alignment_score
    >>> maps = datasets.simulate_scene("dot", size=32, counts_per_tilt=5000, seed=2)
    >>> views = maps.to_numpy().sum(0)            # aligned views: a rotation can only hurt
    >>> s = alignment_score(views, maps.tilts, rotation_deg=15.0)
    >>> s["difference"] > 0 and not s["better"]
    True
    """
    crit = HeldOutCriterion(views, tilts, targets=targets, background=background,
                            target_background=target_background, bin_to=bin_to, iterations=iterations, sigma=sigma,
                            n_folds=n_folds, loss=loss)
    if reference is None:
        ref = (0.0, None, None)
    elif isinstance(reference, dict):
        ref = (reference.get("rotation_deg", 0.0), reference.get("shift_y_px"), reference.get("shift_x_px"))
    else:
        ref = tuple(reference)
    out = crit.compare(crit.predict(rotation_deg, shifts_y, shifts_x), crit.predict(*ref))
    out["criterion"] = crit.description
    return out


# ---------------------------------------------------------------------------------
# auto: the validated chain


def _estimate_shifts(method, stack, tilts, rot):
    base = transform_stack(stack, rot, np.zeros(len(tilts)), np.zeros(len(tilts))) if rot else stack
    return estimate_xcorr(base, tilts) if method == "xcorr" else estimate_com(base, tilts)


class _AutoChain:
    """``auto``'s stages on numpy arrays; shifts in binned pixels inside, raw pixels in the record."""

    def __init__(self, criterion, sources, tilts, b, rotation, pm_iterations, tol_px):
        self.crit, self.sources, self.tilts, self.b = criterion, sources, tilts, b
        self.rotation0 = 0.0 if rotation is None else float(rotation)
        self.pm_iterations, self.tol_px = pm_iterations, tol_px
        n = len(tilts)
        start = {"label": "identity (doing nothing)" if rotation is None else f"given rotation {rotation:+.2f} deg",
                 "estimated_on": "none", "recipe": [], "rotation_deg": self.rotation0, "sy": np.zeros(n),
                 "sx": np.zeros(n), "axis_offset": 0.0, "pm": 0, "shift_method": None}
        start["pred"] = self.crit.predict(self.rotation0, start["sy"] * b, start["sx"] * b)
        self.start = self.current = start
        self.stages = []

    def replay(self, recipe, sources):
        """Rotation, shifts, axis offset (binned pixels) and projection-matching rounds of a recipe."""
        n = len(self.tilts)
        rot, sy, sx, off, n_pm, method = self.rotation0, np.zeros(n), np.zeros(n), 0.0, 0, None
        for step in recipe:
            kind = step[0]
            if kind == "shifts":
                method = step[1:]
                sy, sx = _estimate_shifts(step[1], sources[step[2]], self.tilts, rot)
                off = 0.0
            elif kind == "offset":
                o = estimate_axis(sources[step[1]], self.tilts, sy, sx, rotation=rot)[1]
                sx, off = sx - o, off + o
            elif kind == "rotation":
                rot = step[1]
                m, src = step[2], step[3]
                sy, sx = _estimate_shifts(m, sources[src], self.tilts, rot)
                off = estimate_axis(sources[src], self.tilts, sy, sx, rotation=rot)[1]
                sx = sx - off
            elif kind == "projection_matching":
                sy, sx, n_pm = estimate_projection_matching(sources[step[1]], self.tilts, rot, sy, sx,
                                                            max_iter=self.pm_iterations, tol_px=self.tol_px)
        return {"rotation_deg": float(rot), "sy": sy, "sx": sx, "axis_offset": float(off), "pm": int(n_pm),
                "shift_method": method}

    def candidate(self, label, source, step):
        c = self.replay(self.current["recipe"] + [step], self.sources)
        c.update(label=label, estimated_on=source, recipe=self.current["recipe"] + [step])
        c["pred"] = self.crit.predict(c["rotation_deg"], c["sy"] * self.b, c["sx"] * self.b)
        return c

    def _entry(self, c, cmp):
        return {"label": c["label"], "estimated_on": c["estimated_on"], "rotation_deg": c["rotation_deg"],
                "axis_offset_px": c["axis_offset"] * self.b, "shift_y_px": (c["sy"] * self.b).tolist(),
                "shift_x_px": (c["sx"] * self.b).tolist(), "score": cmp["score"],
                "current_score": cmp["reference_score"], "difference": cmp["difference"], "se": cmp["se"],
                "relative_difference": cmp["relative_difference"]}

    def stage(self, name, candidates, skipped=None):
        """Score ``candidates`` (in order of preference) against the current alignment; accept one
        only on a significant gain."""
        cur = self.current
        record = {"stage": name, "current": cur["label"], "candidates": []}
        if not candidates:
            record.update(chosen="none", accepted=False, reason=skipped or "no candidate")
            logger.info("auto alignment, %s: skipped (%s); keeping %s", name, record["reason"], cur["label"])
            self.stages.append(record)
            return False
        same = [c for c in candidates if c["rotation_deg"] == cur["rotation_deg"]
                and np.allclose(c["sy"], cur["sy"], rtol=0, atol=1e-9)
                and np.allclose(c["sx"], cur["sx"], rtol=0, atol=1e-9)]
        candidates = [c for c in candidates if not any(c is d for d in same)]
        if not candidates:
            record.update(chosen="none", accepted=False,
                          reason=f"no change: {', '.join(c['label'] for c in same)} gave the current alignment")
            logger.info("auto alignment, %s: %s; keeping %s", name, record["reason"], cur["label"])
            self.stages.append(record)
            return False
        cmps = [self.crit.compare(c["pred"], cur["pred"]) for c in candidates]
        record["candidates"] = [self._entry(c, m) for c, m in zip(candidates, cmps)]
        best = int(np.argmin([m["difference"] for m in cmps]))
        eligible = [i for i, m in enumerate(cmps) if m["better"]]
        chosen = best
        if eligible:
            best_ok = min(eligible, key=lambda i: cmps[i]["difference"])
            chosen = best_ok
            for i in eligible:  # the most preferred source that is not significantly worse than the best
                if i == best_ok:
                    break
                vs = self.crit.compare(candidates[i]["pred"], candidates[best_ok]["pred"])
                if vs["difference"] <= ACCEPT_SE * vs["se"]:
                    chosen = i
                    break
        m = cmps[chosen]
        accepted = bool(m["better"])
        if not np.isfinite(m["se"]):
            reason = f"too few views held out ({m['n_folds']} folds) to judge a gain"
        elif accepted:
            reason = (f"accepted: held-out deviance lower by {-m['difference']:.1f} +- {m['se']:.1f} "
                      f"(more than {ACCEPT_SE:g} standard errors)")
        elif m["difference"] < 0:
            reason = (f"rejected: a gain of {-m['difference']:.1f} +- {m['se']:.1f} is within {ACCEPT_SE:g} "
                      "standard errors of nothing")
        else:
            reason = f"rejected: held-out deviance higher by {m['difference']:.1f} +- {m['se']:.1f}"
        record.update(chosen=candidates[chosen]["label"], accepted=accepted, reason=reason,
                      difference=m["difference"], se=m["se"])
        logger.info("auto alignment, %s: %s %s; now %s", name, candidates[chosen]["label"], reason,
                    candidates[chosen]["label"] if accepted else cur["label"])
        self.stages.append(record)
        if accepted:
            self.current = candidates[chosen]
        return accepted

    # -- the stages -------------------------------------------------------------------
    def shifts(self):
        cands = [self.candidate(f"{m} on {src}", src, ("shifts", m, src)) for src in self.sources
                 for m in ("com", "xcorr")]
        self.stage("shifts", cands)

    def axis_offset(self):
        cur, cands, small = self.current, [], []
        for src in self.sources:
            off = estimate_axis(self.sources[src], self.tilts, cur["sy"], cur["sx"], rotation=cur["rotation_deg"])[1]
            if abs(off) * self.b < 0.05:
                small.append(src)
                continue
            cands.append(self.candidate(f"axis offset {off * self.b:+.2f} px on {src}", src, ("offset", src)))
        self.stage("axis offset", cands, skipped=f"the offset is below 0.05 px on {', '.join(small)}")

    def rotation(self):
        cur, cands, notes = self.current, [], []
        method = cur["shift_method"] or ("com", next(iter(self.sources)))
        for src in self.sources:
            rot, _, info = estimate_axis(self.sources[src], self.tilts, cur["sy"], cur["sx"], return_info=True)
            if info["passes"] == 0:
                notes.append(f"{src}: fewer than 3 row bands whole in every view")
                continue
            if abs(rot - cur["rotation_deg"]) < 0.05:
                notes.append(f"{src}: {rot:+.2f} deg, no change")
                continue
            label = (f"rotation {rot:+.2f} deg on {src} ({info['bands_used']} whole row bands), "
                     f"shifts {method[0]} on {method[1]}")
            cands.append(self.candidate(label, src, ("rotation", float(rot), method[0], method[1])))
        self.stage("rotation", cands, skipped="; ".join(notes))

    def projection_matching(self):
        cands = [self.candidate(f"projection matching on {src}", src, ("projection_matching", src))
                 for src in self.sources]
        self.stage("projection matching", cands)


def _auto(counts, refs, tilts, background, b, sigma, pm_iterations, tol_px, show, rotation, seed, score_bin_to,
          refs_note=None):
    """``auto``: the validated chain; returns the parts of the alignment record."""
    from hyperspy_edxtomo.base.progress import progress_bar
    from hyperspy_edxtomo.reconstruction.solvers import count_split

    split = is_counts(counts)
    if split:
        est, held = count_split(counts, 0.5, seed=seed)
        est, held = est.astype(np.float64), held.astype(np.float64)
        crit = HeldOutCriterion(counts, tilts, targets=held, background=background,
                                target_background=None if background is None else 0.5 * background,
                                bin_to=score_bin_to)
        scored_on = "a binomial half of the counts that the candidates' estimates never saw"
    else:
        est = counts
        crit = HeldOutCriterion(counts, tilts, background=background, bin_to=score_bin_to)
        scored_on = ("the same views the candidates were estimated on (not integer counts: no count split; "
                     "estimated candidates are favoured by about their number of parameters)")
    s_counts = 1.5 if sigma is None else sigma
    s_refs = 1.0 if sigma is None else sigma
    sources = {}
    if refs is not None:
        sources["reference_images"] = _prepared(refs, b, s_refs)
    sources["summed_counts"] = _prepared(est, b, s_counts)
    chain = _AutoChain(crit, sources, tilts, b, rotation, pm_iterations, tol_px / b)
    stages = [chain.shifts, chain.axis_offset] + ([chain.rotation] if rotation is None else []) + \
             [chain.projection_matching]
    for stage in progress_bar(stages, desc="Validated alignment", show=show):
        stage()
    if rotation is not None:
        chain.stages.insert(2, {"stage": "rotation", "current": chain.current["label"], "candidates": [],
                                "chosen": "none", "accepted": False,
                                "reason": f"given: rotation={rotation:+.2f} deg"})
    final = chain.current
    refit = {"done": False, "reason": "not counts: the estimates already used all the data"}
    if split and any("summed_counts" in step for step in final["recipe"]):
        full = dict(sources, summed_counts=_prepared(counts, b, s_counts))
        r = chain.replay(final["recipe"], full)
        r["pred"] = crit.predict(r["rotation_deg"], r["sy"] * b, r["sx"] * b)
        vs = crit.compare(r["pred"], final["pred"])
        use = vs["difference"] <= 0
        refit = {"done": True, "used": bool(use), "difference": vs["difference"], "se": vs["se"],
                 "reason": ("the accepted stages estimated again on all counts (rotation kept); it predicts the "
                            "held-out half at least as well" if use else
                            "the accepted stages estimated again on all counts predicted the held-out half worse: "
                            "the validated half-count estimates are kept")}
        if use:
            r.update(label=final["label"] + ", refit on all counts", estimated_on=final["estimated_on"],
                     recipe=final["recipe"])
            final = r
    elif split:
        refit["reason"] = "no accepted stage was estimated on the counts"
    vs_id = crit.compare(final["pred"], chain.start["pred"])
    logger.info("auto alignment, result: %s; held-out deviance %+.1f +- %.1f against %s", final["label"],
                vs_id["difference"], vs_id["se"], chain.start["label"])
    validation = {
        "criterion": crit.description,
        "scored_on": scored_on,
        "count_split_seed": int(seed) if split else -1,
        "accept_rule": f"a candidate replaces the current alignment when the paired difference of held-out deviance "
                       f"over the folds is below -{ACCEPT_SE:g} standard errors",
        "folds": [", ".join(str(int(t)) for t in f) for f in crit.folds],
        "score_binning": int(crit.b),
        "sources": list(sources),
        "stages": chain.stages,
        "refit": refit,
        "result": final["label"],
        "difference_vs_start": vs_id["difference"],
        "se_vs_start": vs_id["se"],
        "start": chain.start["label"],
    }
    if refs_note:
        validation["reference_images_note"] = refs_note
    # the rotation that was estimated (the chosen candidate of the rotation stage), applied or not
    rot_stage = [st for st in chain.stages if st["stage"] == "rotation"][0]
    chosen = [c for c in rot_stage["candidates"] if c["label"] == rot_stage["chosen"]]
    return {
        "sy": final["sy"], "sx": final["sx"], "rot": final["rotation_deg"], "off": final["axis_offset"],
        "n_pm": final["pm"], "estimated_on": final["estimated_on"], "validation": validation,
        "rotation_estimate": chosen[0]["rotation_deg"] if chosen else final["rotation_deg"],
    }


# ---------------------------------------------------------------------------------
# public entry points


def estimate_alignment(series, method="auto", sigma=None, bin_to=128, pm_iterations=8, tol_px=0.1,
                       show_progressbar=None, rotation=None, score_bin_to=64, seed=0, validate=None):
    """Estimate the alignment of ``series``; a dict of plain lists/floats (see :func:`align`)."""
    from hyperspy_edxtomo.base.progress import show_progress

    if method not in METHODS:
        raise ValueError(f"Unknown alignment method {method!r}: choose one of {METHODS}.")
    if rotation is not None:
        try:
            rotation = float(rotation)
        except (TypeError, ValueError):
            raise TypeError(f"rotation must be a number of degrees or None, got {rotation!r}.") from None
        if not np.isfinite(rotation):
            raise ValueError(f"rotation must be a finite number of degrees or None (estimate it), got {rotation}.")
    if validate is None:
        validate = method == "auto"
    show = show_progress(show_progressbar)
    t0 = time.perf_counter()
    tilts = series.tilts
    refs = _check_references(series)
    counts = _summed_counts(series)
    _check_stack(counts, "views")
    if refs is not None:
        _check_stack(refs, "reference images")
    background = _summed_background(series)
    _warn_doses(counts.sum((1, 2)), tilts)
    n, ny, nx = counts.shape
    b = max(1, int(np.ceil(max(ny, nx) / bin_to))) if bin_to else 1
    record = {
        "method": method, "rotation_given": rotation is not None, "rotation_se_deg": None,
        "tilts_deg": tilts.tolist(), "view_shape": [int(ny), int(nx)], "binning": int(b),
        "order": "rotate about the centre by -rotation_deg (tilt axis to vertical), then shift (y, x)",
    }
    kind, why = _nothing_to_align_on(counts)
    nothing = kind == "identical"
    refs_note = None
    if refs is not None and not nothing and _same_image(refs):
        refs_note = "the reference images are all the same image: not used, the estimate runs on the counts"
        warnings.warn(f"The HAADF reference images are all the same image: {refs_note.split(': ', 1)[1]}.",
                      stacklevel=3)
        refs = None
    if kind == "indistinct" and rotation is None and refs is None:
        # a rotation fitted to views that noise alone explains is noise (-71 deg on three copies of one
        # view); shifts are still estimated (low-dose views can be told apart by their centres) and
        # auto still validates them on held-out counts
        warnings.warn(f"Alignment: {why}; the in-plane rotation is not estimated (kept at 0; give rotation= "
                      "to set it).", stacklevel=3)
        logger.info("%s alignment: %s; rotation kept at 0", method, why)
        rotation = 0.0
        record["views_indistinct"] = why
    if nothing:
        warnings.warn(f"Alignment: {why}; the identity is kept"
                      + (f" (with the given rotation {rotation:+.2f} deg)" if rotation else "") + ".", stacklevel=3)
        logger.info("%s alignment: %s; identity kept", method, why)
        rot = 0.0 if rotation is None else rotation
        record.update(shift_x_px=[0.0] * n, shift_y_px=[0.0] * n, axis_offset_px=0.0, rotation_deg=rot,
                      rotation_estimate_deg=rot, estimated_on="none", projection_matching_iterations=0,
                      validation={"nothing_to_align_on": True, "reason": why, "result": "identity"})
        record["seconds"] = round(time.perf_counter() - t0, 3)
        return record
    if method == "auto":
        res = _auto(counts, refs, tilts, background, b, sigma, pm_iterations, tol_px, show, rotation, seed,
                    score_bin_to, refs_note)
        sy, sx, rot, off, n_pm = res["sy"], res["sx"], res["rot"], res["off"], res["n_pm"]
        record.update(estimated_on=res["estimated_on"], validation=res["validation"],
                      rotation_estimate_deg=float(res["rotation_estimate"]))
    else:
        source = refs if refs is not None else counts
        if sigma is None:
            sigma = 1.0 if refs is not None else 1.5
        smooth = _prepared(source, b, sigma)
        rot_se = None
        if method == "axis" and rotation is None and refs is None:
            rot_se = _rotation_se(counts, tilts, b, sigma)
        sy, sx, rot, off, n_pm = _chain(smooth, tilts, method, rotation, pm_iterations, tol_px / b, show)
        rot_estimate = float(rot)
        if rot_se is not None and rot_se > ROTATION_SE_WARN_DEG:
            warnings.warn(
                f"The in-plane rotation of the tilt axis ({rot_estimate:+.2f} deg) is uncertain at "
                f"these counts: the common-line estimate has a standard error of {rot_se:.1f} deg (count-split "
                "halves). If the direction of the tilt axis is known (microscope calibration, HAADF images), "
                "pass rotation=<degrees>, or use method='auto', which applies it only when held-out views confirm it.",
                stacklevel=3,
            )
        record.update(estimated_on="reference_images" if refs is not None else "summed_counts",
                      rotation_se_deg=rot_se, rotation_estimate_deg=rot_estimate)
        if validate:
            record["validation"] = _validate_single(counts, tilts, background, rot, np.asarray(sy) * b,
                                                    np.asarray(sx) * b, score_bin_to, method)
    record.update(
        shift_x_px=(np.asarray(sx) * b).tolist(), shift_y_px=(np.asarray(sy) * b).tolist(),
        axis_offset_px=float(off * b), rotation_deg=float(rot), projection_matching_iterations=int(n_pm),
    )
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def _validate_single(counts, tilts, background, rot, sy, sx, score_bin_to, method):
    """Held-out score of a single method's result against the identity (recorded, and a warning when worse)."""
    crit = HeldOutCriterion(counts, tilts, background=background, bin_to=score_bin_to)
    m = crit.compare(crit.predict(rot, sy, sx), crit.predict())
    worse = np.isfinite(m["se"]) and m["difference"] > ACCEPT_SE * m["se"]
    if worse:
        warnings.warn(f"method={method!r} predicts held-out views worse than no alignment at all (held-out deviance "
                      f"higher by {m['difference']:.1f} +- {m['se']:.1f}); method='auto' would not apply it.",
                      stacklevel=4)
    logger.info("%s alignment: held-out deviance %+.1f +- %.1f against no alignment", method, m["difference"], m["se"])
    return {"criterion": crit.description, "scored_on": "the same views the alignment was estimated on",
            "difference_vs_identity": m["difference"], "se": m["se"], "score": m["score"],
            "identity_score": m["reference_score"], "worse_than_identity": bool(worse)}


def apply_alignment(series, alignment, resample=None, seed=0):
    """Move ``series`` (element maps or spectrum images) by a stored alignment.

    Parameters
    ----------
    series : ElementMapTiltSeries, EDXTiltSeries or Signal2D
        A plain ``Signal2D`` with one navigation axis (the views in the
        order of the aligned series), e.g. a separate HAADF tilt series, is
        moved by interpolation; its angles are checked when its navigation
        axis is a ``tilt`` axis in degrees.
    alignment : dict or signal
        The ``metadata.Tomography.alignment`` of an aligned series, or that
        series itself.
    resample : None, "counts" or "bilinear"
        ``"counts"``: every count moves whole to one of the four pixels
        around its new position (bilinear probabilities, seeded), so integer
        counts stay Poisson counts; ``"bilinear"``: interpolation. None:
        ``"counts"`` for element maps holding integer counts, else
        ``"bilinear"``.
    seed : int
        Seed of the ``"counts"`` draws (one generator per element and view).

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        A copy of ``series`` (same class, lazy if it is lazy), every element or
        energy channel, the reference images and the background
        (``metadata.Tomography.background``, bilinear: expected counts, kept
        as the numpy array or signal it was) moved, the alignment in
        ``metadata.Tomography.alignment`` and in the history.

    Raises
    ------
    ValueError
        If the alignment lacks shifts or rotation, has another number of
        views or other tilt angles than ``series``, or was made on views of
        another aspect ratio; if the stored background is not shaped like
        the data.

    Notes
    -----
    Views of another pixel count but the same aspect ratio (for example HAADF
    images at 512 x 512 pixels beside 256 x 256 element maps of the same
    field of view) are moved by the shifts scaled by the size ratio (the
    rotation is unchanged); the stored alignment then holds the scaled shifts,
    the new ``view_shape`` and ``scaled_from_view_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.zeros((1, 3, 8, 8), np.uint8); counts[:, :, 3:5, 3:5] = 1
    >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"])
    >>> moved = het.alignment.apply_alignment(maps, {"shift_x_px": [1.0, 0.0, -1.0],
    ...                                              "shift_y_px": [0.0, 0.0, 0.0], "rotation_deg": 0.0})
    >>> int(moved.data.sum()), moved.metadata.Tomography.alignment.resample
    (12, 'counts')
    """
    if hasattr(alignment, "metadata"):
        if not alignment.metadata.has_item(ALIGNMENT):
            raise ValueError(f"{type(alignment).__name__} carries no metadata.{ALIGNMENT}: align it first.")
        alignment = alignment.metadata.get_item(ALIGNMENT)
    if hasattr(alignment, "as_dictionary"):
        alignment = alignment.as_dictionary()
    alignment = dict(alignment)
    missing = [k for k in ("shift_x_px", "shift_y_px", "rotation_deg") if k not in alignment]
    if missing:
        raise ValueError(f"The alignment lacks {missing}.")
    i = _tilt_axis_index(series)
    n, shape = _view_shape(series)
    sx, sy = np.asarray(alignment["shift_x_px"], float), np.asarray(alignment["shift_y_px"], float)
    if sx.size != n or sy.size != n:
        raise ValueError(f"The alignment has {sx.size} views but this series has {n}.")
    if "view_shape" in alignment and tuple(alignment["view_shape"]) != shape:
        made = tuple(int(v) for v in alignment["view_shape"])
        ry, rx = shape[0] / made[0], shape[1] / made[1]
        if abs(ry / rx - 1) > 0.01:
            raise ValueError(
                f"The alignment was made on {made}-pixel views; these are {shape}: the aspect ratio differs "
                f"(x {rx:.3g}, y {ry:.3g} times), so they cannot cover the same field of view. Crop or resample "
                "the views to the aligned views' shape or aspect ratio first."
            )
        # same field of view at another pixel count (e.g. HAADF images at 2x the maps' pixels):
        # shifts scale with the pixel count, the rotation does not
        sx, sy = sx * rx, sy * ry
        alignment = dict(alignment, shift_x_px=sx.tolist(), shift_y_px=sy.tolist(),
                         axis_offset_px=float(alignment.get("axis_offset_px", 0.0)) * rx,
                         view_shape=[int(shape[0]), int(shape[1])], scaled_from_view_shape=list(made))
    tilts = series.tilts if hasattr(series, "tilts") else _image_tilts(series)
    if "tilts_deg" in alignment and tilts is not None and not np.allclose(alignment["tilts_deg"], tilts, atol=1e-3):
        raise ValueError("The alignment was made on other tilt angles than this series'.")
    rot = float(alignment["rotation_deg"])
    resample = _resample_mode(series, resample)
    refs = getattr(series, "reference_images", None)
    if refs is not None:
        _check_references(series)
    bg_node, bg_data = _background_node(series)
    out = with_new_data(series, _transform_data(series.data, i, rot, sy, sx, resample, seed))
    alignment = dict(alignment, resample=resample, resample_seed=int(seed))
    if refs is not None:
        new_refs = with_new_data(refs, _transform_data(refs.data, 0, rot, sy, sx))
        out.metadata.set_item(f"{NODE}.reference_images", new_refs)
    if bg_node is not None:
        # expected counts: interpolated like the data's expectation, so background and counts stay registered
        moved = _transform_data(bg_data, i, rot, sy, sx, "bilinear")
        if hasattr(bg_node, "axes_manager"):
            moved = with_new_data(bg_node, moved)
        out.metadata.set_item(BACKGROUND, moved)
    out.metadata.set_item(ALIGNMENT, plain_record(alignment))
    append_history(out, "alignment", alignment.get("method", "apply"),
                   {k: v for k, v in alignment.items() if k not in ("order", "validation")})
    return out


RESAMPLE = ("counts", "bilinear")


def with_reference_images(series, images):
    """A copy of ``series`` carrying ``images`` (one HAADF/ADF image per view) as its reference images.

    Parameters
    ----------
    series : ElementMapTiltSeries or EDXTiltSeries
    images : Signal2D or numpy.ndarray
        One image per view, in the series' order, each the views' size: a
        ``Signal2D`` with one navigation axis, or an array (view, y, x).

    Returns
    -------
    A copy of ``series`` (same class) with ``metadata.Tomography.reference_images``.

    Raises
    ------
    ValueError
        Another number of images than views, images of another size, NaN.
    """
    from hyperspy.signals import Signal2D

    from hyperspy_edxtomo.signals.tilts import tilt_axis_dict

    kind = _kind(series)
    if kind == "images":
        raise TypeError("Reference images belong to an ElementMapTiltSeries or EDXTiltSeries.")
    data = images.data if hasattr(images, "axes_manager") else np.asarray(images)
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data, np.float32)
    n, shape = _view_shape(series)
    if data.ndim != 3 or data.shape[0] != n:
        raise ValueError(f"haadf: {data.shape[0] if data.ndim == 3 else data.shape} images for {n} views: give one "
                         "image per view, shaped (view, y, x), in the series' order.")
    if tuple(data.shape[1:]) != shape:
        raise ValueError(f"haadf: the images are {tuple(data.shape[1:])} pixels but the views are {shape}: rebin or "
                         "crop them to the views' pixels first (same field of view, same pixels).")
    if not np.all(np.isfinite(data)):
        raise ValueError("haadf: the images hold NaN or infinite values.")
    space = series.axes_manager.signal_axes if kind == "maps" else series.axes_manager.navigation_axes[:2]
    axes = [tilt_axis_dict(series.tilts)] + [
        {"name": a.name, "size": a.size, "offset": a.offset, "scale": a.scale, "units": a.units, "navigate": False}
        for a in sorted(space, key=lambda a: a.name != "y")]
    refs = Signal2D(data, axes=axes)
    refs.metadata.General.title = "HAADF" if not hasattr(images, "metadata") else images.metadata.General.title
    out = series.deepcopy()
    out.metadata.set_item(f"{NODE}.reference_images", refs)
    _check_references(out)
    return out


def _image_tilts(images):
    """The angles of a plain image series navigated by a ``tilt`` axis in degrees, else None (unknown)."""
    axis = images.axes_manager.navigation_axes[0]
    return np.asarray(axis.axis, float) if axis.name == "tilt" and axis.units == "deg" else None


def _resample_mode(series, resample):
    from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries

    if resample is not None:
        if resample not in RESAMPLE:
            raise ValueError(f"Unknown resample {resample!r}: choose one of {', '.join(map(repr, RESAMPLE))}.")
        if resample == "counts" and not isinstance(series, ElementMapTiltSeries):
            raise ValueError("resample='counts' applies to element maps; spectrum images use 'bilinear'.")
        return resample
    if not isinstance(series, ElementMapTiltSeries):
        return "bilinear"
    data = series.data
    if np.issubdtype(data.dtype, np.integer):
        return "counts"
    if is_lazy(series):
        return "bilinear"  # deciding would mean computing the data
    return "counts" if is_counts(data) else "bilinear"


@signal_method(EDXTiltSeries, ElementMapTiltSeries)
def align(series, method="auto", sigma=None, bin_to=128, pm_iterations=8, tol_px=0.1, show_progressbar=None,
          rotation=None, score_bin_to=64, seed=0, validate=None, haadf=None):
    """Align the views of a tilt series (see the module documentation for the methods).

    Parameters
    ----------
    method : {"auto", "xcorr", "com", "axis", "projection_matching"}
        ``"auto"``: the validated chain (shifts, axis offset, rotation,
        projection matching, each kept only when it predicts held-out views
        significantly better than the alignment before it).
    sigma : None or float
        Gaussian smoothing (pixels of the binned views) before estimation.
        None: 1 on HAADF reference images, 1.5 on counts.
    bin_to : int or None
        Views are binned (summed) to at most this many pixels for estimation.
    pm_iterations : int
        Most projection-matching rounds.
    tol_px : float
        Projection matching stops when no shift changes by more than this.
    show_progressbar : None or bool
    rotation : None or float
        In-plane rotation of the tilt axis in degrees. None: estimated (by
        ``"axis"`` and ``"auto"``). A number: used as given (a direction
        known from the microscope; 0 keeps the views unrotated); only the
        shifts and the axis offset are estimated.
    score_bin_to : int
        The held-out criterion bins the views to at most this many pixels.
    seed : int
        Seed of ``auto``'s count split (the half the candidates are
        estimated on, the other half they are scored on).
    validate : None or bool
        For a single method: score the result on held-out views against no
        alignment, record it in ``validation`` and warn when the method is
        worse than no alignment at all (the result is not changed). None:
        False. ``"auto"`` always validates every stage.
    haadf : None, Signal2D or numpy.ndarray
        A separate HAADF (or ADF) tilt series of the same views, one image
        per view in the series' order, of the views' pixel size (a
        ``Signal2D`` navigated by the views, or an array (view, y, x)). It
        becomes the series' reference images (replacing any it carries) and
        is aligned with it: the validated chain tries shifts on it first.

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        The same class, every element (energy channel, reference image,
        background) moved by the same transform (integer element maps stay
        integer counts: ``resample="counts"`` of :func:`apply_alignment`);
        shifts, axis offset, rotation and ``validation`` in
        ``metadata.Tomography.alignment``, and the step in the history.

    Raises
    ------
    ValueError
        For an unknown method, fewer than 3 views, NaN or infinite values, an
        empty view, or reference images whose number or size does not match
        the views.

    Warns
    -----
    UserWarning
        When the views carry nothing to align on (all the same image; the
        identity is kept), when views' totals differ by more than 10 times
        (naming them), when a single method's rotation is uncertain or its
        result is worse than no alignment.

    See Also
    --------
    apply_alignment : move another series of the same views by the same amounts.
    alignment_score : the held-out criterion for any candidate.

    Notes
    -----
    Shifts and the rotation are bilinear with zeros outside the field of view:
    counts moved out of the field of view are lost, none wrap around.
    See ``docs/alignment.rst`` for the methods, the default chain and the
    results on simulated and real data.
    """
    _kind(series)
    if haadf is not None:
        series = with_reference_images(series, haadf)
    alignment = estimate_alignment(series, method=method, sigma=sigma, bin_to=bin_to, pm_iterations=pm_iterations,
                                   tol_px=tol_px, show_progressbar=show_progressbar, rotation=rotation,
                                   score_bin_to=score_bin_to, seed=seed, validate=validate)
    return apply_alignment(series, alignment)


@signal_method(EDXTiltSeries, ElementMapTiltSeries, name="apply_alignment")
def apply_alignment_of(aligned, other, resample=None, seed=0):
    """Move ``other`` (a series of the same views) by the alignment stored in ``aligned``.

    As a method: ``aligned.apply_alignment(other)``, e.g. raw spectrum images
    moved as their aligned element maps were. See :func:`apply_alignment`.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> s = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps = s.get_element_maps(["Se", "S", "Zn"])
    >>> moved = maps.align(method="com").apply_alignment(maps)
    >>> moved.history[-1]["step"]
    'alignment'
    """
    return apply_alignment(other, aligned, resample=resample, seed=seed)
