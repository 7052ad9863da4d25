"""NMF of image patches with Poisson normalisation (HyperSpy ``decomposition``).

Uses HyperSpy's own online robust NMF (``ORNMF``) so that scikit-learn is not needed.
"""

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

    def _decomposition_options(self):
        # ORNMF draws its initialisation from a generator of its own, seeded here
        return {"random_state": int(self.seed)}


@hookimpl
def edxtomo_denoisers():
    return [PatchNMF]
