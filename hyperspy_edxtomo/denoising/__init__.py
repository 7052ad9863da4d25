"""Stage: denoising element maps (``maps.denoise``, ``maps.denoise_deep``); methods are plugins."""

from hyperspy_edxtomo.denoising.api import (
    denoise,
    denoise_deep,
    get_denoiser,
    list_denoisers,
)

__all__ = ["denoise", "denoise_deep", "get_denoiser", "list_denoisers"]
