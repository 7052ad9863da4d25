"""How long tv runs: an unconverged run continues, doubling its iterations, while its convergence measure
reads over half the tolerance (up to ``max_iterations``); the plugins record the iterations run and every
batch runs as many; the halo of the coupled solvers validates itself as the per-element one does."""

import warnings

import numpy as np
import pytest
import torch

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.projector import Projector
from hyperspy_edxtomo.reconstruction.strength import reference_strength


def _params(vol):
    return vol.history[-1]["parameters"]["parameters"]


def test_an_unconverged_run_continues_until_its_measure_is_met(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = 1e-2 * reference_strength(sino, P, "poisson")
    optimum = solvers.tv(P, y, lam, 6000, data_term="poisson", return_info=True)[1]["objective"]
    fixed = solvers.tv(P, y, lam, 200, data_term="poisson", return_info=True)[1]
    more = solvers.tv(P, y, lam, 200, data_term="poisson", return_info=True, max_iterations=1600)[1]
    # 200 iterations are far from the optimum, and the measure says so
    assert fixed["iterations"] == 200 and not fixed["converged"] and fixed["objective"] > 1.015 * optimum
    # continued (doubling: 400, 800 or 1600), it gets within the tolerance and says so
    assert more["iterations"] in (400, 800, 1600) and more["converged"]
    assert more["objective"] <= 1.01 * optimum


def test_without_max_iterations_the_run_is_exactly_its_iterations(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = 1e-3 * reference_strength(sino, P, "poisson")
    x, info = solvers.tv(P, y, lam, 50, data_term="poisson", return_info=True)
    assert info["iterations"] == 50 and not info["converged"]
    assert torch.equal(x, solvers.tv(P, y, lam, 50, data_term="poisson", max_iterations=50))


@pytest.mark.parametrize("fused", [None, False])
def test_a_continued_run_is_the_same_run_resumed(rod32, fused):
    """Doubling resumes the run (primal, duals, steps kept), in both the numba and the torch path: 100
    iterations extended to 400 are exactly 400 iterations."""
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = 1e-2 * reference_strength(sino, P, "poisson")
    x, info = solvers.tv(P, y, lam, 100, data_term="poisson", start="zero", extend_to=400, fused=fused,
                         return_info=True)
    assert info["iterations"] == 400
    assert torch.equal(x, solvers.tv(P, y, lam, 400, data_term="poisson", start="zero", fused=fused))


def test_a_single_iteration_is_measured_from_the_start_and_continues(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = reference_strength(sino, P, "poisson")
    _, one = solvers.tv(P, y, lam, 1, data_term="poisson", return_info=True)
    assert one["iterations"] == 1 and not one["converged"]  # one iteration from zero is no solution
    _, more = solvers.tv(P, y, lam, 1, data_term="poisson", return_info=True, max_iterations=512)
    assert more["iterations"] > 1


def test_no_iterations_is_not_continued(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    for kw in ({"max_iterations": 8}, {"extend_to": 8}):
        x, info = solvers.tv(P, y, 1.0, 0, data_term="poisson", start="zero", return_info=True, **kw)
        assert info["iterations"] == 0 and float(x.abs().max()) == 0.0


def test_a_converged_run_does_not_continue(rod32):
    _, sino, P = rod32
    y = solvers.sinograms_to_cols(sino, "cpu")
    lam = reference_strength(sino, P, "poisson")
    x, info = solvers.tv(P, y, lam, 200, data_term="poisson", return_info=True, max_iterations=1600)
    assert info["converged"] and abs(info["relative_change"]) <= solvers.CONTINUE_TOL
    assert info["iterations"] == 200 and torch.equal(x, solvers.tv(P, y, lam, 200, data_term="poisson"))


def test_the_plugin_records_the_iterations_run_and_every_batch_runs_as_many(rod32):
    """Weak Poisson TV: the check on the brightest slices continues past ``iterations``; every batch (four
    of 8 slices here, with the validated halo) is then the solver run for that many iterations from the
    start chosen there, on its slices and halo."""
    zn, sino, P = rod32
    lam = 1e-2 * reference_strength(sino, P, "poisson")
    vol = zn.reconstruct("tv", lam=lam, iterations=200, data_term="poisson", batch_size=8, show_progressbar=False)
    conv = _params(vol)["convergence"]
    assert conv["max_iterations"] == solvers.CONTINUE_UP_TO * 200 and conv["converged"]
    its = conv["iterations"]
    assert its in (400, 800, 1600)
    halo = _params(vol)["slice_halo"]["halo"]
    got = vol.to_numpy()[0].transpose(1, 0, 2)  # (y, z, x)
    n = sino.shape[0]
    for s0 in range(0, n, 8):
        lo, hi = max(0, s0 - halo), min(n, s0 + 8 + halo)
        y = solvers.sinograms_to_cols(sino[lo:hi], "cpu")
        x = solvers.tv(P, y, lam, 200, data_term="poisson", start=conv["start"], extend_to=its)
        x = solvers.cols_to_slices(x, P.slice_shape)[s0 - lo: s0 - lo + 8]
        assert np.abs(got[s0:s0 + 8] - x).max() <= 1e-3 * got.max(), s0
    # the same batches at the iterations asked differ: the continuation reached them
    y = solvers.sinograms_to_cols(sino[0:8 + halo], "cpu")
    short = solvers.cols_to_slices(solvers.tv(P, y, lam, 200, data_term="poisson", start="zero"), P.slice_shape)[:8]
    assert np.abs(got[:8] - short).max() > 1e-2 * got.max()


def test_max_iterations_equal_to_iterations_never_continues_and_warns(rod32):
    zn, sino, P = rod32
    lam = 1e-3 * reference_strength(sino, P, "poisson")
    with pytest.warns(UserWarning, match="has not converged .* after 100 iterations.*Raise max_iterations"):
        vol = zn.reconstruct("tv", lam=lam, iterations=100, max_iterations=100, data_term="poisson",
                             show_progressbar=False)
    params = _params(vol)
    conv = params["convergence"]
    assert conv["iterations"] == 100 and conv["max_iterations"] == 100 and not conv["converged"]


def test_max_iterations_equal_to_iterations_holds_for_the_strength_candidates_too(rod32):
    zn, _, _ = rod32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        never = _params(zn.reconstruct("tv", iterations=60, max_iterations=60, show_progressbar=False))
        auto = _params(zn.reconstruct("tv", iterations=60, show_progressbar=False))
    assert never["lam_selection_iterations"] == never["lam_selection_max_iterations"] == 60
    assert auto["lam_selection_max_iterations"] == solvers.CONTINUE_UP_TO * 60


def test_the_coupled_solvers_validate_their_halo():
    """Coupled TV in batches: at a weak strength the default halo holds and is recorded; at a strong one it
    is widened, checked like tv's (edge slice against the slab solved whole), and a warning says when no
    halo a batch may borrow holds. One batch records no check."""
    maps = datasets.simulate_scene("dot", size=32, counts_per_tilt=10000, seed=2)
    sino = np.ascontiguousarray(maps.element("Zn").to_numpy()[0].transpose(1, 0, 2).astype(np.float32))
    ref = reference_strength(sino, Projector(maps.tilts, n_x=32), "poisson")
    common = dict(couple_elements=True, iterations=100, max_iterations=100, data_term="poisson", show_progressbar=False)
    n_el = len(maps.elements)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weak = maps.reconstruct("tv", lam=0.05 * ref, batch_size=8 * n_el, **common)
    rec = _params(weak)["slice_halo"]
    assert rec["validated"] and rec["halo"] == solvers.TV_HALO and rec["tried"][0]["difference"] <= rec["tolerance"]
    with pytest.warns(UserWarning, match="may show seams"):
        strong = maps.reconstruct("tv", lam=10 * ref, batch_size=8 * n_el, **common)
    rec = _params(strong)["slice_halo"]
    # 4 and 8 tried, neither holds: the batches borrow 8 slices (their own size), and say so
    assert not rec["validated"] and rec["halo"] == 8 and [t["halo"] for t in rec["tried"]] == [4, 8]
    assert all(t["difference"] > rec["tolerance"] for t in rec["tried"])
    # the default batch holds every element's 32 slices: one batch, nothing to check (the batch size was
    # divided by the number of elements after being limited to the slices: 4 batches of 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = maps.reconstruct("tv", lam=10 * ref, **common)
    assert "slice_halo" not in _params(one)


def test_the_coupled_solvers_continue_too_and_their_batches_run_as_long():
    """Coupled TV at a weak strength: the convergence check continues past ``iterations`` and records it;
    the volume is the one asked for with that many iterations and no continuation, not the one at the
    iterations asked."""
    maps = datasets.simulate_scene("dot", size=32, counts_per_tilt=10000, seed=2)
    sino = np.ascontiguousarray(maps.element("Zn").to_numpy()[0].transpose(1, 0, 2).astype(np.float32))
    lam = 1e-2 * reference_strength(sino, Projector(maps.tilts, n_x=32), "poisson")
    common = dict(couple_elements=True, lam=lam, data_term="poisson", show_progressbar=False)
    vol = maps.reconstruct("tv", iterations=100, **common)
    conv = _params(vol)["convergence"]
    assert conv["max_iterations"] == solvers.CONTINUE_UP_TO * 100 and conv["iterations"] in (200, 400, 800)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = maps.reconstruct("tv", iterations=conv["iterations"], max_iterations=conv["iterations"], **common)
        short = maps.reconstruct("tv", iterations=100, max_iterations=100, **common)
    assert np.abs(vol.data - same.data).max() <= 1e-4 * vol.data.max()
    assert np.abs(vol.data - short.data).max() > 1e-2 * vol.data.max()
