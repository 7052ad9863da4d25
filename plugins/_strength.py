"""What the regularised plugins (tv, l1) share: ``lam``, "auto" or a number."""

from traits.api import Enum, Range, Union

from hyperspy_edxtomo import solvers
from hyperspy_edxtomo.regularisation import choose_strength


def strength_trait(what):
    return Union(
        Enum("auto"),
        Range(0.0, None, exclude_low=True),
        default_value="auto",
        desc=f"{what} strength; 'auto' chooses it by count-splitting cross-validation on held-out counts",
    )


class AutoStrength:
    """Mixin: resolve ``lam="auto"`` once per element, then solve every batch.

    The class defines ``lam`` (:func:`strength_trait`), ``iterations`` and
    ``_solve(projector, y_cols, lam, iterations)``.
    """

    #: data term the strength is judged with (tv may switch to "poisson")
    data_term = "least_squares"
    #: the candidates are compared after at most this many iterations, on at
    #: most this many slices: the ranking settles long before convergence
    selection_iterations = 100
    selection_slices = 32

    def prepare(self, sinograms, projector, show_progressbar=False):
        if self.lam == "auto":
            its = min(self.iterations, self.selection_iterations)
            lam, table = choose_strength(
                lambda P, y, lam: self._solve(P, y, lam, its),
                sinograms,
                projector,
                data_term=self.data_term,
                max_slices=self.selection_slices,
            )
            self._chosen = {
                "lam": lam,
                "lam_selection": "count-splitting cross-validation",
                "lam_selection_iterations": its,
                "lam_table": table,
            }

    def reconstruct_slices(self, sinograms, projector):
        lam = self.chosen.get("lam", self.lam)
        y = solvers.sinograms_to_cols(sinograms, projector.device)
        return solvers.cols_to_slices(self._solve(projector, y, lam, self.iterations), projector.slice_shape)
