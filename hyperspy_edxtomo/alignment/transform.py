"""Moving views: the rigid transform of an alignment applied to images, stacks and a signal's data.

The transform of view ``t`` is, in this order:

1. rotate the view about its centre by ``-rotation_deg`` (a tilt axis found at
   ``rotation_deg`` degrees counter-clockwise from the rows' direction then
   runs along the rows);
2. shift it by ``shift_y`` rows and ``shift_x`` columns.

Bilinear weights with zeros outside the field of view, never wrap-around:
counts that stay inside are conserved, counts moved out are lost, the strip
moved in is zero. :func:`transform_counts` moves whole counts instead of
interpolating them, so that integer counts stay Poisson counts.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.errors import InputError

__all__ = ["Resample", "RESAMPLE", "transform_view", "transform_counts", "transform_stack", "transform_data",
           "rotation_matrix", "warp_binned"]

#: how views are resampled: whole counts drawn with the bilinear weights, or bilinear interpolation
Resample = Literal["counts", "bilinear"]
RESAMPLE = get_args(Resample)


def transform_view(img: np.ndarray, rotation_deg: float, shift_y: float, shift_x: float) -> np.ndarray:
    """Rotate (about the centre) then shift one view; bilinear, zero outside.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.alignment.transform import transform_view
    >>> img = np.zeros((5, 5)); img[2, 2] = 1
    >>> np.argwhere(transform_view(img, 0.0, 0.0, 2.0) == 1).tolist()   # two columns to the right
    [[2, 4]]
    """
    img = np.asarray(img, dtype=np.float32)
    if rotation_deg:
        img = ndimage.rotate(img, -rotation_deg, reshape=False, order=1, mode="constant", cval=0.0)
    if shift_y or shift_x:
        img = ndimage.shift(img, (shift_y, shift_x), order=1, mode="constant", cval=0.0)
    return img


def transform_counts(counts: np.ndarray, rotation_deg: float, shift_y: float, shift_x: float,
                     rng: np.random.Generator) -> np.ndarray:
    """The transform of :func:`transform_view` for integer counts: each count
    moves whole to one of the four pixels around its new position, drawn
    with the bilinear weights; counts landing outside the view are lost.

    In expectation this is the bilinear transform; the result is integer
    (Poisson counts stay Poisson).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.alignment.transform import transform_counts
    >>> counts = np.zeros((6, 6)); counts[2:4, 2:4] = 5
    >>> moved = transform_counts(counts, 0.0, 0.5, 0.0, np.random.default_rng(0))
    >>> float(moved.sum()), bool(np.all(moved == np.round(moved)))
    (20.0, True)
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


def transform_stack(stack: np.ndarray, rotation_deg: float, shifts_y, shifts_x, extra_axes: int = 0,
                    resample: Resample = "bilinear", seeds=None) -> np.ndarray:
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


def transform_data(data, tilt_axis: int, rotation_deg: float, shifts_y, shifts_x, resample: Resample = "bilinear",
                   seed: int = 0):
    """Transform numpy or dask ``data`` whose axes from ``tilt_axis`` are ``(tilt, y, x, *extra)``.

    Axes before ``tilt_axis`` (the elements of element maps) are moved one by
    one, each with its own seeded draws for ``resample="counts"``; dask data
    stay lazy (one block holds whole images of some tilts).
    """
    extra = data.ndim - tilt_axis - 3
    if resample == "counts" and extra:
        raise InputError("resample='counts' moves the counts of 2D views; spectrum images use 'bilinear'.")
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


def rotation_matrix(rotation_deg: float) -> np.ndarray:
    """The (row, column) matrix of scipy's ``rotate(img, -rotation_deg)``: output ``o`` samples ``M (o - c) + c``."""
    a = np.deg2rad(-float(rotation_deg))
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def warp_binned(img: np.ndarray, rotation_deg: float, shift_y: float, shift_x: float, b: int, raw_shape,
                inverse: bool = False, order: int = 3) -> np.ndarray:
    """The transform of :func:`transform_view` (or its inverse) on a view binned ``b`` x ``b``
    from a ``raw_shape`` view: the centre and the shifts are those of the raw pixels, so
    binning (with its cropped remainder) does not move the geometry."""
    M = rotation_matrix(rotation_deg)
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
