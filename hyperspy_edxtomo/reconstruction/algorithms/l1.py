"""L1: the paper's MBIR, min 1/2||Ax + b - y||^2 + lam ||x||_1 with x >= 0 (FISTA)."""

from traits.api import Bool, Range

from hyperspy_edxtomo.plugins.contract import ReconstructionAlgorithm
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.regularised import (
    AutoStrength,
    field_margin_trait,
    strength_trait,
)


class L1(AutoStrength, ReconstructionAlgorithm):
    """Sparsity-regularised least squares with the matched adjoint (FISTA)."""

    name = "l1"
    summary = "L1-regularised least squares (the paper's MBIR), non-negative (FISTA)"
    lam = strength_trait("L1")
    iterations = Range(1, 100_000, 200, desc="FISTA iterations")
    constrain = Bool(True, desc="non-negativity, enforced exactly in the proximal step")
    field_margin = field_margin_trait()
    quick_parameters = {"iterations": 100}

    def _solve(self, projector, y, lam, iterations, data_term="least_squares", background=None, return_info=False,
               start="zero", max_iterations=None, extend_to=None):
        # one start, no continuation: FISTA in the diagonal metric converges from zero at every strength
        # within its iterations (docs/benchmarks.rst)
        return solvers.l1(projector, y, lam, iterations, constrain=self.constrain, background=background,
                          return_info=return_info)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [L1]
