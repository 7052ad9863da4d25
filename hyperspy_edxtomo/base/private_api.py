"""The one place that touches other libraries' private API (HyperSpy, exspy, traits).

HyperSpy keeps a few things every extension needs behind underscores (a
signal's laziness, its axes as dictionaries, a copy with new data), exspy its
choice of X-ray lines, traits the bounds of a ``Range``. The rest of the
package asks here, so a change in one of them is mended in one module.
"""

__all__ = [
    "is_lazy", "with_new_data", "all_axes", "axis_names", "axes_dicts", "assign_subclass", "dimension_str",
    "lines_from_elements", "xray_lines_in_range", "fwhm_at_energy", "range_bounds",
]


def is_lazy(signal):
    """True for a lazy (dask-backed) HyperSpy signal."""
    return bool(getattr(signal, "_lazy", False))  # noqa: SLF001


def with_new_data(signal, data):
    """A deep copy of ``signal`` (axes, metadata) holding ``data`` instead."""
    return signal._deepcopy_with_new_data(data)  # noqa: SLF001


def all_axes(signal):
    """Every axis of ``signal`` in array (numpy) order."""
    return list(signal.axes_manager._axes)  # noqa: SLF001


def axis_names(signal):
    """Names of every axis of ``signal``, in array order."""
    return [axis.name for axis in all_axes(signal)]


def axes_dicts(signal):
    """The axes of ``signal`` as dictionaries, as a constructor takes them."""
    return signal.axes_manager._get_axes_dicts()  # noqa: SLF001


def assign_subclass(signal):
    """Turn ``signal`` into the class its ``metadata.Signal.signal_type`` names (in place)."""
    signal._assign_subclass()  # noqa: SLF001


def dimension_str(signal):
    """HyperSpy's ``(navigation|signal)`` dimension string of ``signal``."""
    return signal.axes_manager._get_dimension_str()  # noqa: SLF001


def lines_from_elements(spectrum, elements, only_one=True, only_lines=("a",)):
    """exspy's choice of X-ray lines for ``elements`` in the energy range of ``spectrum``."""
    return spectrum._get_lines_from_elements(elements, only_one=only_one, only_lines=only_lines)  # noqa: SLF001


def xray_lines_in_range(spectrum, xray_lines):
    """``(inside, outside)``: exspy's split of ``xray_lines`` by the energy range of ``spectrum``."""
    return spectrum._get_xray_lines_in_spectral_range(xray_lines)  # noqa: SLF001


def fwhm_at_energy(energy_resolution_MnKa_eV, energy_keV):
    """exspy's detector FWHM (keV) at ``energy_keV`` for a resolution given at Mn Ka (eV)."""
    try:
        from exspy.utils.eds import get_FWHM_at_Energy
    except ImportError:  # exspy 0.3 keeps it private
        from exspy._misc.eds.utils import get_FWHM_at_Energy
    return get_FWHM_at_Energy(energy_resolution_MnKa_eV, energy_keV)


def range_bounds(handler):
    """``(low, high, exclude_low, exclude_high)`` of a traits ``Range``."""
    return handler._low, handler._high, handler._exclude_low, handler._exclude_high  # noqa: SLF001
