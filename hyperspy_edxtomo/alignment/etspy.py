"""Alignment with etspy: export views to an etspy ``TomoStack``, bring etspy's alignment back.

`etspy <https://github.com/usnistgov/etspy>`_ (optional: ``pip install etspy``)
aligns tilt series with its own tools (``stack_register``, ``tilt_align``,
``trans_stack``). :func:`to_etspy` hands it the *unaligned* views of one element
(or the HAADF reference images); :func:`alignment_from_etspy` converts the
alignment etspy recorded into an :class:`~hyperspy_edxtomo.alignment.result.Alignment`,
and :func:`apply_etspy_alignment` moves the series by it (every element, the
reference images and the background, as ``apply_alignment`` does).
:func:`alignment_to_etspy` goes the other way: it writes one of our alignments
into a stack's record, which etspy's ``align_other`` then applies.

etspy's conventions (etspy 1.3, checked against etspy itself by ``tests/test_etspy.py``):

* its tilt axis runs along its **columns** (``x``), ours along the rows: an
  etspy view is our view **transposed**, so etspy's ``(x, y)`` are our
  ``(row, column)``;
* ``stack.shifts`` (pixels, ``etspy.align.apply_shifts``, ``scipy.ndimage.shift``):
  column 0 moves the content along etspy's rows (``y``, across the axis: our
  columns), column 1 along its columns (``x``, along the axis: our rows);
  positive towards higher indices;
* ``metadata.Tomography.tiltaxis`` (degrees), ``xshift`` and ``yshift`` (pixels)
  are what ``TomoStack.trans_stack`` applies: a rotation by ``tiltaxis`` about
  ``(nx / 2, ny / 2)`` with the matrix ``[[cos, -sin], [sin, cos]]`` on
  ``(x, y)``, then ``+xshift`` along ``x`` (along the axis) and ``-yshift``
  along ``y`` (across it: the tilt-axis offset);
* ``align_other`` (``etspy.align.align_to_other``) applies the shifts first,
  then ``trans_stack(xshift, yshift, tiltaxis)``.

Hence, with ``R`` the rotation by ``tiltaxis`` and ``(row, column)`` vectors::

    rotation_deg = -tiltaxis
    (shift_y_px, shift_x_px) = R (shifts[:, 1], shifts[:, 0]) + (xshift, -yshift) + (I - R) (1/2, 1/2)

the last term because etspy turns about ``n / 2``, we about the centre of the
pixel grid, ``(n - 1) / 2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hyperspy_edxtomo.alignment.api import apply_alignment
from hyperspy_edxtomo.alignment.result import ALIGNMENT, ORDER, Alignment
from hyperspy_edxtomo.alignment.transform import Resample
from hyperspy_edxtomo.alignment.views import check_references, series_kind, view_shape
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method

if TYPE_CHECKING:
    from etspy.base import TomoStack

__all__ = ["to_etspy", "alignment_from_etspy", "apply_etspy_alignment", "alignment_to_etspy"]

#: etspy turns about (n / 2), we about (n - 1) / 2: half a pixel apart in each direction
_CENTRE_OFFSET = np.array([0.5, 0.5])


def _tomostack_class():
    try:
        from etspy.base import TomoStack
    except ImportError:
        raise ImportError("The etspy conversion needs the optional package 'etspy' (pip install etspy); it is not "
                          "installed.") from None
    return TomoStack


def _rotation(tiltaxis_deg: float) -> np.ndarray:
    a = np.deg2rad(tiltaxis_deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _refuse_aligned(series, fix: str) -> None:
    # etspy's alignment is relative to the views it was given: on views we moved already, one
    # transform would be applied on top of the other, and the record would describe only the second
    if series.metadata.has_item(ALIGNMENT):
        method = series.metadata.get_item(f"{ALIGNMENT}.method", "unknown")
        raise InputError(f"This series is aligned already (metadata.{ALIGNMENT}, method {method!r}): its views are "
                         f"moved, and an etspy alignment on top would move them twice. {fix}")


def _tomography(stack, key: str) -> float:
    value = stack.metadata.get_item(f"Tomography.{key}", 0.0)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"The stack's metadata.Tomography.{key} must be a number, got {value!r}.") from None
    if not np.isfinite(value):
        raise InputError(f"The stack's metadata.Tomography.{key} is {value}: not a usable alignment.")
    return value


def _check_stack(stack, n: int, shape: tuple[int, int] | None, tilts, what: str = "series") -> None:
    """InputError naming what does not fit when ``stack`` is not ``n`` views of our ``shape`` transposed at ``tilts``
    (``shape`` or ``tilts`` None: not checked); ``what`` names where they come from."""
    if not isinstance(stack, _tomostack_class()):
        raise InputTypeError(f"stack must be an etspy TomoStack (made by to_etspy, aligned in etspy), got "
                             f"{type(stack).__name__}.")
    if stack.axes_manager.navigation_dimension != 1:
        raise InputError(f"The stack has {stack.axes_manager.navigation_dimension} navigation axes: one image per "
                         "view is needed (a multi-frame stack must be summed over its frames first).")
    data_shape = tuple(stack.data.shape)
    if data_shape[0] != n:
        raise InputError(f"The stack has {data_shape[0]} views but the {what} has {n}: remove the same views from "
                         "both (inav), or export the series again with to_etspy.")
    if stack.metadata.get_item("Tomography.cropped", False):
        raise InputError("The stack was cropped (etspy's crop=True): its pixels are no longer the series'. Register "
                         "without crop=True.")
    if shape is not None and data_shape[1:] != (shape[1], shape[0]):
        raise InputError(f"The stack's views are {data_shape[1:]} pixels, the {what}'s views transposed are "
                         f"{(shape[1], shape[0])} (etspy's tilt axis runs along its columns, ours along the rows): "
                         "make the stack with to_etspy, and do not crop, bin or pad it in etspy (filter() pads "
                         "unless taper=0).")
    stack_tilts = np.asarray(stack.tilts.data, float).ravel()
    if tilts is not None and not np.allclose(stack_tilts, tilts, atol=1e-3):
        raise InputError(f"The stack's tilts {np.round(stack_tilts, 3).tolist()} differ from the {what}'s "
                         f"{np.round(np.asarray(tilts, float), 3).tolist()}: use the stack exported from this "
                         "series (to_etspy).")


@signal_method(ElementMapTiltSeries, EDXTiltSeries)
def to_etspy(series: ElementMapTiltSeries | EDXTiltSeries, element: str | None = None,
             haadf: bool = False) -> TomoStack:
    """The unaligned views of one element (or the HAADF images) as an etspy ``TomoStack``.

    Parameters
    ----------
    series : ElementMapTiltSeries or EDXTiltSeries
        Not aligned yet (no ``metadata.Tomography.alignment``): etspy aligns
        these views, and :func:`apply_etspy_alignment` moves this series.
    element : None or str
        The element whose maps are exported. None: the only element of
        one-element maps.
    haadf : bool
        Export the HAADF reference images (``metadata.Tomography.reference_images``)
        instead: the usual choice, their signal-to-noise ratio is far above
        that of X-ray counts. The only choice for an ``EDXTiltSeries``.

    Returns
    -------
    etspy.TomoStack
        float32 views, each **transposed** (etspy's tilt axis runs along its
        columns), the tilts in ``stack.tilts``, the pixel size on both
        signal axes; no shifts, tilt axis 0.

    Raises
    ------
    ImportError
        etspy is not installed.
    ValueError
        The series is aligned already; ``element`` is unknown or missing for
        maps of several elements, or given with ``haadf=True``; ``haadf=True``
        without reference images.

    See Also
    --------
    apply_etspy_alignment : move the series by the alignment etspy found.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.simulate_scene("chain", size=32, max_shift_px=2, haadf_snr=20, seed=1)
    >>> stack = maps.to_etspy(haadf=True)
    >>> stack.data.shape, stack.tilts.data.ravel()[:3].tolist()
    ((13, 32, 32), [-60.0, -50.0, -40.0])
    >>> maps.to_etspy(element="Zn").metadata.General.title
    'Zn'
    """
    tomostack = _tomostack_class()
    kind = series_kind(series)
    if kind == "images":
        raise InputTypeError("to_etspy exports an ElementMapTiltSeries or an EDXTiltSeries (its HAADF images); for "
                             "a plain image series use etspy.TomoStack(images.data.transpose(0, 2, 1), tilts=...).")
    _refuse_aligned(series, "Export the series as it was before align(), so that etspy aligns the raw views.")
    if haadf:
        if element is not None:
            raise InputError(f"Give element={element!r} or haadf=True, not both.")
        views = check_references(series)
        if views is None:
            raise InputError("haadf=True, but the series carries no reference images "
                             "(metadata.Tomography.reference_images): attach them with "
                             "hyperspy_edxtomo.alignment.with_reference_images(series, images).")
        title = series.reference_images.metadata.get_item("General.title", "") or "HAADF"
    else:
        if kind != "maps":
            raise InputError("An EDXTiltSeries holds spectra: export its HAADF images (haadf=True), or the maps of "
                             "one element (series.get_element_maps([...]).to_etspy(element=...)).")
        elements = series.elements
        if element is None:
            if len(elements) != 1:
                raise InputError(f"These maps hold {elements}: choose one, e.g. element={elements[0]!r}, or export "
                                 "the HAADF images with haadf=True.")
            element = elements[0]
        if element not in elements:
            raise InputError(f"Unknown element {element!r}: these maps hold {elements}.")
        views = series.data[elements.index(element)]
        views = views.compute() if hasattr(views, "compute") else views
        title = element
    stack = tomostack(np.ascontiguousarray(np.asarray(views, np.float32).transpose(0, 2, 1)), tilts=series.tilts)
    # etspy's x (along the tilt axis) is our y, its y our x; pixels are square, but copy each
    for ours, theirs in (("y", stack.axes_manager.signal_axes[0]), ("x", stack.axes_manager.signal_axes[1])):
        axis = series.axes_manager[ours]
        theirs.scale, theirs.offset, theirs.units = axis.scale, axis.offset, axis.units
    stack.metadata.General.title = str(title)
    return stack


def alignment_from_etspy(stack: TomoStack, series: ElementMapTiltSeries | EDXTiltSeries) -> Alignment:
    """The alignment etspy recorded in ``stack``, in our convention, for the views of ``series``.

    Reads ``stack.shifts`` and ``metadata.Tomography`` ``tiltaxis``,
    ``xshift`` and ``yshift``, and converts them as the module documentation
    says: the result moves ``series`` as etspy's ``stack.align_other`` moves
    the exported views (up to interpolation).

    Parameters
    ----------
    stack : etspy.TomoStack
        Made from ``series`` by :func:`to_etspy`, then aligned in etspy
        (``stack_register``, ``tilt_align``, ``trans_stack``): the stack
        etspy's alignment *returned*. Not the output of ``align_other``, in
        which etspy 1.3 records ``tiltaxis``, ``xshift`` and ``yshift``
        twice; not cropped, binned or padded.
    series : ElementMapTiltSeries or EDXTiltSeries
        The unaligned series the stack was exported from.

    Returns
    -------
    Alignment
        ``method="etspy"``, ``rotation_deg = -tiltaxis``, the shifts,
        ``axis_offset_px = yshift``, the series' tilts and view shape, and
        etspy's own numbers in ``extra["etspy"]`` (its version, ``tiltaxis``,
        ``xshift``, ``yshift`` and its Y- and X-shifts, ``shifts[:, 0]`` and
        ``shifts[:, 1]``).

    Raises
    ------
    ImportError
        etspy is not installed.
    TypeError
        ``stack`` is not a TomoStack.
    ValueError
        The series is aligned already; the stack's number of views, tilts or
        view shape differ from the series'; the stack was cropped; its
        ``tiltaxis``, ``xshift`` or ``yshift`` is not a finite number (etspy's
        ``tilt_align("CoM")`` records ``yshift = inf`` on views it finds no
        rotation in).

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment import alignment_from_etspy
    >>> maps = datasets.simulate_scene("chain", size=32, max_shift_px=2, haadf_snr=20, seed=1)
    >>> registered = maps.to_etspy(haadf=True).stack_register("PC")
    >>> a = alignment_from_etspy(registered, maps)
    >>> a.method, a.n_views, a.rotation_deg
    ('etspy', 13, 0.0)
    """
    series_kind(series)
    _refuse_aligned(series, "Apply etspy's alignment to the series as it was before align().")
    n, (ny, nx) = view_shape(series)
    _check_stack(stack, n, (ny, nx), series.tilts)
    shifts = np.asarray(stack.shifts.data, float).reshape(n, 2)
    tiltaxis, xshift, yshift = (_tomography(stack, k) for k in ("tiltaxis", "xshift", "yshift"))
    R = _rotation(tiltaxis)
    # etspy's (x, y) are our (row, column): its per-view shifts, then rotation, then the global shift
    rows_cols = R @ np.stack([shifts[:, 1], shifts[:, 0]]) + np.array([[xshift], [-yshift]])
    rows_cols += ((np.eye(2) - R) @ _CENTRE_OFFSET)[:, None]
    import etspy

    return Alignment(
        shift_y_px=rows_cols[0], shift_x_px=rows_cols[1], rotation_deg=0.0 - tiltaxis, axis_offset_px=yshift,
        method="etspy", tilts_deg=series.tilts.tolist(), view_shape=[int(ny), int(nx)], order=ORDER,
        extra={"etspy": {"version": etspy.__version__, "tiltaxis": tiltaxis, "xshift": xshift, "yshift": yshift,
                         "shifts_y": shifts[:, 0].tolist(), "shifts_x": shifts[:, 1].tolist()}})


@signal_method(ElementMapTiltSeries, EDXTiltSeries)
def apply_etspy_alignment(series: ElementMapTiltSeries | EDXTiltSeries, stack: TomoStack,
                          resample: Resample | None = None, seed: int = 0) -> ElementMapTiltSeries | EDXTiltSeries:
    """Move ``series`` by the alignment etspy found on its exported views.

    :func:`alignment_from_etspy`, then
    :func:`~hyperspy_edxtomo.alignment.api.apply_alignment`: every element
    (energy channel), the reference images and the background move by the
    same transform.

    Parameters
    ----------
    series : ElementMapTiltSeries or EDXTiltSeries
        Unaligned, the series ``stack`` was exported from (:func:`to_etspy`).
    stack : etspy.TomoStack
        Aligned in etspy (see :func:`alignment_from_etspy`).
    resample, seed
        As :func:`~hyperspy_edxtomo.alignment.api.apply_alignment`: integer
        counts move as whole counts by default.

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        A moved copy; ``metadata.Tomography.alignment`` holds the alignment
        (``method="etspy"``), and the history an ``alignment`` step.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.simulate_scene("chain", size=32, max_shift_px=2, haadf_snr=20, seed=1)
    >>> registered = maps.to_etspy(haadf=True).stack_register("PC")
    >>> aligned = maps.apply_etspy_alignment(registered)
    >>> aligned.metadata.Tomography.alignment.method, aligned.history[-1]["method"]
    ('etspy', 'etspy')
    """
    return apply_alignment(series, alignment_from_etspy(stack, series), resample=resample, seed=seed)


def alignment_to_etspy(alignment: Alignment | dict, stack: TomoStack) -> TomoStack:
    """A copy of ``stack`` whose etspy record holds ``alignment``; its views are not moved.

    The inverse of :func:`alignment_from_etspy`: ``tiltaxis = -rotation_deg``,
    ``yshift = axis_offset_px`` (0 when not recorded), ``xshift = 0``, and the
    per-view shifts that make up the rest. ``result.align_other(other)``
    then moves any etspy stack of the same views as ``apply_alignment``
    moves the series (up to interpolation).

    Parameters
    ----------
    alignment : Alignment or dict
        One of ours (``Alignment.from_metadata(aligned)``), made on the views
        ``stack`` holds transposed.
    stack : etspy.TomoStack
        The exported views (:func:`to_etspy`).

    Returns
    -------
    etspy.TomoStack

    Raises
    ------
    ImportError
        etspy is not installed.
    TypeError
        ``stack`` is not a TomoStack.
    ValueError
        Another number of views, view shape or tilts than the alignment's.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment import Alignment, alignment_to_etspy
    >>> maps = datasets.simulate_scene("dot", size=32, max_shift_px=2, seed=1)
    >>> a = Alignment.from_metadata(maps.align(method="com"))
    >>> carrier = alignment_to_etspy(a, maps.to_etspy(element="Zn"))
    >>> moved = carrier.align_other(maps.to_etspy(element="Zn"))
    >>> moved.data.shape
    (13, 32, 32)
    """
    alignment = Alignment.from_metadata(alignment)
    # an alignment that did not record its view shape (or tilts) fits any views (at any tilts)
    shape = None if alignment.view_shape is None else tuple(int(v) for v in alignment.view_shape)
    _check_stack(stack, alignment.n_views, shape, alignment.tilts_deg, "alignment")
    tiltaxis = 0.0 - alignment.rotation_deg
    yshift = float(alignment.axis_offset_px or 0.0)
    R = _rotation(tiltaxis)
    rows_cols = np.stack([alignment.shift_y_px, alignment.shift_x_px]) + np.array([[0.0], [yshift]])
    rows_cols -= ((np.eye(2) - R) @ _CENTRE_OFFSET)[:, None]
    per_view = R.T @ rows_cols  # R is a rotation: R.T undoes it
    out = stack.deepcopy()
    out.shifts = np.stack([per_view[1], per_view[0]], axis=1)
    out.metadata.set_item("Tomography.tiltaxis", tiltaxis)
    out.metadata.set_item("Tomography.xshift", 0.0)
    out.metadata.set_item("Tomography.yshift", yshift)
    out.metadata.set_item("Tomography.cropped", False)
    return out
