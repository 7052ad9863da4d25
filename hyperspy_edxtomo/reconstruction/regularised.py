"""What the regularised algorithms (tv, l1, and two_step's MBIR) share: ``lam`` ("auto" or a number),
the data term that suits the maps, the background term, the field margin and a convergence check."""

import logging

import numpy as np
from traits.api import Enum, Range, Union

from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.base.validation import paired_gain
from hyperspy_edxtomo.plugins.slices import batch_slices
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.field import check_field_margin, choose_field_margin, default_field_margin
from hyperspy_edxtomo.reconstruction.halo import HALO_SLAB, validate_halo
from hyperspy_edxtomo.reconstruction.strength import (
    brightest_slices,
    choose_strength,
    select_criterion,
)

_logger = logging.getLogger(__name__)

CONVERGENCE_TOL = solvers.CONVERGENCE_TOL


def strength_trait(what):
    return Union(
        Enum("auto"),
        Range(0.0, None, exclude_low=True),
        default_value="auto",
        desc=f"{what} strength; 'auto' chooses it by cross-validation on held-out counts (integer counts) or "
             "held-out views (any other maps)",
    )


def max_iterations_trait():
    return Union(
        Enum("auto"),
        Range(1, None),
        default_value="auto",
        desc="while the objective still changes by more than 0.5 % over the last half of the iterations, they "
             f"double, up to this many; 'auto': {solvers.CONTINUE_UP_TO}x iterations; = iterations: never more",
    )


def field_margin_trait():
    return Union(
        Enum("auto"),
        Range(0, None),
        default_value="auto",
        desc="pixels the slices extend beyond the views on each side in x, for material outside the field of view "
             "(particles cut by its edge, or turning into it at high tilt); the volume returned is the field's. "
             "'auto': a quarter of the views' width (at most what any view sees into) where it predicts held-out "
             "data better by more than 2 standard errors and 0.5 % of the score, else 0",
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
    return_info=False, start="auto", max_iterations=None)``; ``data_term``
    (:func:`data_term_trait`) if it offers a choice, otherwise it solves least
    squares; ``max_iterations`` (:func:`max_iterations_trait`) if its solver
    continues while unconverged. ``start`` is the solver's start
    (:data:`~hyperspy_edxtomo.reconstruction.solvers.STARTS`): the
    convergence check on the brightest slices runs ``"auto"``, continuing up
    to ``max_iterations``, and every batch then gets the start that won there
    (``"start"`` in its info; none: ``"zero"``) and the iterations it ran, so
    that all batches solve alike. ``field_margin`` (:func:`field_margin_trait`)
    if its slices may extend beyond the views: ``"auto"`` keeps the margin of
    :func:`~hyperspy_edxtomo.reconstruction.field.default_field_margin` only
    where held-out data show a gain at the chosen strength, then chooses the
    data term and strength again on the wider slices; the batches solve on
    them and return the field's part.
    """

    #: the background b of y ~ Poisson(A x + b) goes into the model
    accepts_background = True
    #: the candidates are solved with as many iterations as the reconstruction (at most this
    #: many): a strong regulariser far from convergence gives another volume, and the strength
    #: validated must be the one the reconstruction gets
    selection_iterations = 200
    #: ... on at most this many slices (the brightest), and at most a quarter of them
    selection_slices = 32

    def _iterations_cap(self, iterations):
        """The most iterations a run of ``iterations`` (``self.iterations``, or the candidates' fewer) may
        continue to (:func:`max_iterations_trait`, in proportion: ``max_iterations=iterations`` never
        continues, candidates included)."""
        cap = solvers.iterations_cap(getattr(self, "max_iterations", None), self.iterations)
        return int(max(iterations, cap * iterations // self.iterations))

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
        margin = getattr(self, "field_margin", 0)
        P0 = context.projector
        if margin != "auto":
            check_field_margin(margin, P0.tilts_deg, P0.n_x, P0.n_z, P0.axis_offset_px)
        projector = P0.widened(0 if margin == "auto" else margin)
        _, kind, quantum = select_criterion(sinograms)
        negative = bool(np.any(np.asarray(sinograms) < 0))
        terms = self._data_terms(kind, negative)
        notice = None
        if kind == "continuous" and getattr(self, "data_term", None) == "auto" and self.lam == "auto":
            # on counts the Poisson likelihood would have been tried: say why it is not
            notice = self._notice_not_counts(negative)
        its = min(self.iterations, self.selection_iterations)

        def held_out(P, data_term, strengths=None):
            """choose_strength on the slices ``P`` (a search, or the scores of ``strengths``)."""
            def solve(P, y, lam, b):
                return self._solve(P, y, lam, its, data_term, b, max_iterations=self._iterations_cap(its))

            return choose_strength(solve, sinograms, P, data_term=data_term, background=background, seed=context.seed,
                                   max_slices=self._slab_size(sinograms.shape[0]), strengths=strengths)

        def select(P):
            """The data term and strength on the slices ``P``: the best trial first, and the data term's record."""
            trials = []
            for data_term in terms:
                # the Poisson likelihood of counts in disguise is that of the counts: solve on them
                unit = quantum if (data_term == "poisson" and quantum not in (None, 1.0)) else 1.0
                lam, record = self.lam, None
                if lam == "auto":
                    lam, record = held_out(P, data_term)
                trials.append((min(record["scores"]) if record else 0.0, data_term, float(lam), record, unit))
            return _choose_data_term(trials) if len(trials) > 1 else (trials, None)

        trials, selection = select(projector)
        score, data_term, lam, record, unit = trials[0]
        margin_record = None
        if margin == "auto":
            margin, margin_record = self._choose_field_margin(held_out, projector, data_term, lam, record)
            _logger.info("%s: field margin %d: %s", self.name, margin, margin_record["reason"])
            if margin:
                # the strength and data term validated are those the wider slices get
                margin_record.update(lam_without_margin=lam, data_term_without_margin=data_term)
                projector = projector.widened(margin)
                if self.lam == "auto":
                    trials, selection = select(projector)
                    score, data_term, lam, record, unit = trials[0]
        chosen = {"data_term": data_term, "data_kind": kind, "counts_quantum": None if unit == 1.0 else unit}
        if notice:
            chosen["notice"] = notice
        if selection:
            chosen["data_term_selection"] = selection
        chosen["field_margin"] = projector.field_margin
        if margin_record:
            chosen["field_margin_selection"] = margin_record
        if record is not None:
            chosen.update(lam=lam, lam_selection=record, lam_selection_iterations=its,
                          lam_selection_max_iterations=self._iterations_cap(its))
        chosen["convergence"] = self._check_convergence(sinograms, background, projector, lam, data_term, unit)
        batch = batch_slices(context, sinograms.shape[0])
        if self.slice_halo and sinograms.shape[0] > batch:
            chosen["slice_halo"] = self._check_halo(sinograms, background, projector, lam, data_term, unit,
                                                    chosen["convergence"], batch)
        self.chosen = chosen
        _logger.info("%s: data term %s, lam %s (%s)", self.name, data_term, lam,
                     "chosen on held-out data" if record is not None else "given")

    @staticmethod
    def _choose_field_margin(held_out, projector, data_term, lam, record):
        """:func:`~hyperspy_edxtomo.reconstruction.field.choose_field_margin` at the chosen strength, on the
        held-out data the strength was chosen on (its scores reused where the search made them)."""
        def score(m):
            try:
                _, r = held_out(projector.widened(m), data_term, strengths=[lam])
            except InputError:  # nothing can be held out (e.g. too few views): no validation
                return []
            return r["fold_scores"][0]

        narrow = None
        if record is not None and record["criterion"] != "none":
            narrow = record["fold_scores"][record["candidates"].index(record["chosen"])]
        return choose_field_margin(score, default_field_margin(projector.n_x, projector.largest_useful_margin()),
                                   narrow)

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
        cap = self._iterations_cap(self.iterations)
        _, info = self._solve(projector, y, lam, self.iterations, data_term, b, return_info=True, max_iterations=cap)
        # the iterations run (more than asked where the run had to continue), the most it could
        info = {"start": "zero", "iterations": int(self.iterations), **info, "max_iterations": cap,
                "tolerance": CONVERGENCE_TOL, "measured_on_slices": [int(start), int(sub.shape[0])]}
        info["converged"] = bool(info["converged"] and abs(info["relative_change"]) <= CONVERGENCE_TOL)
        if not info["converged"]:
            last = info.get("objective_last_iterate", info["objective"])
            why = (f"its objective still changed by {100 * info['relative_change']:.1f} % over the last half of them"
                   if abs(info["relative_change"]) > CONVERGENCE_TOL else
                   f"its last iterate is {100 * (last / info['objective'] - 1):.1f} % above the best one, returned")
            warn(f"{self.name} has not converged at lam={lam:.4g} after {info['iterations']} iterations: {why} "
                 f"(tolerance {100 * CONVERGENCE_TOL:.0f} %, {info['start']} start). Raise max_iterations.")
        return info

    def _check_halo(self, sinograms, background, projector, lam, data_term, unit, convergence, batch):
        """The halo of slices each batch borrows (:func:`~hyperspy_edxtomo.reconstruction.halo.validate_halo`
        on the :data:`~hyperspy_edxtomo.reconstruction.halo.HALO_SLAB` brightest slices, from the class's
        ``slice_halo``, not one widened by an earlier ``prepare``), solved as the batches are
        (``convergence``: the start and iterations of the convergence check, repeated exactly). Sets
        ``slice_halo``; returns the record."""
        sub, sub_b, first = brightest_slices(sinograms, HALO_SLAB, background)
        y = solvers.sinograms_to_cols(sub / unit, projector.device)
        b = None if sub_b is None else solvers.sinograms_to_cols(sub_b / unit, projector.device)
        start, its = convergence["start"], convergence["iterations"]

        def solve(keep):
            return self._solve(projector, y[:, keep].contiguous(), lam, self.iterations, data_term,
                               None if b is None else b[:, keep].contiguous(), start=start, extend_to=its)

        halo, record = validate_halo(solve, y.shape[1], int(self.trait("slice_halo").default), batch, self.name,
                                     lam)
        self.slice_halo = halo
        return {**record, "measured_on_slices": [int(first), int(y.shape[1])]}

    def reconstruct_slices(self, sinograms, projector, background=None):
        chosen = self.chosen
        projector = projector.widened(chosen["field_margin"])
        lam = chosen.get("lam", self.lam)
        data_term = chosen["data_term"]
        unit = chosen.get("counts_quantum") or 1.0
        y = solvers.sinograms_to_cols(np.asarray(sinograms) / unit, projector.device)
        b = None if background is None else solvers.sinograms_to_cols(np.asarray(background) / unit, projector.device)
        # as the convergence check solved: its start, its iterations repeated exactly (all batches solve alike)
        conv = chosen["convergence"]
        x = self._solve(projector, y, lam, self.iterations, data_term, b, start=conv["start"],
                        extend_to=conv["iterations"])
        return projector.crop(solvers.cols_to_slices(x, projector.slice_shape)) * np.float32(unit)


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
