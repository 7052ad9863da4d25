"""The HAADF tilt series as a second measurement of the same volumes.

A HAADF view is, up to an offset per view, a sum over the elements of their
projected densities weighted by their Z-contrast. With the element volumes
``x_e`` in X-ray counts (each element's counts carry its own cross-section
and detector efficiency), the model is ``h = A sum_e c_e x_e + o`` with one
non-negative contrast ``c_e`` per element and one offset per view, both
fitted (:func:`fit_contrast`), never assumed; the exponent ``gamma`` of a
``c_e ~ Z_e^gamma`` law is reported from the fitted contrasts
(:func:`apparent_exponent`), as a check, not used.

The HAADF also guides the regulariser: its own reconstruction
(:func:`reconstruct_haadf`, strength chosen on held-out HAADF views) gives
the direction of its edges in every voxel (:func:`guide_field`), and the
elements' TV then penalises their gradients less along those directions
(directional TV, Ehrhardt & Betcke, SIAM J. Imaging Sci. 2016): edges where
the HAADF has edges are cheap, edges elsewhere are not.

Here: checks of a HAADF series against the maps (:func:`check_haadf`), its
noise level (:func:`noise_level`), the contrast fit, the HAADF volume and
its edge field.
"""

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import lsq_linear

from hyperspy_edxtomo.base.errors import InputError, warn
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.strength import (
    FALLBACK_RELATIVE,
    MIN_VIEWS,
    choose_strength,
    reference_strength,
)

__all__ = ["check_haadf", "noise_level", "fit_contrast", "apparent_exponent", "reconstruct_haadf", "guide_field",
           "HAADF_HELP", "GUIDE_EDGE"]

#: what a user can pass, for the error messages
HAADF_HELP = ("pass haadf= a HAADF tilt series (a Signal2D navigated by tilt, or an array (tilt, y, x)) "
              "acquired with the maps, or attach it to the maps (maps.with_reference_images(haadf)); "
              "vendor files that hold the HAADF image give it to the maps they make")
#: a view whose brightest value covers more than this share of its pixels is saturated there
SATURATED_SHARE = 1e-3
#: edges of the HAADF volume weaker than this share of its strongest gradient count as half an edge in the
#: guide (|xi| = |g| / sqrt(|g|^2 + eta^2)); with a perfect guide the error against the truth changed by
#: under 2x over 0.01-0.1 and an estimated guide's by under 10 % (simulated core-shell dots, 32 px)
GUIDE_EDGE = 0.03
#: views whose minimum value covers more than this share of their pixels are clipped at the black level
BLACK_CLIPPED_SHARE = 0.2
#: tilts of the HAADF series may differ from the maps' by this much (degrees)
TILT_TOLERANCE_DEG = 0.5


def check_haadf(haadf, n_tilts, view_shape, tilts=None):
    """The HAADF series as float32 ``(tilt, y, x)`` and a mask of usable pixels (or None).

    Refuses a missing series, another number of views, another view size,
    other tilt angles (when ``haadf`` is a signal with a tilt axis), values
    that are not finite, and views without contrast. Saturated pixels (the
    view's maximum repeated over more than :data:`SATURATED_SHARE` of it,
    for integer images only at an ADC limit 2^k - 1) are masked out, with a
    warning; a black level clipped in more than :data:`BLACK_CLIPPED_SHARE`
    of a view is warned about; a series whose views are darker where the
    maps hold signal is caught by the contrast fit (all contrasts 0).
    """
    if haadf is None:
        raise InputError(f"No HAADF series: {HAADF_HELP}.")
    angles = None
    if hasattr(haadf, "axes_manager"):
        nav = haadf.axes_manager.navigation_axes
        if len(nav) == 1 and nav[0].size == n_tilts:
            angles = np.asarray(nav[0].axis, float)
        data = haadf.data
        if hasattr(data, "compute"):
            data = data.compute()
    else:
        data = haadf
    raw_dtype = np.asarray(data[:1] if hasattr(data, "__getitem__") else data).dtype
    try:
        data = np.asarray(data, np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"The HAADF series is not numeric ({err}); {HAADF_HELP}.") from None
    if data.ndim != 3:
        raise InputError(f"The HAADF series must be shaped (tilt, y, x), got {data.shape}.")
    if data.shape[0] != n_tilts:
        raise InputError(f"The HAADF series has {data.shape[0]} views, the maps {n_tilts}: one HAADF view per tilt "
                         "is needed, in the maps' order.")
    if data.shape[1:] != tuple(view_shape):
        raise InputError(f"The HAADF views are {data.shape[1:]} pixels, the maps {tuple(view_shape)}: bin or crop "
                         "them to the maps' pixels (the same field of view).")
    if not np.all(np.isfinite(data)):
        raise InputError(f"The HAADF series holds {int(np.sum(~np.isfinite(data)))} NaN or infinite values.")
    if tilts is not None and angles is not None and angles.size == np.size(tilts):
        off = np.abs(angles - np.asarray(tilts, float))
        # an axis left uncalibrated (0, 1, 2, ...) says nothing about the angles
        if np.max(off) > TILT_TOLERANCE_DEG and not np.array_equal(angles, np.arange(angles.size)):
            raise InputError(f"The HAADF series' tilts {np.round(angles, 2).tolist()} differ from the maps' "
                             f"{np.round(tilts, 2).tolist()} (by up to {np.max(off):.2g} deg).")
    spread = data.max(axis=(1, 2)) - data.min(axis=(1, 2))
    flat = np.flatnonzero(spread <= 0)
    if flat.size:
        raise InputError(f"HAADF view(s) {flat.tolist()} are constant: no contrast to fit.")
    mask = np.ones(data.shape, bool)
    limits = _detector_limits(raw_dtype)
    for i, view in enumerate(data):
        top = view >= view.max()
        # a repeated maximum is saturation when the values are floats (no two equal by chance) or when it
        # sits at an ADC limit (2^k - 1); an integer image's own maximum repeated is just its brightest level
        clipped = limits is None or float(view.max()) in limits
        if top.mean() > SATURATED_SHARE and top.sum() > 1 and clipped:
            mask[i] &= ~top
    if not mask.all():
        warn(f"The HAADF series is saturated in {int((~mask).sum())} pixels ({100 * (~mask).mean():.2g} %) of "
             f"{int(np.sum(~mask.all(axis=(1, 2))))} view(s): those pixels are left out of the HAADF term.")
    floor = [i for i, view in enumerate(data) if np.mean(view <= view.min()) > BLACK_CLIPPED_SHARE]
    if floor:
        warn(f"HAADF view(s) {floor} hold their minimum value in more than {100 * BLACK_CLIPPED_SHARE:.0f} % of "
             "the pixels: the vacuum level looks clipped (black level set too high), which the fitted offset "
             "cannot undo; check the detector settings, or pass a HAADF with the vacuum above its minimum.")
    return data.astype(np.float32), (None if mask.all() else mask)


def _detector_limits(dtype):
    """The values an integer detector saturates at (2^k - 1 for 8 to 16 bits), or None for floats."""
    if not np.issubdtype(dtype, np.integer):
        return None
    return {float(2**k - 1) for k in range(8, 17)}


def noise_level(views, mask=None):
    """Standard deviation of the HAADF noise: the median absolute difference of
    horizontally neighbouring pixels (robust to edges, which are few), over sqrt(2)."""
    v = np.asarray(views, np.float64)
    d = v[..., 1:] - v[..., :-1]
    if mask is not None:
        d = d[np.asarray(mask)[..., 1:] & np.asarray(mask)[..., :-1]]
    d = np.abs(np.ravel(d))
    sigma = 1.4826 * float(np.median(d)) / np.sqrt(2)
    if sigma <= 0:
        # noise-free (simulated) or quantised views: a floor from the spread of the differences
        sigma = float(np.std(d)) / np.sqrt(2) * 1e-2 or 1e-6
    return sigma


def fit_contrast(haadf_views, projections, mask=None, max_rows=200_000, seed=0):
    """Fit ``h = sum_e c_e P_e + o_view`` with ``c_e >= 0`` and one free offset per view.

    The offsets are eliminated exactly (each view's pixels centred on their
    mean), so the bounded least squares has one column per element whatever
    the number of views; an element whose projections are all zero (no counts)
    gets ``c_e = 0``.

    Parameters
    ----------
    haadf_views : ndarray
        ``(B, n_tilts, n_x)`` measured HAADF of some slices.
    projections : ndarray
        ``(E, B, n_tilts, n_x)`` each element's projections of the same
        slices (a reconstruction's, background excluded).
    mask : ndarray of bool or None
        Pixels to use (shaped like ``haadf_views``).

    Returns
    -------
    dict
        ``coefficients`` (E,), ``offsets`` (n_tilts,), ``r2`` (share of the
        HAADF variance within the views that the model explains),
        ``residual_rms``.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.reconstruction.haadf import fit_contrast
    >>> P = np.random.default_rng(0).random((2, 4, 5, 8))
    >>> h = 3 * P[0] + 0.5 * P[1] + np.arange(5)[None, :, None]
    >>> fit = fit_contrast(h, P)
    >>> np.round(fit["coefficients"], 3).tolist(), (np.round(fit["offsets"], 3) + 0.0).tolist()
    ([3.0, 0.5], [0.0, 1.0, 2.0, 3.0, 4.0])
    """
    h = np.asarray(haadf_views, np.float64)
    P = np.asarray(projections, np.float64)
    E, n_t = P.shape[0], h.shape[1]
    keep = np.ones(h.shape, bool) if mask is None else np.asarray(mask, bool)
    h_mean = np.zeros(n_t)
    p_mean = np.zeros((E, n_t))
    targets, designs = [], []
    for t in range(n_t):
        k = keep[:, t]
        if not k.any():
            continue
        ht, pt = h[:, t][k], P[:, :, t][:, k]  # (n,), (E, n)
        h_mean[t], p_mean[:, t] = ht.mean(), pt.mean(axis=1)
        targets.append(ht - h_mean[t])
        designs.append((pt - p_mean[:, t, None]).T)
    target, design = np.concatenate(targets), np.concatenate(designs)
    if target.size > max_rows:
        pick = np.random.default_rng(seed).choice(target.size, max_rows, replace=False)
        target, design = target[pick], design[pick]
    norms = np.sqrt((design**2).sum(axis=0))
    active = norms > 1e-9 * max(float(norms.max(initial=0.0)), 1e-300)
    coef = np.zeros(E)
    if active.any():
        X = design[:, active] / norms[active]  # unit columns: the solver sees comparable scales
        fit = lsq_linear(X, target, bounds=(0.0, np.inf), method="bvls")
        coef[active] = fit.x / norms[active]
    residual = target - design @ coef
    var = float(np.mean(target**2)) if target.size else 0.0
    offsets = h_mean - coef @ p_mean
    empty = ~keep.any(axis=(0, 2))
    if empty.any():
        offsets[empty] = float(np.median(offsets[~empty])) if (~empty).any() else 0.0
    return {
        "coefficients": coef.tolist(),
        "offsets": offsets.tolist(),
        "r2": float(1 - np.mean(residual**2) / var) if var > 0 else 0.0,
        "residual_rms": float(np.sqrt(np.mean(residual**2))) if residual.size else 0.0,
    }


def apparent_exponent(coefficients, elements):
    """``gamma`` of ``c_e ~ Z_e^gamma`` fitted to the positive contrasts (log-log least squares), or None
    with fewer than two. It includes each X-ray line's detection efficiency (the volumes are in counts),
    so it matches the Z-contrast exponent (1.6-2) only for maps quantified to atom densities."""
    from hyperspy_edxtomo.base.conventions import atomic_number

    c = np.asarray(coefficients, float)
    z = np.asarray([atomic_number(e) for e in elements], float)
    ok = c > 0
    if ok.sum() < 2 or np.ptp(np.log(z[ok])) == 0:
        return None
    return float(np.polyfit(np.log(z[ok]), np.log(c[ok]), 1)[0])


def reconstruct_haadf(haadf_sinograms, offsets, projector, iterations=300, max_slices=32, mask=None):
    """The HAADF volume: least-squares TV of the HAADF views minus their offsets, the strength chosen on
    held-out HAADF views (:func:`~hyperspy_edxtomo.reconstruction.strength.choose_strength`).

    Parameters
    ----------
    haadf_sinograms : ndarray
        ``(n_slices, n_tilts, n_x)``.
    offsets : sequence of float
        One per view (:func:`fit_contrast`).
    mask : ndarray of bool or None
        Usable pixels (``haadf_sinograms``' shape); the others (saturated,
        turned in from outside the field) take the value of their nearest
        usable pixel in the same view, so that they make no edge.

    Returns
    -------
    slices : ndarray
        ``(n_slices, n_z, n_x)`` float32.
    record : dict
        The strength selection.
    """
    h = np.asarray(haadf_sinograms, np.float32) - np.asarray(offsets, np.float32)[None, :, None]
    if mask is not None and not np.all(mask):
        h = _fill_from_nearest(h, np.asarray(mask, bool))

    def solve(P, y, lam, b):
        return solvers.tv(P, y, lam, min(int(iterations), 200), data_term="least_squares", background=b)

    if h.shape[1] < MIN_VIEWS:
        # no views to hold out: the centre of the candidates, said in the record
        lam = FALLBACK_RELATIVE * reference_strength(h, projector, "least_squares")
        record = {"criterion": "none", "chosen": float(lam),
                  "reason": f"{h.shape[1]} views, under {MIN_VIEWS}: none can be held out; the centre of the candidates"}
    else:
        lam, record = choose_strength(solve, h, projector, criterion="held_out_views", max_slices=max_slices,
                                      refine=1)
    x = solvers.tv(projector, solvers.sinograms_to_cols(h, projector.device), lam, iterations,
                   data_term="least_squares")
    return solvers.cols_to_slices(x, projector.slice_shape), record


def guide_field(slices, edge=GUIDE_EDGE):
    """``xi = grad h / sqrt(|grad h|^2 + eta^2)`` of a volume ``(B, n_z, n_x)``, with ``eta`` ``edge`` times
    its strongest gradient: ``(3, B, n_z, n_x)`` float32 numpy, ``|xi| < 1``."""
    v = torch.from_numpy(np.ascontiguousarray(slices, np.float32))
    g = solvers.gradient3d(v)
    mag = torch.sqrt((g**2).sum(0))
    eta = max(edge * float(mag.max()), 1e-30)
    return (g / torch.sqrt(mag**2 + eta**2)).numpy()


def _fill_from_nearest(sinograms, mask):
    """Every unusable pixel of each view ``(B, n_tilts, n_x)`` replaced by its nearest usable one."""
    out = np.array(sinograms, copy=True)
    for t in range(out.shape[1]):
        good = mask[:, t]
        if good.all() or not good.any():
            continue
        _, (iy, ix) = ndimage.distance_transform_edt(~good, return_indices=True)
        out[:, t] = out[:, t][iy, ix]
    return out
