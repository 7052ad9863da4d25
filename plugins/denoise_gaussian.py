"""Gaussian smoothing of every element map (a classical baseline)."""

from scipy import ndimage
from traits.api import Range

from hyperspy_edxtomo.denoisers import Denoiser
from hyperspy_edxtomo.hookspecs import hookimpl


class Gaussian(Denoiser):
    """Each (element, tilt) map convolved with a Gaussian (reflecting edges)."""

    name = "gaussian"
    summary = "Gaussian filter of every map"
    sigma = Range(0.0, 100.0, 2.0, desc="standard deviation of the Gaussian in pixels")

    def denoise_counts(self, counts, elements, show_progressbar=False):
        if self.sigma == 0:
            return counts.copy()
        return ndimage.gaussian_filter(counts, sigma=(0, 0, self.sigma, self.sigma), mode="reflect")


@hookimpl
def edxtomo_denoisers():
    return [Gaussian]
