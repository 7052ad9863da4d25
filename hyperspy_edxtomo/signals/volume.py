"""Reconstructed volume: per element a 3D array on calibrated (x, y, z) axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hyperspy.signals import LazySignal2D, Signal2D
from numpy.typing import ArrayLike

from hyperspy_edxtomo.base.conventions import NODE, TILT_AXIS, check_elements
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.signals.tilts import ElementAxisMixin, element_axis_dict

SIGNAL_TYPE = "EDX_volume"


class ElementVolume(ElementAxisMixin, Signal2D):
    """Reconstructed element volumes: navigation (z, element) | (x, y).

    The data are shaped ``(element, z, y, x)`` in numpy order: each
    navigation step is an xy section at one depth ``z``, oriented like the
    0-degree view, so ``vol.sum("z")`` is the 0-degree projection. ``y`` runs
    along the tilt axis. Element names are in :attr:`elements`, the method
    and parameters that made the volume in :attr:`history`.
    """

    _signal_type = SIGNAL_TYPE

    @property
    def voxel_size(self):
        """Voxel size ``(value, units)`` (cubic voxels)."""
        ax = self.axes_manager["x"]
        return float(ax.scale), ax.units


class LazyElementVolume(ElementVolume, LazySignal2D):
    """Lazy (dask) twin of :class:`ElementVolume`."""


def volume_from_array(data: ArrayLike, elements: Sequence[str], voxel_size_nm: float | None = None,
                      history: list[dict] | None = None, title: str = "Element volume") -> ElementVolume:
    """Build an :class:`ElementVolume` from an array shaped (element, z, y, x).

    Parameters
    ----------
    data : array-like or dask array
    elements : list of str
        One name per volume, in the order of the first axis.
    voxel_size_nm : None or float
        Voxel size in nm; None leaves the axes in pixels.
    history : list of dict, optional
        Processing history to carry (e.g. that of the maps it came from).
    """
    lazy = hasattr(data, "dask")
    if not lazy:
        data = np.asarray(data)
    if data.ndim != 4:
        raise InputError(f"data must be shaped (element, z, y, x); got shape {data.shape}")
    elements = check_elements(elements, data.shape[0])
    scale, units = (1.0, "px") if voxel_size_nm is None else (float(voxel_size_nm), "nm")
    axes = [element_axis_dict(len(elements))]
    for name, n in zip("zyx", data.shape[1:]):
        axes.append(
            {
                "name": name,
                "size": n,
                # centred: the tilt axis (and the volume centre) sits at 0
                "offset": -(n - 1) / 2 * scale if name != "y" else 0.0,
                "scale": scale,
                "units": units,
                "navigate": name == "z",
            }
        )
    md = {
        "General": {"title": title},
        "Signal": {"signal_type": SIGNAL_TYPE},
        "Sample": {"elements": list(elements)},
        NODE: {"tilt_axis": TILT_AXIS, "history": list(history or [])},
    }
    cls = LazyElementVolume if lazy else ElementVolume
    return cls(data, axes=axes, metadata=md)


__all__ = ["ElementVolume", "LazyElementVolume", "volume_from_array"]
