"""Moving average of every element map: the paper's 11 x 11 pixel baseline."""

from scipy import ndimage
from traits.api import Range

from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.hookspecs import hookimpl


class MovingAverage(Denoiser):
    """Each (element, tilt) map averaged over a ``size`` x ``size`` window."""

    name = "moving_average"
    summary = "Moving average (box filter) of every map, 11 x 11 pixels as in Han et al."
    size = Range(1, 255, 11, desc="width of the square window in pixels")

    def denoise_counts(self, counts, context):
        return DenoisingResult(ndimage.uniform_filter(counts, size=(1, 1, self.size, self.size), mode="reflect"))


@hookimpl
def edxtomo_denoisers():
    return [MovingAverage]
