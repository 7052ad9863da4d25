"""NMF of image patches with Poisson normalisation (HyperSpy ``decomposition``).

Uses HyperSpy's own online robust NMF (``ORNMF``) so that scikit-learn is not needed.
"""

from traits.api import Range

from hyperspy_edxtomo.hookspecs import hookimpl

from ._patches import PatchDecomposition


class PatchNMF(PatchDecomposition):
    """Patches of all elements factorised by non-negative matrix factorisation
    (HyperSpy's ORNMF) after Poisson normalisation."""

    name = "nmf"
    summary = "NMF (HyperSpy ORNMF, Poisson-normalised) of image patches via HyperSpy decomposition"
    algorithm = "ORNMF"
    seed = Range(0, 2**31 - 1, 0, desc="seed of the NMF initialisation")

    def _decomposition_kwargs(self):
        import numpy as np

        np.random.seed(self.seed)  # ORNMF draws its initialisation from numpy's global generator
        return {}


@hookimpl
def edxtomo_denoisers():
    return [PatchNMF]
