"""Signs of damage in a spectrum image that its reader cannot see.

Formats without a checksum (TIA ``.ser``) read damaged bytes as counts
without a word. A flipped byte of a count becomes one channel of one pixel
holding 255, 65,280 or 4,278,190,080 counts while the channels beside it
hold none. Real X-rays never do that where the channels are narrower than
the detector's resolution: every line then spreads over several channels,
so the channels beside one with many counts hold many too. Coarser
channels (rebinned spectra) and the lowest energies (the zero-energy
strobe peak, the narrowest lines) are not judged.
"""

from typing import NamedTuple

import numpy as np

__all__ = ["SPIKE_MIN_COUNTS", "SPIKE_RATIO", "MAX_CHANNEL_KEV", "MIN_ENERGY_KEV", "Spikes", "scan_spectrum_image",
           "single_channel_spikes", "energy_axis_keV", "scan_dictionary"]

#: a channel of one pixel holding at least this many counts ...
SPIKE_MIN_COUNTS = 64
#: ... and at least this many times the counts of each neighbouring channel is not X-rays. A line at
#: least 2 channels wide (FWHM) gives each neighbour of its peak channel >= 0.4 of its counts: with
#: >= 64 counts at the peak, Poisson chance of both neighbours at <= 1 count is below 1e-20.
SPIKE_RATIO = 64
#: channels up to this wide (keV) are judged: the narrowest lines of an EDX detector (C K, about
#: 50-60 eV FWHM at the best resolution) are then at least one channel wide, and every line above
#: 1 keV (>= 70 eV) more than two
MAX_CHANNEL_KEV = 0.025
#: channels below this energy (keV) are not judged: the zero-energy strobe peak can be narrower
MIN_ENERGY_KEV = 0.2
#: rows (pixels) handled at once: bounded memory on large spectrum images
_ROWS = 4096


class Spikes(NamedTuple):
    """The single-channel spikes of a spectrum image: how many, the counts they hold, the largest."""

    number: int = 0
    counts: float = 0.0
    largest: float = 0.0

    def __add__(self, other):
        return Spikes(self[0] + other[0], self[1] + other[1], max(self[2], other[2]))


def _spikes_of_rows(rows):
    rows = np.asarray(rows, np.int64)
    c, left, right = rows[:, 1:-1], rows[:, :-2], rows[:, 2:]
    spike = (c >= SPIKE_MIN_COUNTS) & (left * SPIKE_RATIO <= c) & (right * SPIKE_RATIO <= c)
    if not spike.any():
        return Spikes()
    held = c[spike]
    return Spikes(int(spike.sum()), float(held.sum(dtype=np.float64)), float(held.max()))


def scan_spectrum_image(data, channel_keV=None, offset_keV=0.0):
    """The total counts and the single-channel spikes of a spectrum image, in one pass over its data.

    Parameters
    ----------
    data : numpy or dask array
        Energy on the last axis; dask data are read one block of whole
        spectra at a time (bounded memory, each block read once).
    channel_keV, offset_keV : float, optional
        The energy axis. Channels wider than :data:`MAX_CHANNEL_KEV` are not
        judged, nor those below :data:`MIN_ENERGY_KEV`. None: every channel
        is judged.

    Returns
    -------
    total : float or None
        The sum of the data; None for non-numeric data.
    spikes : Spikes
        Judged for integer data only (float data are processed spectra, not
        a vendor file's counts).

    Examples
    --------
    >>> import numpy as np
    >>> si = np.zeros((2, 2, 50), np.uint32)
    >>> si[0, 0, 10:15] = [30, 90, 120, 80, 20]        # an X-ray line: several channels
    >>> si[1, 1, 30] = 65280                           # a flipped byte
    >>> scan_spectrum_image(si)
    (65620.0, Spikes(number=1, counts=65280.0, largest=65280.0))
    """
    kind = np.dtype(data.dtype).kind
    if kind not in "biuf":
        return None, Spikes()
    n = data.shape[-1] if data.ndim else 0
    first = None  # the first channel judged; None: none is
    if kind in "iu" and n >= 3:
        first = 0
        if channel_keV is not None:
            first = (int(np.clip(np.ceil((MIN_ENERGY_KEV - offset_keV) / channel_keV), 0, n))
                     if 0 < channel_keV <= MAX_CHANNEL_KEV else n)
        if n - first < 3:
            first = None
    if data.ndim == 0:
        blocks = [data]
    elif hasattr(data, "compute"):
        blocks = (b.compute() for b in data.reshape(-1, n).rechunk({0: _ROWS, 1: -1}).to_delayed().ravel())
    else:
        flat = np.asarray(data).reshape(-1, n)
        blocks = (flat[start : start + _ROWS] for start in range(0, flat.shape[0], _ROWS))
    total, spikes = 0.0, Spikes()
    for block in blocks:
        total += float(np.sum(block, dtype=np.float64))
        if first is not None:
            spikes = spikes + _spikes_of_rows(block[:, first:])
    return total, spikes


def single_channel_spikes(data, channel_keV=None, offset_keV=0.0):
    """The :class:`Spikes` of :func:`scan_spectrum_image` (same parameters).

    Examples
    --------
    >>> import numpy as np
    >>> si = np.zeros((1, 50), np.uint8)
    >>> si[0, 30] = 200
    >>> single_channel_spikes(si)
    Spikes(number=1, counts=200.0, largest=200.0)
    """
    return scan_spectrum_image(data, channel_keV, offset_keV)[1]


def energy_axis_keV(scale, offset, units):
    """``(channel width, offset)`` in keV of an energy axis in eV or keV; None for other units."""
    factor = {"kev": 1.0, "ev": 1e-3}.get(str(units).strip().lower())
    if factor is None:
        return None
    return float(scale) * factor, float(offset) * factor


def scan_dictionary(d):
    """:func:`scan_spectrum_image` of a reader's dictionary (``data`` and ``axes``), or None when its last
    axis is not an energy axis in eV or keV (images, unknown units)."""
    axes = d.get("axes") or []
    if not axes or axes[-1].get("navigate", False):
        return None
    energy = energy_axis_keV(axes[-1].get("scale", 1.0), axes[-1].get("offset", 0.0), axes[-1].get("units", ""))
    if energy is None:
        return None
    return scan_spectrum_image(d["data"], *energy)
