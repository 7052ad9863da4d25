"""What the regularised algorithms (tv, l1, and two_step's MBIR) share: ``lam`` ("auto" or a number),
the data term that suits the maps, the background term and a convergence check."""

import logging

import numpy as np
from traits.api import Enum, Range, Union

from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.plugins.slices import batch_slices
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.strength import (
    brightest_slices,
    choose_strength,
    paired_gain,
    select_criterion,
)

_logger = logging.getLogger(__name__)

CONVERGENCE_TOL = solvers.CONVERGENCE_TOL
#: a batch's edge slice may differ from the solution without batches by this fraction of its maximum
HALO_TOL = 0.02
#: brightest slices the batches' halo is validated on
HALO_SLAB = 64


def strength_trait(what):
    return Union(
        Enum("auto"),
        Range(0.0, None, exclude_low=True),
        default_value="auto",
        desc=f"{what} strength; 'auto' chooses it by cross-validation on held-out counts (integer counts) or "
             "held-out views (any other maps)",
    )


def data_term_trait():
    return Enum("auto", *solvers.DATA_TERMS,
                desc="'auto': on counts (also counts times a scale) with lam='auto', the Poisson likelihood unless "
                     "least squares predicts held-out counts better by more than 2 standard errors; least squares "
                     "for other maps or a strength given as a number; or 'least_squares' / 'poisson'")


class AutoStrength:
    """Mixin: per element, resolve the data term and ``lam="auto"`` once, check
    convergence on the brightest slices, then solve every batch.

    The class defines ``lam`` (:func:`strength_trait`), ``iterations`` and
    ``_solve(projector, y_cols, lam, iterations, data_term, background_cols,
    return_info=False, start="auto")``; ``data_term`` (:func:`data_term_trait`) if it
    offers a choice, otherwise it solves least squares. ``start`` is the
    solver's start (:data:`~hyperspy_edxtomo.reconstruction.solvers.STARTS`):
    the convergence check on the brightest slices runs ``"auto"`` and every
    batch then gets the start that won there (``"start"`` in its info; none:
    ``"zero"``), so that all batches solve alike.
    """

    #: the background b of y ~ Poisson(A x + b) goes into the model
    accepts_background = True
    #: the candidates are solved with as many iterations as the reconstruction (at most this
    #: many): a strong regulariser far from convergence gives another volume, and the strength
    #: validated must be the one the reconstruction gets
    selection_iterations = 200
    #: ... on at most this many slices (the brightest), and at most a quarter of them
    selection_slices = 32

    def _slab_size(self, n_slices):
        return int(min(self.selection_slices, max(8, n_slices // 4)))

    def _data_terms(self, kind, negative):
        """The data terms to try: the one given, or for ``"auto"`` with ``lam="auto"`` on counts both
        (the held-out counts choose); least squares for other maps and for a strength given as a number."""
        given = getattr(self, "data_term", "least_squares")
        if given != "auto":
            if given == "poisson" and negative:
                # a quasi-likelihood for any non-negative maps (e.g. denoised expected counts), but no
                # likelihood at all for negative values
                raise InputError(f"{self.name}: data_term='poisson' needs maps >= 0; these hold negative values "
                                 "(background-subtracted with negative='keep'?): use data_term='least_squares'.")
            return [given]
        if self.lam == "auto" and kind in ("counts", "scaled_counts"):
            return ["poisson", "least_squares"]
        return ["least_squares"]

    def prepare(self, sinograms, context, background=None):
        projector = context.projector
        _, kind, quantum = select_criterion(sinograms)
        negative = bool(np.any(np.asarray(sinograms) < 0))
        terms = self._data_terms(kind, negative)
        notice = None
        if kind == "continuous" and getattr(self, "data_term", None) == "auto" and self.lam == "auto":
            # on counts the Poisson likelihood would have been tried: say why it is not
            notice = self._notice_not_counts(negative)
        its = min(self.iterations, self.selection_iterations)
        trials = []
        for data_term in terms:
            # the Poisson likelihood of counts in disguise is that of the counts: solve on them
            unit = quantum if (data_term == "poisson" and quantum not in (None, 1.0)) else 1.0
            lam, record = self.lam, None
            if lam == "auto":
                lam, record = choose_strength(
                    lambda P, y, lam, b, dt=data_term: self._solve(P, y, lam, its, dt, b),
                    sinograms,
                    projector,
                    data_term=data_term,
                    background=background,
                    seed=context.seed,
                    max_slices=self._slab_size(sinograms.shape[0]),
                )
            trials.append((min(record["scores"]) if record else 0.0, data_term, float(lam), record, unit))
        selection = None
        if len(trials) > 1:
            trials, selection = _choose_data_term(trials)
        score, data_term, lam, record, unit = trials[0]
        chosen = {"data_term": data_term, "data_kind": kind, "counts_quantum": None if unit == 1.0 else unit}
        if notice:
            chosen["notice"] = notice
        if selection:
            chosen["data_term_selection"] = selection
        if record is not None:
            chosen.update(lam=lam, lam_selection=record, lam_selection_iterations=its)
        chosen["convergence"] = self._check_convergence(sinograms, background, projector, lam, data_term, unit)
        batch = batch_slices(context, sinograms.shape[0])
        if self.slice_halo and sinograms.shape[0] > batch:
            chosen["slice_halo"] = self._check_halo(sinograms, background, projector, lam, data_term, unit,
                                                    chosen["convergence"]["start"], batch)
        self.chosen = chosen
        _logger.info("%s: data term %s, lam %s (%s)", self.name, data_term, lam,
                     "chosen on held-out data" if record is not None else "given")

    def _notice_not_counts(self, negative):
        """Warn that the maps are not counts, what is done instead and what would do better (the user may
        not know that background subtraction cost the Poisson model); returns the text for the record."""
        why = "they hold negative values" if negative else "their values are not whole counts (nor counts times a scale)"
        notice = (f"{self.name}: these maps are not X-ray counts ({why}): they are fitted by least squares, with a "
                  "strength chosen on held-out views. Raw counts with their background (get_element_maps() without "
                  "subtract_background, or edxtomo maps without --subtract-background) keep the Poisson model and "
                  "reconstruct better.")
        # one text per call, from the user's line: Python's default filter shows it once for all elements
        # (and not again for a later call from the same line); every element's record keeps it
        warn(notice)
        return notice

    def _check_convergence(self, sinograms, background, projector, lam, data_term, unit):
        """Solve the brightest slices at the chosen strength; record the convergence measure, warn when unmet."""
        sub, sub_b, start = brightest_slices(sinograms, self._slab_size(sinograms.shape[0]), background)
        y = solvers.sinograms_to_cols(sub / unit, projector.device)
        b = None if sub_b is None else solvers.sinograms_to_cols(sub_b / unit, projector.device)
        _, info = self._solve(projector, y, lam, self.iterations, data_term, b, return_info=True)
        info = {"start": "zero", **info, "iterations": int(self.iterations), "tolerance": CONVERGENCE_TOL,
                "measured_on_slices": [int(start), int(sub.shape[0])]}
        info["converged"] = bool(info["converged"] and abs(info["relative_change"]) <= CONVERGENCE_TOL)
        if not info["converged"]:
            last = info.get("objective_last_iterate", info["objective"])
            why = (f"its objective still changed by {100 * info['relative_change']:.1f} % over the last half of them"
                   if abs(info["relative_change"]) > CONVERGENCE_TOL else
                   f"its last iterate is {100 * (last / info['objective'] - 1):.1f} % above the best one, returned")
            warn(f"{self.name} has not converged at lam={lam:.4g} after {self.iterations} iterations: {why} "
                 f"(tolerance {100 * CONVERGENCE_TOL:.0f} %, {info['start']} start). Raise iterations.")
        return info

    def _check_halo(self, sinograms, background, projector, lam, data_term, unit, start, batch):
        """The halo of slices each batch borrows from its neighbours (a 3D regulariser couples them),
        validated on the :data:`HALO_SLAB` brightest slices: solved whole, then cut ``halo`` slices beyond
        the slice a quarter in, that slice must match within :data:`HALO_TOL` of the maximum. The halo
        doubles from ``slice_halo`` until it does (a strong TV couples slices far apart); where no halo
        up to the batch's size that the slab can show does, the batches borrow as many slices as they
        hold (the most they can).
        Sets ``slice_halo``; returns the record."""
        sub, sub_b, first = brightest_slices(sinograms, HALO_SLAB, background)
        y = solvers.sinograms_to_cols(sub / unit, projector.device)
        b = None if sub_b is None else solvers.sinograms_to_cols(sub_b / unit, projector.device)
        full = self._solve(projector, y, lam, self.iterations, data_term, b, start=start)
        n, j = y.shape[1], y.shape[1] // 4
        scale = max(float(full.max()), 1e-30)
        halo, tried = int(self.trait("slice_halo").default), []  # the class's, not one widened before
        record = {"tolerance": HALO_TOL, "measured_on_slices": [int(first), int(n)], "tried": tried}
        while j + halo + 1 < n and halo <= batch:
            keep = slice(0, j + halo + 1)
            cut = self._solve(projector, y[:, keep].contiguous(), lam, self.iterations, data_term,
                              None if b is None else b[:, keep].contiguous(), start=start)
            tried.append({"halo": halo, "difference": float((cut[:, j] - full[:, j]).abs().max()) / scale})
            if tried[-1]["difference"] <= HALO_TOL:
                self.slice_halo = halo
                return {"halo": halo, "validated": True, **record}
            halo *= 2
        # a batch borrows at most as many slices as it holds
        self.slice_halo = int(batch)
        why = (f"a batch edge still differs by {100 * tried[-1]['difference']:.0f} % of the maximum with a halo of "
               f"{tried[-1]['halo']} slices" if tried else f"{n} slices are too few to check" if halo <= batch
               else f"a batch of {batch} slices cannot borrow {halo}")
        record["reason"] = why
        warn(f"{self.name}: at lam={lam:.4g} the batches of {batch} slices may show seams ({why}); each borrows "
             f"{self.slice_halo} slices on each side (up to 3x the batch's memory). One batch (batch_size= the "
             "number of slices) has none.")
        return {"halo": self.slice_halo, "validated": False, **record}

    def reconstruct_slices(self, sinograms, projector, background=None):
        chosen = self.chosen
        lam = chosen.get("lam", self.lam)
        data_term = chosen["data_term"]
        unit = chosen.get("counts_quantum") or 1.0
        y = solvers.sinograms_to_cols(np.asarray(sinograms) / unit, projector.device)
        b = None if background is None else solvers.sinograms_to_cols(np.asarray(background) / unit, projector.device)
        x = self._solve(projector, y, lam, self.iterations, data_term, b, start=chosen["convergence"]["start"])
        return solvers.cols_to_slices(x, projector.slice_shape) * np.float32(unit)


def _choose_data_term(trials):
    """Counts are Poisson: the Poisson likelihood stays unless least squares predicts the same held-out
    counts better by more than two standard errors of the paired difference over the views (one
    count split is noisy; a gain within its noise is no gain). Returns (trials, best first; record)."""
    by = {t[1]: t for t in trials}
    views = {}
    for name, t in by.items():
        record = t[3]
        views[name] = np.asarray(record["fold_scores"][record["candidates"].index(record["chosen"])], float)
    gain, se = paired_gain(views["poisson"], views["least_squares"])
    winner = "least_squares" if gain > 2 * se else "poisson"
    record = {
        "criterion": "held-out Poisson deviance at each data term's best strength, paired over the views",
        "scores": {name: float(v.sum()) for name, v in views.items()},
        "strengths": {name: t[2] for name, t in by.items()},
        "least_squares_gain": gain,
        "standard_error": se,
        "reason": (f"least squares predicts the held-out counts better by {gain:.1f} +- {se:.1f}" if winner ==
                   "least_squares" else f"least squares gains {gain:.1f} +- {se:.1f}, not more than 2 standard "
                   "errors: the Poisson likelihood of counts stays"),
    }
    return [by[winner]] + [t for n, t in by.items() if n != winner], record
