"""Reconstructed volume: per element a 3D array on calibrated (x, y, z) axes."""

import numpy as np
from hyperspy.signals import LazySignal2D, Signal2D

from ..metadata import NODE, TILT_AXIS
from ._tilts import TiltSeriesMixin, element_axis_dict

SIGNAL_TYPE = "EDX_volume"


class ElementVolume(TiltSeriesMixin, Signal2D):
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

    # -- analysis (see hyperspy_edxtomo.analysis) ----------------------------------------
    def fourier_shell_correlation(self, other, elements=None, mask="auto", mask_dilation_nm=1.0, mask_edge_nm=1.0,
                                  mask_correction=True):
        """Fourier shell correlation with another reconstruction of the same object.

        See :func:`hyperspy_edxtomo.analysis.fourier_shell_correlation`.

        Returns
        -------
        hyperspy.signals.Signal1D
            FSC over spatial frequency (1/nm) per element; resolutions at
            0.143 and 1/2-bit in ``metadata.Tomography.FSC``.

        Examples
        --------
        >>> from hyperspy_edxtomo import datasets
        >>> vol = datasets.core_shell_phantom(size=32)
        >>> fsc = vol.fourier_shell_correlation(vol)
        >>> bool(abs(fsc.data[:, 1:10] - 1).max() < 1e-9)
        True
        """
        from ..analysis.fsc import fourier_shell_correlation

        return fourier_shell_correlation(self, other, elements=elements, mask=mask,
                                         mask_dilation_nm=mask_dilation_nm, mask_edge_nm=mask_edge_nm,
                                         mask_correction=mask_correction)

    def find_particles(self, elements=None, threshold="otsu", smooth_nm=None, min_size_nm3=None,
                       profile_max_nm=None, min_relative_size=0.02):
        """Segment the particles: centres, equivalent diameters, radial profiles.

        See :func:`hyperspy_edxtomo.analysis.find_particles`.

        Returns
        -------
        hyperspy_edxtomo.analysis.ParticleList

        Examples
        --------
        >>> from hyperspy_edxtomo import datasets
        >>> found = datasets.core_shell_phantom(size=32).find_particles()
        >>> len(found)
        1
        """
        from ..analysis.particles import find_particles

        return find_particles(self, elements=elements, threshold=threshold, smooth_nm=smooth_nm,
                              min_size_nm3=min_size_nm3, profile_max_nm=profile_max_nm,
                              min_relative_size=min_relative_size)

    def shell_maps(self, elements=None, particles=None, origin="centroid", n_azimuth=72, n_elevation=36, level=0.5,
                   absent_below_nm=None, max_radius_nm=None, max_particles=None):
        """Shell thickness over azimuth x elevation and shell coverage, per particle and element.

        See :func:`hyperspy_edxtomo.analysis.shell_maps`.

        Returns
        -------
        hyperspy_edxtomo.analysis.ShellMaps

        Examples
        --------
        >>> from hyperspy_edxtomo import datasets
        >>> vol = datasets.core_shell_phantom(size=40, shell_gap=0.2, seed=3)
        >>> round(vol.shell_maps(elements="S").absent("S"), 1)
        0.2
        """
        from ..analysis.shells import shell_maps

        return shell_maps(self, elements=elements, particles=particles, origin=origin, n_azimuth=n_azimuth,
                          n_elevation=n_elevation, level=level, absent_below_nm=absent_below_nm,
                          max_radius_nm=max_radius_nm, max_particles=max_particles)

    def export(self, path, element=None, overwrite=False):
        """Write the volume for other programs; the format follows the file suffix.

        See :func:`hyperspy_edxtomo.exports.export_volume` (``.hspy``,
        ``.zspy``, ``.mrc``, ``.tif``, ``.npy``, ``.vti``). Existing files
        are replaced only with ``overwrite=True`` (FileExistsError otherwise).

        Returns
        -------
        list of pathlib.Path
            The files written.
        """
        from ..exports import export_volume

        return export_volume(self, path, element=element, overwrite=overwrite)


class LazyElementVolume(ElementVolume, LazySignal2D):
    """Lazy (dask) twin of :class:`ElementVolume`."""


def volume_from_array(data, elements, voxel_size_nm=None, history=None, title="Element volume"):
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
    from .element_maps import _check_elements

    lazy = hasattr(data, "dask")
    if not lazy:
        data = np.asarray(data)
    if data.ndim != 4:
        raise ValueError(f"data must be shaped (element, z, y, x); got shape {data.shape}")
    elements = _check_elements(elements, data.shape[0])
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
