"""CPU kernels (numba, parallel over the cores): the sparse projection
products and fused 3D total-variation updates, in the column layout.

A column batch ``v`` shaped ``(n_z * n_x, B)`` is the volume ``(B, n_z, n_x)``
with ``v[z * n_x + x, b]``: neighbours along x are ``k + 1``, along z
``k + n_x``, along the slices ``b + 1``. One pass over the voxels does what
takes a dozen separate array operations in torch or numpy.
"""

import numba
import numpy as np


@numba.njit(parallel=True, fastmath=True, cache=True)
def dual_tv_update(q, xbar, sigma, lam, n_z, n_x):
    """q <- project_{|q| <= lam}(q + sigma * grad(xbar)), in place."""
    N, B = xbar.shape
    inv_lam = 1.0 / lam
    for k in numba.prange(N):
        z = k // n_x
        x = k - z * n_x
        for b in range(B):
            v = xbar[k, b]
            g0 = xbar[k, b + 1] - v if b + 1 < B else 0.0
            g1 = xbar[k + n_x, b] - v if z + 1 < n_z else 0.0
            g2 = xbar[k + 1, b] - v if x + 1 < n_x else 0.0
            q0 = q[0, k, b] + sigma * g0
            q1 = q[1, k, b] + sigma * g1
            q2 = q[2, k, b] + sigma * g2
            norm = np.sqrt(q0 * q0 + q1 * q1 + q2 * q2) * inv_lam
            if norm > 1.0:
                q0 /= norm
                q1 /= norm
                q2 /= norm
            q[0, k, b] = q0
            q[1, k, b] = q1
            q[2, k, b] = q2


@numba.njit(parallel=True, fastmath=True, cache=True)
def primal_update(x, xbar, bp, q, tau, n_z, n_x):
    """x <- max(x - tau * (bp - div q), 0); xbar <- 2 x_new - x_old, in place."""
    N, B = x.shape
    for k in numba.prange(N):
        z = k // n_x
        xi = k - z * n_x
        t = tau[k, 0]
        for b in range(B):
            # div q = sum over axes of q_i - q_{i-1} (q_{-1} = 0, q_{n-1} taken as 0)
            d = 0.0
            if b + 1 < B:
                d += q[0, k, b]
            if b > 0:
                d -= q[0, k, b - 1]
            if z + 1 < n_z:
                d += q[1, k, b]
            if z > 0:
                d -= q[1, k - n_x, b]
            if xi + 1 < n_x:
                d += q[2, k, b]
            if xi > 0:
                d -= q[2, k - 1, b]
            old = x[k, b]
            new = old - t * (bp[k, b] - d)
            if new < 0.0:
                new = 0.0
            x[k, b] = new
            xbar[k, b] = 2.0 * new - old


@numba.njit(parallel=True, fastmath=True, cache=True)
def csr_matmul(indptr, indices, data, X, out):
    """out = M @ X for M in CSR form and a dense X (n_cols, B), rows in parallel."""
    n_rows = indptr.size - 1
    B = X.shape[1]
    for r in numba.prange(n_rows):
        acc = np.zeros(B, dtype=np.float32)
        for j in range(indptr[r], indptr[r + 1]):
            w = data[j]
            c = indices[j]
            for b in range(B):
                acc[b] += w * X[c, b]
        for b in range(B):
            out[r, b] = acc[b]
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def dual_data_update(p, Ax, y, sigma, poisson):
    """p <- prox of the data term's conjugate at p + sigma * Ax, in place.

    Least squares: (p + s Ax - s y) / (1 + s). Poisson likelihood:
    (1 + v - sqrt((v - 1)^2 + 4 s y)) / 2 with v = p + s Ax.
    """
    M, B = p.shape
    for r in numba.prange(M):
        s = sigma[r, 0]
        for b in range(B):
            v = p[r, b] + s * Ax[r, b]
            if poisson:
                p[r, b] = 0.5 * (1.0 + v - np.sqrt((v - 1.0) ** 2 + 4.0 * s * y[r, b]))
            else:
                p[r, b] = (v - s * y[r, b]) / (1.0 + s)


@numba.njit(parallel=True, fastmath=True, cache=True)
def weighted_residual(Ax, y, R, out):
    """out = R * (y - Ax), R a column of row weights."""
    M, B = y.shape
    for r in numba.prange(M):
        w = R[r, 0]
        for b in range(B):
            out[r, b] = w * (y[r, b] - Ax[r, b])
    return out


@numba.njit(parallel=True, fastmath=True, cache=True)
def sirt_update(x, C, bp, constrain):
    """x <- x + C * bp (clipped at 0 if constrain), in place."""
    N, B = x.shape
    for k in numba.prange(N):
        c = C[k, 0]
        for b in range(B):
            v = x[k, b] + c * bp[k, b]
            x[k, b] = 0.0 if (constrain and v < 0.0) else v
