"""The estimators: shifts, tilt-axis offset, in-plane rotation, projection matching.

Each estimator is a small object with one method,
``estimate(views, tilts, alignment) -> Alignment``: it takes the prepared
views (``(tilt, y, x)``, see :func:`~hyperspy_edxtomo.alignment.views.prepare_views`),
the tilt angles (degrees) and the alignment found so far, and returns that
alignment with what it estimates replaced. Shifts and the axis offset are in
the pixels of the views it is given. A method is a sequence of them
(:func:`method_estimators`), and ``auto`` chains them stage by stage
(:mod:`~hyperspy_edxtomo.alignment.policy`).

* :class:`CentreOfMass` (``com``): shifts putting the centres of mass on a rigid path;
* :class:`CrossCorrelation` (``xcorr``): shifts from chained, cosine-stretched cross-correlation;
* :class:`AxisOffset`: the tilt-axis offset (common lines, the rotation held);
* :class:`CommonLine` (``axis``): rotation and offset (common lines), then centre-of-mass shifts;
* :class:`FixedRotation`: a given rotation, then shifts and offset on the turned views;
* :class:`ProjectionMatching`: shifts refined against re-projections of a reconstruction.

Below them, the functions on arrays: :func:`estimate_com`,
:func:`estimate_xcorr`, :func:`estimate_axis`, :func:`estimate_projection_matching`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.alignment.result import Alignment
from hyperspy_edxtomo.alignment.transform import transform_stack, transform_view
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.progress import finish, progress_bar
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.reconstruction.api import reconstruct
from hyperspy_edxtomo.reconstruction.field import check_field_margin, default_field_margin
from hyperspy_edxtomo.reconstruction.projector import Projector, csr_product, largest_useful_margin
from hyperspy_edxtomo.signals.element_maps import element_maps_from_array

__all__ = ["EDGE_FRACTION", "MASS_OUTLIER_K", "Estimator", "CentreOfMass", "CrossCorrelation", "AxisOffset",
           "CommonLine", "FixedRotation", "ProjectionMatching", "method_estimators", "register", "estimate_xcorr",
           "centre_of_mass", "rigid_path_fit", "estimate_com", "estimate_axis", "sirt_reproject",
           "estimate_projection_matching"]

#: a row band is cut by the field edge when this fraction of its counts lies in the outer columns
EDGE_FRACTION = 0.02
#: a row band's mass moving by this many robust standard deviations between views: something entered or left
MASS_OUTLIER_K = 5.0


# ---------------------------------------------------------------------------------
# the estimators: one signature


class Estimator(Protocol):
    """What every estimator is: a ``name`` and ``estimate(views, tilts, alignment) -> Alignment``."""

    name: str

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        """``alignment`` with what this estimator finds on ``views`` (``(tilt, y, x)``) replaced."""
        ...


def _turned(views, rotation_deg):
    # shift estimators work on the views turned by the rotation found (or given) so far
    n = views.shape[0]
    return transform_stack(views, rotation_deg, np.zeros(n), np.zeros(n)) if rotation_deg else views


class CentreOfMass:
    """Shifts putting every view's centre of mass on a rigid path about the centre column
    (:func:`estimate_com`); the axis offset starts again from 0."""

    name = "com"

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        sy, sx = estimate_com(_turned(views, alignment.rotation_deg), tilts)
        return alignment.replace(shift_y_px=sy, shift_x_px=sx, axis_offset_px=0.0)


class CrossCorrelation:
    """Shifts from the chained cross-correlation of neighbouring views (:func:`estimate_xcorr`);
    the axis offset starts again from 0."""

    name = "xcorr"

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        sy, sx = estimate_xcorr(_turned(views, alignment.rotation_deg), tilts)
        return alignment.replace(shift_y_px=sy, shift_x_px=sx, axis_offset_px=0.0)


class AxisOffset:
    """The tilt-axis offset from the common-line condition, the rotation held: the shifts across
    the axis move by it, and it adds to the offset so far."""

    name = "axis offset"

    def measure(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> float:
        """The offset (columns) still left after ``alignment``."""
        return estimate_axis(views, tilts, alignment.shift_y_px, alignment.shift_x_px,
                             rotation=alignment.rotation_deg)[1]

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        off = self.measure(views, tilts, alignment)
        return alignment.replace(shift_x_px=alignment.shift_x_px - off, axis_offset_px=alignment.axis_offset_px + off)


@dataclass
class CommonLine:
    """Method ``"axis"`` after the shifts: the in-plane rotation and the axis offset from the
    common-line condition (:func:`estimate_axis`; with ``hold_rotation`` only the offset, the
    rotation so far kept), then centre-of-mass shifts again on the turned views (the rotation
    moves the centres)."""

    hold_rotation: bool = False
    name = "axis"

    def measure(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> tuple[float, float, dict]:
        """(rotation, offset, what the fit used) from the views after ``alignment``'s shifts."""
        rotation = alignment.rotation_deg if self.hold_rotation else None
        return estimate_axis(views, tilts, alignment.shift_y_px, alignment.shift_x_px, rotation=rotation,
                             return_info=True)

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        rot, off, _ = self.measure(views, tilts, alignment)
        n = views.shape[0]
        sy, sx = estimate_com(transform_stack(views, rot, np.zeros(n), np.zeros(n)), tilts)
        return alignment.replace(rotation_deg=rot, axis_offset_px=off, shift_y_px=sy, shift_x_px=sx - off)


@dataclass
class FixedRotation:
    """A rotation found elsewhere (``auto``'s rotation stage), then ``shifts`` estimated again on
    the turned views and the axis offset at that rotation (:class:`AxisOffset`)."""

    rotation_deg: float
    shifts: Estimator
    name = "rotation"

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        turned = self.shifts.estimate(views, tilts, alignment.replace(rotation_deg=float(self.rotation_deg)))
        return AxisOffset().estimate(views, tilts, turned)


@dataclass
class ProjectionMatching:
    """Shifts refined by registering every view to the re-projection of a reconstruction
    (:func:`estimate_projection_matching`), from the alignment so far (rotation kept)."""

    max_iter: int = 8
    tol_px: float = 0.1
    show: bool = False
    field_margin: int | None = None
    name = "projection_matching"

    def estimate(self, views: np.ndarray, tilts: np.ndarray, alignment: Alignment) -> Alignment:
        sy, sx, n_done = estimate_projection_matching(views, tilts, alignment.rotation_deg, alignment.shift_y_px,
                                                      alignment.shift_x_px, max_iter=self.max_iter,
                                                      tol_px=self.tol_px, show=self.show,
                                                      field_margin=self.field_margin)
        return alignment.replace(shift_y_px=sy, shift_x_px=sx, projection_matching_iterations=int(n_done))


def method_estimators(method: Literal["xcorr", "com", "axis", "projection_matching"], hold_rotation: bool = False,
                      pm_iterations: int = 8, tol_px: float = 0.1, show: bool = False) -> list[Estimator]:
    """The estimators of a single method, in order (every method but ``xcorr`` starts from ``com``).

    Examples
    --------
    >>> from hyperspy_edxtomo.alignment.estimators import method_estimators
    >>> [e.name for e in method_estimators("axis")]
    ['com', 'axis']
    """
    if method == "xcorr":
        return [CrossCorrelation()]
    if method == "com":
        return [CentreOfMass()]
    if method == "axis":
        return [CentreOfMass(), CommonLine(hold_rotation=hold_rotation)]
    if method == "projection_matching":
        return [CentreOfMass(), ProjectionMatching(max_iter=pm_iterations, tol_px=tol_px, show=show)]
    raise InputError(f"No estimators for method {method!r}: choose one of xcorr, com, axis, projection_matching.")


# ---------------------------------------------------------------------------------
# shifts


def register(ref: np.ndarray, img: np.ndarray, upsample: int = 20) -> tuple[float, float]:
    """Shift (dy, dx) that moves ``img`` onto ``ref`` (cross-correlation, zero-padded, sub-pixel)."""
    from skimage.registration import phase_cross_correlation

    ny, nx = ref.shape
    pad = ((ny // 2, ny // 2), (nx // 2, nx // 2))
    a = np.pad(np.asarray(ref, float), pad)
    b = np.pad(np.asarray(img, float), pad)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=upsample, normalization=None)
    return float(shift[0]), float(shift[1])


def _stretch_x(img, factor):
    """Stretch a view across the axis (columns) by ``factor`` about the centre column."""
    if abs(factor - 1) < 1e-9:
        return img
    ny, nx = img.shape
    c = (nx - 1) / 2
    matrix = np.array([[1.0, 0.0], [0.0, 1.0 / factor]])
    offset = np.array([0.0, c - c / factor])
    return ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant")


def estimate_xcorr(stack: np.ndarray, tilts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chained cross-correlation of neighbouring views, cosine-stretched: shifts (rows, columns)."""
    n = stack.shape[0]
    cos = np.cos(np.deg2rad(tilts))
    sy, sx = np.zeros(n), np.zeros(n)
    i0 = int(np.argmin(np.abs(tilts)))
    for step, rng in ((-1, range(i0 - 1, -1, -1)), (1, range(i0 + 1, n))):
        for t in rng:
            ref = transform_view(stack[t - step], 0, sy[t - step], sx[t - step])
            factor = cos[t - step] / cos[t]
            dy, dx = register(ref, _stretch_x(stack[t], factor))
            sy[t], sx[t] = dy, dx / factor
    return sy, sx


def centre_of_mass(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (row, column) of every view of a ``(tilt, y, x)`` stack."""
    n, ny, nx = stack.shape
    yy, xx = np.mgrid[:ny, :nx]
    tot = stack.sum((1, 2))
    return (stack * yy).sum((1, 2)) / tot, (stack * xx).sum((1, 2)) / tot


def rigid_path_fit(cy, cx, tilts, centre_x=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Fit centres to a rigid body's path: ``(a +) x0 cos + z0 sin`` across, constant along.

    Returns (fitted_y, fitted_x, residual_rms_px). With ``centre_x`` the axis
    is held at that column; otherwise its column ``a`` is fitted too.
    """
    th = np.deg2rad(tilts)
    if centre_x is None:
        A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
        coef, *_ = np.linalg.lstsq(A, cx, rcond=None)
        fx = A @ coef
    else:
        A = np.stack([np.cos(th), np.sin(th)], 1)
        coef, *_ = np.linalg.lstsq(A, cx - centre_x, rcond=None)
        fx = centre_x + A @ coef
    fy = np.full_like(cy, cy.mean())
    rms = float(np.sqrt(np.mean((cx - fx) ** 2 + (cy - fy) ** 2)))
    return fy, fx, rms


def estimate_com(stack: np.ndarray, tilts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre-of-mass shifts putting the object on a rigid path about the centre column."""
    cy, cx = centre_of_mass(stack)
    nx = stack.shape[2]
    fy, fx, _ = rigid_path_fit(cy, cx, tilts, centre_x=(nx - 1) / 2)
    return fy - cy, fx - cx


# ---------------------------------------------------------------------------------
# tilt-axis offset and rotation: the common-line condition


def _band_fits(views, tilts, band):
    """Per row band: the axis column ``a`` of its rigid fit and its standard error, and whether the band is whole.

    Returns a dict of arrays, one entry per band with counts in every view:
    ``y`` (band centre from the centre row), ``a`` (from the centre column),
    ``se`` (standard error of ``a`` from the fit's residuals), ``edge``
    (largest fraction of the band's counts in the outer columns over the
    views), ``mass`` (largest change of the band's counts between views, in
    robust standard deviations of such changes over all bands, after a robust
    per-view dose factor: a rigid object keeps the counts of every row at
    every tilt).
    """
    n, ny, nx = views.shape
    th = np.deg2rad(tilts)
    A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
    var_a = float(np.linalg.inv(A.T @ A)[0, 0])
    xx = np.arange(nx)
    edge_w = max(1, nx // 32)
    floor = 0.02 * views.sum() / n / (ny / band)
    ys, a, se, edge, masses = [], [], [], [], []
    for y0 in range(0, ny - band + 1, band):
        prof = views[:, y0 : y0 + band].sum(1)  # (tilt, x)
        m = prof.sum(1)
        if np.any(m <= floor):
            continue
        cx = (prof * xx).sum(1) / m
        coef, *_ = np.linalg.lstsq(A, cx, rcond=None)
        res = cx - A @ coef
        ys.append(y0 + (band - 1) / 2 - (ny - 1) / 2)
        a.append(coef[0] - (nx - 1) / 2)
        se.append(np.sqrt(float(res @ res) / max(n - 3, 1) * var_a))
        edge.append(float(((prof[:, :edge_w].sum(1) + prof[:, -edge_w:].sum(1)) / m).max()))
        masses.append(m)
    if not ys:
        return None
    M = np.array(masses)  # (band, tilt)
    R = M / np.median(M, axis=1, keepdims=True)
    R = R / np.median(R, axis=0, keepdims=True)  # a robust dose factor per view
    dev = R - 1
    scale = 1.4826 * np.median(np.abs(dev))
    mass = np.abs(dev).max(1) / max(scale, 1e-12)
    return {"y": np.array(ys), "a": np.array(a), "se": np.array(se), "edge": np.array(edge), "mass": mass}


def _robust_line(x, y, se, k=1.345, iterations=30):
    """Huber line ``y = intercept + slope x``, weights ``1 / se**2``: (slope, intercept, slope's se)."""
    w0 = 1.0 / np.maximum(se, 1e-3 * max(float(np.median(se)), 1e-9)) ** 2
    h = np.ones_like(y)
    X = np.stack([np.ones_like(x), x], 1)
    coef = np.zeros(2)
    for _ in range(iterations):
        w = w0 * h
        WX = X * w[:, None]
        coef = np.linalg.solve(X.T @ WX + 1e-12 * np.eye(2), WX.T @ y)
        r = (y - X @ coef) * np.sqrt(w0)
        scale = 1.4826 * np.median(np.abs(r))
        if scale <= 0:
            break
        h_new = np.minimum(1.0, k / np.maximum(np.abs(r) / scale, 1e-12))
        if np.allclose(h_new, h, atol=1e-4):
            break
        h = h_new
    w = w0 * h
    cov = np.linalg.inv(X.T @ (X * w[:, None]) + 1e-12 * np.eye(2))
    r = (y - X @ coef) * np.sqrt(w)
    s2 = float(r @ r) / max(len(y) - 2, 1)
    return float(coef[1]), float(coef[0]), float(np.sqrt(cov[1, 1] * s2))


def estimate_axis(stack: np.ndarray, tilts: np.ndarray, sy, sx, passes: int = 10, tol_deg: float = 0.02,
                  show: bool = False, rotation: float | None = None, band: int = 3, return_info: bool = False):
    """In-plane rotation and tilt-axis offset from the sinogram of every row band (common-line condition).

    After the shifts, every row band of a rigid object's views traces
    ``a(y) + x0 cos(theta) + z0 sin(theta)`` with its centre of mass;
    ``a(y)`` is where the tilt axis crosses row ``y``. A straight line through
    the ``a(y)`` gives the offset (at the centre row) and the in-plane
    rotation (its slope); repeated until the corrections vanish. With
    ``rotation`` given, only the offset is estimated.

    Only bands that are whole in every view enter the line: bands with more
    than ``EDGE_FRACTION`` of their counts in the outer columns of any view
    (a particle cut by the field edge) and bands whose counts change between
    views by more than ``MASS_OUTLIER_K`` robust standard deviations (a
    particle entering or leaving the field; a rigid object keeps the counts
    of every row at every tilt) are left out. The line is a Huber fit
    weighted by each band's standard error, so a band whose centres do not
    follow a rigid path (what the rest of the field does) weighs little, and
    a chain or rod along the axis, which gives many consistent bands, cannot
    tilt it.

    Returns ``(rotation_deg, offset_px)``, with ``return_info`` also a dict
    (bands used and left out, the slope's standard error in degrees).
    """
    n, ny, nx = stack.shape
    rot, off = (0.0 if rotation is None else float(rotation)), 0.0
    info = {"bands_used": 0, "bands_cut_by_edge": 0, "bands_changing_mass": 0, "rotation_fit_se_deg": float("nan"),
            "passes": 0}
    for _ in range(passes):
        views = transform_stack(stack, rot, sy, sx - off)
        fits = _band_fits(views, tilts, band)
        if fits is None:
            break
        whole = (fits["edge"] <= EDGE_FRACTION) & (fits["mass"] <= MASS_OUTLIER_K)
        info.update(bands_used=int(whole.sum()), bands_cut_by_edge=int((fits["edge"] > EDGE_FRACTION).sum()),
                    bands_changing_mass=int((fits["mass"] > MASS_OUTLIER_K).sum()))
        if whole.sum() < 3:
            break
        slope, intercept, slope_se = _robust_line(fits["y"][whole], fits["a"][whole], fits["se"][whole])
        info["rotation_fit_se_deg"] = float(np.rad2deg(slope_se))
        info["passes"] += 1
        step = float(np.rad2deg(np.arctan(slope))) if rotation is None else 0.0
        rot += step
        off += float(intercept)
        if abs(step) < tol_deg and abs(intercept) < 0.02:
            break
    return (rot, off, info) if return_info else (rot, off)


# ---------------------------------------------------------------------------------
# projection matching


def sirt_reproject(sinograms: np.ndarray, train_tilts, predict_tilts, iterations: int,
                   field_margin: int = 0) -> np.ndarray:
    """SIRT (non-negative, ``iterations``) of ``sinograms`` (slice, tilt, x) with the shared
    projector's matrix, re-projected at ``predict_tilts``: (slice, predicted tilt, x).

    ``field_margin``: pixels the slices extend beyond the views on each side
    (:class:`~hyperspy_edxtomo.reconstruction.projector.Projector`), so that material outside
    the field at some tilts has voxels to go to instead of being spread over the field.

    The update of :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt`, ``x <- max(x + C A^T R (y - A x), 0)``,
    written out so that a fixed number of iterations here cannot be moved by defaults changed
    elsewhere. The products are the projector's
    :func:`~hyperspy_edxtomo.reconstruction.projector.csr_product`: scipy's for small problems
    (binned views, where a thread pool costs more than it gives), all cores for large ones
    (QD1 at 128 px aligned in 22 s instead of 39 s on two cores, same shifts).
    """
    B, T, nx = sinograms.shape
    P = Projector(train_tilts, n_x=nx, cuda=False, field_margin=int(field_margin))
    A, At = P.matrix
    row, col = np.asarray(A.sum(axis=1)).ravel(), np.asarray(A.sum(axis=0)).ravel()
    R = np.where(row > 1e-6, 1.0 / np.maximum(row, 1e-6), 0.0).astype(np.float32)[:, None]
    C = np.where(col > 1e-6, 1.0 / np.maximum(col, 1e-6), 0.0).astype(np.float32)[:, None]
    y = np.ascontiguousarray(np.asarray(sinograms, np.float32).reshape(B, -1).T)
    x = np.zeros((A.shape[1], B), np.float32)
    for _ in range(int(iterations)):
        x += C * csr_product(At, R * (y - csr_product(A, x)))
        np.maximum(x, 0, out=x)
    Q = Projector(predict_tilts, n_x=nx, cuda=False, field_margin=int(field_margin))
    return np.ascontiguousarray(csr_product(Q.matrix[0], x).T).reshape(B, len(np.atleast_1d(predict_tilts)), nx)


def estimate_projection_matching(stack: np.ndarray, tilts: np.ndarray, rotation_deg: float, sy, sx,
                                 method: str = "sirt", iterations: int = 30, max_iter: int = 8, tol_px: float = 0.1,
                                 sigma: float = 1.0, show: bool = False,
                                 field_margin: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Refine shifts by registering each view to the re-projection of a reconstruction.

    ``method="sirt"`` (default): SIRT of ``iterations`` through the shared
    projector and :func:`~hyperspy_edxtomo.reconstruction.solvers.sirt` directly (defaults
    changed elsewhere cannot move it); every view is first scaled to the mean
    total, so that views of another dose do not dominate. Another method
    name goes through :func:`~hyperspy_edxtomo.reconstruction.api.reconstruct`.

    ``field_margin`` (``"sirt"`` only): pixels the SIRT slices extend beyond
    the views on each side; None: :func:`~hyperspy_edxtomo.reconstruction.field.default_field_margin`
    of the views' width. A particle cut by the field's edge, or one entering
    it at high tilt, then has voxels of its own, and its counts do not pull
    the re-projections (and the shifts) of the rest.

    Returns the shifts (rows, columns) and the number of rounds done.
    """
    n, ny, nx = stack.shape
    sy, sx = np.array(sy, float), np.array(sx, float)
    if field_margin is not None:
        check_field_margin(field_margin, tilts, nx)
    margin = default_field_margin(nx, largest_useful_margin(tilts, nx)) if field_margin is None else int(field_margin)
    n_done = 0
    bar = progress_bar(total=max_iter, desc="Projection matching", show=show)
    for _ in range(max_iter):
        views = transform_stack(stack, rotation_deg, sy, sx).astype(np.float64)
        tot = views.sum((1, 2))
        views = views * (tot.mean() / np.where(tot > 0, tot, tot.mean()))[:, None, None]
        if method == "sirt":
            reproj = sirt_reproject(views.transpose(1, 0, 2), tilts, tilts, iterations, margin).transpose(1, 0, 2)
        else:
            maps = element_maps_from_array(views[None].astype(np.float32), tilts, ["Zn"])
            # the iteration count goes to an algorithm that has one (the class says, not its name)
            iterative = "iterations" in get_algorithm(method).parameter_names()
            vol = reconstruct(maps, method=method, cuda=False, show_progressbar=False,
                              **({"iterations": iterations} if iterative else {}))
            rec = np.ascontiguousarray(vol.to_numpy()[0].transpose(1, 0, 2), np.float32)  # (y, z, x)
            reproj = Projector(tilts, n_x=nx, cuda=False).forward(rec).transpose(1, 0, 2)
        d = np.array([register(ndimage.gaussian_filter(reproj[t], sigma), ndimage.gaussian_filter(views[t], sigma))
                      for t in range(n)])
        d[:, 0] -= d[:, 0].mean()  # a common shift along the axis is free
        sy += d[:, 0]
        sx += d[:, 1]
        n_done += 1
        bar.update(1)
        if np.max(np.abs(d)) < tol_px:
            break
    finish(bar)
    bar.close()
    return sy, sx, n_done
