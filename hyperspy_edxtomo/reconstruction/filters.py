"""Filters of filtered back-projection: the windowed ramp and the angular weights.

Shared by the ``fbp`` algorithm and by the deep algorithms' final FBP.
"""

import numpy as np

__all__ = ["FILTERS", "ramp_filter", "angular_weights"]

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hamming", "hann", "none")


def ramp_filter(n_x, filter_name):
    """Frequency response (length of the padded FFT) of the ramp times a window."""
    n = int(2 ** np.ceil(np.log2(2 * n_x)))
    f = np.fft.fftfreq(n)  # cycles per pixel, |f| <= 0.5
    # the ramp from its band-limited spatial kernel (Kak & Slaney, eq. 3.61):
    # right at low frequencies, where sampling |f| directly loses a few percent
    k = np.fft.fftfreq(n, 1.0 / n)
    h = np.zeros(n)
    h[0] = 0.25
    odd = (k % 2) == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    ramp = np.real(np.fft.fft(h))
    w = np.pi * f / 0.5 / 2  # pi f / (2 f_nyquist)
    window = {
        "ram-lak": np.ones_like(f),
        "shepp-logan": np.sinc(f / 0.5 / 2),
        "cosine": np.cos(w),
        "hamming": 0.54 + 0.46 * np.cos(2 * w),
        "hann": 0.5 + 0.5 * np.cos(2 * w),
        "none": None,
    }[filter_name]
    return n, (np.ones_like(f) if window is None else ramp * window)


def angular_weights(tilts_deg):
    """Angle (radians) each view stands for: half the gaps to its neighbours."""
    t = np.deg2rad(np.asarray(tilts_deg, float))
    order = np.argsort(t)
    ts = t[order]
    if ts.size == 1:
        return np.array([np.pi])
    gaps = np.diff(ts)
    w = np.empty_like(ts)
    w[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    w[0], w[-1] = gaps[0], gaps[-1]
    out = np.empty_like(w)
    out[order] = w
    return out
