"""PCA of image patches with Poisson normalisation (HyperSpy ``decomposition``)."""

from hyperspy_edxtomo.denoising.methods.patches import PatchDecomposition
from hyperspy_edxtomo.plugins.hookspecs import hookimpl


class PatchPCA(PatchDecomposition):
    """Patches of all elements decomposed by SVD after Poisson normalisation;
    the first ``components`` components rebuild the maps."""

    name = "pca"
    summary = "PCA (SVD, Poisson-normalised) of image patches via HyperSpy decomposition"
    algorithm = "SVD"


@hookimpl
def edxtomo_denoisers():
    return [PatchPCA]
