"""BM3D after an Anscombe transform (needs the optional package ``bm3d``)."""

import numpy as np
from traits.api import Range

from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.hookspecs import hookimpl


def anscombe(x):
    return 2.0 * np.sqrt(x + 3.0 / 8.0)


def inverse_anscombe(z):
    """Closed-form approximation of the exact unbiased inverse (Makitalo & Foi 2011)."""
    z = np.maximum(z, 1e-3)
    return 0.25 * z**2 + 0.25 * np.sqrt(1.5) / z - 11.0 / 8.0 / z**2 + 5.0 / 8.0 * np.sqrt(1.5) / z**3 - 1.0 / 8.0


class BM3D(Denoiser):
    """Anscombe transform (Poisson to unit-variance Gaussian), BM3D with
    sigma = ``sigma``, exact unbiased inverse."""

    name = "bm3d"
    summary = "BM3D on Anscombe-transformed maps (optional package 'bm3d')"
    assumes_counts = True
    sigma = Range(0.0, 100.0, 1.0, exclude_low=True, desc="noise level in the Anscombe domain (1 for Poisson data)")

    @staticmethod
    def available():
        try:
            import bm3d  # noqa: F401
        except ImportError:
            return False
        return True

    def denoise_counts(self, counts, context):
        try:
            import bm3d
        except ImportError:
            raise ImportError(
                "method='bm3d' needs the optional package 'bm3d' (pip install bm3d); it is not installed."
            ) from None
        out = np.empty_like(counts)
        for e in range(counts.shape[0]):
            for t in range(counts.shape[1]):
                z = anscombe(counts[e, t])
                out[e, t] = inverse_anscombe(bm3d.bm3d(z, sigma_psd=self.sigma))
        return DenoisingResult(np.clip(out, 0, None))


@hookimpl
def edxtomo_denoisers():
    return [BM3D]
