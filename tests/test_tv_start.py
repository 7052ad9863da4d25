"""Where tv starts: the multilevel start at strengths the zero start does not converge at, chosen by the
convergence measure, the same for every batch."""

import warnings

import numpy as np
import pytest
import torch

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.projector import Projector
from hyperspy_edxtomo.reconstruction.strength import reference_strength


def _objective(P, y, lam, data_term, iterations, start):
    return solvers.tv(P, y, lam, iterations, data_term=data_term, start=start, return_info=True)[1]


@pytest.mark.parametrize("data_term", ["poisson", "least_squares"])
def test_multilevel_start_converges_where_the_zero_start_does_not(rod32, data_term):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = 10 * reference_strength(sino, P, data_term)
    optimum = _objective(P, y, lam, data_term, 3000, "zero")["objective"]
    zero = _objective(P, y, lam, data_term, 200, "zero")
    auto = _objective(P, y, lam, data_term, 200, "auto")
    # the zero start is far from the optimum after 200 iterations and its measure says so ...
    assert zero["objective"] > 1.1 * optimum and not zero["converged"]
    # ... so "auto" also runs the multilevel start, which gets there, and says which start won; the
    # objective returned is its best iterate's, the last iterate's is recorded too
    assert auto["start"] == "multilevel"
    assert auto["objective"] <= 1.01 * optimum <= 1.01 * auto["objective_last_iterate"]


def test_auto_keeps_the_zero_start_where_it_converges(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = 0.1 * reference_strength(sino, P, "poisson")
    x_auto, info = solvers.tv(P, y, lam, 200, data_term="poisson", return_info=True)
    x_zero = solvers.tv(P, y, lam, 200, data_term="poisson", start="zero")
    assert info["start"] == "zero" and info["converged"]
    assert torch.equal(x_auto, x_zero)


def test_grids_that_cannot_be_binned_keep_the_zero_start(rod32):
    _, sino, _ = rod32
    P = Projector(np.linspace(-60, 60, 13), n_x=30)  # 30 px: not binned twice
    assert not solvers.can_coarsen(P) and solvers.can_coarsen(Projector([0.0], n_x=32))
    y = solvers.sinograms_to_cols(sino[:8, :, 1:31], "cpu")
    _, info = solvers.tv(P, y, 10 * reference_strength(sino, P, "poisson"), 20, data_term="poisson",
                         return_info=True)
    assert info["start"] == "zero"


@pytest.mark.parametrize("slices", [6, 5, 1])
def test_binned_data_are_the_coarse_projection_of_the_binned_volume(slices):
    """bin_cols(A upsample(x_c) / 8) ~= A_c x_c: the coarse problem is the fine one on a coarser grid
    (odd batches: the last slice is counted twice)."""
    P = Projector(np.linspace(-60, 60, 13), n_x=32)
    Pc = P.coarsened()
    assert Pc.slice_shape == (16, 16) and P.coarsened() is Pc
    zz, xx = np.mgrid[:16, :16]
    blob = np.exp(-((zz - 8.0) ** 2 + (xx - 6.5) ** 2) / 18.0).astype(np.float32).ravel()
    Bc = (slices + 1) // 2
    xc = torch.from_numpy(np.stack([blob * (1 + 0.1 * k) for k in range(Bc)], axis=1))
    x = solvers.upsample_cols(xc, Pc.slice_shape, slices) / 8.0
    assert x.shape == (32 * 32, slices)
    binned = solvers.bin_cols(P.fp_cols(x), P.n_x)
    if slices % 2:  # the last coarse slice holds the last fine slice twice: as x_c itself there
        assert torch.allclose(solvers.upsample_cols(xc, Pc.slice_shape, slices + 1)[:, -1] / 8.0, x[:, -1])
    coarse = Pc.fp_cols(xc)
    assert binned.shape == coarse.shape
    assert float(torch.linalg.vector_norm(binned - coarse) / torch.linalg.vector_norm(coarse)) < 0.05


@pytest.mark.parametrize("data_term", ["least_squares", "poisson"])
def test_multilevel_start_numba_and_torch_paths_agree(rod32, data_term):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino[:6], "cpu")
    lam = 10 * reference_strength(sino, P, data_term)
    fused = solvers.tv(P, y, lam, 40, data_term=data_term, fused=True, start="multilevel")
    plain = solvers.tv(P, y, lam, 40, data_term=data_term, fused=False, start="multilevel")
    assert float((fused - plain).abs().max()) <= 1e-3 * float(plain.abs().max())


def test_every_batch_gets_the_start_chosen_on_the_brightest_slices(rod32):
    zn, sino, P = rod32
    lam = 10 * reference_strength(sino, P, "least_squares")
    vol = zn.reconstruct("tv", lam=lam, iterations=60, data_term="least_squares", show_progressbar=False)
    conv = vol.history[-1]["parameters"]["parameters"]["convergence"]
    assert conv["start"] == "multilevel"
    # one batch holds every slice: it is exactly the solver's multilevel start on all of them
    y = solvers.sinograms_to_cols(sino, "cpu")
    got = vol.to_numpy()[0]
    its = conv["iterations"]  # as many as the check ran (it continues while unconverged), repeated exactly
    direct = {start: solvers.cols_to_slices(solvers.tv(P, y, lam, 60, data_term="least_squares", start=start,
                                                       extend_to=its), P.slice_shape)
              for start in ("multilevel", "zero")}
    # (float rounding of the pipeline's copies aside) the multilevel solution, and not the zero start's
    assert np.abs(got - direct["multilevel"]).max() < 1e-3 * got.max()
    assert np.abs(got - direct["zero"]).max() > 2e-2 * got.max()


def test_several_batches_each_get_the_start_and_iterations_chosen_on_the_brightest_slices(rod32):
    """Four batches of 8 slices, each with the halo recorded: every batch is the solver's multilevel start,
    run for the iterations the check ran, on its slices and halo."""
    zn, sino, P = rod32
    lam = 10 * reference_strength(sino, P, "least_squares")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # at 10x no halo a batch of 8 can borrow holds: seams are warned of
        # (no continuation: the iterations are followed in test_tv_continuation; here the start is)
        vol = zn.reconstruct("tv", lam=lam, iterations=60, max_iterations=60, data_term="least_squares",
                             batch_size=8, show_progressbar=False)
    params = vol.history[-1]["parameters"]["parameters"]
    conv, halo = params["convergence"], params["slice_halo"]["halo"]
    assert conv["start"] == "multilevel"
    got = vol.to_numpy()[0].transpose(1, 0, 2)  # (y, z, x)
    n = sino.shape[0]
    for s0 in range(0, n, 8):
        lo, hi = max(0, s0 - halo), min(n, s0 + 8 + halo)
        y = solvers.sinograms_to_cols(sino[lo:hi], "cpu")
        x = solvers.tv(P, y, lam, 60, data_term="least_squares", start="multilevel", extend_to=conv["iterations"])
        want = solvers.cols_to_slices(x, P.slice_shape)[s0 - lo: s0 - lo + 8]
        assert np.abs(got[s0:s0 + 8] - want).max() < 1e-3 * got.max(), s0


def test_unknown_start_is_refused(rod32):
    _, sino, P = rod32
    with pytest.raises(InputError, match="start must be one of .*multilevel"):
        solvers.tv(P, solvers.sinograms_to_cols(sino, "cpu"), 1.0, 5, start="coarse")


def test_empty_slices_give_zeros_with_either_start():
    P = Projector(np.linspace(-60, 60, 13), n_x=32)
    y = torch.zeros((13 * 32, 3))
    for start in ("auto", "multilevel"):
        x, info = solvers.tv(P, y, 1.0, 20, data_term="poisson", start=start, return_info=True)
        assert x.shape == (32 * 32, 3) and float(x.abs().max()) == 0.0 and info["objective"] < 1e-3
