"""Iterative solvers on a batch of slices, shared by the algorithm plugins.

All work in torch on the projector's device (CUDA when present) in the
projector's column layout: volumes ``(n_z * n_x, B)``, sinograms
``(n_tilts * n_x, B)``. Viewed as ``(B, n_z, n_x)``, the batch is a stack of
neighbouring slices along the tilt axis, so 3D regularisers see real 3D
neighbourhoods.
"""

import numpy as np
import torch

from hyperspy_edxtomo.base.errors import InputError

DATA_TERMS = ("least_squares", "poisson")
#: the objective may still change by this fraction over the last half of the iterations
CONVERGENCE_TOL = 0.01
#: where :func:`tv` starts (see there)
STARTS = ("auto", "zero", "multilevel")
#: coarser grids the multilevel start solves on (2 x 2 x 2 binning each)
MULTILEVEL_LEVELS = 2
#: smallest slice side of the coarsest grid (coarser, the binned problem no longer resembles the fine one)
MIN_COARSE_PX = 8
#: iterations between objective checks of a warm-started run
BEST_EVERY = 20
#: an unconverged run continues up to this many times its iterations (``max_iterations="auto"`` of the
#: plugins): a weak strength's Poisson fit needs up to 8x 200 iterations (docs/benchmarks.rst, Convergence)
CONTINUE_UP_TO = 8
#: ... while its measure reads more than this: where the objective falls slower than 1/k the change over the
#: last half under-reads the distance still to go, by up to 2x where measured (a 32-px rod, Poisson, 0.01x the
#: reference, zero start: 0.61 % read at 400 iterations, 1.28 % to go; 64 px, least squares, 1x, multilevel
#: start: 0.90 % read, 1.73 % to go)
CONTINUE_TOL = CONVERGENCE_TOL / 2
#: slices a batch borrows on each side from its neighbours when a 3D TV couples them (its reach in a
#: few hundred iterations: the solution barely changes beyond it)
TV_HALO = 4


def sinograms_to_cols(sinograms, device):
    """``(B, n_tilts, n_x)`` numpy -> ``(n_tilts * n_x, B)`` torch float32."""
    B = sinograms.shape[0]
    arr = np.ascontiguousarray(np.asarray(sinograms, np.float32).reshape(B, -1).T)
    return torch.from_numpy(arr).to(device)


def cols_to_slices(cols, slice_shape):
    """``(n_z * n_x, B)`` torch -> ``(B, n_z, n_x)`` numpy float32."""
    B = cols.shape[1]
    return np.ascontiguousarray(cols.detach().cpu().numpy().T).reshape(B, *slice_shape)


def as_volume(cols, slice_shape):
    """View a column batch as ``(B, n_z, n_x)`` without copying."""
    return cols.T.reshape(cols.shape[1], *slice_shape)


def gradient3d(v):
    """Forward differences along the last three axes (slice, z, x), zero at the
    far boundary: ``(..., B, n_z, n_x) -> (3, ..., B, n_z, n_x)`` (leading axes,
    e.g. elements, are batched)."""
    g = torch.zeros((3, *v.shape), dtype=v.dtype, device=v.device)
    g[0, ..., :-1, :, :] = v[..., 1:, :, :] - v[..., :-1, :, :]
    g[1, ..., :, :-1, :] = v[..., :, 1:, :] - v[..., :, :-1, :]
    g[2, ..., :, :, :-1] = v[..., :, :, 1:] - v[..., :, :, :-1]
    return g


def divergence3d(g):
    """Divergence, the negative adjoint of :func:`gradient3d`: <grad v, g> = -<v, div g>."""
    d = torch.zeros(g.shape[1:], dtype=g.dtype, device=g.device)
    lead = d.ndim - 3
    for axis in range(3):
        p = g[axis]
        dim = lead + axis
        n = p.shape[dim]
        if n < 2:
            continue
        # d_i = p_i - p_{i-1}, with p_{-1} = 0 and p_{n-1} taken as 0
        d.narrow(dim, 0, n - 1).add_(p.narrow(dim, 0, n - 1))
        d.narrow(dim, 1, n - 1).sub_(p.narrow(dim, 0, n - 1))
    return d


def inverse(v, eps=1e-6):
    """``1 / v`` where ``v > eps``, 0 elsewhere (preconditioners of empty rows and columns)."""
    return torch.where(v > eps, 1.0 / v.clamp_min(eps), torch.zeros_like(v))


def row_col_sums(projector, device):
    A = projector.matrix[0]
    row = torch.from_numpy(np.asarray(A.sum(axis=1), np.float32).ravel()).to(device)[:, None]
    col = torch.from_numpy(np.asarray(A.sum(axis=0), np.float32).ravel()).to(device)[:, None]
    return row, col


def sirt(projector, y, iterations, constrain=True, x0=None, fused=None):
    """SIRT: ``x <- x + C A^T R (y - A x)``; ``y`` in column layout (torch).

    ``fused=None``: numba kernels for CPU tensors that need no gradient,
    torch operations otherwise (CUDA, autograd); ``False`` forces torch.
    """
    row, col = row_col_sums(projector, y.device)
    R, C = inverse(row), inverse(col)
    x = torch.zeros((col.shape[0], y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0.clone()
    if fused is None:
        fused = y.device.type == "cpu" and not (y.requires_grad or x.requires_grad)
    if fused:
        # fused numba updates in place: no torch thread pool competing with
        # the projection kernels' threads
        from hyperspy_edxtomo.reconstruction import kernels as _kernels
        from hyperspy_edxtomo.reconstruction.projector import csr_product

        A, At = projector.matrix
        xn, yn, Rn, Cn = x.numpy(), y.contiguous().numpy(), R.numpy(), C.numpy()
        res = np.empty_like(yn)
        for _ in range(int(iterations)):
            _kernels.weighted_residual(csr_product(A, xn), yn, Rn, res)
            _kernels.sirt_update(xn, Cn, csr_product(At, res), bool(constrain))
        return x
    for _ in range(int(iterations)):
        x += C * projector.bp_cols(R * (y - projector.fp_cols(x)))
        if constrain:
            x.clamp_(min=0)
    return x


def prepare_background(y, background):
    """``background`` in the column layout of ``y`` (torch), or None."""
    if background is None:
        return None
    if not torch.is_tensor(background):
        background = torch.as_tensor(np.asarray(background, np.float32))
    background = background.to(device=y.device, dtype=torch.float32)
    if background.shape != y.shape:
        raise InputError(f"The background is shaped {tuple(background.shape)}, the data {tuple(y.shape)}.")
    return background


def tv_norm(projector, x):
    """Isotropic 3D total variation of a column batch ``x`` (torch)."""
    g = gradient3d(as_volume(x, projector.slice_shape))
    return float(torch.sqrt((g**2).sum(0)).sum())


def objective(projector, x, y, lam, data_term="least_squares", background=None, regulariser="tv"):
    """``D(Ax + b, y) + lam R(x)`` of the problem :func:`tv` (``regulariser="tv"``)
    or :func:`l1` (``"l1"``) solves, with ``D`` written so that it is 0 for a
    perfect fit: ``1/2 ||Ax + b - y||^2`` or the Poisson deviance over 2,
    ``sum(mu - y - y log(mu / y))``. Relative changes of it are the
    convergence measure (:func:`convergence`)."""
    mu = projector.fp_cols(x)
    b = prepare_background(y, background)
    if b is not None:
        mu = mu + b
    if data_term == "least_squares":
        d = 0.5 * float(((mu - y) ** 2).sum())
    else:
        mu = mu.clamp_min(1e-9)
        ratio = torch.where(y > 0, y / mu, torch.ones_like(y))
        d = float((mu - y).sum() + (y * torch.log(ratio)).sum())
    r = tv_norm(projector, x) if regulariser == "tv" else float(x.abs().sum())
    return d + float(lam) * r


def convergence(objectives, tol=CONVERGENCE_TOL):
    """``{"objective", "objective_half", "relative_change", "converged"}`` from
    the objective at half the iterations and at the end: for first-order
    methods whose error falls like 1/k, the change over the last half is
    about the distance still to go, so a change under ``tol`` means the
    objective is within about ``tol`` of its minimum."""
    half, last = float(objectives[0]), float(objectives[1])
    change = (half - last) / max(abs(last), 1e-30)
    return {"objective_half": half, "objective": last, "relative_change": change, "converged": bool(abs(change) <= tol)}


def tv(projector, y, lam, iterations, data_term="least_squares", x0=None, fused=None, background=None,
       return_info=False, start="auto", max_iterations=None, extend_to=None):
    """min_{x >= 0}  D(Ax + b, y) + lam * TV3D(x), Chambolle-Pock with diagonal preconditioning.

    ``D`` is ``1/2 ||Ax + b - y||^2`` (``"least_squares"``) or the Poisson
    negative log-likelihood ``sum(Ax + b - y log(Ax + b))`` (``"poisson"``),
    ``b`` the expected background counts (``background``, same layout as
    ``y``; None: 0). TV is the isotropic 3D total variation over (slice, z,
    x). The operator is ``K = [A; lam grad]`` and the step sizes follow Pock &
    Chambolle (ICCV 2011, alpha = 1): sigma = 1 / row sums, tau = 1 / column
    sums of ``|K|``. With ``lam`` inside ``K`` the TV dual reaches its bound
    at the same pace whatever the strength (with ``lam`` only in the dual
    bound, strong regularisation never took effect within a few hundred
    iterations); the scale of the data does not matter either.

    ``start``: ``"zero"`` starts from ``x = 0`` (or ``x0``); ``"multilevel"``
    from the solution of the same problem on grids twice and four times as
    coarse (:func:`multilevel_start`): a strong TV spreads its dual across
    flat regions one voxel per iteration, which the coarse grids do in a few;
    ``"auto"`` (default) starts from zero and, only when that run's objective
    still changes by more than 1 % over its last half (:func:`convergence`),
    also runs the multilevel start and keeps the lower objective. The
    convergence information says which start won (``"start"``). With ``x0``
    given, or slices whose sides do not divide by 4 or are under 32 pixels
    (:func:`can_coarsen`), every start is the zero start.

    ``max_iterations`` (None: ``iterations``): while the convergence measure
    reads over half the tolerance (:data:`CONTINUE_TOL`: it can under-read
    the distance still to go by 2x), the run that won continues, doubling its
    iterations, up to this many (the measure is then the change over the last
    doubling; a cap that is not ``iterations`` times a power of 2 is not
    reached: the last doubling that fits is). The iterations run are in the
    convergence information (``"iterations"``). ``extend_to`` replays such a
    run: after ``iterations``, the iterations double up to that many without
    measuring, so that a run of ``iterations`` that continued to
    ``extend_to`` is repeated exactly (the plugins' batches repeat their
    convergence check so; for the multilevel start ``tv(n, extend_to=4 n)``
    is not ``tv(4 n)``: its coarse grids run 2 n and 4 n iterations).

    ``fused=None`` uses the numba kernels for CPU tensors and torch
    operations on CUDA; ``False`` forces the torch operations (tests check the
    two agree without a GPU). ``return_info=True`` also returns
    :func:`convergence` of the objective at half the iterations and at the end.
    """
    if data_term not in DATA_TERMS:
        raise InputError(f"data_term must be one of {DATA_TERMS}, got {data_term!r}")
    if start not in STARTS:
        raise InputError(f"start must be one of {STARTS}, got {start!r}")
    lam = float(lam)
    if not np.isfinite(lam) or lam <= 0:
        raise InputError(f"The TV strength must be a finite number > 0, got {lam!r}.")
    iterations = int(iterations)
    b = prepare_background(y, background)
    if data_term == "least_squares" and b is not None:
        y, b = y - b, None  # least squares: fitting y - b is the same problem
    problem = _TVProblem(projector, y, b, lam, data_term, fused)
    max_iterations = iterations if max_iterations is None else int(max_iterations)
    ml_possible = x0 is None and can_coarsen(projector)
    if start == "multilevel" and ml_possible:
        run = multilevel_start(problem, iterations)
    else:
        run = _run(problem, iterations, x0=x0)
        if start == "auto" and ml_possible and not run.result().info()["converged"]:
            ml = multilevel_start(problem, iterations)
            if ml.objectives[-1] < run.objectives[-1]:
                run = ml
    result = _continue(run, max_iterations, extend_to).result()
    return (result.x, result.info()) if return_info else result.x


class _TVProblem:
    """One TV problem: the projector, data (columns, torch), background, strength, data term, kernels."""

    def __init__(self, projector, y, b, lam, data_term, fused):
        self.projector, self.y, self.b, self.lam, self.data_term = projector, y, b, lam, data_term
        self.fused = y.device.type == "cpu" if fused is None else fused

    def coarsened(self):
        """The same problem on the grid :meth:`Projector.coarsened`, the slices binned in pairs too: data
        summed over 2 x 2 (detector pixels, slices), strength mapped so that both terms keep their balance
        (TV of the binned volume is twice the fine one's; Poisson deviances about equal, squared residuals
        4x)."""
        lam = self.lam / 2 if self.data_term == "poisson" else 2 * self.lam
        n = self.projector.n_x
        b = None if self.b is None else bin_cols(self.b, n)
        return _TVProblem(self.projector.coarsened(), bin_cols(self.y, n), b, lam, self.data_term, self.fused)

    def objective(self, x):
        return objective(self.projector, x, self.y, self.lam, self.data_term, self.b)


class _TVRun:
    """A run's result: ``x``; ``u``, the last iterate's TV dual over ``lam`` (a field of vectors of
    length <= 1, what a finer grid starts from); the objective of ``x`` at its checkpoints (half the
    iterations, the end, every doubling after; of the best iterate so far where the run keeps it), and
    of the iterate itself (``currents``); the start used; the iterations run."""

    def __init__(self, x, u, objectives, start, currents, iterations):
        self.x, self.u, self.objectives, self.start, self.currents = x, u, objectives, start, currents
        self.iterations = iterations

    def info(self):
        """:func:`convergence` of the iterates (they may still move although the best one stays), the
        objective of the ``x`` returned, the start. Converged also needs the last iterate within the
        tolerance of the best: iterates that wander off the start they keep returning are not converged."""
        info = convergence(self.currents[-2:] if len(self.currents) >= 2 else self.currents * 2)
        best = float(self.objectives[-1])
        info.update(objective_last_iterate=info["objective"], objective=best, start=self.start,
                    iterations=int(self.iterations))
        off = (info["objective_last_iterate"] - best) / max(abs(best), 1e-30)
        info["converged"] = bool(info["converged"] and off <= CONVERGENCE_TOL)
        return info


class _ChambollePock:
    """The iterations of :func:`tv` on ``problem``, resumable (:meth:`run_to`). ``u0`` (with ``x0``): a TV
    dual to start from, the data dual then set to its value at ``x0``; ``best_every > 0``: keep the
    iterate of lowest objective, checked every that many iterations (from a warm start the objective
    first rises: the duals settle)."""

    def __init__(self, problem, x0=None, u0=None, best_every=0, start="zero"):
        self.problem, self.best_every, self.start = problem, best_every, start
        projector, y, b, lam = problem.projector, problem.y, problem.b, problem.lam
        # Solve for x / m with m the magnitude of x (5 SIRT iterations), so that
        # the primal steps (tau ~ 1 / (col + 6 lam)) meet an x of order 1
        # whatever the dose; both data terms give the same problem with y / m,
        # b / m and lam / m.
        y_pos = y if b is None else (y - b).clamp_min(0)
        m = float(x0.max()) if x0 is not None else 0.0
        if m <= 0:  # no start given, or an empty one
            m = float(sirt(projector, y_pos, 5).max())
        n_vox = projector.n_voxels
        self.k, self.objectives, self.currents, self.best = 0, [], [], None
        self.empty = m <= 0
        if self.empty:
            self.m = 1.0
            self.x = torch.zeros((n_vox, y.shape[1]), dtype=torch.float32, device=y.device)
            self.q = torch.zeros((3, *self.x.shape), dtype=torch.float32, device=y.device)
            self.lam_m = 1.0
            return
        self.m = m
        self.y = y / m
        self.b = None if b is None else b / m
        # least squares scales as 1/m^2 and TV(x/m) as 1/m: lam / m; the Poisson
        # likelihood scales as 1/m like TV: lam unchanged
        self.lam_m = lam / m if problem.data_term == "least_squares" else lam
        row, col = row_col_sums(projector, y.device)
        self.sigma_d = inverse(row)
        # rows of lam * grad are lam * (-1, +1); the dual is kept as lam * (unit-ball dual)
        self.sigma_g = 0.5 * self.lam_m
        self.tau = 1.0 / (col + 6.0 * self.lam_m)  # column sums of |A| plus |lam grad| (2 lam per direction)
        self.x = torch.zeros((n_vox, y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0 / m
        self.xbar = self.x.clone()
        if u0 is None:
            self.p = torch.zeros_like(self.y)
            self.q = torch.zeros((3, *self.x.shape), dtype=torch.float32, device=y.device)
        else:
            # the data dual at the optimum is the data term's gradient at A x + b; for Poisson 0 where the
            # coarse start predicts nothing (1 - y / 1e-6 there made the iterations diverge)
            mu = projector.fp_cols(self.x) if self.b is None else projector.fp_cols(self.x) + self.b
            if problem.data_term == "poisson":
                self.p = torch.where(mu > 1e-6, 1.0 - self.y / mu.clamp_min(1e-6), torch.zeros_like(mu)).clamp(max=1.0)
            else:
                self.p = mu - self.y
            self.q = (self.lam_m * u0).contiguous()
        if best_every:
            self.best = (problem.objective(self.x * m), self.x.clone())

    def _check(self, k, checkpoint):
        """The objective at iteration ``k`` where a checkpoint or the best iterate needs it (computed once)."""
        if not (checkpoint or (self.best_every and k % self.best_every == 0)):
            return
        f = self.problem.objective(self.x * self.m)
        if self.best_every and f < self.best[0]:
            self.best = (f, self.x.clone())
        if checkpoint:
            self.objectives.append(self.best[0] if self.best_every else f)
            self.currents.append(f)

    def run_to(self, k_end):
        """Iterate up to iteration ``k_end``; the objective there is a checkpoint of the convergence measure
        (also where no iteration is left to run: ``run_to(0)`` records the start's)."""
        if self.empty:
            f = self.problem.objective(self.x)
            self.objectives.append(f)
            self.currents.append(f)
            self.k = max(self.k, k_end)
            return self
        if k_end <= self.k:
            self._check(self.k, True)
            return self
        problem, projector = self.problem, self.problem.projector
        shape, lam_m, poisson = projector.slice_shape, self.lam_m, problem.data_term == "poisson"
        if problem.fused:
            # fused numba kernels in place on the tensors' memory: a handful of
            # passes per iteration instead of dozens of torch operations
            from hyperspy_edxtomo.reconstruction import kernels as _kernels
            from hyperspy_edxtomo.reconstruction.projector import csr_product

            A, At = projector.matrix
            xn, xbarn, qn, pn, yn = self.x.numpy(), self.xbar.numpy(), self.q.numpy(), self.p.numpy(), self.y.numpy()
            bn = None if self.b is None else self.b.numpy()
            sigman, taun = self.sigma_d.numpy(), self.tau.numpy()
            for k in range(self.k + 1, k_end + 1):
                ax = csr_product(A, xbarn)
                if bn is not None:
                    ax += bn
                _kernels.dual_data_update(pn, ax, yn, sigman, poisson)
                _kernels.dual_tv_update(qn, xbarn, self.sigma_g, lam_m, shape[0], shape[1])
                _kernels.primal_update(xn, xbarn, csr_product(At, pn), qn, taun, shape[0], shape[1])
                self._check(k, k == k_end)
        else:
            x, xbar, p, q, y, b, sigma_d = self.x, self.xbar, self.p, self.q, self.y, self.b, self.sigma_d
            for k in range(self.k + 1, k_end + 1):
                # dual ascent on the data term
                v = p + sigma_d * projector.fp_cols(xbar)
                if b is not None:
                    v = v + sigma_d * b
                if poisson:
                    p = 0.5 * (1.0 + v - torch.sqrt((v - 1.0) ** 2 + 4.0 * sigma_d * y))
                else:
                    p = (v - sigma_d * y) / (1.0 + sigma_d)
                bp = projector.bp_cols(p)
                # dual ascent on TV: project onto the ball of radius lam
                qv = q.permute(0, 2, 1).reshape(3, y.shape[1], *shape)  # a view: (3, B, n_z, n_x)
                qv += self.sigma_g * gradient3d(as_volume(xbar, shape))
                qv /= torch.clamp(torch.sqrt((qv**2).sum(0, keepdim=True)) / lam_m, min=1.0)
                # primal descent with non-negativity
                x_old = x
                div = divergence3d(qv)  # (B, n_z, n_x)
                x = torch.clamp(x - self.tau * (bp - div.reshape(div.shape[0], -1).T), min=0)
                xbar = 2 * x - x_old
                self.x, self.p = x, p
                self._check(k, k == k_end)
            self.xbar = xbar
        self.k = k_end
        return self

    def result(self):
        # with a best iterate kept, the dual stays the last one: the duals settle first, the better start
        # for a finer grid
        x = self.best[1] if self.best_every and not self.empty else self.x
        return _TVRun(x * self.m, self.q / self.lam_m, self.objectives, self.start, self.currents, self.k)


def _run(problem, iterations, **kwargs):
    """:class:`_ChambollePock` run for ``iterations``, with checkpoints at half of them (the start's objective
    for a single iteration) and at the end."""
    return _ChambollePock(problem, **kwargs).run_to(iterations // 2).run_to(iterations)


def iterations_cap(max_iterations, iterations):
    """The most iterations a run of ``iterations`` may continue to under the setting ``max_iterations``:
    ``"auto"``, :data:`CONTINUE_UP_TO` times as many; None, ``iterations`` (never continue); a number, that
    many (at least ``iterations``)."""
    if max_iterations is None:
        return int(iterations)
    if max_iterations == "auto":
        return int(CONTINUE_UP_TO * iterations)
    return int(max(int(max_iterations), iterations))


def _continue(run, max_iterations, extend_to=None):
    """Double a run's iterations while its convergence measure reads over :data:`CONTINUE_TOL` (or is
    unmet), up to ``max_iterations``; with ``extend_to``, double up to that many without measuring. A run
    of no iterations has nothing to double."""
    if run.k == 0:
        return run
    if extend_to is not None:
        while 2 * run.k <= extend_to:
            run.run_to(2 * run.k)
        return run
    while 2 * run.k <= max_iterations:
        info = run.result().info()
        if info["converged"] and abs(info["relative_change"]) <= CONTINUE_TOL:
            break
        run.run_to(2 * run.k)
    return run


def can_coarsen(projector, levels=None):
    """Whether the slices can be binned 2 x 2 (z, x) ``levels`` times (default
    :data:`MULTILEVEL_LEVELS`), the coarsest grid still :data:`MIN_COARSE_PX` pixels or more."""
    f = 2 ** (MULTILEVEL_LEVELS if levels is None else levels)
    # the views are binned with the slices (their width differs where the slices have a field margin)
    return (all(n % f == 0 and n // f >= MIN_COARSE_PX for n in projector.slice_shape)
            and projector.n_x % f == 0 and projector.field_margin % f == 0)


def multilevel_start(problem, iterations, levels=MULTILEVEL_LEVELS):
    """:func:`tv` from the solution on coarser grids: each level solves its problem binned 2 x 2 x 2
    (twice the iterations, each about an eighth of the cost), and the finer level starts from it
    upsampled, with its TV dual upsampled and the data dual at that start, keeping its best iterate."""
    if levels == 0:
        return _run(problem, iterations)
    B = problem.y.shape[1]
    coarse = multilevel_start(problem.coarsened(), 2 * iterations, levels - 1).result()
    shape_c = problem.projector.coarsened().slice_shape
    x0 = upsample_cols(coarse.x, shape_c, B) / 8.0  # a coarse voxel holds eight fine ones
    u0 = torch.stack([upsample_cols(u, shape_c, B) for u in coarse.u])
    return _run(problem, iterations, x0=x0, u0=u0, best_every=BEST_EVERY, start="multilevel")


def bin_cols(cols, n_x):
    """Sum a column batch ``(n_rows * n_x, B)`` over 2 x 2 pixels (neighbouring columns along x and
    neighbouring slices; an odd last slice is counted twice): ``(n_rows * n_x / 2, ceil(B / 2))``."""
    B = cols.shape[1]
    v = cols.T.reshape(B, -1, n_x)
    if B % 2:
        v = torch.cat([v, v[-1:]])
    v = v.reshape(v.shape[0] // 2, 2, v.shape[1], n_x // 2, 2).sum((1, 4))
    return v.reshape(v.shape[0], -1).T.contiguous()


def upsample_cols(cols, shape_c, B):
    """A column batch on a grid ``shape_c`` repeated 2 x 2 x 2 onto the grid twice as fine, ``B`` slices."""
    v = cols.T.reshape(cols.shape[1], *shape_c)
    v = v.repeat_interleave(2, 0)[:B].repeat_interleave(2, 1).repeat_interleave(2, 2)
    return v.reshape(B, -1).T.contiguous()


def operator_norm_sq(projector, device, iterations=30, seed=0):
    """Largest eigenvalue of A^T A by power iteration."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.rand((projector.n_voxels, 1), generator=g).to(device)
    lam = 1.0
    for _ in range(iterations):
        w = projector.bp_cols(projector.fp_cols(v))
        lam = float(torch.linalg.vector_norm(w))
        v = w / max(lam, 1e-12)
    return lam


def l1(projector, y, lam, iterations, constrain=True, x0=None, background=None, return_info=False):
    """min_x 1/2 ||Ax + b - y||^2 + lam ||x||_1 (x >= 0 if constrain): FISTA.

    Proximal gradient in the diagonal metric ``D = 1 / (A^T A 1)`` (for a
    non-negative ``A``, ``D^1/2 A^T A D^1/2`` has norm at most 1, so the step
    is safe), which converges like SIRT instead of at the pace of the worst
    conditioned direction. The proximal step of ``lam ||x||_1`` plus the
    non-negativity indicator in that metric is ``max(v - D lam, 0)``:
    soft-thresholding that also clips, so the constraint holds exactly.
    ``background`` ``b`` (expected background counts, layout of ``y``) is
    subtracted from the data. ``return_info=True`` also returns
    :func:`convergence`.
    """
    lam = float(lam)
    if not np.isfinite(lam) or lam <= 0:
        raise InputError(f"The L1 strength must be a finite number > 0, got {lam!r}.")
    b = prepare_background(y, background)
    if b is not None:
        y = y - b
    iterations = int(iterations)
    n_vox = projector.n_voxels
    ones = torch.ones((n_vox, 1), dtype=torch.float32, device=y.device)
    D = inverse(projector.bp_cols(projector.fp_cols(ones)))
    x = torch.zeros((n_vox, y.shape[1]), dtype=torch.float32, device=y.device) if x0 is None else x0.clone()
    z, t = x.clone(), 1.0
    checkpoints = {max(1, iterations // 2), iterations}
    objectives = []
    for k in range(1, iterations + 1):
        v = z - D * projector.bp_cols(projector.fp_cols(z) - y)
        if constrain:
            x_new = torch.clamp(v - D * lam, min=0)
        else:
            x_new = torch.sign(v) * torch.clamp(v.abs() - D * lam, min=0)
        t_new = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
        if return_info and k in checkpoints:
            objectives.append(objective(projector, x, y, lam, "least_squares", regulariser="l1"))
    if return_info:
        return x, convergence(objectives if len(objectives) == 2 else objectives * 2)
    return x
