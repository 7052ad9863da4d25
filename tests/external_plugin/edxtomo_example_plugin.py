"""Example hyperspy_edxtomo plugin: normalised back-projection and a box-filter denoiser.

One module, two hooks. It is the worked example of ``docs/plugins.rst`` and
is installed from ``tests/external_plugin`` by the test suite to check that
plugins of other packages are found and that the contract they are written
against (``hyperspy_edxtomo.plugins``) is all they need.
"""

import numpy as np
from scipy import ndimage
from traits.api import Bool, Range

from hyperspy_edxtomo.plugins import (
    Denoiser,
    DenoisingResult,
    ReconstructionAlgorithm,
    hookimpl,
)


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

    def reconstruct_slices(self, sinograms, projector, background=None):
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


class ExampleBox(Denoiser):
    """Every map averaged over a square box; ``size=0`` picks the box from the counts."""

    name = "example_box"
    summary = "Box average (example plugin)"
    size = Range(0, 99, 3, desc="box width in pixels; 0: 3 px below 1 count per pixel, else 1 (no smoothing)")

    def denoise_counts(self, counts, context):
        # counts: float64 (element, tilt, y, x); the context names the elements, tilts, pixel size
        chosen = {}
        size = self.size
        if size == 0:
            size = 3 if counts.mean() < 1 else 1
            chosen = {"size_used": size, "pixel_size_nm": context.pixel_size_nm}
        out = ndimage.uniform_filter(counts, size=(1, 1, size, size), mode="reflect")
        return DenoisingResult(out, chosen=chosen)


@hookimpl
def edxtomo_denoisers():
    return [ExampleBox]
