"""The field margin (reconstruction/field.py): slices wider than the views for material outside the field of
view, kept only where held-out data show a gain."""

import numpy as np
import pytest

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.analysis.metrics import nrmse
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.reconstruction import solvers
from hyperspy_edxtomo.reconstruction.field import MIN_RELATIVE_GAIN, choose_field_margin, default_field_margin
from hyperspy_edxtomo.reconstruction.projector import Projector
from hyperspy_edxtomo.reconstruction.strength import choose_strength

TILTS = np.linspace(-60, 60, 13)
# the fast settings below stop short of convergence, and say so
pytestmark = pytest.mark.filterwarnings("ignore:.*has not converged")


def test_widened_slices_project_onto_the_same_views():
    P = Projector(TILTS, n_x=32, axis_offset_px=0.7)
    W = P.widened(8)
    assert W.slice_shape == (32, 48) and W.sinogram_shape == P.sinogram_shape == (13, 32)
    assert W.n_voxels == 32 * 48 and P.widened(0) is P and P.widened(8) is W
    rng = np.random.default_rng(0)
    narrow = rng.random((2, 32, 32)).astype(np.float32)
    padded = np.zeros((2, 32, 48), np.float32)
    padded[:, :, 8:40] = narrow
    # the field's voxels sit where they sat: a volume inside the field gives the same views
    np.testing.assert_allclose(W.forward(padded), P.forward(narrow), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(W.crop(padded), narrow)
    # ... and material in the margin reaches the views only at the tilts that turn it into the field
    edge = np.zeros((1, 32, 48), np.float32)
    edge[0, 16, 1] = 1.0  # 7 px beyond the left edge, on the film's height
    seen = W.forward(edge)[0].sum(axis=1)
    assert seen[TILTS == 0] == 0 and seen[np.abs(TILTS) == 60].min() > 0.5
    y = rng.random((2, 13, 32)).astype(np.float32)
    x = rng.random((2, 32, 48)).astype(np.float32)
    assert np.isclose(np.sum(W.forward(x) * y), np.sum(x * W.adjoint(y)), rtol=1e-5)


def test_margin_settings_are_checked_and_coarsened_with_the_slices():
    with pytest.raises(InputError, match="field_margin"):
        Projector(TILTS, n_x=32, field_margin=-1)
    with pytest.raises(InputError, match="field_margin"):
        Projector(TILTS, n_x=32, field_margin=2.5)
    P = Projector(TILTS, n_x=64, field_margin=16)
    assert P.coarsened().field_margin == 8 and P.coarsened().slice_shape == (32, 48)
    assert solvers.can_coarsen(P)
    # a margin the two binnings cannot halve twice would misplace the coarse grids: no multilevel start
    assert not solvers.can_coarsen(Projector(TILTS, n_x=64, field_margin=6))
    assert [default_field_margin(n) for n in (8, 32, 64, 100, 128)] == [4, 8, 16, 24, 32]


def test_choose_field_margin_keeps_it_only_on_a_clear_gain():
    narrow = np.array([10.0, 12.0, 11.0, 9.0, 10.0])
    margin, record = choose_field_margin(lambda m: narrow - 3.0 + 0.1 * np.arange(5), 8, narrow)
    assert margin == 8 and record["chosen"] == 8 and record["gain"] > 2 * record["standard_error"]
    # a gain within its noise is no gain: the narrow slices stay
    margin, record = choose_field_margin(lambda m: narrow + np.array([-2.0, 2.0, -1.5, 1.0, -0.6]), 8, narrow)
    assert margin == 0 and "not more than 2 standard errors" in record["reason"]
    margin, record = choose_field_margin(lambda m: [], 8)
    assert margin == 0 and "nothing held out" in record["reason"]
    # significant but negligible (unconverged solves of the two boxes differ so): not worth 1.5x the time
    big = np.full(5, 1000.0)
    margin, record = choose_field_margin(lambda m: big - 1.0 - 0.01 * np.arange(5), 8, big)
    assert margin == 0 and record["gain"] > 2 * record["standard_error"] and "under 0.5%" in record["reason"]


def test_choose_strength_scores_given_strengths_on_the_same_held_out_counts():
    P = Projector(np.linspace(-60, 60, 9), n_x=16)
    disc = np.zeros((4, 16, 16), np.float32)
    disc[:, 5:11, 5:11] = 1
    views = np.random.default_rng(0).poisson(2 * P.forward(disc)).astype(np.float32)

    def solve(P, y, lam, b):
        return solvers.tv(P, y, lam, 30, background=b)

    lam, searched = choose_strength(solve, views, P, refine=0)
    given, record = choose_strength(solve, views, P, strengths=[lam])
    assert record["candidates"] == pytest.approx([lam]) and given == pytest.approx(lam)
    # paired: the same split scores the same strength alike
    i = searched["candidates"].index(searched["chosen"])
    np.testing.assert_allclose(record["fold_scores"][0], searched["fold_scores"][i], rtol=1e-6)


def _scene(scene):
    maps = datasets.simulate_scene(scene, size=32, counts_per_tilt=3000, background=0.1, seed=2)
    return maps.inav[:, 3], maps.metadata.Simulation.ground_truth.element("Zn").to_numpy()[0]


def _params(vol):
    return vol.history[-1]["parameters"]["parameters"]


#: one data term, no continuation: the choice of margin is what is tested, quickly
FAST = {"iterations": 60, "max_iterations": 60, "data_term": "poisson"}


def test_auto_margin_is_kept_for_particles_cut_by_the_field_edge_and_helps():
    maps, truth = _scene("edge_cut")
    auto = maps.reconstruct("tv", **FAST)
    params = _params(auto)
    assert params["field_margin"] == default_field_margin(32) == 8
    sel = params["field_margin_selection"]
    assert sel["chosen"] == 8 and sel["gain"] > 2 * sel["standard_error"]
    # the strength the wider slices get was validated on them: the record of the narrow one is kept apart
    assert "lam_without_margin" in sel and params["lam"] in params["lam_selection"]["candidates"]
    assert auto.data.shape == (1, 32, 32, 32)
    narrow = maps.reconstruct("tv", field_margin=0, **FAST)
    assert _params(narrow)["field_margin"] == 0 and "field_margin_selection" not in _params(narrow)
    # against the truth: a wrong choice (no margin) is far worse on this scene
    assert nrmse(auto.data[0], truth) < 0.7 * nrmse(narrow.data[0], truth)


def test_auto_margin_is_not_kept_for_a_particle_inside_the_field():
    maps, _ = _scene("dot")
    params = _params(maps.reconstruct("tv", **FAST))
    assert params["field_margin"] == 0
    sel = params["field_margin_selection"]
    assert list(sel["candidates"]) == [0, 8] and sel["chosen"] == 0
    assert sel["gain"] < MIN_RELATIVE_GAIN * sel["scores"][0] or sel["gain"] <= 2 * sel["standard_error"]


def test_a_given_margin_is_used_by_l1_and_refused_by_the_coupled_solver():
    maps, _ = _scene("edge_cut")
    vol = maps.reconstruct("l1", lam=1.0, iterations=30, field_margin=4)
    assert vol.data.shape == (1, 32, 32, 32) and _params(vol)["field_margin"] == 4
    with pytest.raises(InputError, match="couple_elements"):
        maps.reconstruct("tv", couple_elements=True, field_margin=4)


def test_a_margin_no_view_sees_into_is_refused_and_a_short_tilt_range_tries_less():
    from hyperspy_edxtomo.reconstruction.projector import largest_useful_margin

    maps, _ = _scene("edge_cut")
    limit = largest_useful_margin(maps.tilts, 32)
    assert 32 < limit < 64  # +-60 deg: a ray reaches at most (16 + 16 sin 60) / cos 60 - 16 = 43.7 px beyond
    # a huge margin would have asked for a matrix larger than memory: a message naming the limit instead
    with pytest.raises(InputError, match=rf"field_margin=1000000 px is wider than any view can see.*at most {limit}"):
        maps.reconstruct("l1", lam=1.0, iterations=5, field_margin=10**6)
    # at +-10 deg views see only 3.1 px beyond a 32-px field (limit 5 with the rounding): "auto" tries 4, not a
    # quarter of the width (8)
    short = np.array([-10.0, -5.0, 0.0, 5.0, 10.0])
    assert largest_useful_margin(short, 32) == 5 and default_field_margin(32, largest_useful_margin(short, 32)) == 4
    assert default_field_margin(32, 2) == 2 and default_field_margin(32, 0) == 0
    assert choose_field_margin(lambda m: [1.0, 2.0], 0)[1]["reason"].startswith("no view sees beyond the field")
