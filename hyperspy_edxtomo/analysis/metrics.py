"""Scores of a reconstruction against a known volume (simulated phantoms).

Used by the benchmarks and tests; all per element, on arrays ``(z, y, x)``.
"""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError


def _pair(reconstruction, truth):
    x = np.asarray(reconstruction, np.float64).ravel()
    t = np.asarray(truth, np.float64).ravel()
    if x.shape != t.shape:
        raise InputError(f"Reconstruction and truth differ in size: {np.shape(reconstruction)} vs {np.shape(truth)}.")
    return x, t


def ls_scale(reconstruction, truth):
    """The factor ``a`` minimising ``||a x - t||``: reconstructions are in
    counts, phantoms in relative density."""
    x, t = _pair(reconstruction, truth)
    xx = float(x @ x)
    return float(x @ t) / xx if xx > 0 else 0.0


def pearson(reconstruction, truth):
    """Pearson correlation coefficient (1 is perfect)."""
    x, t = _pair(reconstruction, truth)
    if x.std() == 0 or t.std() == 0:
        return 0.0
    return float(np.corrcoef(x, t)[0, 1])


def nrmse(reconstruction, truth):
    """``||a x - t|| / ||t||`` with the least-squares scale ``a`` (0 is perfect)."""
    x, t = _pair(reconstruction, truth)
    a = ls_scale(x, t)
    return float(np.linalg.norm(a * x - t) / max(np.linalg.norm(t), 1e-12))


def otsu_threshold(values):
    """Otsu's threshold of ``values`` (scikit-image's, 256 bins)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(values, np.float64).ravel()))


def dice(reconstruction, truth, level=0.5):
    """Dice overlap of the reconstruction's and the truth's regions (1 is perfect).

    ``level`` a number: the regions above ``level`` x the truth's maximum,
    the reconstruction scaled by :func:`ls_scale` first; ``"otsu"``: each
    above its own Otsu threshold (no scale needed).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.analysis.metrics import dice
    >>> t = np.zeros((8, 8)); t[2:6, 2:6] = 1
    >>> dice(3 * t, t), dice(3 * t, t, level="otsu")
    (1.0, 1.0)
    """
    x, t = _pair(reconstruction, truth)
    if level == "otsu":
        mx, mt = x > otsu_threshold(x), t > otsu_threshold(t)
    else:
        thr = level * t.max()
        mx, mt = ls_scale(x, t) * x > thr, t > thr
    total = mx.sum() + mt.sum()
    return float(2 * (mx & mt).sum() / total) if total else 1.0


def scores(reconstruction, truth):
    """``{"pearson", "nrmse", "dice"}`` of one element."""
    return {"pearson": pearson(reconstruction, truth), "nrmse": nrmse(reconstruction, truth),
            "dice": dice(reconstruction, truth)}
