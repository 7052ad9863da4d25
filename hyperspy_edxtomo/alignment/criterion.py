"""The held-out criterion: does an alignment predict views it never saw better than another?

:class:`HeldOutCriterion` reconstructs the other views moved by a candidate
alignment and predicts each held-out view; :meth:`HeldOutCriterion.compare`
gives the paired difference of two candidates over the folds and its
standard error, and ``better`` when it is below ``-ACCEPT_SE`` standard
errors (the rule ``auto`` accepts a stage by). :func:`alignment_score` is the
same in one call. :func:`rotation_standard_error` is the count noise of the
common-line rotation, from count-split halves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.alignment.estimators import (
    estimate_axis,
    estimate_com,
    sirt_reproject,
)
from hyperspy_edxtomo.alignment.result import Alignment
from hyperspy_edxtomo.alignment.transform import warp_binned
from hyperspy_edxtomo.alignment.views import prepare_views
from hyperspy_edxtomo.base.counts import count_split, is_counts, poisson_deviance
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.reconstruction.field import check_field_margin, default_field_margin
from hyperspy_edxtomo.reconstruction.projector import largest_useful_margin

__all__ = ["Loss", "LOSSES", "ACCEPT_SE", "ROTATION_SE_WARN_DEG", "Prediction", "HeldOutCriterion",
           "alignment_score", "rotation_standard_error"]

#: the losses of the held-out criterion (``"auto"``: chosen from the data)
Loss = Literal["auto", "poisson", "quasi_poisson", "least_squares"]
LOSSES = get_args(Loss)
#: a candidate is better when it lowers the held-out criterion by more than this many standard errors
ACCEPT_SE = 2.0
#: standard error (degrees) of an estimated rotation above which align() warns
ROTATION_SE_WARN_DEG = 1.0


def _as_4d(a, what):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise InputError(f"{what} must be shaped (tilt, y, x) or (element, tilt, y, x), got {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{what} contain NaN or infinite values.")
    return a


@dataclass
class Prediction:
    """A candidate's held-out predictions in the raw (unaligned) frame of the binned views
    (:meth:`HeldOutCriterion.predict`): ``pred`` (element, tilt, y, x) and the pixels it
    predicts, ``valid`` (tilt, y, x)."""

    rotation_deg: float | np.ndarray
    shifts_y: np.ndarray
    shifts_x: np.ndarray
    pred: np.ndarray
    valid: np.ndarray


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
    field_margin : None or int
        Raw pixels the reconstructions' slices extend beyond the views on
        each side (rounded up to binned pixels). None:
        :func:`~hyperspy_edxtomo.reconstruction.field.default_field_margin`
        of the binned width, a quarter of it. Counts of a particle cut by the
        field's edge, or entering it at high tilt, then have voxels to go to;
        in slices as wide as the views they are spread over the field, and the
        predictions favour the alignment that hides them (docs/benchmarks.rst,
        "Material outside the field of view").

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment import HeldOutCriterion
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

    def __init__(self, views, tilts, targets=None, background=None, target_background=None, bin_to: int = 64,
                 iterations: int = 100, sigma: float = 1.0, n_folds: int | None = None, loss: Loss = "auto",
                 field_margin: int | None = None):
        views = _as_4d(views, "views")
        E, T, ny, nx = views.shape
        tilts = np.asarray(tilts, float).ravel()
        if tilts.size != T:
            raise InputError(f"{tilts.size} tilt angles for {T} views.")
        if T < 3:
            raise InputError(f"The held-out criterion needs at least 3 views, got {T}.")
        same = targets is None
        targets = views if same else _as_4d(targets, "targets")
        if targets.shape != views.shape:
            raise InputError(f"targets are shaped {targets.shape} but the views {views.shape}.")
        bg = None if background is None else _as_4d(background, "background")
        if bg is not None and bg.shape != views.shape:
            raise InputError(f"background is shaped {bg.shape} but the views {views.shape}.")
        if same:
            tbg = bg
        else:
            if bg is not None and target_background is None:
                raise InputError("With targets and a background, give target_background too (the expected "
                                 "background of the targets; for a count-split half p of the counts, p * background).")
            tbg = None if target_background is None else _as_4d(target_background, "target_background")
            if tbg is not None and tbg.shape != views.shape:
                raise InputError(f"target_background is shaped {tbg.shape} but the views {views.shape}.")
        if field_margin is not None:
            check_field_margin(field_margin, tilts, nx)  # raw pixels against the raw width
        if loss not in LOSSES:
            raise InputError(f"Unknown loss {loss!r}: choose one of {LOSSES}.")
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
            raise InputError(f"View(s) {empty} hold no counts (above the background): remove them before aligning.")
        train = binned(signal) / (dose / dose.mean())[None, :, None, None]  # every view at the mean dose
        if sigma:
            train = ndimage.gaussian_filter(train, (0, 0, sigma, sigma))
        self._train = train
        self._targets = binned(targets)
        self._tbg = None if tbg is None else binned(tbg)
        self.iterations = int(iterations)
        if field_margin is None:
            self.field_margin = default_field_margin(mx, largest_useful_margin(tilts, mx))
        else:
            self.field_margin = int(np.ceil(field_margin / b))
        order = np.argsort(tilts)
        interior = order[1:-1]
        k = max(1, min(len(interior), int(n_folds or 12)))
        self.folds = [np.sort(interior[i::k]) for i in range(k)]

    @property
    def description(self) -> str:
        return (f"held-out views (SIRT {self.iterations} of the other views, binned {self.b}x{self.b}, slices "
                f"{self.field_margin} binned px wider than the views on each side, {len(self.folds)} folds, "
                f"{self.loss} loss, views outside the lowest and highest tilt)")

    def predict(self, rotation_deg=0.0, shifts_y=None, shifts_x=None) -> Prediction:
        """Predictions of every held-out view for one candidate: the rotation (degrees, one for all
        views or one per view, e.g. a manual alignment) and the shifts (raw pixels) of
        :func:`~hyperspy_edxtomo.alignment.transform.transform_view`."""
        E, T, my, mx = self._train.shape
        sy = np.zeros(T) if shifts_y is None else np.asarray(shifts_y, float)
        sx = np.zeros(T) if shifts_x is None else np.asarray(shifts_x, float)
        if sy.shape != (T,) or sx.shape != (T,):
            raise InputError(f"Give one shift per view ({T}), got {sy.shape} and {sx.shape}.")
        rots = np.asarray(rotation_deg, float)
        if rots.ndim == 0:
            rots = np.full(T, float(rots))
        if rots.shape != (T,) or not np.all(np.isfinite(rots)):
            raise InputError(f"Give one finite rotation, or one per view ({T}), got {np.shape(rotation_deg)}.")
        rot = rots[0] if np.all(rots == rots[0]) else rots
        b, raw = self.b, self.raw_shape
        aligned = np.empty_like(self._train)
        field = np.ones((my, mx), bool)
        ones = np.ones((my, mx))
        for t in range(T):
            for e in range(E):
                aligned[e, t] = warp_binned(self._train[e, t], rots[t], sy[t], sx[t], b, raw)
            field &= warp_binned(ones, rots[t], sy[t], sx[t], b, raw, order=1) > 0.999
        np.clip(aligned, 0, None, out=aligned)
        pred = np.zeros((E, T, my, mx))
        valid = np.zeros((T, my, mx), bool)
        every = np.arange(T)
        for fold in self.folds:
            train = np.setdiff1d(every, fold)
            sino = aligned[:, train].transpose(0, 2, 1, 3).reshape(E * my, len(train), mx)
            rep = sirt_reproject(sino, self.tilts[train], self.tilts[fold], self.iterations, self.field_margin)
            rep = rep.reshape(E, my, len(fold), mx).transpose(0, 2, 1, 3)
            for j, t in enumerate(fold):
                for e in range(E):
                    pred[e, t] = warp_binned(rep[e, j], rots[t], sy[t], sx[t], b, raw, inverse=True)
                valid[t] = warp_binned(field.astype(float), rots[t], sy[t], sx[t], b, raw, inverse=True,
                                        order=1) > 0.999
        np.clip(pred, 0, None, out=pred)
        return Prediction(rot, sy, sx, pred, valid)

    def _view_loss(self, e, t, m, p):
        y = self._targets[e, t][m]
        bg = self._tbg[e, t][m] if self._tbg is not None else np.zeros_like(y)
        p = p[m]
        if self.loss == "least_squares":
            r = y - bg
            pp = float(p @ p)
            s = float(r @ p) / pp if pp > 0 else 0.0
            return float(((r - s * p) ** 2).sum())
        floor = 0.01 * max(float(y.mean()), 1e-12)
        net = max(float(y.sum() - bg.sum()) - floor * y.size, 0.0)
        sp = float(p.sum())
        mu = (net / sp) * p if sp > 0 else np.zeros_like(p)
        return poisson_deviance(y, mu + bg + floor)

    def fold_losses(self, prediction: Prediction, mask: np.ndarray | None = None) -> np.ndarray:
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

    def compare(self, a: Prediction, b: Prediction) -> dict:
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


def alignment_score(views, tilts, rotation_deg: float = 0.0, shifts_y=None, shifts_x=None,
                    reference: Alignment | dict | tuple | None = None, targets=None, background=None,
                    target_background=None, bin_to: int = 64, iterations: int = 100, sigma: float = 1.0,
                    n_folds: int | None = None, loss: Loss = "auto") -> dict:
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
        The candidate, as ``align`` stores it (``rotation_deg``,
        ``shift_y_px``, ``shift_x_px``); None shifts are zeros.
    reference : None, Alignment, dict or tuple
        What the candidate is compared with: an
        :class:`~hyperspy_edxtomo.alignment.result.Alignment`, ``(rotation_deg,
        shifts_y, shifts_x)`` or a dict with the keys of ``align``'s
        record (a missing key: no rotation, no shifts). None: the identity
        (doing nothing).
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
    >>> from hyperspy_edxtomo.alignment import alignment_score
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
    elif isinstance(reference, Alignment):
        ref = (reference.rotation_deg, reference.shift_y_px, reference.shift_x_px)
    elif isinstance(reference, dict):
        # a partial record is allowed here (no rotation, no shifts), so it is read with defaults
        ref = (reference.get("rotation_deg", 0.0), reference.get("shift_y_px"), reference.get("shift_x_px"))
    else:
        ref = tuple(reference)
    out = crit.compare(crit.predict(rotation_deg, shifts_y, shifts_x), crit.predict(*ref))
    out["criterion"] = crit.description
    return out


def rotation_standard_error(counts: np.ndarray, tilts: np.ndarray, b: int, sigma: float, n_splits: int = 4,
                            seed: int = 0) -> float | None:
    """Standard error (degrees) of the common-line rotation
    (:func:`~hyperspy_edxtomo.alignment.estimators.estimate_axis`) on ``counts``
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
        r = []
        for h in count_split(ints, 0.5, rng):
            sm = prepare_views(h, b, sigma)
            sy, sx = estimate_com(sm, tilts)
            r.append(estimate_axis(sm, tilts, sy, sx)[0])
        diffs.append(r[0] - r[1])
    return float(np.sqrt(np.mean(np.square(diffs)) / 4))
