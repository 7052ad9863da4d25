"""Input checks shared by the analyses: volumes as validated numpy arrays."""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.provenance import plain_record
from hyperspy_edxtomo.signals.volume import ElementVolume


def volume_array(volume, what="volume"):
    """``(data, voxel_size, units, elements)`` of an ElementVolume, validated.

    ``data`` is a float64 numpy array shaped (element, z, y, x) (computed if
    the volume is lazy). Raises a ValueError for a signal that is not an
    ElementVolume, an empty volume, or NaN / infinite values.
    """
    if not isinstance(volume, ElementVolume):
        raise InputTypeError(
            f"The {what} must be an ElementVolume (e.g. from maps.reconstruct()), got {type(volume).__name__}."
        )
    data = np.asarray(volume.to_numpy(), dtype=np.float64)
    if data.ndim != 4:
        raise InputError(f"The {what} must be shaped (element, z, y, x), got {data.shape}.")
    if data.size == 0 or min(data.shape) == 0:
        raise InputError(f"The {what} is empty (shape {data.shape}).")
    if not np.all(np.isfinite(data)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(data))[0])
        raise InputError(
            f"The {what} contains NaN or infinite values (first at element, z, y, x = {bad}); "
            "replace them (e.g. np.nan_to_num) before the analysis."
        )
    scale, units = volume.voxel_size
    return data, float(scale), units, list(volume.elements)


def positive(value, name, allow_zero=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return value


def select_elements(all_elements, elements, what="elements"):
    """Indices of ``elements`` (None: all) in ``all_elements``."""
    if elements is None:
        return list(range(len(all_elements)))
    if isinstance(elements, str):
        elements = [elements]
    idx = []
    for el in elements:
        if el not in all_elements:
            raise InputError(f"Unknown element {el!r} in {what}: the volume holds {all_elements}.")
        idx.append(all_elements.index(el))
    if not idx:
        raise InputError(f"No {what} given.")
    return idx


def coordinates_nm(volume):
    """Axis values (nm or the volume's units) of z, y, x, each a 1D array."""
    return [np.asarray(volume.axes_manager[name].axis, dtype=float) for name in "zyx"]


def history_entry(step, method, parameters):
    """One history record (as :func:`hyperspy_edxtomo.base.provenance.append_history` writes)."""
    import datetime

    return {"step": str(step), "method": str(method), "parameters": plain_record(dict(parameters)),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def normalised_sum(data, clip=False):
    """Sum over the elements of ``data`` (element, ...), each scaled to its 99.9th percentile so
    that the elements weigh alike; ``clip``: negative values (FBP undershoot) count as 0."""
    out = np.zeros(data.shape[1:])
    for d in data:
        top = float(np.percentile(d, 99.9))
        if top > 0:
            out += (np.clip(d, 0, None) if clip else d) / top
    return out
