"""SIRT: simultaneous iterative reconstruction, optionally non-negative."""

from traits.api import Bool, Range

from hyperspy_edxtomo.plugins.contract import ReconstructionAlgorithm
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.reconstruction import solvers


class SIRT(ReconstructionAlgorithm):
    """x <- x + C A^T R (y - A x), R and C the inverse row and column sums of A."""

    name = "sirt"
    summary = "Simultaneous iterative reconstruction technique (SIRT)"
    iterations = Range(1, 100_000, 50, desc="number of iterations")
    constrain = Bool(True, desc="clip negative values to 0 after every iteration (non-negativity)")

    def reconstruct_slices(self, sinograms, projector):
        y = solvers.sinograms_to_cols(sinograms, projector.device)
        x = solvers.sirt(projector, y, self.iterations, constrain=self.constrain)
        return solvers.cols_to_slices(x, projector.slice_shape)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [SIRT]
