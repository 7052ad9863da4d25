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

import numpy as np

__all__ = ["SPIKE_MIN_COUNTS", "SPIKE_RATIO", "MAX_CHANNEL_KEV", "MIN_ENERGY_KEV", "Spikes", "single_channel_spikes",
           "energy_axis_keV", "spikes_of_dictionary"]

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


class Spikes(tuple):
    """``(number, counts they hold, largest)`` of the single-channel spikes of a spectrum image."""

    __slots__ = ()

    def __new__(cls, number=0, counts=0.0, largest=0.0):
        return super().__new__(cls, (int(number), float(counts), float(largest)))

    number = property(lambda self: self[0])
    counts = property(lambda self: self[1])
    largest = property(lambda self: self[2])

    def __add__(self, other):
        return Spikes(self[0] + other[0], self[1] + other[1], max(self[2], other[2]))


def _spikes_of_rows(rows):
    rows = np.asarray(rows, np.int64)
    c, left, right = rows[:, 1:-1], rows[:, :-2], rows[:, 2:]
    spike = (c >= SPIKE_MIN_COUNTS) & (left * SPIKE_RATIO <= c) & (right * SPIKE_RATIO <= c)
    if not spike.any():
        return Spikes()
    held = c[spike]
    return Spikes(spike.sum(), held.sum(dtype=np.float64), held.max())


def single_channel_spikes(data, channel_keV=None, offset_keV=0.0):
    """Count the isolated one-channel spikes of an integer spectrum image (energy on the last axis).

    Parameters
    ----------
    data : numpy or dask array
        Counts, energy on the last axis. Float data (processed spectra, not
        a vendor file's counts) are not checked: ``Spikes()`` is returned.
    channel_keV, offset_keV : float, optional
        The energy axis. Channels wider than :data:`MAX_CHANNEL_KEV` are not
        judged (``Spikes()``), nor those below :data:`MIN_ENERGY_KEV`. None:
        every channel is judged.

    Returns
    -------
    Spikes
        ``(number, counts, largest)``.

    Examples
    --------
    >>> import numpy as np
    >>> si = np.zeros((2, 2, 50), np.uint32)
    >>> si[0, 0, 10:15] = [30, 90, 120, 80, 20]        # an X-ray line: several channels
    >>> si[1, 1, 30] = 65280                           # a flipped byte
    >>> single_channel_spikes(si)
    (1, 65280.0, 65280.0)
    """
    if np.dtype(data.dtype).kind not in "iu" or data.ndim < 1 or data.shape[-1] < 3:
        return Spikes()
    if channel_keV is not None:
        if not 0 < channel_keV <= MAX_CHANNEL_KEV:
            return Spikes()
        first = int(np.clip(np.ceil((MIN_ENERGY_KEV - offset_keV) / channel_keV), 0, data.shape[-1]))
        if data.shape[-1] - first < 3:
            return Spikes()
        data = data[..., first:]
    total = Spikes()
    if hasattr(data, "compute"):  # dask: one block of whole spectra at a time
        flat = data.reshape(-1, data.shape[-1]).rechunk({0: _ROWS, 1: -1})
        for block in flat.to_delayed().ravel():
            total = total + _spikes_of_rows(block.compute())
        return total
    flat = np.asarray(data).reshape(-1, data.shape[-1])
    for start in range(0, flat.shape[0], _ROWS):
        total = total + _spikes_of_rows(flat[start : start + _ROWS])
    return total


def energy_axis_keV(scale, offset, units):
    """``(channel width, offset)`` in keV of an energy axis in eV or keV; None for other units."""
    factor = {"kev": 1.0, "ev": 1e-3}.get(str(units).strip().lower())
    if factor is None:
        return None
    return float(scale) * factor, float(offset) * factor


def spikes_of_dictionary(d):
    """:func:`single_channel_spikes` of a reader's dictionary (``data`` and ``axes``), or None when its
    last axis is not an energy axis in eV or keV (images, unknown units)."""
    axes = d.get("axes") or []
    if not axes or axes[-1].get("navigate", False):
        return None
    energy = energy_axis_keV(axes[-1].get("scale", 1.0), axes[-1].get("offset", 0.0), axes[-1].get("units", ""))
    if energy is None:
        return None
    return single_channel_spikes(d["data"], *energy)
