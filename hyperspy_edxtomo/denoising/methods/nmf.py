"""NMF of image patches with Poisson normalisation (HyperSpy ``decomposition``).

Uses HyperSpy's own online robust NMF (``ORNMF``) so that scikit-learn is not needed.
"""

import contextlib

import numpy as np
from traits.api import Range

from hyperspy_edxtomo.denoising.methods.patches import PatchDecomposition
from hyperspy_edxtomo.plugins.hookspecs import hookimpl


class PatchNMF(PatchDecomposition):
    """Patches of all elements factorised by non-negative matrix factorisation
    (HyperSpy's ORNMF) after Poisson normalisation."""

    name = "nmf"
    summary = "NMF (HyperSpy ORNMF, Poisson-normalised) of image patches via HyperSpy decomposition"
    algorithm = "ORNMF"
    seed = Range(0, 2**31 - 1, 0, desc="seed of the NMF initialisation")

    seeded = True

    @contextlib.contextmanager
    def _random_state(self):
        # ORNMF draws its initialisation from numpy's global generator: seed it for the
        # decomposition only, and give the user's generator its state back afterwards
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@hookimpl
def edxtomo_denoisers():
    return [PatchNMF]
