"""Gaussian smoothing of every element map (a classical baseline), its width
given or chosen on the maps themselves."""

import numpy as np
from scipy import ndimage
from traits.api import Enum, Range, Union

from hyperspy_edxtomo.plugins.contract import Denoiser, DenoisingResult
from hyperspy_edxtomo.plugins.hookspecs import hookimpl

#: widths (pixels) that sigma="auto" chooses from
SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def blind_spot_smooth(maps, sigma):
    """Gaussian smoothing of each (element, tilt) map that leaves each pixel's own value out (renormalised)."""
    n = 8 * int(np.ceil(sigma)) + 1
    delta = np.zeros((n, n))
    delta[n // 2, n // 2] = 1
    own = ndimage.gaussian_filter(delta, sigma)[n // 2, n // 2]  # the kernel's centre weight
    x = np.asarray(maps, np.float64)
    return (ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="reflect") - own * x) / (1 - own)


def smooth(maps, sigma):
    """Each (element, tilt) map of ``maps`` convolved with a Gaussian of ``sigma`` pixels (reflecting edges)."""
    x = np.asarray(maps, np.float64)
    return x if sigma == 0 else ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="reflect")


def choose_sigma(maps, sigmas=SIGMAS):
    """The width whose blind-spot smoothing best predicts every pixel from its neighbours.

    A smoother that never sees the pixel it predicts cannot copy that
    pixel's noise: for noise independent from pixel to pixel (counts, also
    counts minus an independent background estimate) its squared error
    against the data is the error against the truth plus a constant, so the
    best width can be read off the data alone (Batson & Royer 2019,
    "Noise2Self"). Returns ``(sigma, {sigma: mean squared error})``.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.denoising.methods.gaussian import choose_sigma
    >>> yy, xx = np.mgrid[:64, :64]
    >>> blob = 20 * np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 200.0)
    >>> noisy = np.random.default_rng(0).poisson(np.broadcast_to(blob, (1, 4, 64, 64)))
    >>> sigma, scores = choose_sigma(noisy)
    >>> 1.0 <= sigma <= 6.0
    True
    """
    x = np.asarray(maps, np.float64)
    scores = {float(s): float(np.mean((blind_spot_smooth(x, s) - x) ** 2)) for s in sigmas}
    return min(scores, key=scores.get), scores


class Gaussian(Denoiser):
    """Each (element, tilt) map convolved with a Gaussian (reflecting edges)."""

    name = "gaussian"
    summary = "Gaussian filter of every map (width given, or chosen per element on the maps themselves)"
    sigma = Union(
        Range(0.0, 100.0),
        Enum("auto"),
        default_value=2.0,
        desc="standard deviation of the Gaussian in pixels; 'auto': per element, the width whose blind-spot "
             "version best predicts each pixel from its neighbours",
    )

    def denoise_counts(self, counts, context):
        elements, record = context.elements, {}
        if self.sigma == "auto":
            chosen = {el: choose_sigma(counts[e : e + 1]) for e, el in enumerate(elements)}
            record = {"sigma_used": {el: c[0] for el, c in chosen.items()},
                            "sigma_selection": {"criterion": "blind-spot squared error (Noise2Self)",
                                                "scores": {el: c[1] for el, c in chosen.items()}}}
            sigmas = [chosen[el][0] for el in elements]
        else:
            sigmas = [float(self.sigma)] * len(elements)
        out = np.empty_like(np.asarray(counts, np.float64))
        for e, s in enumerate(sigmas):
            out[e] = smooth(counts[e : e + 1], s)[0]
        return DenoisingResult(out, chosen=record)


@hookimpl
def edxtomo_denoisers():
    return [Gaussian]
