"""Known misalignment of a tilt series: the ground truth that alignment is tested on."""

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.errors import InputError

__all__ = ["misalign"]


def misalign(views, max_shift_px=3.0, rotation_deg=0.0, seed=None):
    """Rotate every view and move it by a random shift, as stage drift and a
    tilted axis would.

    Parameters
    ----------
    views : numpy.ndarray
        Views shaped (element, tilt, y, x); every element of a tilt moves
        together, as in a measured spectrum image.
    max_shift_px : float
        Shifts are drawn uniformly in ``[-max_shift_px, max_shift_px]`` pixels,
        independently in x and in y for every tilt.
    rotation_deg : float
        In-plane rotation of every view (degrees, counter-clockwise in array
        display, :func:`scipy.ndimage.rotate`), applied before the shift:
        the tilt axis then appears rotated by this angle.
    seed : None, int or numpy.random.Generator
        Draws the shifts. A Generator is used as it is (and advanced), so
        that the caller can go on drawing, e.g. Poisson counts, from it.

    Returns
    -------
    moved : numpy.ndarray
        The views rotated and shifted (bilinear, zero outside the field,
        clipped at 0), float, of the shape of ``views``.
    shift_x, shift_y : numpy.ndarray
        The shift of each tilt in pixels (``moved`` = ``views`` moved by
        ``(shift_y, shift_x)``); an alignment that recovers them returns
        their negatives as corrections.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> views = np.zeros((1, 3, 32, 32)); views[:, :, 12:20, 12:20] = 1.0
    >>> moved, sx, sy = datasets.misalign(views, max_shift_px=2, seed=0)
    >>> moved.shape, sx.shape, bool(np.all(np.abs(sx) <= 2))
    ((1, 3, 32, 32), (3,), True)
    """
    views = np.asarray(views)
    if views.ndim != 4:
        raise InputError(f"views must be shaped (element, tilt, y, x), got {views.shape}.")
    if not (np.isfinite(max_shift_px) and max_shift_px >= 0):
        raise InputError(f"max_shift_px must be a finite number >= 0, got {max_shift_px!r}.")
    if not np.isfinite(rotation_deg):
        raise InputError(f"rotation_deg must be a finite number, got {rotation_deg!r}.")
    rng = np.random.default_rng(seed)
    n = views.shape[1]
    shift_x = rng.uniform(-max_shift_px, max_shift_px, n)
    shift_y = rng.uniform(-max_shift_px, max_shift_px, n)
    moved = np.empty(views.shape, np.result_type(views.dtype, np.float32))
    for e in range(views.shape[0]):
        for t in range(n):
            v = views[e, t]
            if rotation_deg:
                v = ndimage.rotate(v, rotation_deg, reshape=False, order=1)
            moved[e, t] = ndimage.shift(v, (shift_y[t], shift_x[t]), order=1)
    return np.clip(moved, 0, None), shift_x, shift_y
