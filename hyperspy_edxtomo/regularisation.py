"""Regularisation strength without ground truth: count-splitting cross-validation.

Each pixel's counts are split binomially into a fit part and a held-out part
(two independent Poisson data sets of the same object). The volume is
reconstructed from the fit part, scaled back to the full dose, for a range of
strengths; the strength whose forward projection best predicts the held-out
counts (Poisson deviance) wins. Nothing is tuned by hand, nothing needs a
ground truth.
"""

import numpy as np
import torch

from .solvers import count_split, poisson_deviance, sinograms_to_cols


def _slab(sinograms, max_slices):
    """The ``max_slices`` contiguous slices holding the most counts."""
    n = sinograms.shape[0]
    if n <= max_slices:
        return sinograms
    per_slice = sinograms.sum(axis=(1, 2))
    window = np.convolve(per_slice, np.ones(max_slices), mode="valid")
    start = int(np.argmax(window))
    return sinograms[start : start + max_slices]


def reference_strength(sinograms, projector, data_term="least_squares"):
    """A natural scale for the strength: typical |A^T y| per voxel."""
    A = projector.matrix[0]
    col = np.asarray(A.sum(axis=0)).ravel()
    scale = float(np.mean(col[col > 0]))
    if data_term == "least_squares":
        nz = sinograms[sinograms > 0]
        scale *= float(nz.mean()) if nz.size else 1.0
    return scale


def choose_strength(
    solve,
    sinograms,
    projector,
    data_term="least_squares",
    fraction=0.5,
    seed=0,
    max_slices=48,
    grid=np.logspace(-3, 1, 5),
    refine=3,
    progress=None,
):
    """Pick the strength that best predicts held-out counts.

    Parameters
    ----------
    solve : callable
        ``solve(projector, y_cols, lam) -> x_cols`` (torch, column layout).
    sinograms : ndarray
        All slices of one element, ``(n_slices, n_tilts, n_x)``, integer counts.
    grid : array
        Candidate strengths relative to :func:`reference_strength`.
    refine : int
        Extra candidates between the best grid point and its neighbours.

    Returns
    -------
    lam : float
        The chosen strength, on the scale of the full data.
    table : list of (float, float)
        Every candidate tried and its held-out Poisson deviance.
    """
    sub = _slab(np.asarray(sinograms), max_slices)
    if sub.sum() < 20:
        raise ValueError(
            f"Too few counts ({int(sub.sum())}) to choose the strength by count splitting: give lam a number."
        )
    fit, held = count_split(sub, fraction, seed)
    device = projector.device
    y_fit = sinograms_to_cols(fit / fraction, device)
    held_cols = sinograms_to_cols(held, device).cpu().numpy()
    ref = reference_strength(sub, projector, data_term)
    scores = {}

    def score(rel):
        if rel not in scores:
            with torch.no_grad():
                x = solve(projector, y_fit, rel * ref)
                mu = projector.fp_cols(x).cpu().numpy() * (1 - fraction)
            scores[rel] = poisson_deviance(held_cols, mu)
            if progress is not None:
                progress()
        return scores[rel]

    rel = list(np.asarray(grid, float))
    for r in rel:
        score(r)
    # the best at the edge of the grid: the optimum may lie beyond it
    for _ in range(2):
        best = min(scores, key=scores.get)
        if best == min(scores):
            score(best / 10)
        elif best == max(scores):
            score(best * 10)
        else:
            break
    for _ in range(int(refine)):
        ordered = sorted(scores)
        i = ordered.index(min(scores, key=scores.get))
        lo = ordered[max(i - 1, 0)]
        hi = ordered[min(i + 1, len(ordered) - 1)]
        best = ordered[i]
        # the geometric midpoints on each side of the best
        for r in (np.sqrt(lo * best), np.sqrt(best * hi)):
            if r not in scores:
                score(float(r))
    best = min(scores, key=scores.get)
    table = [(float(r * ref), float(scores[r])) for r in sorted(scores)]
    return float(best * ref), table
