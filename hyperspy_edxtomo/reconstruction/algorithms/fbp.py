"""FBP: filtered back-projection, weighted for non-uniform tilt steps."""

import numpy as np
from traits.api import Bool, Enum

from hyperspy_edxtomo.plugins.contract import ReconstructionAlgorithm
from hyperspy_edxtomo.plugins.hookspecs import hookimpl
from hyperspy_edxtomo.reconstruction.filters import (
    FILTERS,
    angular_weights,
    ramp_filter,
)


class FBP(ReconstructionAlgorithm):
    """Each view is ramp-filtered along x, weighted by the angle it covers, and back-projected."""

    name = "fbp"
    summary = "Filtered back-projection (FBP)"
    filter = Enum(*FILTERS, desc="window applied to the ramp filter ('none': plain back-projection)")
    constrain = Bool(False, desc="clip negative values to 0")

    def reconstruct_slices(self, sinograms, projector):
        n, response = ramp_filter(projector.n_x, self.filter)
        spec = np.fft.fft(sinograms, n=n, axis=-1) * response
        q = np.real(np.fft.ifft(spec, axis=-1))[..., : projector.n_x]
        if self.filter != "none":
            q *= angular_weights(projector.tilts_deg)[None, :, None]
        x = projector.adjoint(q.astype(np.float32))
        if self.constrain:
            np.maximum(x, 0, out=x)
        return x


@hookimpl
def edxtomo_reconstruction_algorithms():
    return [FBP]
