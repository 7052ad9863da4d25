"""The one projector every reconstruction algorithm uses.

Geometry (see docs/conventions.rst): parallel beam, one tilt axis along the
image rows. Every row ``y`` of the views is the projection of one slice of the
object, an image ``(z, x)`` of ``n_z`` by ``n_x`` pixels, and every slice shares
the same system matrix ``A``: a point ``(x, z)`` (pixels from the slice centre)
lands in the view at tilt ``theta`` at detector column

    u = x cos(theta) + z sin(theta) + axis_offset_px

counted from the detector centre ``(n_x - 1) / 2``. ``axis_offset_px`` is where
the tilt axis sits relative to the centre column of the views.

Two backends compute ``A`` and its exact adjoint ``A^T`` on a batch of slices:

``"astra"``
    ASTRA's CPU ``linear`` projector as a sparse matrix, applied to all slices
    of a batch in one sparse-dense product (a numba kernel parallel over the
    cores); on a GPU, ASTRA's CUDA 3D forward/back projectors on the whole batch.
``"torch"``
    The same matrix on torch tensors, on the CPU or CUDA, differentiable
    (autograd, the gradient being the exact adjoint), for the iterative and
    deep methods. On CUDA it is a torch sparse CSR tensor (cuSPARSE); on the
    CPU the product runs in the same numba kernel on the tensor's memory.

Internally a batch of ``B`` slices is held "column-major": an array shaped
``(n_z * n_x, B)`` for volumes and ``(n_tilts * n_x, B)`` for sinograms, which
is the layout a CSR product reads fastest. :meth:`Projector.forward` and
:meth:`Projector.adjoint` take and give the natural ``(B, n_z, n_x)`` /
``(B, n_tilts, n_x)`` shapes.
"""

import functools

import numpy as np

from hyperspy_edxtomo.base.errors import InputError

BACKENDS = ("astra", "torch")


def cuda_available():
    """True when torch sees a CUDA device."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def resolve_cuda(cuda):
    """``cuda=None`` means: use CUDA when present."""
    if cuda is None:
        return cuda_available()
    if cuda and not cuda_available():
        raise InputError("cuda=True but no CUDA device is available (torch.cuda.is_available() is False).")
    return bool(cuda)


def _astra_geometry(tilts_deg, n_x, n_z, axis_offset_px):
    import astra

    vol_geom = astra.create_vol_geom(n_z, n_x)  # ASTRA rows = z, columns = x
    # ASTRA puts (x, z) at u = x cos(a) - z sin(a): a = -theta gives our convention
    proj_geom = astra.create_proj_geom("parallel", 1.0, n_x, -np.deg2rad(np.asarray(tilts_deg, float)))
    vec = astra.geom_2vec(proj_geom)["Vectors"].copy()
    # moving the detector centre by -offset along u puts the tilt axis at +offset
    vec[:, 2:4] -= float(axis_offset_px) * vec[:, 4:6]
    return vol_geom, vec


@functools.lru_cache(maxsize=16)
def _system_matrix(tilts, n_x, n_z, axis_offset_px):
    """ASTRA's CPU ``linear`` projector as scipy CSR (float32), and its transpose."""
    import astra

    vol_geom, vec = _astra_geometry(tilts, n_x, n_z, axis_offset_px)
    proj_geom = astra.create_proj_geom("parallel_vec", n_x, vec)
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    mid = astra.projector.matrix(pid)
    try:
        W = astra.matrix.get(mid).astype(np.float32).tocsr()
    finally:
        astra.matrix.delete(mid)
        astra.projector.delete(pid)
    W.sort_indices()
    return W, W.T.tocsr()


class Projector:
    """Forward and adjoint parallel-beam projection of a batch of slices.

    Parameters
    ----------
    tilts_deg : array-like
        Tilt angle of each view, degrees (any order, non-uniform allowed).
    n_x : int
        Width of the views (detector columns) and of the slices.
    n_z : int, optional
        Depth of the slices (beam direction at 0 degrees); default ``n_x``.
    axis_offset_px : float
        Position of the tilt axis relative to the centre column of the views.
    backend : {"astra", "torch"}
    cuda : None or bool
        None: CUDA when present.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.reconstruction.projector import Projector
    >>> P = Projector(np.linspace(-60, 60, 13), n_x=64)
    >>> P.forward(np.ones((2, 64, 64), np.float32)).shape
    (2, 13, 64)
    """

    def __init__(self, tilts_deg, n_x, n_z=None, axis_offset_px=0.0, backend="astra", cuda=None):
        if backend not in BACKENDS:
            raise InputError(f"Unknown projector backend {backend!r}: choose one of {BACKENDS}.")
        tilts = np.asarray(tilts_deg, dtype=float).ravel()
        if tilts.size == 0 or not np.all(np.isfinite(tilts)):
            raise InputError(f"Tilt angles must be finite and at least one: {tilts.tolist()}")
        if int(n_x) < 2 or (n_z is not None and int(n_z) < 2):
            raise InputError(f"Slices must be at least 2 pixels wide, got n_x={n_x}, n_z={n_z}")
        self.tilts_deg = tilts
        self.n_x = int(n_x)
        self.n_z = int(n_z) if n_z is not None else self.n_x
        self.axis_offset_px = float(axis_offset_px)
        self.backend = backend
        self.cuda = resolve_cuda(cuda)
        self._torch_cache = {}

    # -- shapes ---------------------------------------------------------------------
    @property
    def n_tilts(self):
        return self.tilts_deg.size

    @property
    def slice_shape(self):
        return (self.n_z, self.n_x)

    @property
    def sinogram_shape(self):
        return (self.n_tilts, self.n_x)

    def __repr__(self):
        return (
            f"Projector({self.n_tilts} tilts {self.tilts_deg.min():+.1f}..{self.tilts_deg.max():+.1f} deg, "
            f"slice {self.n_z}x{self.n_x}, axis offset {self.axis_offset_px:+.2f} px, "
            f"backend={self.backend!r}, cuda={self.cuda})"
        )

    # -- the matrix -----------------------------------------------------------------
    @property
    def matrix(self):
        """``(A, A^T)`` as scipy CSR float32 matrices."""
        return _system_matrix(tuple(self.tilts_deg.tolist()), self.n_x, self.n_z, self.axis_offset_px)

    def torch_matrices(self, device=None):
        """``(A, A^T)`` as torch sparse CSR tensors on ``device``."""
        import torch

        device = torch.device(device or self.device)
        if device not in self._torch_cache:
            mats = []
            for M in self.matrix:
                mats.append(
                    torch.sparse_csr_tensor(
                        torch.from_numpy(M.indptr.astype(np.int64)),
                        torch.from_numpy(M.indices.astype(np.int64)),
                        torch.from_numpy(M.data),
                        size=M.shape,
                    ).to(device)
                )
            self._torch_cache[device] = tuple(mats)
        return self._torch_cache[device]

    @property
    def device(self):
        return "cuda" if self.cuda else "cpu"

    # -- column-major products (the fast internal layout) ------------------------------
    def fp_cols(self, x):
        """``A x`` for ``x`` shaped ``(n_z * n_x, B)``: numpy or torch in, same out."""
        if _is_torch(x):
            return _torch_project().apply(x, self, True)
        if self.backend == "astra" and self.cuda:
            return self._astra_cuda(x, forward=True)
        return csr_product(self.matrix[0], x)

    def bp_cols(self, y):
        """``A^T y`` for ``y`` shaped ``(n_tilts * n_x, B)``."""
        if _is_torch(y):
            return _torch_project().apply(y, self, False)
        if self.backend == "astra" and self.cuda:
            return self._astra_cuda(y, forward=False)
        return csr_product(self.matrix[1], y)

    def torch_product(self, x, forward):
        # CPU: our parallel CSR kernel on the tensor's memory (no copy), 2-3x
        # faster than torch's sparse product; CUDA: torch's sparse CSR (cuSPARSE)
        if x.device.type == "cpu":
            import torch

            M = self.matrix[0 if forward else 1]
            return torch.from_numpy(csr_product(M, x.detach().numpy()))
        A, At = self.torch_matrices(x.device)
        return (A if forward else At) @ x

    # -- natural shapes ---------------------------------------------------------------
    def forward(self, slices):
        """Project slices ``(B, n_z, n_x)`` (or one ``(n_z, n_x)``) to sinograms ``(B, n_tilts, n_x)``."""
        x, single = self._batch(slices, self.slice_shape, "slices")
        y = self.fp_cols(_to_cols(x))
        out = _from_cols(y, self.sinogram_shape)
        return out[0] if single else out

    def adjoint(self, sinograms):
        """Back-project sinograms ``(B, n_tilts, n_x)`` to slices ``(B, n_z, n_x)`` (exact adjoint)."""
        y, single = self._batch(sinograms, self.sinogram_shape, "sinograms")
        x = self.bp_cols(_to_cols(y))
        out = _from_cols(x, self.slice_shape)
        return out[0] if single else out

    def _batch(self, arr, shape, what):
        if not _is_torch(arr):
            arr = np.asarray(arr, dtype=np.float32)
        if tuple(arr.shape[-2:]) != shape or arr.ndim not in (2, 3):
            raise InputError(f"{what} must be shaped (batch, {shape[0]}, {shape[1]}) or {shape}; got {tuple(arr.shape)}")
        if arr.ndim == 2:
            return arr[None], True
        return arr, False

    # -- ASTRA CUDA -------------------------------------------------------------------
    def _astra_cuda(self, cols, forward):  # pragma: no cover - needs a GPU
        import astra

        B = cols.shape[1]
        _, vec2 = _astra_geometry(self.tilts_deg, self.n_x, self.n_z, self.axis_offset_px)
        vec3 = np.zeros((vec2.shape[0], 12))
        vec3[:, 0:2], vec3[:, 3:5], vec3[:, 6:8] = vec2[:, 0:2], vec2[:, 2:4], vec2[:, 4:6]
        vec3[:, 11] = 1.0  # detector rows run along the slices (the tilt axis)
        vol_geom = astra.create_vol_geom(self.n_z, self.n_x, B)  # (rows=z, cols=x, slices=B)
        proj_geom = astra.create_proj_geom("parallel3d_vec", B, self.n_x, vec3)
        if forward:
            vol = np.ascontiguousarray(cols.T.reshape(B, self.n_z, self.n_x), dtype=np.float32)
            pid, proj = astra.create_sino3d_gpu(vol, proj_geom, vol_geom)
            astra.data3d.delete(pid)
            return np.ascontiguousarray(proj.transpose(1, 2, 0).reshape(-1, B))  # (tilt, det, B)
        proj = np.ascontiguousarray(cols.reshape(self.n_tilts, self.n_x, B).transpose(2, 0, 1), dtype=np.float32)
        vid, vol = astra.create_backprojection3d_gpu(proj, proj_geom, vol_geom)
        astra.data3d.delete(vid)
        return np.ascontiguousarray(vol.reshape(B, -1).T)


def csr_product(M, x):
    """``M @ x`` for a CSR matrix and a dense ``(n, B)`` float32 array, on all cores."""
    from hyperspy_edxtomo.reconstruction import kernels as _kernels

    x = np.ascontiguousarray(x, dtype=np.float32)
    if M.nnz * x.shape[1] < 5_000_000:
        return M @ x  # small products: scipy, without the threads' start-up cost
    out = np.empty((M.shape[0], x.shape[1]), np.float32)
    return _kernels.csr_matmul(M.indptr, M.indices, M.data, x, out)


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def _to_cols(batch):
    B = batch.shape[0]
    if _is_torch(batch):
        return batch.reshape(B, -1).T.contiguous()
    return np.ascontiguousarray(batch.reshape(B, -1).T)


def _from_cols(cols, shape):
    B = cols.shape[1]
    if _is_torch(cols):
        return cols.T.reshape(B, *shape).contiguous()
    return np.ascontiguousarray(cols.T).reshape(B, *shape)


@functools.lru_cache(maxsize=1)
def _torch_project():
    # torch is imported when a torch tensor is first projected
    import torch

    class TorchProject(torch.autograd.Function):
        """``A x`` (or ``A^T y``) whose gradient is the exact other product."""

        @staticmethod
        def forward(ctx, x, projector, forward):
            ctx.projector, ctx.forward = projector, forward
            return projector.torch_product(x.contiguous(), forward)

        @staticmethod
        def backward(ctx, grad):
            return ctx.projector.torch_product(grad.contiguous(), not ctx.forward), None, None

    return TorchProject
