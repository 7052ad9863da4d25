"""Alignment of tilt series: per-view shifts, tilt-axis offset and in-plane rotation.

``series.align(method=...)`` estimates a rigid transform of every view and
moves every element (every energy channel of a spectrum-image series, the
HAADF reference images) by the same amounts; ``apply_alignment`` moves any
other series of the same views by exactly the same amounts.

The transform of view ``t`` is, in this order:

1. rotate the view about its centre so that a tilt axis at ``rotation_deg``
   (degrees counter-clockwise from the rows' direction, the convention of
   :func:`~hyperspy_edxtomo.reconstruction.reconstruct`) runs along the rows;
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
    plain bilinear interpolation: non-integer values. After alignment the tilt
axis runs along the centre column, ``axis_offset_px`` (already included in the
shifts) is where it was found before the shifts.

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
    ``a(y) + x0 cos(theta) + z0 sin(theta)``; a straight line through the
    ``a(y)``). On counts, the rotation's standard error from count-split
    halves is stored (``rotation_se_deg``).
``"projection_matching"``
    reconstruct (SIRT through :func:`~hyperspy_edxtomo.reconstruction.reconstruct`),
    re-project at the measured angles with the shared
    :class:`~hyperspy_edxtomo.projector.Projector`, register each view to its
    re-projection, repeat until the shifts change by less than ``tol_px``.
``"auto"`` (default)
    ``com`` then ``axis`` then ``projection_matching``; on counts, a rotation
    within two standard errors of 0 is not applied.

``rotation=`` fixes the in-plane rotation instead of estimating it.
"""

import time
import warnings

import numpy as np
from scipy import ndimage

from .metadata import NODE, append_history

METHODS = ("auto", "xcorr", "com", "axis", "projection_matching")
#: standard error (degrees) of an estimated rotation above which align() warns
ROTATION_SE_WARN_DEG = 1.0
#: background noise (robust standard deviations of the border) removed before centres of mass
BACKGROUND_NOISE_K = 2.0
ALIGNMENT = f"{NODE}.alignment"


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


# ---------------------------------------------------------------------------------
# input checks and the image stack alignment is estimated on


def _kind(series):
    from .signals.edx_tilt_series import EDXTiltSeries
    from .signals.element_maps import ElementMapTiltSeries

    if isinstance(series, ElementMapTiltSeries):
        return "maps"
    if isinstance(series, EDXTiltSeries):
        return "edx"
    raise TypeError(f"Alignment needs an ElementMapTiltSeries or EDXTiltSeries, got {type(series).__name__}.")


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
            "they must have the same size."
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


def estimate_axis(stack, tilts, sy, sx, passes=10, tol_deg=0.02, show=False, rotation=None):
    """In-plane rotation and tilt-axis offset from the sinogram of every row (common-line condition).

    After the shifts, every row band of a rigid object's views should trace
    ``a(y) + x0 cos(theta) + z0 sin(theta)`` with its centre of mass; ``a(y)``
    is where the tilt axis crosses row ``y``. A straight line through the
    ``a(y)`` (weighted by the counts of each row) gives the offset (at the
    centre row) and the in-plane rotation (its slope); repeated until the
    corrections vanish. With ``rotation`` given, only the offset is estimated.
    """
    n, ny, nx = stack.shape
    th = np.deg2rad(tilts)
    A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
    rot, off = (0.0 if rotation is None else float(rotation)), 0.0
    for _ in range(passes):
        views = transform_stack(stack, rot, sy, sx - off)
        band = 3
        ys, a, w = [], [], []
        xx = np.arange(nx)
        for y0 in range(0, ny - band + 1, band):
            rows = views[:, y0 : y0 + band].sum(1)  # (tilt, x)
            tot = rows.sum(1)
            if np.any(tot <= 0.02 * views.sum() / n / (ny / band)):
                continue
            cx = (rows * xx).sum(1) / tot
            coef, *_ = np.linalg.lstsq(A, cx, rcond=None)
            ys.append(y0 + (band - 1) / 2 - (ny - 1) / 2)
            a.append(coef[0] - (nx - 1) / 2)
            w.append(tot.min())
        if len(ys) < 3:
            break
        ys, a, w = np.array(ys), np.array(a), np.sqrt(np.array(w))
        slope, intercept = np.polyfit(ys, a, 1, w=w)
        step = float(np.rad2deg(np.arctan(slope))) if rotation is None else 0.0
        rot += step
        off += float(intercept)
        if abs(step) < tol_deg and abs(intercept) < 0.02:
            break
    return rot, off


def estimate_projection_matching(stack, tilts, rotation_deg, sy, sx, method="sirt", iterations=30,
                                 max_iter=8, tol_px=0.1, sigma=1.0, show=False):
    """Refine shifts by registering each view to the re-projection of a reconstruction."""
    from hyperspy.external.progressbar import progressbar

    from .projector import Projector
    from .reconstruction import reconstruct
    from .signals.element_maps import element_maps_from_array

    n, ny, nx = stack.shape
    P = Projector(tilts, n_x=nx, cuda=False)
    sy, sx = np.array(sy, float), np.array(sx, float)
    n_done = 0
    for _ in progressbar(range(max_iter), disable=not show, desc="Projection matching"):
        views = transform_stack(stack, rotation_deg, sy, sx)
        maps = element_maps_from_array(views[None], tilts, ["Zn"])
        params = {"iterations": iterations} if method == "sirt" else {}
        vol = reconstruct(maps, method=method, cuda=False, show_progressbar=False, **params)
        rec = np.ascontiguousarray(vol.to_numpy()[0].transpose(1, 0, 2), np.float32)  # (y, z, x)
        reproj = P.forward(rec).transpose(1, 0, 2)  # (tilt, y, x)
        d = np.array([register(ndimage.gaussian_filter(reproj[t], sigma), ndimage.gaussian_filter(views[t], sigma))
                      for t in range(n)])
        d[:, 0] -= d[:, 0].mean()  # a common shift along the axis is free
        sy += d[:, 0]
        sx += d[:, 1]
        n_done += 1
        if np.max(np.abs(d)) < tol_px:
            break
    return sy, sx, n_done


def _prepared(stack, b, sigma):
    """Views binned by ``b`` (per-pixel scale kept), smoothed and background-free: what every estimator sees."""
    return _background_free(_bin(stack, b).astype(np.float64) / b**2, sigma)


def _rotation_se(counts, tilts, b, sigma, n_splits=4, seed=0):
    """Standard error (degrees) of :func:`estimate_axis`'s rotation on ``counts``
    (tilt, y, x), from count-split halves; None when the views are not
    integer counts. Each half has half the counts, so the difference of the
    two halves' estimates has four times the variance of the full estimate.
    """
    if not np.allclose(counts, np.round(counts)):
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
    """The estimators of ``method`` on one smoothed (tilt, y, x) stack:
    (shifts y, shifts x, rotation, axis offset, projection-matching rounds)."""
    n = smooth.shape[0]
    zero = np.zeros(n)
    rot, off, n_pm = (rotation or 0.0), 0.0, 0
    # a given rotation applies first; the shift estimators work on the rotated views
    base = transform_stack(smooth, rot, zero, zero) if rot else smooth
    if method == "xcorr":
        sy, sx = estimate_xcorr(base, tilts)
    elif method in ("com", "auto"):
        sy, sx = estimate_com(base, tilts)
    else:
        sy, sx = zero.copy(), zero.copy()
    if method in ("axis", "auto"):
        if method == "axis":
            sy, sx = estimate_com(base, tilts)
        rot, off = estimate_axis(smooth, tilts, sy, sx, show=show, rotation=rotation)
        sx = sx - off
        # centres again after the rotation: the rotation moves them
        rs = transform_stack(smooth, rot, zero, zero)
        sy, sx_c = estimate_com(rs, tilts)
        sx = sx_c - off if method == "axis" else sx_c
    if method in ("projection_matching", "auto"):
        if method == "projection_matching":
            sy, sx = estimate_com(base, tilts)
        sy, sx, n_pm = estimate_projection_matching(smooth, tilts, rot, sy, sx, max_iter=pm_iterations,
                                                    tol_px=tol_px, show=show)
    return sy, sx, rot, off, n_pm


# ---------------------------------------------------------------------------------
# public entry points


def estimate_alignment(series, method="auto", sigma=None, bin_to=128, pm_iterations=8, tol_px=0.1,
                       show_progressbar=None, rotation=None):
    """Estimate the alignment of ``series``; a dict of plain lists/floats (see :func:`align`)."""
    from .signals.element_maps import _show

    if method not in METHODS:
        raise ValueError(f"Unknown alignment method {method!r}: choose one of {METHODS}.")
    if rotation is not None:
        rotation = float(rotation)
        if not np.isfinite(rotation):
            raise ValueError(f"rotation must be a finite number of degrees or None (estimate it), got {rotation}.")
    show = _show(show_progressbar)
    t0 = time.perf_counter()
    tilts = series.tilts
    refs = _check_references(series)
    counts = _summed_counts(series)
    _check_stack(counts, "views")
    if refs is not None:
        _check_stack(refs, "reference images")
    source = refs if refs is not None else counts
    n, ny, nx = source.shape
    b = max(1, int(np.ceil(max(ny, nx) / bin_to))) if bin_to else 1
    if sigma is None:
        sigma = 1.0 if refs is not None else 1.5
    smooth = _prepared(source, b, sigma)
    rot_se, rot_estimate, use = None, None, rotation
    if method in ("axis", "auto") and rotation is None and refs is None:
        rot_se = _rotation_se(counts, tilts, b, sigma)
        if method == "auto" and rot_se is not None:
            # the rotation first, so that projection matching runs once: a careful microscopist
            # would not apply a rotation the counts cannot tell from noise
            rot_estimate = _chain(smooth, tilts, "axis", None, pm_iterations, tol_px / b, show)[2]
            use = rot_estimate if abs(rot_estimate) >= 2 * rot_se else 0.0
    sy, sx, rot, off, n_pm = _chain(smooth, tilts, method, use, pm_iterations, tol_px / b, show)
    rot_estimate = float(rot) if rot_estimate is None else float(rot_estimate)
    if rot_se is not None and rot_se > ROTATION_SE_WARN_DEG:
        applied = "not applied: it is within two standard errors of 0" if rot != rot_estimate else "applied"
        warnings.warn(
            f"The in-plane rotation of the tilt axis ({rot_estimate:+.2f} deg, {applied}) is uncertain at "
            f"these counts: the common-line estimate has a standard error of {rot_se:.1f} deg (count-split "
            "halves). If the direction of the tilt axis is known (microscope calibration, HAADF images), "
            "pass rotation=<degrees>.",
            stacklevel=3,
        )
    return {
        "method": method,
        "shift_x_px": (np.asarray(sx) * b).tolist(),
        "shift_y_px": (np.asarray(sy) * b).tolist(),
        "axis_offset_px": float(off * b),
        "rotation_deg": float(rot),
        "rotation_given": rotation is not None,
        "rotation_se_deg": rot_se,
        "rotation_estimate_deg": rot_estimate,
        "tilts_deg": tilts.tolist(),
        "view_shape": [int(ny), int(nx)],
        "estimated_on": "reference_images" if refs is not None else "summed_counts",
        "binning": int(b),
        "projection_matching_iterations": int(n_pm),
        "order": "rotate about the centre by -rotation_deg (tilt axis to vertical), then shift (y, x)",
        "seconds": round(time.perf_counter() - t0, 3),
    }


def apply_alignment(series, alignment, resample=None, seed=0):
    """Move ``series`` (element maps or spectrum images) by a stored alignment.

    Parameters
    ----------
    series : ElementMapTiltSeries or EDXTiltSeries
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
        energy channel and the reference images moved, the alignment in
        ``metadata.Tomography.alignment`` and in the history.

    Raises
    ------
    ValueError
        If the alignment lacks shifts or rotation, has another number of
        views or other tilt angles than ``series``, or was made on views of
        another aspect ratio.

    Notes
    -----
    Views of another pixel count but the same aspect ratio (for example HAADF
    images at 512 x 512 pixels beside 256 x 256 element maps of the same
    field of view) are moved by the shifts scaled by the size ratio (the
    rotation is unchanged); the stored alignment then holds the scaled shifts,
    the new ``view_shape`` and ``scaled_from_view_shape``.
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
    if "tilts_deg" in alignment and not np.allclose(alignment["tilts_deg"], series.tilts, atol=1e-3):
        raise ValueError("The alignment was made on other tilt angles than this series'.")
    rot = float(alignment["rotation_deg"])
    resample = _resample_mode(series, resample)
    refs = series.reference_images
    if refs is not None:
        _check_references(series)
    out = series._deepcopy_with_new_data(_transform_data(series.data, i, rot, sy, sx, resample, seed))
    alignment = dict(alignment, resample=resample, resample_seed=int(seed))
    if refs is not None:
        new_refs = refs._deepcopy_with_new_data(_transform_data(refs.data, 0, rot, sy, sx))
        out.metadata.set_item(f"{NODE}.reference_images", new_refs)
    from .metadata import _plain

    out.metadata.set_item(ALIGNMENT, _plain(alignment))
    append_history(out, "alignment", alignment.get("method", "apply"),
                   {k: v for k, v in alignment.items() if k not in ("order",)})
    return out


RESAMPLE = ("counts", "bilinear")


def _resample_mode(series, resample):
    from .signals.element_maps import ElementMapTiltSeries

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
    if series._lazy:
        return "bilinear"  # deciding would mean computing the data
    return "counts" if np.all(np.isfinite(data)) and np.all(data >= 0) and np.allclose(data, np.round(data)) else "bilinear"


def align(series, method="auto", sigma=None, bin_to=128, pm_iterations=8, tol_px=0.1, show_progressbar=None,
          rotation=None):
    """Align the views of a tilt series (see the module documentation for the methods).

    Parameters
    ----------
    method : {"auto", "xcorr", "com", "axis", "projection_matching"}
    sigma : None or float
        Gaussian smoothing (pixels of the binned views) before estimation.
    bin_to : int or None
        Views are binned (summed) to at most this many pixels for estimation.
    pm_iterations : int
        Most projection-matching rounds.
    tol_px : float
        Projection matching stops when no shift changes by more than this.
    show_progressbar : None or bool
    rotation : None or float
        In-plane rotation of the tilt axis in degrees. None: estimated (by
        ``"axis"`` and ``"auto"``; its standard error from count-split halves
        is stored as ``rotation_se_deg`` when the views are counts, and a
        warning says when it exceeds 1 degree). A number: used as given
        (a direction known from the microscope; 0 keeps the views
        unrotated); only the shifts and the axis offset are estimated.

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        The same class, every element (energy channel, reference image) moved
        by the same transform (integer element maps stay integer counts:
        ``resample="counts"`` of :func:`apply_alignment`); shifts, axis offset and rotation in
        ``metadata.Tomography.alignment`` and in the history.

    Raises
    ------
    ValueError
        For an unknown method, fewer than 3 views, NaN or infinite values, an
        empty view, or reference images whose number or size does not match
        the views.

    See Also
    --------
    apply_alignment : move another series of the same views by the same amounts.

    Notes
    -----
    Shifts and the rotation are bilinear with zeros outside the field of view:
    counts moved out of the field of view are lost, none wrap around.
    See ``docs/alignment.rst`` for the methods, the default chain and the
    results on real data.
    """
    _kind(series)
    alignment = estimate_alignment(series, method=method, sigma=sigma, bin_to=bin_to, pm_iterations=pm_iterations,
                                   tol_px=tol_px, show_progressbar=show_progressbar, rotation=rotation)
    return apply_alignment(series, alignment)
