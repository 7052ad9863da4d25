"""Example hyperspy_edxtomo plugin: normalised (unfiltered) back-projection.

One module, one hookimpl, one algorithm. It is the worked example of
``docs/plugins.rst`` and is installed from ``tests/external_plugin`` by the
test suite to check that plugins of other packages are found.
"""

import numpy as np
from traits.api import Bool

from hyperspy_edxtomo.algorithms import ReconstructionAlgorithm
from hyperspy_edxtomo.hookspecs import hookimpl


class ExampleBackprojection(ReconstructionAlgorithm):
    """x = C A^T R y: back-projection, each ray divided by its length and
    each pixel by the sum of the weights of the rays through it.

    Without normalisation it is the plain back-projection ``A^T y``. The
    normalised one is the first SIRT iteration from zero: a constant object
    comes back exactly, in the units of the data per pixel.
    """

    name = "example_backprojection"
    summary = "Normalised back-projection (example plugin)"
    normalise = Bool(
        True, desc="divide by ray lengths and by the back-projection of ones (False: plain A^T y)"
    )

    def reconstruct_slices(self, sinograms, projector):
        # sinograms: float32 (B, n_tilts, n_x); result: (B, n_z, n_x)
        if not self.normalise:
            return projector.adjoint(sinograms)
        ray_length = projector.forward(np.ones(projector.slice_shape, np.float32))  # A 1
        weights = projector.adjoint(np.ones(projector.sinogram_shape, np.float32))  # A^T 1
        y = np.divide(sinograms, ray_length, out=np.zeros_like(sinograms), where=ray_length > 0)
        x = projector.adjoint(y)
        return np.divide(x, weights, out=np.zeros_like(x), where=weights > 0)


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [ExampleBackprojection]
