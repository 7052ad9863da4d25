"""Elements reconstructed together: a coupled (multi-channel) TV, and the HAADF term.

:func:`coupled_tv` solves, for all elements of a batch of slices at once::

    min_{x >= 0}  sum_e D_e(A x_e + b_e, y_e)
                + (w / 2) || M (A sum_e c_e x_e + o - h) / sigma_h ||^2      (HAADF, optional)
                + lam sum_voxels sqrt( sum_e |P grad x_e / s_e|^2 )

``D_e`` is the Poisson negative log-likelihood of element ``e``'s counts (or
least squares weighted by ``s_e^-1``, variance proportional to the signal as
for counts, for maps that are not counts), ``h``
the HAADF views with a per-view offset ``o`` and a mask ``M`` of usable
pixels, ``c_e`` each element's HAADF contrast per unit of its X-ray signal and
``s_e = m_e / mean_geometric(m)`` the elements' magnitudes relative to each
other, so that a faint element's edges count as much in the coupled TV as a
bright one's, and ``P`` the identity or, with a guide ``xi`` (the HAADF
volume's normalised gradient) of strength ``gamma``, ``I - gamma^2 xi xi^T``. With one element and no HAADF it is exactly
:func:`~hyperspy_edxtomo.reconstruction.solvers.tv` (a test checks this).

Chambolle-Pock with diagonal preconditioning (Pock & Chambolle, ICCV 2011),
in the variables ``u_e = x_e / m_e`` (``m_e`` the magnitude of element ``e``
from 5 SIRT iterations), torch on the projector's device: one projection and
one back-projection of all elements per iteration (the HAADF forward model
is a combination of the elements' projections, so it costs no projection).
"""

import dataclasses

import numpy as np
import torch

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.reconstruction.solvers import (
    CONTINUE_TOL,
    DATA_TERMS,
    convergence,
    divergence3d,
    gradient3d,
    inverse,
    prepare_background,
    row_col_sums,
    sirt,
)

__all__ = ["HaadfTerm", "coupled_tv", "element_scales", "project_elements", "coupled_objective"]


@dataclasses.dataclass
class HaadfTerm:
    """The HAADF data term of :func:`coupled_tv`, in the column layout of the counts.

    Attributes
    ----------
    views : torch.Tensor
        Measured HAADF ``(n_tilts * n_x, B)``, rows as the counts' rows.
    coefficients : sequence of float
        ``c_e``: HAADF per unit of each element's X-ray signal (>= 0).
    offsets : torch.Tensor
        ``o``: the HAADF of an empty column, ``(n_tilts * n_x, 1)`` (one value per view).
    noise : float
        ``sigma_h``: standard deviation of the HAADF noise.
    weight : float
        ``w`` >= 0; 0 drops the term.
    mask : torch.Tensor or None
        1 where a HAADF pixel is used, 0 where not (saturated); None: all.
    """

    views: torch.Tensor
    coefficients: tuple
    offsets: torch.Tensor
    noise: float
    weight: float
    mask: torch.Tensor | None = None


def element_scales(projector, ys, backgrounds=None):
    """``m_e``: the magnitude of each element's volume (the maximum of 5 SIRT
    iterations on its background-free data). An element without signal gets
    the geometric mean of the others (1 when none has any), so that it does
    not change the scale of the strength for them.

    The scales define the problem (the coupled TV weighs each element by
    ``1 / s_e``): compute them once per series and pass them to every solve of
    it (``scales=`` of :func:`coupled_tv`)."""
    scales = []
    for e in range(ys.shape[0]):
        y = ys[e] if backgrounds is None else (ys[e] - backgrounds[e]).clamp_min(0)
        scales.append(float(sirt(projector, y, 5).max()))
    scales = np.asarray(scales, np.float64)
    positive = scales > 0
    scales[~positive] = _geometric_mean(scales[positive]) if positive.any() else 1.0
    return scales


def project_elements(projector, u):
    """``A u_e`` for every element at once: ``(E, n_vox, B) -> (E, n_rows, B)``."""
    E, V, B = u.shape
    out = projector.fp_cols(u.permute(1, 0, 2).reshape(V, E * B))
    return out.reshape(-1, E, B).permute(1, 0, 2)


def _backproject_elements(projector, p):
    E, R, B = p.shape
    out = projector.bp_cols(p.permute(1, 0, 2).reshape(R, E * B))
    return out.reshape(-1, E, B).permute(1, 0, 2)


def _volumes(u, slice_shape):
    """``(E, n_vox, B)`` -> ``(E, B, n_z, n_x)`` (a copy only when not contiguous)."""
    E, _, B = u.shape
    return u.transpose(1, 2).reshape(E, B, *slice_shape)


def _columns(v):
    """``(E, B, n_z, n_x)`` -> ``(E, n_vox, B)``."""
    E, B = v.shape[:2]
    return v.reshape(E, B, -1).transpose(1, 2)


def _data_terms(data_terms, n):
    terms = [data_terms] * n if isinstance(data_terms, str) else list(data_terms)
    if len(terms) != n or any(t not in DATA_TERMS for t in terms):
        raise InputError(f"data_terms must be one of {DATA_TERMS} or one per element ({n}), got {data_terms!r}")
    return terms


def coupled_objective(projector, x, ys, lam, data_terms, backgrounds, haadf, scales, guide=None):
    """The objective :func:`coupled_tv` minimises, at ``x`` (``(E, n_vox, B)``, counts per voxel), each
    data term written to be 0 for a perfect fit (as :func:`~hyperspy_edxtomo.reconstruction.solvers.objective`)."""
    terms = _data_terms(data_terms, ys.shape[0])
    scales = np.asarray(scales, np.float64)
    ax = project_elements(projector, x)
    total = 0.0
    for e, term in enumerate(terms):
        mu = ax[e] if backgrounds is None else ax[e] + backgrounds[e]
        y = ys[e]
        if term == "least_squares":
            total += float(((mu - y) ** 2).sum()) * _geometric_mean(scales) / (2 * scales[e])
        else:
            mu = mu.clamp_min(1e-9)
            ratio = torch.where(y > 0, y / mu, torch.ones_like(y))
            total += float((mu - y).sum() + (y * torch.log(ratio)).sum())
    if haadf is not None and haadf.weight > 0:
        model = sum(float(c) * ax[e] for e, c in enumerate(haadf.coefficients)) + haadf.offsets
        r = (model - haadf.views) / haadf.noise
        if haadf.mask is not None:
            r = r * haadf.mask
        total += 0.5 * haadf.weight * float((r**2).sum())
    rel = torch.as_tensor(scales / _geometric_mean(scales), dtype=x.dtype, device=x.device)[:, None, None]
    g = _guided(gradient3d(_volumes(x / rel, projector.slice_shape)), guide)
    return total + float(lam) * float(torch.sqrt((g**2).sum(dim=(0, 1))).sum())


def _geometric_mean(values):
    return float(np.exp(np.mean(np.log(np.asarray(values, np.float64)))))


def _guided(g, guide):
    """``P g`` with ``P = I - xi xi^T`` per voxel (``guide`` is ``xi``, ``(3, B, n_z, n_x)``, ``|xi| <= 1``):
    the part of each element's gradient not along the guide's. ``P`` is symmetric and a contraction, so
    the TV block's step sizes stay valid."""
    if guide is None:
        return g
    along = (g * guide[:, None]).sum(0, keepdim=True)  # (1, E, B, n_z, n_x)
    return g - guide[:, None] * along


def coupled_tv(projector, ys, lam, iterations, data_terms="poisson", backgrounds=None, haadf=None, scales=None,
               return_info=False, guide=None, max_iterations=None):
    """Reconstruct all elements of a batch of slices together (see the module docstring for the problem).

    Parameters
    ----------
    projector : Projector
    ys : torch.Tensor
        ``(E, n_tilts * n_x, B)`` the elements' sinograms (column layout).
    lam : float
        TV strength (> 0), on the scale of :func:`~hyperspy_edxtomo.reconstruction.solvers.tv`
        (with one element the problems are the same).
    iterations : int
    data_terms : str or sequence of str
        ``"poisson"`` or ``"least_squares"``, for all elements or one each.
    backgrounds : torch.Tensor or None
        Expected background counts ``b_e``, shaped like ``ys``.
    haadf : HaadfTerm or None
    scales : sequence of float or None
        ``m_e``; None: :func:`element_scales` of ``ys`` (pass the series' own
        when solving it in batches: they are part of the problem).
    return_info : bool
        Also return :func:`~hyperspy_edxtomo.reconstruction.solvers.convergence` of the objective.
    guide : torch.Tensor or None
        ``gamma xi`` ``(3, B, n_z, n_x)``: the directional TV replaces each
        gradient ``g`` by ``g - (gamma xi)(gamma xi . g)``, i.e.
        ``P = I - gamma^2 xi xi^T`` (edges along the guide's cost less);
        None: the coupled TV.
    max_iterations : int or None
        As :func:`~hyperspy_edxtomo.reconstruction.solvers.tv`: while the
        convergence measure reads over half the tolerance, the iterations
        double, up to this many (None: ``iterations``). The iterations run
        are in the information (``"iterations"``).

    Returns
    -------
    x : torch.Tensor
        ``(E, n_z * n_x, B)``, counts per voxel.
    info : dict
        With ``return_info``.
    """
    lam = float(lam)
    if not np.isfinite(lam) or lam <= 0:
        raise InputError(f"The TV strength must be a finite number > 0, got {lam!r}.")
    if ys.ndim != 3:
        raise InputError(f"coupled_tv needs sinograms shaped (element, rows, slices), got {tuple(ys.shape)}")
    E, R, B = ys.shape
    terms = _data_terms(data_terms, E)
    iterations = int(iterations)
    max_iterations = iterations if max_iterations is None else max(int(max_iterations), iterations)
    if backgrounds is not None:
        backgrounds = torch.stack([prepare_background(ys[e], backgrounds[e]) for e in range(E)])
    m = element_scales(projector, ys, backgrounds) if scales is None else np.asarray(scales, np.float64)
    dev, dt = ys.device, torch.float32
    m_t = torch.as_tensor(m, dtype=dt, device=dev)[:, None, None]
    lam_u = lam * _geometric_mean(m)
    row, col = row_col_sums(projector, dev)  # (R, 1), (V, 1)
    use_haadf = haadf is not None and haadf.weight > 0 and any(c > 0 for c in haadf.coefficients)
    if use_haadf:
        a = torch.as_tensor(np.asarray(haadf.coefficients, np.float64) * m, dtype=dt, device=dev)[:, None, None]
        s = float(np.sqrt(haadf.weight) / haadf.noise)
        target = s * (haadf.views - haadf.offsets)
        hmask = haadf.mask
        sigma_h = inverse(s * row * float(a.sum()))
        haadf_cols = s * a * col  # (E, V, 1)
    else:
        haadf_cols = 0.0
    sigma_p = inverse(m_t * row)  # (E, R, 1)
    tau = 1.0 / (m_t * col + haadf_cols + 6.0 * lam_u)  # (E, V, 1)
    ls = torch.tensor([t == "least_squares" for t in terms], device=dev)[:, None, None]
    # least squares (k_e / 2) ||z + b - y||^2 with k_e = 1 / s_e: its conjugate's proximal step divides by 1 + sigma / k
    inv_k = m_t / _geometric_mean(m)
    shape = projector.slice_shape
    u = torch.zeros((E, col.shape[0], B), dtype=dt, device=dev)
    ubar = u.clone()
    p = torch.zeros_like(ys)
    ph = torch.zeros((R, B), dtype=dt, device=dev) if use_haadf else None
    q = torch.zeros((3, E, B, *shape), dtype=dt, device=dev)
    # objectives at half the iterations, at the end, and at every doubling after (the convergence measure)
    track = return_info or max_iterations > iterations
    first = iterations // 2
    objectives, k, k_end = [], 0, iterations
    if track and first == 0:  # a single iteration: the start's objective is the first checkpoint
        objectives.append(coupled_objective(projector, u * m_t, ys, lam, terms, backgrounds,
                                            haadf if use_haadf else None, m, guide))
    while k < k_end:
        k += 1
        au = project_elements(projector, ubar)  # (E, R, B)
        # dual ascent on every element's data term (the background shifts the argument)
        v = p + sigma_p * (m_t * au + (0.0 if backgrounds is None else backgrounds))
        pois = 0.5 * (1.0 + v - torch.sqrt((v - 1.0) ** 2 + 4.0 * sigma_p * ys))
        p = torch.where(ls, (v - sigma_p * ys) / (1.0 + sigma_p * inv_k), pois)
        w_bp = m_t * p
        if use_haadf:
            # the HAADF model is a combination of the elements' projections: no extra projection
            vh = ph + sigma_h * (s * (a * au).sum(0) - target)
            ph = vh / (1.0 + sigma_h)
            if hmask is not None:
                ph = ph * hmask
            w_bp = w_bp + s * a * ph
        bp = _backproject_elements(projector, w_bp)
        # dual ascent on the coupled TV: project every voxel's (element, direction) gradient onto the unit ball
        q += 0.5 * _guided(gradient3d(_volumes(ubar, shape)), guide)
        q /= torch.clamp(torch.sqrt((q**2).sum(dim=(0, 1), keepdim=True)), min=1.0)
        u_old = u
        u = torch.clamp(u - tau * (bp - lam_u * _columns(divergence3d(_guided(q, guide)))), min=0)
        ubar = 2 * u - u_old
        if track and k in (first, k_end):
            objectives.append(coupled_objective(projector, u * m_t, ys, lam, terms, backgrounds,
                                                haadf if use_haadf else None, m, guide))
        if k == k_end and 2 * k <= max_iterations:
            info = convergence(objectives[-2:] if len(objectives) >= 2 else objectives * 2)
            if not (info["converged"] and abs(info["relative_change"]) <= CONTINUE_TOL):
                k_end = 2 * k
    x = u * m_t
    if return_info:
        return x, {**convergence(objectives[-2:] if len(objectives) >= 2 else objectives * 2), "iterations": k}
    return x
