"""Regularisation strength without ground truth, for any maps.

The strength that best predicts data the reconstruction did not see wins;
which data are held out depends on what the maps are (:func:`~hyperspy_edxtomo.base.counts.data_kind`):

``"count_split"`` (integer counts, and counts in disguise: normalised maps
    whose values are whole multiples of one count)
    Each pixel's counts are split binomially into a fit part (80 %) and a
    held-out part, two independent Poisson data sets of the same object. The
    volume is reconstructed from the fit part scaled back to the full dose
    (and the background ``b`` with it), and scored by the Poisson deviance of
    the held-out counts under ``(1 - fraction) (A x + b)``.
``"held_out_views"`` (any other maps: background-subtracted, smoothed,
    quantified)
    Interior views are held out in interleaved folds (the first and last
    views always stay in: predicting them would extrapolate into the missing
    wedge); the volume is reconstructed from the other views, with the
    strength scaled by the fraction of views kept so that data term and
    regulariser keep their balance, and scored by the weighted squared error
    of the held-out views, each pixel weighted by the inverse of its smoothed
    measured value (quasi-Poisson: variance proportional to the mean; the
    weights do not depend on the candidate, and the ranking does not depend on
    the maps' scale). Noise correlated within a view (smoothed maps) is
    independent across views, so this criterion holds for them too.

Nothing is tuned by hand, nothing needs a ground truth; the criterion, the
candidates and their scores are returned for the metadata.
"""

import numpy as np
import torch
from scipy import ndimage

from hyperspy_edxtomo.base.counts import (
    as_counts,
    count_split,
    counts_quantum,
    data_kind,
    net_of_background,
    poisson_deviance,
)
from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.reconstruction.projector import Projector
from hyperspy_edxtomo.reconstruction.solvers import sinograms_to_cols

CRITERIA = ("count_split", "held_out_views")
#: share of the counts the candidates are fitted on. The fit part, scaled to the full dose, is
#: 1 / fraction times noisier than the data, and the strength that suits noisier data is larger:
#: with half the counts the choice sat up to 2x above the best on the development phantoms
#: (datasets.quantum_dot_element_maps, nanorod_phantom); with 0.8 it was the best of a 0.35-2x
#: scan in 7 of 8 of them. The held-out 20 % score every candidate alike (paired).
FIT_FRACTION = 0.8
#: candidate strengths relative to :func:`reference_strength`
DEFAULT_GRID = tuple(np.logspace(-3, 1, 5))
#: fewest counts (in the brightest slices) a count split is tried on; below, the strength is
#: FALLBACK_RELATIVE times the reference, said in a warning and recorded
MIN_SPLIT_COUNTS = 20
#: the centre (log scale) of DEFAULT_GRID: the prior the grid itself states, nothing fitted
FALLBACK_RELATIVE = 0.1
#: folds of held-out views
VIEW_FOLDS = 3
#: fewest views held-out-view selection works with (two kept ends plus a fold of each kind)
MIN_VIEWS = 5


def brightest_slices(sinograms, max_slices, background=None):
    """The ``max_slices`` contiguous slices holding the most signal: ``(slices, their background, first)``."""
    n = sinograms.shape[0]
    if n <= max_slices:
        return sinograms, background, 0
    signal = net_of_background(sinograms, background)
    per_slice = np.abs(signal).sum(axis=(1, 2))
    window = np.convolve(per_slice, np.ones(max_slices), mode="valid")
    start = int(np.argmax(window))
    sl = slice(start, start + max_slices)
    return sinograms[sl], None if background is None else background[sl], start


def reference_strength(sinograms, projector, data_term="least_squares"):
    """A natural scale for the strength: typical ``|A^T y|`` per voxel.

    The Poisson likelihood's gradient ``A^T (1 - y / A x)`` does not grow
    with the dose: its scale is the mean column sum of ``A``; least squares
    scales with the data too.
    """
    A = projector.matrix[0]
    col = np.asarray(A.sum(axis=0)).ravel()
    scale = float(np.mean(col[col > 0]))
    if data_term == "least_squares":
        nz = np.abs(sinograms[sinograms != 0])
        scale *= float(nz.mean()) if nz.size else 1.0
    return scale


def select_criterion(sinograms):
    """``(criterion, kind, quantum)`` for one element's sinograms: count
    splitting for counts (``quantum`` is the value of one count for counts in
    disguise, else 1), held-out views otherwise."""
    kind = data_kind(sinograms)
    if kind == "counts":
        return "count_split", kind, 1.0
    if kind == "scaled_counts":
        return "count_split", kind, counts_quantum(sinograms)
    return "held_out_views", kind, None


def view_folds(n_tilts, folds=VIEW_FOLDS):
    """Held-out view indices of each fold (interleaved interior views, by tilt order)."""
    interior = np.arange(1, n_tilts - 1)
    return [interior[k::folds] for k in range(folds) if interior[k::folds].size]


def sub_projector(projector, keep):
    """The projector of the views ``keep`` only."""
    return Projector(projector.tilts_deg[keep], projector.n_x, projector.n_z,
                     axis_offset_px=projector.axis_offset_px, cuda=projector.cuda,
                     field_margin=projector.field_margin)


def view_weights(views, sigma=2.0):
    """Inverse of the smoothed measured views (quasi-Poisson variance), floored."""
    smooth = ndimage.gaussian_filter(np.abs(np.asarray(views, np.float64)), (0, 0, sigma))
    floor = max(float(smooth[smooth > 0].mean()) if np.any(smooth > 0) else 1.0, 1e-30) * 0.1
    return 1.0 / np.maximum(smooth, floor)


class _CountSplitScorer:
    """Poisson deviance of held-out counts."""

    criterion = "count_split"

    def __init__(self, sinograms, projector, background, fraction, seed):
        self.projector = projector
        self.fraction = fraction
        fit, held = count_split(sinograms, fraction, seed)
        device = projector.device
        self.y_fit = sinograms_to_cols(fit / fraction, device)
        self.b = None if background is None else sinograms_to_cols(background, device)
        self.held = sinograms_to_cols(held, device).cpu().numpy()

    def __call__(self, solve, lam):
        with torch.no_grad():
            x = solve(self.projector, self.y_fit, lam, self.b)
            mu = self.projector.fp_cols(x)
            if self.b is not None:
                mu = mu + self.b
            mu = mu.cpu().numpy() * (1 - self.fraction)
        # one deviance per view (rows are (view, column) pairs): paired comparisons get an uncertainty
        n_t = self.projector.n_tilts
        per_row = poisson_deviance(self.held, mu, axis=1)  # (n_tilts * n_x,)
        return per_row.reshape(n_t, -1).sum(axis=1).tolist()


class _HeldOutViewScorer:
    """Weighted squared error of held-out views, one score per fold."""

    criterion = "held_out_views"

    def __init__(self, sinograms, projector, background):
        n_t = sinograms.shape[1]
        if n_t < MIN_VIEWS:
            raise InputError(f"held-out views need at least {MIN_VIEWS} views, got {n_t}")
        signal = sinograms if background is None else sinograms - background
        self.folds = []
        device = projector.device
        for held in view_folds(n_t):
            keep = np.setdiff1d(np.arange(n_t), held)
            b = None if background is None else sinograms_to_cols(background[:, keep], device)
            self.folds.append({
                "keep_fraction": keep.size / n_t,
                "fit": (sub_projector(projector, keep), sinograms_to_cols(sinograms[:, keep], device), b),
                "predict": sub_projector(projector, held),
                "target": np.asarray(signal[:, held], np.float64),
                "weights": view_weights(signal[:, held]),
            })

    def __call__(self, solve, lam):
        scores = []
        with torch.no_grad():
            for f in self.folds:
                P, y, b = f["fit"]
                # fewer views make a smaller data term: the same balance needs a smaller strength
                x = solve(P, y, lam * f["keep_fraction"], b)
                pred = f["predict"].fp_cols(x).cpu().numpy()  # (held tilts * n_x, B)
                target = f["target"]  # (B, held tilts, n_x)
                pred = pred.T.reshape(target.shape)
                scores.append(float((f["weights"] * (target - pred) ** 2).sum()))
        return scores


class ScoreTable:
    """Held-out scores of candidates, computed once each: ``table(candidate)`` is the mean score,
    ``table.folds[candidate]`` the score per view or fold."""

    def __init__(self, score, progress=None):
        self.score, self.progress, self.folds = score, progress, {}

    def __call__(self, candidate):
        if candidate not in self.folds:
            self.folds[candidate] = np.asarray(self.score(candidate), float)
            if self.progress is not None:
                self.progress()
        return float(self.folds[candidate].mean())

    def curve(self, unit=1.0):
        """``candidates`` (ascending, times ``unit``), ``scores`` and ``fold_scores``, for the records."""
        keys = sorted(self.folds)
        return {"candidates": [float(k * unit) for k in keys], "scores": [float(self.folds[k].mean()) for k in keys],
                "fold_scores": [self.folds[k].tolist() for k in keys]}


def search_log_grid(table, grid, refine, edges=True):
    """The candidate of lowest score: ``grid`` first; while the best is at an edge (``edges``), a tenth or
    ten times it (twice at most: the optimum may lie beyond the grid); then ``refine`` rounds of the
    geometric means between the best and its neighbours. Candidates <= 0 scored beforehand (e.g. "none")
    take no part."""
    for r in grid:
        table(float(r))

    def positive():
        return sorted(k for k in table.folds if k > 0)

    if edges:
        for _ in range(2):
            best = min(positive(), key=table)
            if best == positive()[0]:
                table(best / 10)
            elif best == positive()[-1]:
                table(best * 10)
            else:
                break
    for _ in range(int(refine)):
        ordered = positive()
        i = ordered.index(min(ordered, key=table))
        lo, best, hi = ordered[max(i - 1, 0)], ordered[i], ordered[min(i + 1, len(ordered) - 1)]
        for r in (np.sqrt(lo * best), np.sqrt(best * hi)):
            table(float(r))
    return min(positive(), key=table)


def choose_strength(
    solve,
    sinograms,
    projector,
    data_term="least_squares",
    background=None,
    criterion=None,
    fraction=FIT_FRACTION,
    seed=0,
    max_slices=48,
    grid=DEFAULT_GRID,
    refine=3,
    progress=None,
    strengths=None,
):
    """Pick the strength that best predicts held-out data.

    Parameters
    ----------
    solve : callable
        ``solve(projector, y_cols, lam, background_cols) -> x_cols`` (torch,
        column layout; ``background_cols`` may be None).
    sinograms : ndarray
        All slices of one element, ``(n_slices, n_tilts, n_x)``: counts or
        any other maps.
    projector : Projector
    data_term : {"least_squares", "poisson"}
        The data term the candidates are solved with (sets the scale of the
        strengths: :func:`reference_strength`).
    background : None or ndarray
        Expected background counts, shaped like ``sinograms``.
    criterion : None, "count_split" or "held_out_views"
        None: count splitting for counts (also counts in disguise), held-out
        views otherwise (:func:`select_criterion`).
    fraction, seed
        Count splitting: the fit part's share of the counts (see
        :data:`FIT_FRACTION`), and the seed.
    max_slices : int
        The selection runs on this many contiguous slices holding the most signal.
    grid : sequence of float
        Candidate strengths relative to :func:`reference_strength`.
    refine : int
        Rounds of extra candidates between the best and its neighbours.
    progress : callable, optional
        Called after every candidate.
    strengths : sequence of float, optional
        Score these strengths (on the scale of the data given) instead of
        searching ``grid``: the same held-out data score other settings at
        a strength already chosen (paired comparisons).

    Returns
    -------
    lam : float
        The chosen strength, on the scale of the full data.
    record : dict
        ``criterion``, ``data_kind``, ``candidates`` (strengths, ascending),
        ``scores`` (the mean held-out score of each, lower is better),
        ``fold_scores`` (per held-out view for count splitting, per fold of
        views otherwise), ``chosen``, ``slices`` (first slice and count),
        ``reason``.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.reconstruction import solvers
    >>> from hyperspy_edxtomo.reconstruction.projector import Projector
    >>> from hyperspy_edxtomo.reconstruction.strength import choose_strength
    >>> P = Projector(np.linspace(-60, 60, 9), n_x=16)
    >>> disc = np.zeros((4, 16, 16), np.float32); disc[:, 5:11, 5:11] = 1
    >>> views = np.random.default_rng(0).poisson(2 * P.forward(disc)).astype(np.float32)
    >>> solve = lambda P, y, lam, b: solvers.tv(P, y, lam, 30, background=b)
    >>> lam, record = choose_strength(solve, views, P, refine=0)
    >>> record["criterion"], lam in record["candidates"]
    ('count_split', True)
    """
    sinograms = np.asarray(sinograms, np.float32)
    background = None if background is None else np.asarray(background, np.float32)
    if background is not None and background.shape != sinograms.shape:
        raise InputError(f"The background is shaped {background.shape}, the sinograms {sinograms.shape}.")
    auto, kind, quantum = select_criterion(sinograms)
    criterion = auto if criterion is None else criterion
    if criterion not in CRITERIA:
        raise InputError(f"Unknown criterion {criterion!r}: choose one of {CRITERIA}.")
    if criterion == "count_split" and kind == "continuous":
        raise InputError("Count splitting needs integer counts; these maps are not counts: use 'held_out_views'.")
    sub, sub_b, start = brightest_slices(sinograms, max_slices, background)
    ref = reference_strength(sub, projector, data_term)
    scale = 1.0
    if criterion == "count_split":
        if quantum not in (None, 1.0):
            # counts in disguise: split the counts, report strengths on the maps' scale
            sub, sub_b, scale = as_counts(sub, quantum), None if sub_b is None else sub_b / quantum, quantum
            ref = reference_strength(sub, projector, data_term)
        if sub.sum() < MIN_SPLIT_COUNTS:
            # nothing to validate on: the reference strength (the middle of the grid), said and recorded
            lam = float(FALLBACK_RELATIVE * ref * (scale if data_term == "least_squares" else 1.0))
            reason = (f"too few counts ({int(sub.sum())}, under {MIN_SPLIT_COUNTS}) in the brightest slices to "
                      f"validate a strength by count splitting: {lam:.4g}, the centre of the candidates, is used")
            if strengths is None:  # scoring given strengths: nothing was chosen, nothing to say
                warn(f"lam='auto': {reason}; give lam a number to choose another.")
            return lam, {"criterion": "none", "data_kind": kind, "counts_quantum": None, "candidates": [lam],
                         "scores": [float("nan")], "fold_scores": [[]], "chosen": lam,
                         "slices": [int(start), int(sub.shape[0])], "reason": reason}
        scorer = _CountSplitScorer(sub, projector, sub_b, fraction, seed)
    else:
        scorer = _HeldOutViewScorer(sub, projector, sub_b)
    table = ScoreTable(lambda rel: scorer(solve, rel * ref), progress)
    # strengths on the scale of the data given (Poisson: independent of the scale)
    unit = ref * (scale if data_term == "least_squares" else 1.0)
    if strengths is None:
        best = search_log_grid(table, grid, refine)
    else:
        best = min((float(lam) / unit for lam in strengths), key=table)
    ordered = sorted(table.folds)
    record = {
        "criterion": criterion,
        "data_kind": kind,
        "counts_quantum": None if criterion != "count_split" or scale == 1.0 else float(scale),
        **table.curve(unit),
        "chosen": float(best * unit),
        "slices": [int(start), int(sub.shape[0])],
        "reason": ("lowest Poisson deviance of held-out counts" if criterion == "count_split"
                   else f"lowest weighted squared error of held-out views ({len(scorer.folds)} folds)"),
    }
    if strengths is None and best in (ordered[0], ordered[-1]):
        record["reason"] += "; the best candidate is at the edge of the range tried"
    return float(best * unit), record
