"""Scores of a reconstruction against a known volume (simulated phantoms).

Used by the benchmarks and tests; all per element, on arrays ``(z, y, x)``.
"""

import numpy as np


def _pair(reconstruction, truth):
    x = np.asarray(reconstruction, np.float64).ravel()
    t = np.asarray(truth, np.float64).ravel()
    if x.shape != t.shape:
        raise ValueError(f"Reconstruction and truth differ in size: {np.shape(reconstruction)} vs {np.shape(truth)}.")
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


def dice(reconstruction, truth, level=0.5):
    """Dice overlap of the regions above ``level`` x the truth's maximum, the
    reconstruction scaled by :func:`ls_scale` first (1 is perfect)."""
    x, t = _pair(reconstruction, truth)
    thr = level * t.max()
    a = ls_scale(x, t)
    mx, mt = a * x > thr, t > thr
    total = mx.sum() + mt.sum()
    return float(2 * (mx & mt).sum() / total) if total else 1.0


def scores(reconstruction, truth):
    """``{"pearson", "nrmse", "dice"}`` of one element."""
    return {"pearson": pearson(reconstruction, truth), "nrmse": nrmse(reconstruction, truth),
            "dice": dice(reconstruction, truth)}
