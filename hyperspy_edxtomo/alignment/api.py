"""Alignment of tilt series: ``align``, ``apply_alignment``, ``estimate_alignment``, ``with_reference_images``.

Per-view shifts, tilt-axis offset and in-plane rotation.
``series.align(method=...)`` estimates a rigid transform of every view and
moves every element (every energy channel of a spectrum-image series, the
HAADF reference images, the X-ray background ``metadata.Tomography.background``)
by the same amounts; ``apply_alignment`` moves any other series of the same
views by exactly the same amounts.

The transform of view ``t`` is, in this order:

1. rotate the view about its centre so that a tilt axis at ``rotation_deg``
   (degrees counter-clockwise from the rows' direction, the convention of
   :func:`~hyperspy_edxtomo.reconstruction.api.reconstruct`) runs along the rows;
2. shift it by ``shift_y_px[t]`` rows and ``shift_x_px[t]`` columns.

Both steps use bilinear weights with zeros outside the field of view
(never wrap-around): counts that stay inside the field of view are conserved,
counts moved out of it are lost, and the border strip moved in is zero.

How the weights are used (``resample=``):

``"counts"`` (default for element maps of integer counts)
    every detected count moves, as a whole, to one of the four pixels around
    its new position, drawn with the bilinear weights (seeded). The result is
    integer counts again, Poisson with the bilinearly interpolated expected
    counts, so everything downstream that relies on counting statistics
    (count-splitting cross-validation of ``lam="auto"``, ``denoise_deep``,
    Poisson deviances) stays valid after alignment.
``"bilinear"`` (default otherwise: spectrum images, non-integer maps)
    plain bilinear interpolation: non-integer values.

After alignment the tilt axis runs along the centre column, ``axis_offset_px``
(already included in the shifts) is where it was found before the shifts.

Methods (``method=``):

``"xcorr"``
    cross-correlation of neighbouring views, the view further from 0 degrees
    stretched across the axis by the ratio of the cosines of the tilts,
    chained from the view nearest 0 degrees; on the HAADF reference images
    when the series carries them, else on the summed, smoothed counts.
``"com"``
    centre of mass of each view (background removed), fitted across the axis
    to the path of a rigid object ``x0 cos(theta) + z0 sin(theta)`` about the
    centre column and held constant along the axis.
``"axis"``
    ``com``, then the in-plane rotation and the tilt-axis offset from the
    common-line condition (every row band of a rigid object traces
    ``a(y) + x0 cos(theta) + z0 sin(theta)``; a robust straight line through
    the ``a(y)`` of the bands that are whole in every view, see
    :func:`~hyperspy_edxtomo.alignment.estimators.estimate_axis`). On counts, the rotation's standard error from
    count-split halves is stored (``rotation_se_deg``): it measures the count
    noise only, not what the field holds.
``"projection_matching"``
    SIRT (the shared :class:`~hyperspy_edxtomo.reconstruction.projector.Projector` and
    :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt`, a fixed number of iterations),
    re-projected at the measured angles, each view registered to its
    re-projection, repeated until the shifts change by less than ``tol_px``.
``"auto"`` (default)
    a validated chain that cannot make things worse on its own criterion:
    starting from "doing nothing" (the identity), the stages *shifts* (``com``
    and ``xcorr``, on the HAADF reference images and on the counts), *axis
    offset*, *in-plane rotation* and *projection matching* each propose
    candidates, and a candidate replaces the alignment accepted so far only
    when it lowers the held-out criterion
    (:class:`~hyperspy_edxtomo.alignment.criterion.HeldOutCriterion`) by more
    than ``ACCEPT_SE`` (2) standard errors of the paired difference over the
    folds. When the views are integer counts, the candidates are estimated on
    one binomial half of the counts and scored on the other half, which the
    estimates never saw; the accepted stages are then estimated again on all
    counts. Every stage is recorded in ``metadata.Tomography.alignment.validation``
    (candidates, scores, difference, standard error, accepted, reason) and in
    one ``logging`` line (logger ``hyperspy_edxtomo.alignment.policy``); see
    :mod:`~hyperspy_edxtomo.alignment.policy`.

``rotation=`` fixes the in-plane rotation instead of estimating it.

Views that carry nothing to align on (every view the same image, within
Poisson noise for counts) keep the identity with a warning, whatever the
method; views whose totals differ by more than ``DOSE_RATIO_WARN`` (10) times
are named in a warning.

The package, module by module: ``transform`` (moving views), ``result``
(:class:`~hyperspy_edxtomo.alignment.result.Alignment`, the record in
``metadata.Tomography.alignment``), ``views`` (input checks, the prepared
views), ``estimators`` (one ``estimate(views, tilts, alignment)`` each),
``criterion`` (the held-out criterion), ``policy`` (``auto``) and this module,
the entry points.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from hyperspy_edxtomo.alignment.criterion import (
    ROTATION_SE_WARN_DEG,
    rotation_standard_error,
)
from hyperspy_edxtomo.alignment.estimators import method_estimators
from hyperspy_edxtomo.alignment.policy import auto, logger, validate_single_method
from hyperspy_edxtomo.alignment.result import ALIGNMENT, ORDER, Alignment
from hyperspy_edxtomo.alignment.transform import RESAMPLE, Resample, transform_data
from hyperspy_edxtomo.alignment.views import (
    BACKGROUND,
    MIN_VIEW_PX,
    background_node,
    check_references,
    check_stack,
    nothing_to_align_on,
    prepare_views,
    same_image,
    series_kind,
    summed_background,
    summed_counts,
    tilt_axis_index,
    view_shape,
    warn_doses,
)
from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.counts import is_counts
from hyperspy_edxtomo.base.errors import InputError, InputTypeError
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.progress import show_progress
from hyperspy_edxtomo.base.provenance import append_history, plain_record
from hyperspy_edxtomo.signals.edx_tilt_series import EDXTiltSeries
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method
from hyperspy_edxtomo.signals.tilts import tilt_axis_dict

if TYPE_CHECKING:
    from hyperspy.misc.utils import DictionaryTreeBrowser
    from hyperspy.signal import BaseSignal
    from hyperspy.signals import Signal2D

__all__ = ["Method", "METHODS", "align", "apply_alignment", "apply_alignment_of", "check_rotation",
           "estimate_alignment", "with_reference_images"]

#: the alignment methods of ``align``
Method = Literal["auto", "xcorr", "com", "axis", "projection_matching"]
METHODS = get_args(Method)


def check_rotation(rotation: float | None) -> float | None:
    """``rotation`` as a float in degrees within (-180, 180], or None.

    Parameters
    ----------
    rotation : None or float
        An in-plane rotation of the tilt axis in degrees, as ``align`` takes it.

    Returns
    -------
    None or float

    Raises
    ------
    InputTypeError
        For something that is not a number.
    InputError
        For NaN, infinity or an angle outside (-180, 180] (naming the same
        turn inside it, for an angle within two turns).

    Examples
    --------
    >>> from hyperspy_edxtomo.alignment.api import check_rotation
    >>> check_rotation(-2)
    -2.0
    >>> try:
    ...     check_rotation(270)
    ... except ValueError as err:
    ...     print(err)
    rotation must be in degrees within (-180, 180], got 270 (the same turn as -90: give that).
    """
    if rotation is None:
        return None
    try:
        value = float(rotation)
    except (TypeError, ValueError):
        raise InputTypeError(f"rotation must be a number of degrees or None, got {rotation!r}.") from None
    if not np.isfinite(value):
        raise InputError(f"rotation must be a finite number of degrees or None (estimate it), got {value}.")
    # refused rather than reduced modulo 360: an angle outside it is more often a typo (1e300) than a
    # deliberate extra turn, and reducing it silently would hide the typo
    if not -180 < value <= 180:
        same = value % 360 - 360 if value % 360 > 180 else value % 360
        hint = f" (the same turn as {same:g}: give that)" if abs(value) <= 720 else ""
        raise InputError(f"rotation must be in degrees within (-180, 180], got {value:g}{hint}.")
    return value


def estimate_alignment(series: ElementMapTiltSeries | EDXTiltSeries, method: Method = "auto",
                       sigma: float | None = None, bin_to: int | None = 128, pm_iterations: int = 8,
                       tol_px: float = 0.1, show_progressbar: bool | None = None, rotation: float | None = None,
                       score_bin_to: int = 64, seed: int = 0, validate: bool | None = None) -> dict:
    """Estimate the alignment of ``series`` without moving it.

    The parameters are those of :func:`align`.

    Returns
    -------
    dict
        The record :func:`align` stores in ``metadata.Tomography.alignment``
        (plain lists, floats and strings; read it with
        :meth:`Alignment.from_metadata <hyperspy_edxtomo.alignment.result.Alignment.from_metadata>`),
        for :func:`apply_alignment`.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.alignment import Alignment, estimate_alignment
    >>> maps = datasets.simulate_scene("dot", size=32, counts_per_tilt=2000, max_shift_px=2, seed=4)
    >>> a = Alignment.from_metadata(estimate_alignment(maps, method="com"))
    >>> a.method, a.estimated_on, a.n_views
    ('com', 'summed_counts', 13)
    """
    if method not in METHODS:
        raise InputError(f"Unknown alignment method {method!r}: choose one of {METHODS}.")
    rotation = check_rotation(rotation)
    rotation_given = rotation is not None
    show = show_progress(show_progressbar)
    t0 = time.perf_counter()
    tilts = series.tilts
    refs = check_references(series)
    counts = summed_counts(series)
    check_stack(counts, "views")
    if refs is not None:
        check_stack(refs, "reference images")
    background = summed_background(series)
    warn_doses(counts.sum((1, 2)), tilts)
    n, ny, nx = counts.shape
    b = max(1, int(np.ceil(max(ny, nx) / bin_to))) if bin_to else 1
    # binning must not shrink a narrow view below what check_stack requires
    b = max(1, min(b, min(ny, nx) // MIN_VIEW_PX))

    # what the views allow: nothing to align on, or no rotation to fit (the warnings point at align's caller)
    kind, why = nothing_to_align_on(counts)
    nothing = kind == "identical"
    refs_note = views_indistinct = None
    if refs is not None and not nothing and same_image(refs):
        refs_note = "the reference images are all the same image: not used, the estimate runs on the counts"
        warnings.warn(f"The HAADF reference images are all the same image: {refs_note.split(': ', 1)[1]}.",
                      stacklevel=3)
        refs = None
    if kind == "indistinct" and rotation is None and refs is None:
        # a rotation fitted to views that noise alone explains is noise (-71 deg on three copies of one
        # view); shifts are still estimated (low-dose views can be told apart by their centres) and
        # auto still validates them on held-out counts
        warnings.warn(f"Alignment: {why}; the in-plane rotation is not estimated (kept at 0; give rotation= "
                      "to set it).", stacklevel=3)
        logger.info("%s alignment: %s; rotation kept at 0", method, why)
        rotation = 0.0
        views_indistinct = why

    if nothing:
        warnings.warn(f"Alignment: {why}; the identity is kept"
                      + (f" (with the given rotation {rotation:+.2f} deg)" if rotation else "") + ".", stacklevel=3)
        logger.info("%s alignment: %s; identity kept", method, why)
        rot = 0.0 if rotation is None else rotation
        result = Alignment.identity(n, rot).replace(
            rotation_estimate_deg=rot, estimated_on="none",
            validation={"nothing_to_align_on": True, "reason": why, "result": "identity"})
    elif method == "auto":
        result = auto(counts, refs, tilts, background, b, sigma, pm_iterations, tol_px, show, rotation, seed,
                      score_bin_to, refs_note).scaled(b)
    else:
        result = _single_method(method, counts, refs, tilts, b, sigma, rotation, pm_iterations, tol_px, show)
        if validate:
            result = result.replace(validation=validate_single_method(counts, tilts, background, result,
                                                                      score_bin_to, method))
    result = result.replace(method=method, rotation_given=rotation_given, tilts_deg=tilts.tolist(),
                            view_shape=[int(ny), int(nx)], binning=int(b), order=ORDER,
                            views_indistinct=views_indistinct, seconds=round(time.perf_counter() - t0, 3))
    return result.to_metadata()


def _single_method(method, counts, refs, tilts, b, sigma, rotation, pm_iterations, tol_px, show):
    """A single method's estimators on the reference images (or the counts), in raw pixels."""
    source = refs if refs is not None else counts
    if sigma is None:
        sigma = 1.0 if refs is not None else 1.5
    views = prepare_views(source, b, sigma)
    rot_se = None
    if method == "axis" and rotation is None and refs is None:
        rot_se = rotation_standard_error(counts, tilts, b, sigma)
    alignment = Alignment.identity(len(tilts), rotation or 0.0)
    for estimator in method_estimators(method, hold_rotation=rotation is not None, pm_iterations=pm_iterations,
                                       tol_px=tol_px / b, show=show):
        alignment = estimator.estimate(views, tilts, alignment)
    if rot_se is not None and rot_se > ROTATION_SE_WARN_DEG:
        warnings.warn(
            f"The in-plane rotation of the tilt axis ({alignment.rotation_deg:+.2f} deg) is uncertain at "
            f"these counts: the common-line estimate has a standard error of {rot_se:.1f} deg (count-split "
            "halves). If the direction of the tilt axis is known (microscope calibration, HAADF images), "
            "pass rotation=<degrees>, or use method='auto', which applies it only when held-out views confirm it.",
            stacklevel=4,  # align's caller: _single_method <- estimate_alignment <- align
        )
    return alignment.scaled(b).replace(estimated_on="reference_images" if refs is not None else "summed_counts",
                                       rotation_se_deg=rot_se, rotation_estimate_deg=float(alignment.rotation_deg))


def apply_alignment(series: ElementMapTiltSeries | EDXTiltSeries | Signal2D,
                    alignment: Alignment | dict | DictionaryTreeBrowser | BaseSignal, resample: Resample | None = None,
                    seed: int = 0) -> ElementMapTiltSeries | EDXTiltSeries | Signal2D:
    """Move ``series`` (element maps or spectrum images) by a stored alignment.

    Parameters
    ----------
    series : ElementMapTiltSeries, EDXTiltSeries or Signal2D
        A plain ``Signal2D`` with one navigation axis (the views in the
        order of the aligned series), e.g. a separate HAADF tilt series, is
        moved by interpolation; its angles are checked when its navigation
        axis is a ``tilt`` axis in degrees.
    alignment : Alignment, dict or signal
        The ``metadata.Tomography.alignment`` of an aligned series (as saved
        by any version), that series itself, or an
        :class:`~hyperspy_edxtomo.alignment.result.Alignment`.
    resample : None, "counts" or "bilinear"
        ``"counts"``: every count moves whole to one of the four pixels
        around its new position (bilinear probabilities, seeded), so integer
        counts stay Poisson counts; ``"bilinear"``: interpolation. None:
        ``"counts"`` for element maps holding integer counts, else
        ``"bilinear"``.
    seed : int
        Seed of the ``"counts"`` draws (one generator per element and view).

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        A copy of ``series`` (same class, lazy if it is lazy), every element or
        energy channel, the reference images and the background
        (``metadata.Tomography.background``, bilinear: expected counts, kept
        as the numpy array or signal it was) moved, the alignment in
        ``metadata.Tomography.alignment`` and in the history.

    Raises
    ------
    ValueError
        If the alignment lacks shifts or rotation, has another number of
        views or other tilt angles than ``series``, or was made on views of
        another aspect ratio; if the stored background is not shaped like
        the data.

    Notes
    -----
    Views of another pixel count but the same aspect ratio (for example HAADF
    images at 512 x 512 pixels beside 256 x 256 element maps of the same
    field of view) are moved by the shifts scaled by the size ratio (the
    rotation is unchanged); the stored alignment then holds the scaled shifts,
    the new ``view_shape`` and ``scaled_from_view_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> import hyperspy_edxtomo as het
    >>> counts = np.zeros((1, 3, 8, 8), np.uint8); counts[:, :, 3:5, 3:5] = 1
    >>> maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"])
    >>> moved = het.alignment.apply_alignment(maps, {"shift_x_px": [1.0, 0.0, -1.0],
    ...                                              "shift_y_px": [0.0, 0.0, 0.0], "rotation_deg": 0.0})
    >>> int(moved.data.sum()), moved.metadata.Tomography.alignment.resample
    (12, 'counts')
    """
    alignment = Alignment.from_metadata(alignment)
    i = tilt_axis_index(series)
    n, shape = view_shape(series)
    sx, sy = alignment.shift_x_px, alignment.shift_y_px
    if sx.size != n or sy.size != n:
        raise InputError(f"The alignment has {sx.size} views but this series has {n}.")
    if alignment.view_shape is not None and tuple(alignment.view_shape) != shape:
        made = tuple(int(v) for v in alignment.view_shape)
        ry, rx = shape[0] / made[0], shape[1] / made[1]
        if abs(ry / rx - 1) > 0.01:
            raise InputError(
                f"The alignment was made on {made}-pixel views; these are {shape}: the aspect ratio differs "
                f"(x {rx:.3g}, y {ry:.3g} times), so they cannot cover the same field of view. Crop or resample "
                "the views to the aligned views' shape or aspect ratio first."
            )
        # same field of view at another pixel count (e.g. HAADF images at 2x the maps' pixels):
        # shifts scale with the pixel count, the rotation does not
        sx, sy = sx * rx, sy * ry
        offset = alignment.axis_offset_px if alignment.axis_offset_px is not None else 0.0
        alignment = alignment.replace(shift_x_px=sx, shift_y_px=sy, axis_offset_px=float(offset) * rx,
                                      view_shape=[int(shape[0]), int(shape[1])], scaled_from_view_shape=list(made))
    tilts = series.tilts if hasattr(series, "tilts") else _image_tilts(series)
    if alignment.tilts_deg is not None and tilts is not None and not np.allclose(alignment.tilts_deg, tilts,
                                                                                  atol=1e-3):
        raise InputError("The alignment was made on other tilt angles than this series'.")
    rot = alignment.rotation_deg
    resample = _resample_mode(series, resample)
    refs = getattr(series, "reference_images", None)
    if refs is not None:
        check_references(series)
    bg_node, bg_data = background_node(series)
    out = with_new_data(series, transform_data(series.data, i, rot, sy, sx, resample, seed))
    alignment = alignment.replace(resample=resample, resample_seed=int(seed))
    if refs is not None:
        new_refs = with_new_data(refs, transform_data(refs.data, 0, rot, sy, sx))
        out.metadata.set_item(f"{NODE}.reference_images", new_refs)
    if bg_node is not None:
        # expected counts: interpolated like the data's expectation, so background and counts stay registered
        moved = transform_data(bg_data, i, rot, sy, sx, "bilinear")
        if hasattr(bg_node, "axes_manager"):
            moved = with_new_data(bg_node, moved)
        out.metadata.set_item(BACKGROUND, moved)
    record = alignment.to_metadata()
    out.metadata.set_item(ALIGNMENT, plain_record(record))
    append_history(out, "alignment", alignment.method if alignment.method is not None else "apply",
                   {k: v for k, v in record.items() if k not in ("order", "validation")})
    return out


def with_reference_images(series: ElementMapTiltSeries | EDXTiltSeries,
                          images: Signal2D | np.ndarray) -> ElementMapTiltSeries | EDXTiltSeries:
    """A copy of ``series`` carrying ``images`` (one HAADF/ADF image per view) as its reference images.

    Parameters
    ----------
    series : ElementMapTiltSeries or EDXTiltSeries
    images : Signal2D or numpy.ndarray
        One image per view, in the series' order, each the views' size: a
        ``Signal2D`` with one navigation axis, or an array (view, y, x).

    Returns
    -------
    A copy of ``series`` (same class) with ``metadata.Tomography.reference_images``.

    Raises
    ------
    ValueError
        Another number of images than views, images of another size, NaN.
    """
    from hyperspy.signals import Signal2D

    kind = series_kind(series)
    if kind == "images":
        raise InputTypeError("Reference images belong to an ElementMapTiltSeries or EDXTiltSeries.")
    data = images.data if hasattr(images, "axes_manager") else np.asarray(images)
    if hasattr(data, "compute"):
        data = data.compute()
    data = np.asarray(data, np.float32)
    n, shape = view_shape(series)
    if data.ndim != 3 or data.shape[0] != n:
        raise InputError(f"haadf: {data.shape[0] if data.ndim == 3 else data.shape} images for {n} views: give one "
                         "image per view, shaped (view, y, x), in the series' order.")
    if tuple(data.shape[1:]) != shape:
        raise InputError(f"haadf: the images are {tuple(data.shape[1:])} pixels but the views are {shape}: rebin or "
                         "crop them to the views' pixels first (same field of view, same pixels).")
    if not np.all(np.isfinite(data)):
        raise InputError("haadf: the images hold NaN or infinite values.")
    space = series.axes_manager.signal_axes if kind == "maps" else series.axes_manager.navigation_axes[:2]
    axes = [tilt_axis_dict(series.tilts)] + [
        {"name": a.name, "size": a.size, "offset": a.offset, "scale": a.scale, "units": a.units, "navigate": False}
        for a in sorted(space, key=lambda a: a.name != "y")]
    refs = Signal2D(data, axes=axes)
    refs.metadata.General.title = "HAADF" if not hasattr(images, "metadata") else images.metadata.General.title
    out = series.deepcopy()
    out.metadata.set_item(f"{NODE}.reference_images", refs)
    check_references(out)
    return out


def _image_tilts(images):
    """The angles of a plain image series navigated by a ``tilt`` axis in degrees, else None (unknown)."""
    axis = images.axes_manager.navigation_axes[0]
    return np.asarray(axis.axis, float) if axis.name == "tilt" and axis.units == "deg" else None


def _resample_mode(series, resample):
    if resample is not None:
        if resample not in RESAMPLE:
            raise InputError(f"Unknown resample {resample!r}: choose one of {', '.join(map(repr, RESAMPLE))}.")
        if resample == "counts" and not isinstance(series, ElementMapTiltSeries):
            raise InputError("resample='counts' applies to element maps; spectrum images use 'bilinear'.")
        return resample
    if not isinstance(series, ElementMapTiltSeries):
        return "bilinear"
    data = series.data
    if np.issubdtype(data.dtype, np.integer):
        return "counts"
    if is_lazy(series):
        return "bilinear"  # deciding would mean computing the data
    return "counts" if is_counts(data) else "bilinear"


@signal_method(EDXTiltSeries, ElementMapTiltSeries)
def align(series: ElementMapTiltSeries | EDXTiltSeries, method: Method = "auto", sigma: float | None = None,
          bin_to: int | None = 128, pm_iterations: int = 8, tol_px: float = 0.1, show_progressbar: bool | None = None,
          rotation: float | None = None, score_bin_to: int = 64, seed: int = 0, validate: bool | None = None,
          haadf: Signal2D | np.ndarray | None = None) -> ElementMapTiltSeries | EDXTiltSeries:
    """Align the views of a tilt series (see the module documentation for the methods).

    Parameters
    ----------
    method : {"auto", "xcorr", "com", "axis", "projection_matching"}
        ``"auto"``: the validated chain (shifts, axis offset, rotation,
        projection matching, each kept only when it predicts held-out views
        significantly better than the alignment before it).
    sigma : None or float
        Gaussian smoothing (pixels of the binned views) before estimation.
        None: 1 on HAADF reference images, 1.5 on counts.
    bin_to : int or None
        Views are binned (summed) to at most this many pixels for estimation.
    pm_iterations : int
        Most projection-matching rounds.
    tol_px : float
        Projection matching stops when no shift changes by more than this.
    show_progressbar : None or bool
    rotation : None or float
        In-plane rotation of the tilt axis in degrees. None: estimated (by
        ``"axis"`` and ``"auto"``). A number: used as given (a direction
        known from the microscope; 0 keeps the views unrotated), within
        (-180, 180]; only the shifts and the axis offset are estimated.
    score_bin_to : int
        The held-out criterion bins the views to at most this many pixels.
    seed : int
        Seed of ``auto``'s count split (the half the candidates are
        estimated on, the other half they are scored on).
    validate : None or bool
        For a single method: score the result on held-out views against no
        alignment, record it in ``validation`` and warn when the method is
        worse than no alignment at all (the result is not changed). None:
        False. ``"auto"`` always validates every stage.
    haadf : None, Signal2D or numpy.ndarray
        A separate HAADF (or ADF) tilt series of the same views, one image
        per view in the series' order, of the views' pixel size (a
        ``Signal2D`` navigated by the views, or an array (view, y, x)). It
        becomes the series' reference images (replacing any it carries) and
        is aligned with it: the validated chain tries shifts on it first.

    Returns
    -------
    ElementMapTiltSeries or EDXTiltSeries
        The same class, every element (energy channel, reference image,
        background) moved by the same transform (integer element maps stay
        integer counts: ``resample="counts"`` of :func:`apply_alignment`);
        shifts, axis offset, rotation and ``validation`` in
        ``metadata.Tomography.alignment``, and the step in the history.

    Raises
    ------
    ValueError
        For an unknown method, fewer than 3 views, NaN or infinite values, an
        empty view, reference images whose number or size does not match
        the views, or a ``rotation`` that is not finite or outside (-180, 180].

    Warns
    -----
    UserWarning
        When the views carry nothing to align on (all the same image; the
        identity is kept), when views' totals differ by more than 10 times
        (naming them), when a single method's rotation is uncertain or its
        result is worse than no alignment.

    See Also
    --------
    apply_alignment : move another series of the same views by the same amounts.
    alignment_score : the held-out criterion for any candidate.

    Notes
    -----
    Shifts and the rotation are bilinear with zeros outside the field of view:
    counts moved out of the field of view are lost, none wrap around.
    See ``docs/alignment.rst`` for the methods, the default chain and the
    results on simulated and real data.
    """
    series_kind(series)
    if haadf is not None:
        series = with_reference_images(series, haadf)
    alignment = estimate_alignment(series, method=method, sigma=sigma, bin_to=bin_to, pm_iterations=pm_iterations,
                                   tol_px=tol_px, show_progressbar=show_progressbar, rotation=rotation,
                                   score_bin_to=score_bin_to, seed=seed, validate=validate)
    return apply_alignment(series, alignment)


@signal_method(EDXTiltSeries, ElementMapTiltSeries, name="apply_alignment")
def apply_alignment_of(aligned: ElementMapTiltSeries | EDXTiltSeries,
                       other: ElementMapTiltSeries | EDXTiltSeries | Signal2D, resample: Resample | None = None,
                       seed: int = 0) -> ElementMapTiltSeries | EDXTiltSeries | Signal2D:
    """Move ``other`` (a series of the same views) by the alignment stored in ``aligned``.

    As a method: ``aligned.apply_alignment(other)``, e.g. raw spectrum images
    moved as their aligned element maps were. See :func:`apply_alignment`.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> s = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps = s.get_element_maps(["Se", "S", "Zn"])
    >>> moved = maps.align(method="com").apply_alignment(maps)
    >>> moved.history[-1]["step"]
    'alignment'
    """
    return apply_alignment(other, aligned, resample=resample, seed=seed)
