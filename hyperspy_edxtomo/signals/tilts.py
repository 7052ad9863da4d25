"""What the tilt-series and volume classes share: element axes (all three), tilt axes (the two series).

Axis conventions (the one place they are written down; docs/conventions.rst
repeats them for users):

* numpy order of the data

  - spectrum-image tilt series: ``(tilt, y, x, energy)``
  - element-map tilt series:    ``(element, tilt, y, x)``
  - reconstructed volume:       ``(element, z, y, x)``

* ``y`` (rows) runs along the tilt axis; ``x`` (columns) across it; ``z`` is
  the beam direction at 0 degrees tilt. A point ``(x, y, z)`` of the object
  (coordinates from the volume centre) appears in the view at tilt ``theta``
  at column ``x cos(theta) + z sin(theta)`` and at row ``y``.
* The tilt axis is a navigation axis named ``"tilt"`` in degrees whose values
  are the real angles (non-uniform steps allowed), ascending.
* The element axis is a navigation axis named ``"element"``; its names are in
  ``metadata.Sample.elements`` in axis order. It is never dropped by
  ``inav``: ``maps.inav[:, 1]`` keeps a one-element axis, so every
  element-map series and volume has the same layout.
* ``metadata.Tomography.background`` (element maps): the expected background
  counts under each line, shaped like the data; slicing slices it with the
  data (see ``_background.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.private_api import (
    all_axes,
    assign_subclass,
    axes_dicts,
    is_lazy,
)
from hyperspy_edxtomo.base.provenance import append_history, get_history
from hyperspy_edxtomo.signals.background import (
    background_data,
    set_background,
    slice_background,
)

TILT = "tilt"
ELEMENT = "element"


def tilt_axis_dict(tilts_deg):
    """HyperSpy axis dict for a tilt axis with the real angles (degrees)."""
    return {
        "name": TILT,
        "units": "deg",
        "axis": np.asarray(tilts_deg, dtype=float),
        "navigate": True,
    }


def element_axis_dict(n):
    return {"name": ELEMENT, "size": int(n), "offset": 0, "scale": 1, "units": "", "navigate": True}


def check_tilts(tilts_deg, n_expected=None, what="tilts"):
    """Validate tilt angles; return them as a float array.

    Raises a ValueError naming the problem for NaN, repeated angles or a
    count that does not match the data.
    """
    try:
        tilts = np.asarray(tilts_deg, dtype=float).ravel()
    except (TypeError, ValueError) as err:
        raise InputError(f"The {what} must be numbers (degrees), one per view; got {tilts_deg!r} ({err}).") from None
    if n_expected is not None and tilts.size != n_expected:
        raise InputError(
            f"{tilts.size} {what} given for {n_expected} views: give one tilt angle per view."
        )
    if tilts.size == 0:
        raise InputError(f"No {what} given.")
    if not np.all(np.isfinite(tilts)):
        raise InputError(f"The {what} contain NaN or infinite values: {_short(tilts)}")
    if np.unique(tilts).size != tilts.size:
        raise InputError(
            f"Repeated tilt angles {_short(tilts)}: every view needs its own angle "
            "(a missing tilt often reads as 0.0: pass tilts=[...])."
        )
    if np.any(np.abs(tilts) > 180):
        raise InputError(f"Tilt angles must be in degrees within [-180, 180], got {_short(tilts)}")
    return tilts


def _short(values, n=16):
    values = [round(float(v), 4) for v in values]
    return str(values) if len(values) <= n else f"{str(values[:n])[:-1]}, ... ({len(values)} values)]"


def _axis_position(signal, name):
    """Index of the axis called ``name`` in numpy order, or None."""
    for i, axis in enumerate(all_axes(signal)):
        if axis.name == name:
            return i
    return None


class ElementAxisMixin:
    """What all three classes share: element names (on an ``element`` axis for maps and
    volumes, in the metadata for spectra), the history, and slicing that keeps them right."""

    @property
    def history(self):
        """Processing steps that produced this signal (list of dicts, oldest first)."""
        return get_history(self)

    def to_numpy(self) -> np.ndarray:
        """The data as a numpy array (computed if lazy), in numpy axis order."""
        data = self.data.compute() if is_lazy(self) else self.data
        return np.asarray(data)

    @property
    def elements(self):
        """Element names, in the order of the element axis."""
        elements = list(self.metadata.get_item("Sample.elements", []))
        if _axis_position(self, ELEMENT) is not None:
            n = self.axes_manager[ELEMENT].size
            if len(elements) != n:
                raise InputError(
                    f"metadata.Sample.elements lists {len(elements)} elements {elements} "
                    f"but the element axis has {n} entries."
                )
        return elements

    def _element_index(self, element):
        elements = self.elements
        if element not in elements:
            raise InputError(f"Unknown element {element!r}: this signal holds {elements}.")
        return elements.index(element)

    def element(self, element: str) -> Self:
        """The same signal with one element only.

        Parameters
        ----------
        element : str
            Chemical symbol, one of :attr:`elements`.

        Returns
        -------
        A signal of the same class whose element axis has one entry.
        """
        if _axis_position(self, ELEMENT) is None:
            raise InputError(f"This {type(self).__name__} has no element axis (its elements share every spectrum): "
                             "make element maps with get_element_maps() first.")
        return self.inav[..., self._element_index(element)]

    # -- slicing (HyperSpy's hooks, extended) ----------------------------------------------
    def _get_array_slices(self, slices, isNavigation=None):
        array_slices = list(super()._get_array_slices(slices, isNavigation))
        i = _axis_position(self, ELEMENT)
        if i is not None and i < len(array_slices):
            sl = array_slices[i]
            if not isinstance(sl, slice) and np.ndim(sl) == 0:
                # keep a one-element axis: every series has the same layout
                sl = int(sl) % all_axes(self)[i].size
                array_slices[i] = slice(sl, sl + 1)
        return tuple(array_slices)

    def _slicer(self, slices, isNavigation=None, out=None):
        array_slices = self._get_array_slices(slices, isNavigation)
        result = super()._slicer(slices, isNavigation, out=out)
        target = out if out is not None else result
        i = _axis_position(self, ELEMENT)
        if i is not None and i < len(array_slices):
            names = np.array(self.elements, dtype=object)[array_slices[i]]
            target.metadata.set_item("Sample.elements", [str(n) for n in names])
            if self.metadata.has_item("Sample.xray_lines"):
                lines = np.array(self.metadata.Sample.xray_lines, dtype=object)
                if lines.size == self.axes_manager[ELEMENT].size:
                    target.metadata.Sample.xray_lines = [str(n) for n in lines[array_slices[i]]]
        return result


class TiltAxisMixin:
    """What the two tilt series share: the tilt axis, the HAADF images of the views, and
    slicing that keeps those and the background with their views."""

    @property
    def tilt_axis(self):
        """The navigation axis holding the tilt angles (degrees)."""
        for axis in self.axes_manager.navigation_axes:
            if axis.name == TILT:
                return axis
        raise InputError(
            f"This {type(self).__name__} has no navigation axis named 'tilt' "
            f"(axes: {[a.name for a in all_axes(self)]})."
        )

    @property
    def tilts(self):
        """Tilt angles in degrees, one per view, in the order of the data."""
        return np.asarray(self.tilt_axis.axis, dtype=float).copy()

    @property
    def reference_images(self):
        """HAADF/ADF image of each tilt (``Signal2D`` navigated by tilt), or None."""
        refs = self.metadata.get_item(f"{NODE}.reference_images", None)
        if refs is not None and type(refs).__name__ == "BaseSignal" and refs.axes_manager.signal_dimension == 2:
            # HyperSpy's hspy reader gives back signals stored in metadata as
            # BaseSignal when the metadata also hold a list (our history)
            assign_subclass(refs)
        return refs

    def _slicer(self, slices, isNavigation=None, out=None):
        array_slices = self._get_array_slices(slices, isNavigation)
        result = super()._slicer(slices, isNavigation, out=out)
        target = out if out is not None else result
        j = _axis_position(self, TILT)
        refs = self.reference_images
        if j is not None and j < len(array_slices) and refs is not None:
            sl = array_slices[j]
            if refs.axes_manager.navigation_size == self.axes_manager[TILT].size:
                target.metadata.set_item(
                    f"{NODE}.reference_images", refs.inav[sl] if isinstance(sl, slice) else refs.inav[int(sl)]
                )
        # the background under the X-ray lines is shaped like the data: the same slices, all axes
        slice_background(self, target, array_slices)
        return result


def stack_tilts(signals: Sequence) -> "ElementAxisMixin":
    """Join tilt series along the tilt axis: views, angles, background and HAADF together.

    ``hs.stack(..., axis="tilt")`` cannot do it: on HyperSpy's non-uniform
    axes it refuses series of different lengths (HyperSpy 2.5 compares the
    angles of the pieces in the wrong order), and on a uniform axis it would
    keep the first piece's calibration for all. This joins the data, the
    angles, the X-ray background and the reference (HAADF) images, and sorts
    the views by angle (as every tilt series is).

    Parameters
    ----------
    signals : sequence of EDXTiltSeries or ElementMapTiltSeries
        Of one class (all lazy or none), with the same elements, image size
        and calibration; their angles together must not repeat.

    Returns
    -------
    A signal of the same class. The history is the first piece's, with a
    ``stack`` step; an alignment record (per view) is dropped: align again.

    Raises
    ------
    ValueError
        Fewer than one piece, mixed classes, other elements, sizes or pixel
        sizes, repeated angles, background or HAADF on only some pieces.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> a = het.element_maps_from_array(np.ones((1, 3, 8, 8)), [-60, -50, -40], ["Zn"])
    >>> b = het.element_maps_from_array(np.ones((1, 4, 8, 8)), [-30, 0, 30, 60], ["Zn"])
    >>> het.stack_tilts([a, b]).tilts
    array([-60., -50., -40., -30.,   0.,  30.,  60.])
    """
    import dask.array as da

    signals = list(signals)
    if not signals:
        raise InputError("stack_tilts needs at least one tilt series.")
    first = signals[0]
    for k, s in enumerate(signals):
        if type(s) is not type(first):
            raise InputError(f"stack_tilts: piece {k} is a {type(s).__name__}, piece 0 a {type(first).__name__}: "
                             "give pieces of one class (all lazy or none; .as_lazy() or .compute() first).")
        if list(s.metadata.get_item("Sample.elements", [])) != list(first.metadata.get_item("Sample.elements", [])) \
                and _axis_position(first, ELEMENT) is not None:
            raise InputError(f"stack_tilts: piece {k} holds the elements {s.elements}, piece 0 {first.elements}.")
        for a, b in zip(s.axes_manager.signal_axes, first.axes_manager.signal_axes):
            if a.size != b.size or not np.isclose(a.scale, b.scale) or a.units != b.units:
                raise InputError(f"stack_tilts: piece {k} has a {a.name} axis of {a.size} x {a.scale} {a.units}, "
                                 f"piece 0 of {b.size} x {b.scale} {b.units}: the images must match.")
    tilts = check_tilts(np.concatenate([s.tilts for s in signals]), what="tilts of the pieces together")
    order = np.argsort(tilts, kind="stable")
    tilts = tilts[order]
    j = _axis_position(first, TILT)

    def join(arrays, axis):
        if any(hasattr(a, "dask") for a in arrays):
            return da.take(da.concatenate(arrays, axis=axis), order, axis=axis)
        return np.concatenate(arrays, axis=axis).take(order, axis=axis)

    data = join([s.data for s in signals], axis=j)
    axes = [dict(ax) for ax in axes_dicts(first)]
    axes[j] = tilt_axis_dict(tilts)
    md = first.metadata.deepcopy()
    for node in ("background", "reference_images", "alignment"):
        if md.has_item(f"{NODE}.{node}"):
            md.get_item(NODE).__delattr__(node)
    out = type(first)(data, axes=axes, metadata=md.as_dictionary())
    backgrounds = [background_data(s) for s in signals]
    if any(b is not None for b in backgrounds):
        if any(b is None for b in backgrounds):
            raise InputError("stack_tilts: only some pieces carry an X-ray background "
                             f"({[k for k, b in enumerate(backgrounds) if b is not None]}): attach one to all "
                             "(or remove it) first.")
        set_background(out, join(backgrounds, axis=j))
    refs = [s.reference_images for s in signals]
    if any(r is not None for r in refs):
        if any(r is None for r in refs):
            raise InputError("stack_tilts: only some pieces carry reference (HAADF) images: give all or none.")
        r0 = refs[0]
        rj = _axis_position(r0, TILT)
        raxes = [dict(ax) for ax in axes_dicts(r0)]
        raxes[rj] = tilt_axis_dict(tilts)
        rdata = join([r.data for r in refs], axis=rj)
        out.metadata.set_item(f"{NODE}.reference_images", type(r0)(rdata, axes=raxes,
                                                                   metadata=r0.metadata.as_dictionary()))
    aligned = any(s.metadata.has_item(f"{NODE}.alignment") for s in signals)
    append_history(out, "stack", "stack_tilts", {"pieces": len(signals), "tilts": tilts,
                                                 "dropped": "alignment record" if aligned else "nothing"})
    return out
