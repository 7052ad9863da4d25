"""Element-map tilt series: X-ray counts per element, per tilt, per pixel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from hyperspy.signals import LazySignal2D, Signal2D
from numpy.typing import ArrayLike

from hyperspy_edxtomo.base.conventions import NODE, TILT_AXIS, check_elements
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.provenance import append_history
from hyperspy_edxtomo.signals.background import (
    background_data,
    check_background,
    compute_background,
    set_background,
)
from hyperspy_edxtomo.signals.tilts import (
    ElementAxisMixin,
    TiltAxisMixin,
    check_tilts,
    element_axis_dict,
    tilt_axis_dict,
)

SIGNAL_TYPE = "EDX_element_maps"
#: the direction of the tilt axis in images given as arrays
TiltAxis = Literal["rows", "columns"]
TILT_AXIS_CHOICES = get_args(TiltAxis)


class ElementMapTiltSeries(TiltAxisMixin, ElementAxisMixin, Signal2D):
    """Element maps at every tilt: navigation (tilt, element) | (x, y).

    The data are shaped ``(element, tilt, y, x)`` in numpy order; rows (y)
    run along the tilt axis. Element names are in :attr:`elements`, tilt
    angles (degrees) in :attr:`tilts`; take one element out with
    :meth:`element`. Raw X-ray counts may carry the background expected
    under each line, :attr:`background` (``metadata.Tomography.background``,
    the same shape): the forward model is then ``y ~ Poisson(A x + b)``.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.random.default_rng(0).poisson(0.05, (3, 13, 64, 64))
    >>> maps = het.element_maps_from_array(
    ...     counts, np.linspace(-60, 60, 13), ["Se", "S", "Zn"], pixel_size_nm=0.189)
    >>> maps.element("Zn").data.shape
    (1, 13, 64, 64)
    """

    _signal_type = SIGNAL_TYPE

    @property
    def pixel_size(self):
        """Pixel size ``(value, units)`` of the maps (square pixels)."""
        ax = self.axes_manager.signal_axes[0]
        return float(ax.scale), ax.units

    @property
    def background(self):
        """Expected background counts under each line, or None.

        A float32 numpy array shaped like the data, ``(element, tilt, y,
        x)`` (computed when lazy), from ``metadata.Tomography.background``:
        the term ``b`` of the forward model ``y ~ Poisson(A x + b)``. Maps
        from :meth:`EDXTiltSeries.get_element_maps
        <hyperspy_edxtomo.signals.EDXTiltSeries.get_element_maps>` carry it
        (exspy's background windows) unless made with
        ``background_windows=None`` or ``subtract_background=True``.

        Examples
        --------
        >>> import numpy as np
        >>> import hyperspy_edxtomo as het
        >>> counts = np.ones((1, 3, 4, 4), dtype=np.uint8)
        >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"],
        ...                                    background=np.full(counts.shape, 0.25))
        >>> maps.background.dtype, float(maps.background.sum())
        (dtype('float32'), 12.0)
        """
        data = background_data(self)
        if data is None:
            return None
        if hasattr(data, "compute"):
            data = data.compute()
        return np.asarray(data, dtype=np.float32)


class LazyElementMapTiltSeries(ElementMapTiltSeries, LazySignal2D):
    """Lazy (dask) twin of :class:`ElementMapTiltSeries`."""

    def compute(self, *args, **kwargs):
        # the background node is computed too (before the data, whose file
        # ``close_file=True`` may close), so that it is not re-read on every use
        compute_background(self, show_progressbar=kwargs.get("show_progressbar"))
        return super().compute(*args, **kwargs)


def maps_signal(data, tilts, elements, scale, units, metadata=None, title="Element maps"):
    axes = [
        element_axis_dict(len(elements)),
        tilt_axis_dict(tilts),
        {"name": "y", "size": data.shape[2], "offset": 0.0, "scale": scale, "units": units, "navigate": False},
        {"name": "x", "size": data.shape[3], "offset": 0.0, "scale": scale, "units": units, "navigate": False},
    ]
    md = dict(metadata or {})
    md["General"] = {**md.get("General", {}), "title": title}
    md["Signal"] = {"signal_type": SIGNAL_TYPE}
    md["Sample"] = {**md.get("Sample", {}), "elements": list(elements)}
    md.setdefault(NODE, {})["tilt_axis"] = TILT_AXIS
    lazy = not isinstance(data, np.ndarray)
    cls = LazyElementMapTiltSeries if lazy else ElementMapTiltSeries
    return cls(data, axes=axes, metadata=md)


def element_maps_from_array(counts: ArrayLike, tilts_deg: Sequence[float], elements: Sequence[str],
                            pixel_size_nm: float | None = None, tilt_axis: TiltAxis = "rows",
                            title: str = "Element maps", background: ArrayLike | None = None) -> ElementMapTiltSeries:
    """Build an element-map tilt series from plain arrays.

    Parameters
    ----------
    counts : array-like or dask array
        X-ray counts shaped (element, tilt, row, column). Must be finite and
        non-negative. A dask array gives a lazy signal.
    tilts_deg : array-like
        One tilt angle per view, in degrees. Views are sorted by tilt.
    elements : list of str
        One chemical symbol per map, in the order of the first axis.
    pixel_size_nm : None or float
        Pixel size in nm. None leaves the axes in pixels (units ``"px"``).
    tilt_axis : {"rows", "columns"}
        Direction of the tilt axis in the images. ``"rows"`` (default): the
        tilt axis runs along the rows (vertical). ``"columns"``: the images are
        transposed so that it does.
    title : str
    background : None or array-like
        Expected background counts under each line, shaped like ``counts``
        (in the same layout and tilt order), finite and >= 0: the ``b`` of
        ``y ~ Poisson(A x + b)``, kept in ``metadata.Tomography.background``
        (see :attr:`ElementMapTiltSeries.background`). None: no background.

    Returns
    -------
    ElementMapTiltSeries

    Raises
    ------
    ValueError
        Counts or background of the wrong shape, negative or not finite;
        tilts or elements that do not fit.
    TypeError
        A background that is not numeric.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    >>> maps = het.element_maps_from_array(counts, [-60, 0, 60], ["S", "Zn"], pixel_size_nm=0.2)
    >>> maps.tilts.tolist(), maps.elements
    ([-60.0, 0.0, 60.0], ['S', 'Zn'])
    """
    if tilt_axis not in TILT_AXIS_CHOICES:
        raise InputError(f"tilt_axis must be one of {TILT_AXIS_CHOICES}, got {tilt_axis!r}")
    lazy = hasattr(counts, "dask")
    if not lazy:
        counts = np.asarray(counts)
    if counts.ndim != 4:
        raise InputError(f"counts must be shaped (element, tilt, row, column); got shape {counts.shape}")
    if counts.size == 0:
        raise InputError(f"counts is empty (shape {counts.shape}).")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)):
        raise InputError(f"counts must be numeric, got dtype {counts.dtype}")
    elements = check_elements(elements, counts.shape[0])
    tilts = check_tilts(tilts_deg, counts.shape[1])
    if not lazy:
        if np.issubdtype(counts.dtype, np.floating) and not np.all(np.isfinite(counts)):
            bad = np.argwhere(~np.isfinite(counts))[0]
            raise InputError(f"counts contain NaN or infinite values (first at element, tilt, row, column = {tuple(bad)}).")
        if np.any(counts < 0):
            raise InputError("counts contain negative values: X-ray counts are >= 0.")
    if background is not None:
        background = check_background(background, counts.shape)
    if tilt_axis == "columns":
        counts = counts.transpose(0, 1, 3, 2)
        if background is not None:
            background = background.transpose(0, 1, 3, 2)
    order = np.argsort(tilts, kind="stable")
    if np.any(order != np.arange(order.size)):
        counts, tilts = counts[:, order], tilts[order]
        if background is not None:
            background = background[:, order]
    scale, units = (1.0, "px") if pixel_size_nm is None else (float(pixel_size_nm), "nm")
    if pixel_size_nm is not None and not (np.isfinite(scale) and scale > 0):
        raise InputError(f"pixel_size_nm must be a positive number, got {pixel_size_nm}")
    maps = maps_signal(counts, tilts, elements, scale, units, title=title)
    set_background(maps, background)
    append_history(
        maps,
        "element_maps",
        "from_array",
        {"elements": elements, "pixel_size_nm": pixel_size_nm, "tilt_axis": tilt_axis,
         "background": "attached" if background is not None else "none"},
    )
    return maps
