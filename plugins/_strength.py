"""What the regularised plugins (tv, l1) share: ``lam`` ("auto" or a number),
the data term that suits the maps, the background term and a convergence check."""

import numpy as np
from traits.api import Enum, Range, Union

from hyperspy_edxtomo import solvers
from hyperspy_edxtomo.errors import warn
from hyperspy_edxtomo.regularisation import _slab, choose_strength, select_criterion

#: the objective may still change by this fraction over the last half of the iterations
CONVERGENCE_TOL = 0.01


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
                desc="'auto': the Poisson likelihood for counts (also counts times a scale), least squares for "
                     "other maps; or 'least_squares' / 'poisson'")


class AutoStrength:
    """Mixin: per element, resolve the data term and ``lam="auto"`` once, check
    convergence on the brightest slices, then solve every batch.

    The class defines ``lam`` (:func:`strength_trait`), ``iterations`` and
    ``_solve(projector, y_cols, lam, iterations, data_term, background_cols,
    return_info=False)``; ``data_term`` (:func:`data_term_trait`) if it
    offers a choice, otherwise it solves least squares.
    """

    #: the background b of y ~ Poisson(A x + b) goes into the model
    accepts_background = True
    #: the candidates are compared after at most this many iterations, on at
    #: most this many slices: the ranking settles long before convergence
    selection_iterations = 100
    selection_slices = 32

    def _data_term(self, kind):
        chosen = getattr(self, "data_term", "least_squares")
        if chosen != "auto":
            return chosen
        return "poisson" if kind in ("counts", "scaled_counts") else "least_squares"

    def prepare(self, sinograms, projector, show_progressbar=False, background=None):
        _, kind, quantum = select_criterion(sinograms)
        data_term = self._data_term(kind)
        if data_term == "poisson" and np.any(np.asarray(sinograms) < 0):
            # a quasi-likelihood for any non-negative maps (e.g. denoised expected counts), but no likelihood
            # at all for negative values
            raise ValueError(f"{self.name}: data_term='poisson' needs maps >= 0; these hold negative values "
                             "(background-subtracted with negative='keep'?): use data_term='least_squares'.")
        # the Poisson likelihood of counts in disguise is that of the counts: solve on them
        unit = quantum if (data_term == "poisson" and quantum not in (None, 1.0)) else 1.0
        chosen = {"data_term": data_term, "data_kind": kind, "counts_quantum": None if unit == 1.0 else unit}
        lam = self.lam
        if lam == "auto":
            its = min(self.iterations, self.selection_iterations)
            lam, record = choose_strength(
                lambda P, y, lam, b: self._solve(P, y, lam, its, data_term, b),
                sinograms,
                projector,
                data_term=data_term,
                background=background,
                max_slices=self.selection_slices,
            )
            chosen.update(lam=lam, lam_selection=record, lam_selection_iterations=its)
        chosen["convergence"] = self._check_convergence(sinograms, background, projector, float(lam), data_term, unit)
        self._chosen = chosen

    def _check_convergence(self, sinograms, background, projector, lam, data_term, unit):
        """Solve the brightest slices at the chosen strength; record the convergence measure, warn when unmet."""
        sub, sub_b, start = _slab(sinograms, self.selection_slices, background)
        y = solvers.sinograms_to_cols(sub / unit, projector.device)
        b = None if sub_b is None else solvers.sinograms_to_cols(sub_b / unit, projector.device)
        _, info = self._solve(projector, y, lam, self.iterations, data_term, b, return_info=True)
        info = {**info, "iterations": int(self.iterations), "tolerance": CONVERGENCE_TOL,
                "measured_on_slices": [int(start), int(sub.shape[0])]}
        info["converged"] = bool(abs(info["relative_change"]) <= CONVERGENCE_TOL)
        if not info["converged"]:
            warn(
                f"{self.name} has not converged at lam={lam:.4g} after {self.iterations} iterations: its objective "
                f"still changed by {100 * info['relative_change']:.1f} % over the last half of them (tolerance "
                f"{100 * CONVERGENCE_TOL:.0f} %). Raise iterations."
            )
        return info

    def reconstruct_slices(self, sinograms, projector, background=None):
        chosen = self.chosen
        lam = chosen.get("lam", self.lam)
        data_term = chosen.get("data_term") or self._data_term(select_criterion(sinograms)[1])
        unit = chosen.get("counts_quantum") or 1.0
        y = solvers.sinograms_to_cols(np.asarray(sinograms) / unit, projector.device)
        b = None if background is None else solvers.sinograms_to_cols(np.asarray(background) / unit, projector.device)
        x = self._solve(projector, y, lam, self.iterations, data_term, b)
        return solvers.cols_to_slices(x, projector.slice_shape) * np.float32(unit)
