"""The one projector every reconstruction algorithm uses.

Geometry (see docs/conventions.rst): parallel beam, one tilt axis along the
image rows. Every row ``y`` of the views is the projection of one slice of the
object, an image ``(z, x)`` of ``n_z`` by ``n_x`` pixels, and every slice shares
the same system matrix ``A``: a point ``(x, z)`` (pixels from the slice centre)
lands in the view at tilt ``theta`` at detector column

    u = x cos(theta) + z sin(theta) + axis_offset_px

counted from the detector centre ``(n_x - 1) / 2``. ``axis_offset_px`` is where
the tilt axis sits relative to the centre column of the views. The slices are
as wide as the views, or wider by ``field_margin`` pixels on each side in
``x`` (centred on the same axis): material outside the field of view at 0
degrees that turns into it at other tilts then has voxels to go to.

``A`` and its exact adjoint ``A^T`` are computed on a batch of slices with
one matrix (ASTRA's CPU ``linear`` projector, built once per geometry), on
every device. The input's type chooses the output's:

numpy arrays
    On the CPU one sparse-dense product for the whole batch (a numba kernel
    parallel over the cores); on a GPU the batch goes through the CUDA
    product below and comes back.
torch tensors
    On the CPU or CUDA, differentiable (autograd, the gradient being the
    exact adjoint), for the iterative and deep methods. On the CPU the
    product runs in the same numba kernel on the tensor's memory.

On CUDA the matrix is held as padded rows (:class:`RowGather`) and every
product sums its terms in a fixed order, so that the same input gives the same
bits on every run, as on the CPU. Two things were measured against it on an
H200 (docs/benchmarks.rst, "CPU and CUDA"): ASTRA's own CUDA 3D
projectors put a point 60 degrees off axis on the mirrored side of the
detector (its 3D volume axes are not its 2D ones) and are not the exact
adjoint of each other; torch's sparse CSR product (cuSPARSE) adds in an order
that changes the last bits between runs.

Internally a batch of ``B`` slices is held "column-major": an array shaped
``(n_voxels, B)`` (``n_z`` times the slice width) for volumes and
``(n_tilts * n_x, B)`` for sinograms, which is the layout a CSR product reads
fastest. :meth:`Projector.forward` and :meth:`Projector.adjoint` take and
give the natural ``(B, n_z, n_x)`` /
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


def largest_useful_margin(tilts_deg, n_x, n_z=None, axis_offset_px=0.0):
    """The widest field margin (pixels) any view sees into.

    A point ``x`` pixels from the centre, at depth ``z`` within the slices,
    reaches the detector at tilt ``theta`` only while ``|x cos theta + z sin
    theta|`` is within half the views' width (plus the axis offset); voxels
    beyond the returned margin are seen by no view. Tilts within 1 degree of
    90 see any margin: the limit is then 4 view widths.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.reconstruction.projector import largest_useful_margin
    >>> largest_useful_margin(np.linspace(-60, 60, 13), 64), largest_useful_margin([-10, 0, 10], 64)
    (89, 8)
    """
    theta = np.deg2rad(np.abs(np.asarray(tilts_deg, float)))
    n_z = n_x if n_z is None else n_z
    if np.any(theta > np.deg2rad(89)):
        return 4 * int(n_x)
    reach = (n_x / 2 + abs(axis_offset_px) + n_z / 2 * np.sin(theta)) / np.cos(theta)
    return int(np.ceil(np.max(reach) - n_x / 2)) + 1


def _astra_geometry(tilts_deg, n_x, n_z, axis_offset_px, field_margin=0):
    import astra

    vol_geom = astra.create_vol_geom(n_z, n_x + 2 * field_margin)  # ASTRA rows = z, columns = x
    # ASTRA puts (x, z) at u = x cos(a) - z sin(a): a = -theta gives our convention
    proj_geom = astra.create_proj_geom("parallel", 1.0, n_x, -np.deg2rad(np.asarray(tilts_deg, float)))
    vec = astra.geom_2vec(proj_geom)["Vectors"].copy()
    # moving the detector centre by -offset along u puts the tilt axis at +offset
    vec[:, 2:4] -= float(axis_offset_px) * vec[:, 4:6]
    return vol_geom, vec


@functools.lru_cache(maxsize=16)
def _system_matrix(tilts, n_x, n_z, axis_offset_px, field_margin=0):
    """ASTRA's CPU ``linear`` projector as scipy CSR (float32), and its transpose."""
    import astra

    vol_geom, vec = _astra_geometry(tilts, n_x, n_z, axis_offset_px, field_margin)
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
        Width of the views (detector columns), and of the slices unless
        ``field_margin`` widens them.
    n_z : int, optional
        Depth of the slices (beam direction at 0 degrees); default ``n_x``.
    axis_offset_px : float
        Position of the tilt axis relative to the centre column of the views.
    backend : {"astra", "torch"}
        Kept for earlier code; both run the same matrix (the input's type,
        numpy or torch, chooses the output's).
    cuda : None or bool
        None: CUDA when present.
    field_margin : int
        Pixels the slices extend beyond the views on each side in ``x``
        (>= 0): slices are ``(n_z, n_x + 2 field_margin)``; the views' field
        is their columns ``field_margin`` to ``field_margin + n_x``
        (:meth:`crop`). See :meth:`widened`.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.reconstruction.projector import Projector
    >>> P = Projector(np.linspace(-60, 60, 13), n_x=64)
    >>> P.forward(np.ones((2, 64, 64), np.float32)).shape
    (2, 13, 64)
    >>> W = P.widened(16)
    >>> W.slice_shape, W.sinogram_shape, W.crop(np.ones((2, 64, 96))).shape
    ((64, 96), (13, 64), (2, 64, 64))
    """

    def __init__(self, tilts_deg, n_x, n_z=None, axis_offset_px=0.0, backend="astra", cuda=None, field_margin=0):
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
        if isinstance(field_margin, bool) or not isinstance(field_margin, (int, np.integer)) or field_margin < 0:
            raise InputError(f"field_margin must be a whole number of pixels >= 0, got {field_margin!r}")
        self.field_margin = int(field_margin)
        self.axis_offset_px = float(axis_offset_px)
        self.backend = backend
        self.cuda = resolve_cuda(cuda)
        self._torch_cache = {}
        self._coarse = None
        self._wide = {}

    def largest_useful_margin(self):
        """:func:`largest_useful_margin` of this geometry."""
        return largest_useful_margin(self.tilts_deg, self.n_x, self.n_z, self.axis_offset_px)

    # -- shapes ---------------------------------------------------------------------
    @property
    def n_tilts(self):
        return self.tilts_deg.size

    @property
    def slice_shape(self):
        return (self.n_z, self.n_x + 2 * self.field_margin)

    @property
    def n_voxels(self):
        return self.n_z * (self.n_x + 2 * self.field_margin)

    @property
    def sinogram_shape(self):
        return (self.n_tilts, self.n_x)

    def __repr__(self):
        return (
            f"Projector({self.n_tilts} tilts {self.tilts_deg.min():+.1f}..{self.tilts_deg.max():+.1f} deg, "
            f"slice {self.slice_shape[0]}x{self.slice_shape[1]}, axis offset {self.axis_offset_px:+.2f} px, "
            f"backend={self.backend!r}, cuda={self.cuda})"
        )

    def coarsened(self):
        """The projector of the same views on slices and detector twice as coarse (pixels binned 2 x 2 in
        each slice, 2 on the detector), made once."""
        if self._coarse is None:
            self._coarse = Projector(self.tilts_deg, self.n_x // 2, self.n_z // 2, self.axis_offset_px / 2,
                                     self.backend, self.cuda, self.field_margin // 2)
        return self._coarse

    def widened(self, field_margin):
        """The projector of the same views on slices ``field_margin`` pixels wider on each side in ``x``
        (this one for the same margin), made once per margin."""
        if field_margin == self.field_margin:
            return self
        if field_margin not in self._wide:
            self._wide[field_margin] = Projector(self.tilts_deg, self.n_x, self.n_z, self.axis_offset_px,
                                                 self.backend, self.cuda, field_margin)
        return self._wide[field_margin]

    def crop(self, slices):
        """The part of slices ``(..., n_z, n_x + 2 field_margin)`` that lies in the views' field:
        ``(..., n_z, n_x)``."""
        m = self.field_margin
        return slices[..., m:m + self.n_x] if m else slices

    # -- the matrix -----------------------------------------------------------------
    @property
    def matrix(self):
        """``(A, A^T)`` as scipy CSR float32 matrices."""
        return _system_matrix(tuple(self.tilts_deg.tolist()), self.n_x, self.n_z, self.axis_offset_px,
                              self.field_margin)

    def device_matrices(self, device=None):
        """``(A, A^T)`` as :class:`RowGather` on a torch ``device`` (kept per device)."""
        import torch

        device = torch.device(device or self.device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())  # one copy per GPU, however it is named
        if device not in self._torch_cache:
            self._torch_cache[device] = tuple(RowGather(M, device) for M in self.matrix)
        return self._torch_cache[device]

    @property
    def device(self):
        return "cuda" if self.cuda else "cpu"

    # -- column-major products (the fast internal layout) ------------------------------
    def fp_cols(self, x):
        """``A x`` for ``x`` shaped ``(n_voxels, B)``: numpy or torch in, same out."""
        if _is_torch(x):
            return _torch_project().apply(x, self, True)
        if self.cuda:
            return self._numpy_on_cuda(x, forward=True)
        return csr_product(self.matrix[0], x)

    def bp_cols(self, y):
        """``A^T y`` for ``y`` shaped ``(n_tilts * n_x, B)``."""
        if _is_torch(y):
            return _torch_project().apply(y, self, False)
        if self.cuda:
            return self._numpy_on_cuda(y, forward=False)
        return csr_product(self.matrix[1], y)

    def torch_product(self, x, forward):
        # CPU: our parallel CSR kernel on the tensor's memory (no copy), 2-3x
        # faster than torch's sparse product; CUDA: the padded rows (same bits every run)
        if x.device.type == "cpu":
            import torch

            M = self.matrix[0 if forward else 1]
            return torch.from_numpy(csr_product(M, x.detach().numpy()))
        A, At = self.device_matrices(x.device)
        return (A if forward else At) @ x

    def _numpy_on_cuda(self, cols, forward):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(cols, dtype=np.float32)).to(self.device)
        return self.torch_product(x, forward).cpu().numpy()

    # -- natural shapes ---------------------------------------------------------------
    def forward(self, slices):
        """Project slices ``(B, *slice_shape)`` (or one ``slice_shape``) to sinograms ``(B, n_tilts, n_x)``."""
        x, single = self._batch(slices, self.slice_shape, "slices")
        y = self.fp_cols(_to_cols(x))
        out = _from_cols(y, self.sinogram_shape)
        return out[0] if single else out

    def adjoint(self, sinograms):
        """Back-project sinograms ``(B, n_tilts, n_x)`` to slices ``(B, *slice_shape)`` (exact adjoint)."""
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


class RowGather:
    """A CSR matrix on a torch device as padded rows (ELLPACK), for products whose sums run in a fixed
    order: every row gathers its entries of ``x`` and adds them chunk after chunk, so that a GPU gives
    the same bits on every run (cuSPARSE does not).

    Parameters
    ----------
    M : scipy.sparse.csr_matrix
        float32, sorted indices.
    device : str or torch.device

    Notes
    -----
    Padding slots repeat their row's last column with weight 0 (a non-finite
    value elsewhere in ``x`` does not reach the row); rows without entries
    give 0. The padding costs about 20 % of the entries for square slices,
    more for thin slabs (``n_z`` well below ``n_x``). Indices are int64.
    """

    #: gathered elements per step (4 bytes each): bounds the temporary memory of one product
    CHUNK_ELEMENTS = 2**25

    def __init__(self, M, device):
        import torch

        counts = np.diff(M.indptr)
        self.shape = M.shape
        width = max(int(counts.max(initial=0)), 1)
        filled = np.arange(width)[None, :] < counts[:, None]
        index = np.zeros((M.shape[0], width), np.int64)
        value = np.zeros((M.shape[0], width), np.float32)
        index[filled], value[filled] = M.indices, M.data  # row by row, in the CSR order
        last = index[np.arange(M.shape[0]), np.maximum(counts - 1, 0)]  # 0 for an empty row
        index = np.where(filled, index, last[:, None])
        self.index = torch.from_numpy(index).to(device)
        self.value = torch.from_numpy(value).to(device)
        empty = np.flatnonzero(counts == 0)
        self.empty = torch.from_numpy(empty).to(device) if empty.size else None

    def __matmul__(self, x):
        """``M @ x`` for ``x`` shaped ``(M.shape[1], B)`` on the same device; float32."""
        import torch

        x = x.to(self.value.dtype)
        n_rows, width = self.index.shape
        columns = x.shape[1]
        chunk = max(1, min(width, self.CHUNK_ELEMENTS // max(n_rows * columns, 1)))
        block = n_rows if chunk > 1 else max(1, min(n_rows, self.CHUNK_ELEMENTS // max(columns, 1)))
        out = torch.zeros((n_rows, columns), dtype=x.dtype, device=x.device)
        for r in range(0, n_rows, block):
            index, value = self.index[r:r + block], self.value[r:r + block]
            for k in range(0, width, chunk):
                out[r:r + block] += (value[:, k:k + chunk, None] * x[index[:, k:k + chunk]]).sum(dim=1)
        if self.empty is not None:
            out[self.empty] = 0
        return out


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
