"""Iterative solvers on a batch of slices, shared by the algorithm plugins.

All work in torch on the projector's device (CUDA when present) in the
projector's column layout: volumes ``(n_z * n_x, B)``, sinograms
``(n_tilts * n_x, B)``. Viewed as ``(B, n_z, n_x)``, the batch is a stack of
neighbouring slices along the tilt axis, so 3D regularisers see real 3D
neighbourhoods.
"""

import numpy as np
import torch

DATA_TERMS = ("least_squares", "poisson")


def sinograms_to_cols(sinograms, device):
    """``(B, n_tilts, n_x)`` numpy -> ``(n_tilts * n_x, B)`` torch float32."""
    B = sinograms.shape[0]
    arr = np.ascontiguousarray(np.asarray(sinograms, np.float32).reshape(B, -1).T)
    return torch.from_numpy(arr).to(device)


def cols_to_slices(cols, slice_shape):
    """``(n_z * n_x, B)`` torch -> ``(B, n_z, n_x)`` numpy float32."""
    B = cols.shape[1]
    return np.ascontiguousarray(cols.detach().cpu().numpy().T).reshape(B, *slice_shape)


def _as_volume(cols, slice_shape):
    """View a column batch as ``(B, n_z, n_x)`` without copying."""
    return cols.T.reshape(cols.shape[1], *slice_shape)


def gradient3d(v):
    """Forward differences along (slice, z, x), zero at the far boundary."""
    g = torch.zeros((3, *v.shape), dtype=v.dtype, device=v.device)
    g[0, :-1] = v[1:] - v[:-1]
    g[1, :, :-1] = v[:, 1:] - v[:, :-1]
    g[2, :, :, :-1] = v[:, :, 1:] - v[:, :, :-1]
    return g


def divergence3d(g):
    """Divergence, the negative adjoint of :func:`gradient3d`: <grad v, g> = -<v, div g>."""
    d = torch.zeros(g.shape[1:], dtype=g.dtype, device=g.device)
    for axis in range(3):
        p = g[axis]
        n = p.shape[axis]
        if n < 2:
            continue
        # d_i = p_i - p_{i-1}, with p_{-1} = 0 and p_{n-1} taken as 0
        d.narrow(axis, 0, n - 1).add_(p.narrow(axis, 0, n - 1))
        d.narrow(axis, 1, n - 1).sub_(p.narrow(axis, 0, n - 1))
    return d


def _inverse(v, eps=1e-6):
    return torch.where(v > eps, 1.0 / v.clamp_min(eps), torch.zeros_like(v))


def _row_col_sums(projector, device):
    A = projector.matrix[0]
    row = torch.from_numpy(np.asarray(A.sum(axis=1), np.float32).ravel()).to(device)[:, None]
    col = torch.from_numpy(np.asarray(A.sum(axis=0), np.float32).ravel()).to(device)[:, None]
    return row, col


def sirt(projector, y, iterations, constrain=True, x0=None, fused=None):
    """SIRT: ``x <- x + C A^T R (y - A x)``; ``y`` in column layout (torch).

    ``fused=None``: numba kernels for CPU tensors that need no gradient,
    torch operations otherwise (CUDA, autograd); ``False`` forces torch.
    """
    row, col = _row_col_sums(projector, y.device)
    R, C = _inverse(row), _inverse(col)
    x = torch.zeros((col.shape[0], y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0.clone()
    if fused is None:
        fused = y.device.type == "cpu" and not (y.requires_grad or x.requires_grad)
    if fused:
        # fused numba updates in place: no torch thread pool competing with
        # the projection kernels' threads
        from . import _kernels
        from .projector import _csr_product

        A, At = projector.matrix
        xn, yn, Rn, Cn = x.numpy(), y.contiguous().numpy(), R.numpy(), C.numpy()
        res = np.empty_like(yn)
        for _ in range(int(iterations)):
            _kernels.weighted_residual(_csr_product(A, xn), yn, Rn, res)
            _kernels.sirt_update(xn, Cn, _csr_product(At, res), bool(constrain))
        return x
    for _ in range(int(iterations)):
        x += C * projector.bp_cols(R * (y - projector.fp_cols(x)))
        if constrain:
            x.clamp_(min=0)
    return x


def tv(projector, y, lam, iterations, data_term="least_squares", x0=None, fused=None):
    """min_{x >= 0}  D(Ax, y) + lam * TV3D(x), Chambolle-Pock with diagonal preconditioning.

    ``D`` is ``1/2 ||Ax - y||^2`` (``"least_squares"``) or the Poisson
    negative log-likelihood ``sum(Ax - y log Ax)`` (``"poisson"``). TV is the
    isotropic 3D total variation over (slice, z, x). Step sizes follow Pock &
    Chambolle (ICCV 2011, alpha = 1): sigma = 1 / row sums, tau = 1 / column
    sums of ``|K|`` with ``K = [A; grad]``, so no operator norm is needed and
    the scale of the data does not matter.

    ``fused=None`` uses the numba kernels for CPU tensors and torch
    operations on CUDA; ``False`` forces the torch operations (tests check the
    two agree without a GPU).
    """
    if data_term not in DATA_TERMS:
        raise ValueError(f"data_term must be one of {DATA_TERMS}, got {data_term!r}")
    # Solve for x / m with m the magnitude of x (5 SIRT iterations): the dual
    # of TV grows by about sigma * |grad x| per iteration, so with x of order
    # 1 it reaches its bound lam / m in a few iterations whatever the dose;
    # unscaled, a dilute x leaves strong TV unconverged. Both data terms give
    # the same problem with y / m and lam / m.
    m = float(sirt(projector, y, 5).max()) if x0 is None else float(x0.max())
    if m <= 0:
        return torch.zeros((projector.n_z * projector.n_x, y.shape[1]), dtype=torch.float32, device=y.device)
    y = y / m
    lam = lam / m
    x0 = None if x0 is None else x0 / m
    shape = projector.slice_shape
    row, col = _row_col_sums(projector, y.device)
    sigma_d = _inverse(row)
    sigma_g = 0.5  # every row of the forward-difference operator is (-1, +1)
    tau = 1.0 / (col + 6.0)  # column sums of |A| plus |grad| (2 per direction)
    x = torch.zeros((col.shape[0], y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0.clone()
    xbar = x.clone()
    p = torch.zeros_like(y)
    q = torch.zeros((3, *x.shape), dtype=torch.float32, device=y.device)
    if fused is None:
        fused = y.device.type == "cpu"
    if fused:
        # fused numba kernels in place on the tensors' memory: a handful of
        # passes per iteration instead of dozens of torch operations
        from . import _kernels
        from .projector import _csr_product

        A, At = projector.matrix
        xn, xbarn, qn, pn, yn = x.numpy(), xbar.numpy(), q.numpy(), p.numpy(), y.numpy()
        sigman, taun = sigma_d.numpy(), tau.numpy()
        for _ in range(int(iterations)):
            _kernels.dual_data_update(pn, _csr_product(A, xbarn), yn, sigman, data_term == "poisson")
            _kernels.dual_tv_update(qn, xbarn, sigma_g, float(lam), shape[0], shape[1])
            _kernels.primal_update(xn, xbarn, _csr_product(At, pn), qn, taun, shape[0], shape[1])
        return x * m
    for _ in range(int(iterations)):
        # dual ascent on the data term
        p += sigma_d * projector.fp_cols(xbar)
        if data_term == "least_squares":
            p = (p - sigma_d * y) / (1.0 + sigma_d)
        else:
            p = 0.5 * (1.0 + p - torch.sqrt((p - 1.0) ** 2 + 4.0 * sigma_d * y))
        bp = projector.bp_cols(p)
        # dual ascent on TV: project onto the ball of radius lam
        qv = q.permute(0, 2, 1).reshape(3, y.shape[1], *shape)  # a view: (3, B, n_z, n_x)
        qv += sigma_g * gradient3d(_as_volume(xbar, shape))
        qv /= torch.clamp(torch.sqrt((qv**2).sum(0, keepdim=True)) / lam, min=1.0)
        # primal descent with non-negativity
        x_old = x
        div = divergence3d(qv)  # (B, n_z, n_x)
        x = torch.clamp(x - tau * (bp - div.reshape(div.shape[0], -1).T), min=0)
        xbar = 2 * x - x_old
    return x * m


def operator_norm_sq(projector, device, iterations=30, seed=0):
    """Largest eigenvalue of A^T A by power iteration."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.rand((projector.n_z * projector.n_x, 1), generator=g).to(device)
    lam = 1.0
    for _ in range(iterations):
        w = projector.bp_cols(projector.fp_cols(v))
        lam = float(torch.linalg.vector_norm(w))
        v = w / max(lam, 1e-12)
    return lam


def l1(projector, y, lam, iterations, constrain=True, x0=None):
    """min_x 1/2 ||Ax - y||^2 + lam ||x||_1 (x >= 0 if constrain): FISTA.

    Proximal gradient in the diagonal metric ``D = 1 / (A^T A 1)`` (for a
    non-negative ``A``, ``D^1/2 A^T A D^1/2`` has norm at most 1, so the step
    is safe), which converges like SIRT instead of at the pace of the worst
    conditioned direction. The proximal step of ``lam ||x||_1`` plus the
    non-negativity indicator in that metric is ``max(v - D lam, 0)``:
    soft-thresholding that also clips, so the constraint holds exactly.
    """
    n_vox = projector.n_z * projector.n_x
    ones = torch.ones((n_vox, 1), dtype=torch.float32, device=y.device)
    D = _inverse(projector.bp_cols(projector.fp_cols(ones)))
    x = torch.zeros((n_vox, y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0.clone()
    z, t = x.clone(), 1.0
    for _ in range(int(iterations)):
        v = z - D * projector.bp_cols(projector.fp_cols(z) - y)
        if constrain:
            x_new = torch.clamp(v - D * lam, min=0)
        else:
            x_new = torch.sign(v) * torch.clamp(v.abs() - D * lam, min=0)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def poisson_deviance(counts, expected, eps=1e-9):
    """Poisson deviance ``2 sum(y log(y/mu) - (y - mu))`` (lower is better)."""
    y = np.asarray(counts, np.float64)
    mu = np.clip(np.asarray(expected, np.float64), eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / mu), 0.0)
    return float(2 * np.sum(term - (y - mu)))


def count_split(counts, fraction=0.5, seed=0):
    """Split integer counts binomially into (fit, held-out) parts.

    Each detected count goes to the fit part with probability ``fraction``;
    both parts are independent Poisson data of the same object.
    """
    c = np.asarray(counts)
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError("Count splitting needs finite, non-negative counts.")
    if not np.allclose(c, np.round(c)):
        raise ValueError(
            "Count splitting needs integer counts; these maps are not counts (e.g. background-subtracted). "
            "Use get_element_maps(background_windows=None) or give lam a number."
        )
    rng = np.random.default_rng(seed)
    fit = rng.binomial(np.round(c).astype(np.int64), fraction)
    return fit.astype(np.float32), (np.round(c) - fit).astype(np.float32)
