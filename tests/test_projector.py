"""The shared projector: adjoint, backends, geometry convention."""

import astra
import numpy as np
import pytest
import torch

from hyperspy_edxtomo.datasets import project
from hyperspy_edxtomo.reconstruction.projector import Projector

TILTS = np.linspace(-60, 60, 13)


@pytest.mark.parametrize("offset", [0.0, 2.5])
@pytest.mark.parametrize("backend", ["astra", "torch"])
def test_adjoint_is_exact(rng, backend, offset):
    P = Projector(TILTS, n_x=40, n_z=34, axis_offset_px=offset, backend=backend)
    x = rng.random((5, 34, 40)).astype(np.float32)
    y = rng.random((5, 13, 40)).astype(np.float32)
    if backend == "torch":
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    Ax, ATy = P.forward(x), P.adjoint(y)
    lhs = float((np.asarray(Ax, np.float64) * np.asarray(y, np.float64)).sum())
    rhs = float((np.asarray(x, np.float64) * np.asarray(ATy, np.float64)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)
    assert Ax.shape == (5, 13, 40) and ATy.shape == (5, 34, 40)


def test_row_gather_is_the_csr_product(rng, monkeypatch):
    """The CUDA form of the matrix (padded rows), checked here on the CPU: the CSR product for any
    chunking of the rows' sums and of the rows, empty rows 0, and a non-finite value of x reaching only
    the rows that use it."""
    import scipy.sparse as sp

    from hyperspy_edxtomo.reconstruction.projector import RowGather, csr_product

    P = Projector(TILTS, n_x=40, n_z=34, axis_offset_px=1.3)
    x = rng.random((34 * 40, 6)).astype(np.float32)
    y = rng.random((13 * 40, 6)).astype(np.float32)
    for M, v in zip(P.matrix, (x, y)):
        G = RowGather(M, "cpu")
        out = (G @ torch.from_numpy(v)).numpy()
        np.testing.assert_allclose(out, csr_product(M, v), rtol=1e-5, atol=1e-6 * np.abs(out).max())
        for chunk in (M.shape[0] * v.shape[1] * 3, 5 * v.shape[1]):  # 3 entries a step; then 5 rows a step
            monkeypatch.setattr(RowGather, "CHUNK_ELEMENTS", chunk)
            again = (G @ torch.from_numpy(v)).numpy()
            np.testing.assert_allclose(again, out, rtol=1e-5, atol=1e-6 * np.abs(out).max())
            monkeypatch.undo()
    M = sp.csr_matrix(np.array([[0, 2.0, 0], [0, 0, 0], [1.0, 0, 3.0]], np.float32))
    v = torch.tensor([[np.nan], [1.0], [2.0]])
    got = (RowGather(M, "cpu") @ v).numpy().ravel()
    assert got[0] == 2.0 and got[1] == 0.0 and np.isnan(got[2])


def test_torch_backend_is_differentiable_and_matches_astra(rng):
    P = Projector(TILTS, n_x=32)
    x = torch.from_numpy(rng.random((3, 32, 32)).astype(np.float32)).requires_grad_()
    y = rng.random((3, 13, 32)).astype(np.float32)
    Ax = P.forward(x)
    (Ax * torch.from_numpy(y)).sum().backward()
    # the gradient of <Ax, y> is A^T y
    np.testing.assert_allclose(x.grad.numpy(), P.adjoint(y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(Ax.detach().numpy(), P.forward(x.detach().numpy()), rtol=1e-6)


def test_matches_astra_own_cpu_forward_projection(rng):
    """Our batched matrix products give what ASTRA's own FP algorithm gives, slice by slice."""
    n = 32
    P = Projector(TILTS, n_x=n)
    x = rng.random((2, n, n)).astype(np.float32)
    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n, -np.deg2rad(TILTS))
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    try:
        for b in range(2):
            sid, sino = astra.create_sino(x[b], pid)
            astra.data2d.delete(sid)
            ours = P.forward(x[b])
            assert np.abs(ours - sino).max() <= 1e-3 * np.abs(sino).max()
            ours_t = P.forward(torch.from_numpy(x[b])).numpy()
            assert np.abs(ours_t - sino).max() <= 1e-3 * np.abs(sino).max()
    finally:
        astra.projector.delete(pid)


@pytest.mark.parametrize("theta", [60.0, -60.0])
def test_handedness_off_centre_point(theta):
    """A point at (x, z) lands at column x cos(theta) + z sin(theta) from the centre."""
    n = 65
    c = (n - 1) / 2
    x0, z0 = 12.0, -7.0
    slab = np.zeros((1, n, n), np.float32)
    slab[0, int(c + z0), int(c + x0)] = 1.0
    P = Projector([theta], n_x=n)
    profile = P.forward(slab)[0, 0]
    u = (profile * np.arange(n)).sum() / profile.sum() - c
    expected = x0 * np.cos(np.deg2rad(theta)) + z0 * np.sin(np.deg2rad(theta))
    assert u == pytest.approx(expected, abs=0.35)
    # and the simulator (datasets.project) uses the same convention
    vol = np.zeros((n, 3, n), np.float32)  # (z, y, x)
    vol[int(c + z0), 1, int(c + x0)] = 1.0
    view = project(vol, [theta])[0, 1]
    u_sim = (view * np.arange(n)).sum() / view.sum() - c
    assert u_sim == pytest.approx(expected, abs=0.35)


def test_axis_offset_moves_the_tilt_axis():
    n = 33
    slab = np.zeros((1, n, n), np.float32)
    slab[0, 16, 16] = 1.0  # on the rotation axis
    for offset in (0.0, 3.0, -4.5):
        P = Projector([-45.0, 0.0, 30.0], n_x=n, axis_offset_px=offset)
        sino = P.forward(slab)[0]
        centres = (sino * np.arange(n)).sum(1) / sino.sum(1) - 16
        np.testing.assert_allclose(centres, offset, atol=0.05)


def test_projector_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown projector backend 'gpu'.*astra"):
        Projector(TILTS, 16, backend="gpu")
    with pytest.raises(ValueError, match="finite"):
        Projector([0.0, np.nan], 16)
    P = Projector(TILTS, 16)
    with pytest.raises(ValueError, match="slices must be shaped"):
        P.forward(np.zeros((2, 16, 15)))
    with pytest.raises(ValueError, match="sinograms must be shaped"):
        P.adjoint(np.zeros((2, 12, 16)))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Projector(TILTS, 16, cuda=True)


@pytest.mark.parametrize("data_term", ["least_squares", "poisson"])
def test_tv_fused_cpu_kernels_match_the_torch_path(rng, data_term):
    """The numba kernels (CPU) and the torch operations (the CUDA path) solve the same iteration."""
    from hyperspy_edxtomo.reconstruction import solvers

    P = Projector(TILTS, n_x=24, n_z=20)
    y = solvers.sinograms_to_cols(rng.poisson(0.4, (6, 13, 24)).astype(np.float32), "cpu")
    fused = solvers.tv(P, y, 2.0, 40, data_term=data_term, fused=True)
    plain = solvers.tv(P, y, 2.0, 40, data_term=data_term, fused=False)
    assert float((fused - plain).abs().max()) <= 1e-4 * float(plain.abs().max())
    assert float(plain.min()) >= 0


def test_sirt_fused_cpu_kernels_match_the_torch_path(rng):
    from hyperspy_edxtomo.reconstruction import solvers

    P = Projector(TILTS, n_x=24, n_z=20)
    y = solvers.sinograms_to_cols(rng.poisson(0.4, (6, 13, 24)).astype(np.float32), "cpu")
    for constrain in (True, False):
        fused = solvers.sirt(P, y, 30, constrain=constrain, fused=True)
        plain = solvers.sirt(P, y, 30, constrain=constrain, fused=False)
        assert float((fused - plain).abs().max()) <= 1e-4 * float(plain.abs().max())
    assert float(solvers.sirt(P, y, 30, constrain=True).min()) >= 0


def test_gradient_and_divergence_are_adjoint():
    from hyperspy_edxtomo.reconstruction.solvers import divergence3d, gradient3d

    g = torch.randn(3, 5, 6, 7, dtype=torch.float64)
    v = torch.randn(5, 6, 7, dtype=torch.float64)
    assert float((gradient3d(v) * g).sum()) == pytest.approx(float(-(v * divergence3d(g)).sum()), rel=1e-10)
