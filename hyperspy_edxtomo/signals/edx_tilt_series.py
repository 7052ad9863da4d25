"""Spectrum-image tilt series: exspy's EDSTEMSpectrum navigated by (x, y, tilt)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

with warnings.catch_warnings():
    # exspy imports names HyperSpy has deprecated: three warnings at every start that no user of
    # this package can act on (the filter is local to this import)
    warnings.filterwarnings("ignore", r"Importing `Lazy\w*Signal1D` from `hyperspy\._signals", Warning)
    from exspy.signals import EDSTEMSpectrum, LazyEDSTEMSpectrum

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.signals.tilts import (
    ElementAxisMixin,
    TiltAxisMixin,
    check_tilts,
    tilt_axis_dict,
)

SIGNAL_TYPE = "EDX_tilt_series"


class EDXTiltSeries(TiltAxisMixin, ElementAxisMixin, EDSTEMSpectrum):
    """STEM-EDX spectrum images at several tilts: navigation (x, y, tilt) | energy.

    All of exspy's EDS machinery (``add_elements``, ``get_lines_intensity``,
    ``plot(True)``, models) works on it. The tilt navigation axis carries the
    real angles in degrees. Build one with :func:`~hyperspy_edxtomo.load_tilt_series`,
    :func:`tilt_series_from_array` or :mod:`hyperspy_edxtomo.datasets`.
    """

    _signal_type = SIGNAL_TYPE

    def _set_default_param(self):
        # EDSTEMSpectrum.__init__ stamps "EDS_TEM" into the metadata; put our
        # own type back so that save/hs.load and as_lazy() keep this class.
        super()._set_default_param()
        self.metadata.Signal.signal_type = SIGNAL_TYPE

    @contextlib.contextmanager
    def _as_eds_tem(self):
        # exspy tests ``signal_type == "EDS_TEM"`` in two places to find the
        # microscope metadata: let it see the value it expects, then restore.
        self.metadata.Signal.signal_type = "EDS_TEM"
        try:
            yield
        finally:
            self.metadata.Signal.signal_type = SIGNAL_TYPE

    def _get_line_energy(self, Xray_line, FWHM_MnKa=None):
        with self._as_eds_tem():
            return super()._get_line_energy(Xray_line, FWHM_MnKa=FWHM_MnKa)

    def get_take_off_angle(self) -> float:
        """Take-off angle of the X-ray detector in degrees (exspy's
        ``get_take_off_angle``).

        Computed from ``Acquisition_instrument.TEM``: the detector's elevation
        and azimuth and the stage's ``tilt_alpha`` (the holder's tilt in the
        metadata, not each tilt of the series).

        Examples
        --------
        >>> from hyperspy_edxtomo import datasets
        >>> s = datasets.quantum_dot_tilt_series(size=16, seed=0)
        >>> round(s.get_take_off_angle(), 1)
        35.0
        """
        with self._as_eds_tem():
            return super().get_take_off_angle()


class LazyEDXTiltSeries(EDXTiltSeries, LazyEDSTEMSpectrum):
    """Lazy (dask) twin of :class:`EDXTiltSeries`."""


def tilt_series_from_array(
    data: ArrayLike,
    tilts_deg: Sequence[float],
    energy_scale_keV: float,
    energy_offset_keV: float = 0.0,
    pixel_size_nm: float | None = None,
    metadata: dict | None = None,
    title: str = "EDX tilt series",
) -> EDXTiltSeries:
    """Build an :class:`EDXTiltSeries` from an array shaped (tilt, y, x, energy).

    Parameters
    ----------
    data : numpy or dask array
        Counts, shape (tilt, y, x, energy); rows (y) run along the tilt axis.
        A dask array gives a lazy signal.
    tilts_deg : array-like
        One angle per view, degrees. Views are sorted by tilt.
    energy_scale_keV, energy_offset_keV : float
        Energy axis calibration.
    pixel_size_nm : None or float
        Scan step. None leaves the spatial axes in pixels.
    metadata : dict, optional
        Extra metadata (e.g. ``Acquisition_instrument``, ``Sample``).
    """
    ndim = getattr(data, "ndim", None)
    if ndim != 4:
        raise InputError(f"data must be shaped (tilt, y, x, energy); got shape {getattr(data, 'shape', None)}")
    tilts = check_tilts(tilts_deg, data.shape[0])
    order = np.argsort(tilts, kind="stable")
    if np.any(order != np.arange(order.size)):
        data = data[order]
        tilts = tilts[order]
    space = {"scale": 1.0, "units": "px"} if pixel_size_nm is None else {"scale": float(pixel_size_nm), "units": "nm"}
    axes = [
        tilt_axis_dict(tilts),
        {"name": "y", "size": data.shape[1], "offset": 0.0, **space, "navigate": True},
        {"name": "x", "size": data.shape[2], "offset": 0.0, **space, "navigate": True},
        {
            "name": "Energy",
            "size": data.shape[3],
            "offset": float(energy_offset_keV),
            "scale": float(energy_scale_keV),
            "units": "keV",
            "navigate": False,
        },
    ]
    md = {"General": {"title": title}, "Signal": {"signal_type": SIGNAL_TYPE}}
    if metadata:
        md.update({k: v for k, v in metadata.items() if k not in ("General", "Signal")})
    lazy = not isinstance(data, np.ndarray)
    cls = LazyEDXTiltSeries if lazy else EDXTiltSeries
    return cls(data, axes=axes, metadata=md)
