"""The X-ray background of element maps: ``metadata.Tomography.background``.

Element maps keep their raw X-ray counts ``y``; the counts expected under
each line from the bremsstrahlung continuum, ``b``, travel beside them in
the metadata, so that the forward model is ``y ~ Poisson(A x + b)``.

The node holds an array shaped exactly like the maps' data, ``(element,
tilt, y, x)``: a HyperSpy signal with the maps' axes (``Signal2D``, or
``LazySignal2D`` for lazy maps; what :func:`set_background` stores) or a
plain numpy array put there by other code (both are read). Both forms save
and load with ``.hspy``/``.zspy``. Slicing the maps slices it (see
``TiltAxisMixin._slicer``).
"""

import numpy as np
from hyperspy.signal import BaseSignal

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.counts import check_finite
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.private_api import assign_subclass, axes_dicts, is_lazy

#: where the background lives in a signal's metadata
BACKGROUND = f"{NODE}.background"


def _is_lazy_array(data):
    return hasattr(data, "dask") and hasattr(data, "compute")


def _node_array(node):
    data = node.data if isinstance(node, BaseSignal) else node
    if not hasattr(data, "shape"):
        data = np.asarray(data)
    return data


def background_data(signal):
    """The background array of ``signal`` (numpy or dask, not computed), or None.

    Raises a ValueError when the stored array is not shaped like the data:
    the data were changed by an operation that did not carry the background
    along (e.g. ``rebin``), and the pair would be silently wrong.
    """
    node = signal.metadata.get_item(BACKGROUND, None)
    if node is None:
        return None
    data = _node_array(node)
    if tuple(data.shape) != tuple(signal.data.shape):
        raise InputError(
            f"metadata.{BACKGROUND} is shaped {tuple(data.shape)} but the maps are shaped "
            f"{tuple(signal.data.shape)}: it no longer belongs to these data (an operation changed the maps "
            "without carrying their background along). Subtract it before such operations "
            "(maps.subtract_background()), or remove it with del maps.metadata.Tomography.background."
        )
    return data


def background_node(data, like):
    """``data`` as a float32 signal with the axes of ``like`` (lazy for a dask array)."""
    from hyperspy.signals import LazySignal

    if _is_lazy_array(data):
        sig = LazySignal(data.astype(np.float32), axes=axes_dicts(like))
    else:
        sig = BaseSignal(np.asarray(data, dtype=np.float32), axes=axes_dicts(like))
    assign_subclass(sig)
    sig.metadata.General.title = f"X-ray background of {like.metadata.General.title}"
    return sig


def set_background(signal, data):
    """Attach ``data`` (shaped like ``signal.data``) as the background of ``signal``; None removes it."""
    if data is None:
        if signal.metadata.has_item(BACKGROUND):
            signal.metadata.get_item(NODE).__delattr__("background")
        return
    if tuple(data.shape) != tuple(signal.data.shape):
        raise InputError(f"A background shaped {tuple(data.shape)} for maps shaped {tuple(signal.data.shape)}.")
    signal.metadata.set_item(BACKGROUND, background_node(data, signal))


def slice_background(source, target, array_slices):
    """Give ``target`` (a slice of ``source``) the same slice of ``source``'s background."""
    node = source.metadata.get_item(BACKGROUND, None)
    if node is None:
        return
    data = _node_array(node)
    if tuple(data.shape) != tuple(source.data.shape):
        return  # a stale background: left as it is, reading it raises (background_data)
    sliced = data[tuple(array_slices)]
    if isinstance(node, BaseSignal):
        set_background(target, sliced)
    else:
        # keep the form other code stored (a plain array), as a copy rather than a view
        target.metadata.set_item(BACKGROUND, sliced if _is_lazy_array(sliced) else np.array(sliced))


def compute_background(signal, show_progressbar=None):
    """Compute a lazy background node in place (for ``LazyElementMapTiltSeries.compute``)."""
    node = signal.metadata.get_item(BACKGROUND, None)
    if isinstance(node, BaseSignal) and is_lazy(node):
        node.compute(show_progressbar=show_progressbar)
    elif node is not None and _is_lazy_array(node):
        signal.metadata.set_item(BACKGROUND, np.asarray(node.compute()))


def check_background(background, shape):
    """Validate a background given by the user; returns a numpy (or dask) array.

    ``background`` must be numeric, shaped ``shape`` (that of the counts),
    finite and non-negative (values of a dask array are not checked).
    """
    if isinstance(background, BaseSignal):
        background = background.data
    if not _is_lazy_array(background):
        background = np.asarray(background)
    dtype = background.dtype
    if np.issubdtype(dtype, np.bool_) or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InputTypeError(f"background must be a numeric array (expected counts per pixel), got dtype {dtype}.")
    if tuple(background.shape) != tuple(shape):
        raise InputError(
            f"background must be shaped like the counts {tuple(shape)} (element, tilt, row, column), "
            f"got shape {tuple(background.shape)}."
        )
    if not _is_lazy_array(background):
        check_finite(background, "background", "element, tilt, row, column")
        if np.any(background < 0):
            n = int((background < 0).sum())
            raise InputError(
                f"background contains {n} negative values: it is the expected number of background counts "
                "per pixel, >= 0 (clip it, e.g. np.clip(background, 0, None))."
            )
    return background
