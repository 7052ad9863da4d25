"""method="fused" (X-ray counts + HAADF, coupled TV) and tv's couple_elements (issue 17)."""

import warnings

import numpy as np
import pytest
import torch

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.provenance import get_history
from hyperspy_edxtomo.reconstruction import multichannel, solvers
from hyperspy_edxtomo.reconstruction.haadf import fit_contrast
from hyperspy_edxtomo.reconstruction.projector import Projector


def _nrmse(volume, truth):
    """Mean over elements of the NRMSE after the best scale (counts have an unknown scale)."""
    out = []
    for v, t in zip(np.asarray(volume, float), np.asarray(truth, float)):
        a, b = v.ravel(), t.ravel()
        s = (a @ b) / (a @ a) if a @ a > 0 else 0.0
        out.append(np.linalg.norm(s * a - b) / np.linalg.norm(b))
    return float(np.mean(out))


def _parameters(vol):
    return get_history(vol)[-1]["parameters"]["parameters"]


def _haadf_of(volume, tilts, weights=None):
    """Noise-free HAADF views ``(tilt, y, x)`` of ``sum_e weights_e volume_e`` (element, z, y, x)."""
    w = np.ones(volume.shape[0]) if weights is None else np.asarray(weights, float)
    mix = np.tensordot(w, np.asarray(volume, np.float64), axes=1).astype(np.float32)  # (z, y, x)
    P = Projector(tilts, n_x=mix.shape[2], n_z=mix.shape[0])
    return P.forward(np.ascontiguousarray(mix.transpose(1, 0, 2))).transpose(1, 0, 2)  # (tilt, y, x)


@pytest.fixture(scope="module")
def low_dose():
    """A CdSe/ZnS dot at 300 counts per element per view, 13 tilts, HAADF at SNR 50."""
    return datasets.simulate_scene("dot", size=32, counts_per_tilt=300, haadf_snr=50, seed=1)


@pytest.fixture(scope="module")
def fused_volume(low_dose):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return low_dose.reconstruct(method="fused")


# -- the solver ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_term", ["poisson", "least_squares"])
def test_coupled_tv_of_one_element_is_tv(data_term):
    """With one element and no HAADF the problem is tv's: Poisson iterates agree exactly, least squares
    converges to the same minimiser (its steps are scaled differently)."""
    P = Projector(np.linspace(-60, 60, 13), n_x=32)
    phantom = np.zeros((6, 32, 32), np.float32)
    phantom[:, 10:22, 8:20] = 1
    phantom[:, 14:18, 12:16] = 3
    rng = np.random.default_rng(0)
    b = np.full((6, 13, 32), 0.2, np.float32)
    y = solvers.sinograms_to_cols(rng.poisson(0.5 * P.forward(phantom) + b).astype(np.float32), "cpu")
    bc = solvers.sinograms_to_cols(b, "cpu")
    its = 100 if data_term == "poisson" else 1000
    x_tv = solvers.tv(P, y, 0.15, its, data_term=data_term, background=bc, fused=False)
    x_c = multichannel.coupled_tv(P, y[None], 0.15, its, data_terms=data_term, backgrounds=bc[None])[0]
    assert float((x_tv - x_c).abs().max()) < 1e-3 * float(x_tv.abs().max())


def test_coupled_tv_couples_the_elements():
    """Two elements with the same edges: coupled, the faint one is closer to the truth than alone, each at
    the best strength of a grid (the coupling, not a different effective strength, makes the difference)."""
    P = Projector(np.linspace(-60, 60, 13), n_x=32)
    shape = np.zeros((8, 32, 32), np.float32)
    shape[:, 8:24, 10:22] = 1
    rng = np.random.default_rng(3)
    ys = torch.stack([solvers.sinograms_to_cols(rng.poisson(s * P.forward(shape)).astype(np.float32), "cpu")
                      for s in (2.0, 0.05)])
    truth = shape.reshape(8, -1).T

    def error(x):
        s = (x.ravel() @ truth.ravel()) / (x.ravel() @ x.ravel())
        return np.linalg.norm(s * x - truth) / np.linalg.norm(truth)

    grid = np.logspace(-1, 1.5, 6)
    alone = min(error(multichannel.coupled_tv(P, ys[1:], lam, 200)[0].numpy()) for lam in grid)
    coupled = min(error(multichannel.coupled_tv(P, ys, lam, 200)[1].numpy()) for lam in grid)
    assert coupled < 0.8 * alone


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA path is checked where one is")
def test_coupled_tv_cpu_and_cuda_agree():
    rng = np.random.default_rng(0)
    tilts = np.linspace(-60, 60, 13)
    views = rng.poisson(1.0, size=(2, 8, 13, 32)).astype(np.float32)
    out = {}
    for cuda in (False, True):
        P = Projector(tilts, n_x=32, cuda=cuda)
        ys = torch.stack([solvers.sinograms_to_cols(v, P.device) for v in views])
        out[cuda] = multichannel.coupled_tv(P, ys, 0.3, 100).cpu().numpy()
    assert np.allclose(out[False], out[True], rtol=1e-3, atol=1e-3 * out[False].max())


def test_contrast_fit_recovers_the_weights_and_offsets():
    rng = np.random.default_rng(2)
    proj = rng.random((3, 6, 13, 20))
    c, o = np.array([2.0, 0.0, 0.5]), rng.normal(size=13)
    h = np.tensordot(c, proj, axes=1) + o[None, :, None] + rng.normal(scale=1e-3, size=(6, 13, 20))
    fit = fit_contrast(h, proj)
    assert np.allclose(fit["coefficients"], c, atol=1e-2)
    assert np.allclose(fit["offsets"], o, atol=1e-2)
    assert fit["r2"] > 0.99


# -- fused on a simulated low dose ------------------------------------------------------------------


def test_fused_beats_tv_against_the_truth(low_dose, fused_volume):
    truth = low_dose.metadata.Simulation.ground_truth.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tv = low_dose.reconstruct(method="tv")
    assert _nrmse(fused_volume.data, truth) < 0.7 * _nrmse(tv.data, truth)


def test_fused_records_its_choices(fused_volume, tmp_path):
    import hyperspy.api as hs

    p = _parameters(fused_volume)
    assert p["criterion"] == "count_split"
    assert p["guide_strength"] > 0  # the HAADF's edges predict held-out counts here
    assert p["guide_selection"]["gain"] > 2 * p["guide_selection"]["standard_error"]
    assert 0.0 in list(p["haadf_weight_selection"]["candidates"])
    assert p["haadf_model"]["r2"] > 0.9 and min(p["haadf_model"]["coefficients"]) > 0
    assert p["convergence"]["converged"]
    assert len(p["lam_selection"]["candidates"]) == len(p["lam_selection"]["scores"])
    assert get_history(fused_volume)[-1]["parameters"]["haadf"].startswith("the maps' reference images")
    fused_volume.save(tmp_path / "fused.hspy")
    back = hs.load(tmp_path / "fused.hspy")
    assert type(back).__name__ == "ElementVolume"
    assert _parameters(back)["guide_strength"] == p["guide_strength"]


def test_a_haadf_of_another_object_is_not_used(low_dose):
    """The choice comes from held-out counts: the HAADF of the same dot moved by a quarter of the field
    has edges where the elements have none, and predicts no held-out count better; it must be left out
    (a guide or weight chosen without validation would be used and would make the volume worse)."""
    truth = low_dose.metadata.Simulation.ground_truth.data
    wrong = np.roll(low_dose.reference_images.data, 8, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = low_dose.reconstruct(method="fused", haadf=wrong)
        coupled = low_dose.reconstruct(method="tv", couple_elements=True)
    p = _parameters(vol)
    assert p["guide_strength"] == 0.0 and p["haadf_weight"] == 0.0, (p["guide_selection"]["reason"],
                                                                     p["haadf_weight_selection"].get("reason"))
    assert _nrmse(vol.data, truth) < 1.05 * _nrmse(coupled.data, truth)


def test_fused_lazy_and_eager_agree(low_dose, fused_volume):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = low_dose.as_lazy().reconstruct(method="fused")
    assert lazy._lazy
    assert np.allclose(np.asarray(lazy.data), fused_volume.data, rtol=1e-4, atol=1e-4 * fused_volume.data.max())


def test_tv_couple_elements(low_dose):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = low_dose.reconstruct(method="tv", couple_elements=True, iterations=100)
    p = _parameters(vol)
    assert p["couple_elements"] is True and p["criterion"] == "count_split"
    assert "guide_strength" in p and p["guide_strength"] == 0.0
    assert vol.data.shape == (4, 32, 32, 32) and np.all(vol.data >= 0)


def test_two_step_with_a_fused_mbir():
    maps = datasets.simulate_scene("dot", size=24, counts_per_tilt=500, haadf_snr=50, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol, inter = maps.reconstruct(method="two_step", mbir="fused", enhancer_steps=5, mbir_iterations=50,
                                      denoiser_parameters={"steps": 5}, return_intermediates=True)
    p = _parameters(vol)["Cd"]  # two_step records per element (its enhancer's losses differ)
    assert p["mbir"] == "fused"
    assert "haadf_weight" in p["mbir_lam_selection"] and "guide_strength" in p["mbir_lam_selection"]
    assert inter["mbir"].data.shape == (4, 24, 24, 24) and np.any(inter["mbir"].data > 0)


# -- bad input --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return datasets.simulate_scene("dot", size=24, counts_per_tilt=2000, haadf_snr=50, seed=3)


def test_fused_without_haadf_names_what_to_pass():
    """QD1 (the shipped real series) has no HAADF: fused refuses, saying what to pass."""
    maps = datasets.qd1()
    assert maps.reference_images is None
    with pytest.raises(InputError, match="haadf="):
        maps.reconstruct(method="fused")


@pytest.mark.parametrize("case, match", [
    ("size", "pixels"),
    ("views", "views"),
    ("nan", "NaN"),
    ("constant", "constant"),
    ("tilts", "differ"),
])
def test_bad_haadf_is_refused(small, case, match):
    h = small.reference_images.data.copy()
    if case == "size":
        h = h[:, :-2]
    elif case == "views":
        h = h[:-1]
    elif case == "nan":
        h[3, 4, 4] = np.nan
    elif case == "constant":
        h[5] = 1.0
    elif case == "tilts":
        h = small.reference_images.deepcopy()
        axis = h.axes_manager.navigation_axes[0]
        axis.axis = axis.axis + 5
    with pytest.raises(InputError, match=match):
        small.reconstruct(method="fused", haadf=h)


def test_haadf_refused_by_a_method_that_does_not_use_it(small):
    with pytest.raises(InputError, match="does not use a HAADF"):
        small.reconstruct(method="sirt", haadf=small.reference_images)


def test_saturated_haadf_is_masked(small):
    h = small.reference_images.data.copy()
    h = np.minimum(h, np.percentile(h, 97))
    with pytest.warns(UserWarning, match="saturated"):
        vol = small.reconstruct(method="fused", haadf=h, lam=1.0, haadf_weight=0.1, guide_strength=0.0,
                                iterations=30)
    assert np.all(np.isfinite(vol.data))
    # the clipped pixels, and only those, are left out of the HAADF term
    assert get_history(vol)[-1]["parameters"]["haadf_masked_pixels"] == int(np.sum(h >= h.max(axis=(1, 2),
                                                                                               keepdims=True)))


def test_inverted_haadf_is_not_used(small):
    """A bright-field-like image (HAADF upside down): no element has a positive contrast in it."""
    h = -small.reference_images.data
    with pytest.warns(UserWarning, match="contrast fitted to the X-ray reconstruction is 0"):
        vol = small.reconstruct(method="fused", haadf=h, iterations=50)
    p = _parameters(vol)
    assert p["haadf_weight"] == 0.0 and p["guide_strength"] == 0.0


def test_element_without_haadf_contrast_is_reported(small):
    truth = small.metadata.Simulation.ground_truth.data
    # a HAADF made of Cd and Se only (the core): S and Zn add nothing to it
    h = _haadf_of(truth, small.tilts, weights=[1.0, 1.0, 0.0, 0.0])
    h = h + np.random.default_rng(0).normal(scale=0.01 * h.max(), size=h.shape)
    with pytest.warns(UserWarning, match=r"element (S|Zn) contributes nothing"):
        vol = small.reconstruct(method="fused", haadf=h, lam=1.0, haadf_weight=0.0, guide_strength=0.0,
                                iterations=50)
    c = dict(zip(vol.elements, _parameters(vol)["haadf_model"]["coefficients"]))
    assert c["Cd"] > 0 and c["Se"] > 0
    assert min(c["S"], c["Zn"]) < 0.05 * max(c["Cd"], c["Se"])


def test_pipeline_runs_fused_and_measures_the_fsc_without_the_shared_haadf(tmp_path):
    from hyperspy_edxtomo.workflow.pipeline import run_pipeline

    maps = datasets.simulate_scene("dot", size=24, counts_per_tilt=1500, haadf_snr=50, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_pipeline(maps, out=tmp_path, method="fused", parameters={"iterations": 60}, align=False,
                           verbose=False)
    assert get_history(res["volume"])[-1]["method"] == "fused"
    # both halves would share one HAADF series: they are reconstructed with the default method instead
    assert res["fsc"].metadata.get_item("Tomography.FSC.method") == "tv"


def test_fuse_view_of_one_view(small):
    """The 2D check: one view's counts with its HAADF (identity projector), choices from held-out counts."""
    from hyperspy_edxtomo.reconstruction.fusion2d import fuse_view

    counts = small.data[:, 6].astype(np.float32)
    expected, chosen = fuse_view(counts, small.reference_images.data[6], iterations=50, elements=small.elements)
    assert expected.shape == counts.shape and np.all(np.isfinite(expected)) and np.all(expected >= 0)
    assert chosen["criterion"] == "count_split" and "guide_selection" in chosen
    noise = np.random.default_rng(0).normal(size=counts.shape[1:])
    _, chosen = fuse_view(counts, noise, iterations=50, elements=small.elements)
    assert chosen["guide_strength"] == 0.0 or chosen["haadf_model"]["r2"] < 0.1


def test_a_better_haadf_volume_guides_better(low_dose, fused_volume):
    """haadf_volume= (e.g. from a HAADF series with more tilts) replaces the guide from the 13 HAADF views;
    the true HAADF volume, given without any HAADF views, beats the guide the views give."""
    from hyperspy_edxtomo.datasets.spectra import haadf_weights

    truth = low_dose.metadata.Simulation.ground_truth.data
    volume = np.tensordot(haadf_weights(low_dose.elements), truth, axes=1)
    maps = low_dose.deepcopy()
    maps.metadata.Tomography.__delattr__("reference_images")
    assert maps.reference_images is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = maps.reconstruct(method="fused", haadf_volume=volume)
    p = _parameters(vol)
    assert p["guide_strength"] > 0 and p["haadf_weight"] == 0.0 and p["haadf_model"] is None
    assert get_history(vol)[-1]["parameters"]["haadf_volume"] == "given as haadf_volume="
    assert _nrmse(vol.data, truth) < 0.8 * _nrmse(fused_volume.data, truth)


def test_bad_haadf_volume_is_refused(small):
    with pytest.raises(InputError, match="haadf_volume is shaped"):
        small.reconstruct(method="fused", haadf_volume=np.ones((24, 24, 20)))
    with pytest.raises(InputError, match="constant"):
        small.reconstruct(method="fused", haadf_volume=np.ones((24, 24, 24)))
    with pytest.raises(InputError, match="does not use a HAADF volume"):
        small.reconstruct(method="tv", haadf_volume=np.random.default_rng(0).random((24, 24, 24)))


def test_fused_on_real_vendor_files_uses_their_haadf(shared_data, tmp_path):
    """Bruker .bcf files hold a HAADF image with the spectrum image: loading keeps it, the maps carry it,
    and fused reconstructs with it (five copies of one real file stand in for a tilt series)."""
    import shutil

    import hyperspy_edxtomo as het

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"view_{i}.bcf")
        shutil.copy(shared_data / "vendor" / "test_TEM.bcf", paths[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        series = het.load_tilt_series(paths, tilts=[-40, -20, 0, 20, 40])
        maps = series.get_element_maps(["Cu", "Ti"])
        assert maps.reference_images.data.shape == (5, 64, 64)
        vol = maps.reconstruct(method="fused", iterations=40)
    assert vol.data.shape == (2, 64, 64, 64) and np.all(np.isfinite(vol.data))
    assert get_history(vol)[-1]["parameters"]["haadf"].startswith("the maps' reference images")
    assert "haadf_model" in _parameters(vol)


def test_the_haadf_data_term_alone_improves_a_low_dose_case(low_dose):
    """Without the guide, the HAADF term (weight chosen on held-out counts) is used and brings the volume
    closer to the truth than the same reconstruction without it."""
    truth = low_dose.metadata.Simulation.ground_truth.data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_term = low_dose.reconstruct(method="fused", guide_strength=0.0)
        p = _parameters(with_term)
        without = low_dose.reconstruct(method="fused", guide_strength=0.0, haadf_weight=0.0, lam=p["lam"])
    assert p["haadf_weight"] > 0, p["haadf_weight_selection"]["reason"]
    assert _nrmse(with_term.data, truth) < 0.95 * _nrmse(without.data, truth)


def test_batches_solve_the_same_problem(small):
    """Solved in batches of a few slices (with their halo) the volume is the one solved in one batch: the
    element scales that weigh the coupled TV are the series', not each batch's."""
    params = dict(lam=2.0, haadf_weight=0.3, guide_strength=0.9, iterations=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = small.reconstruct(method="fused", **params).data
        many = small.reconstruct(method="fused", batch_size=12, **params).data  # 3 slices a batch, 4 elements
    assert np.max(np.abs(one - many)) < 0.02 * one.max()


def test_fused_with_a_turned_tilt_axis(small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = small.reconstruct(method="fused", rotation_deg=5.0, iterations=60)
    p = get_history(vol)[-1]["parameters"]
    assert p["rotation_deg"] == 5.0 and p["haadf_masked_pixels"] > 0  # the corners turned in from outside
    assert np.all(np.isfinite(vol.data)) and vol.data.max() > 0


def test_an_element_without_counts(small):
    """An element with no counts gets no HAADF contrast (not a huge one) and a zero volume."""
    maps = small.deepcopy()
    maps.data[2] = 0
    with pytest.warns(UserWarning, match="element S contributes nothing"):
        vol = maps.reconstruct(method="fused", iterations=60)
    c = _parameters(vol)["haadf_model"]["coefficients"]
    assert c[2] == 0.0 and max(c) < 1e3 * min(v for v in c if v > 0)
    assert np.all(vol.data[2] == 0) and np.all(np.isfinite(vol.data))


def test_settings_given_need_no_held_out_views():
    """Four views of maps that are not counts: with every setting given nothing is held out, and with
    'auto' the centre of the candidates is used and said."""
    maps = datasets.simulate_scene("dot", size=24, counts_per_tilt=2000, map_kind="smoothed",
                                   tilts=[-45, -15, 15, 45], seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = maps.reconstruct(method="tv", couple_elements=True, lam=1.0, iterations=40)
    assert np.all(np.isfinite(vol.data))
    with pytest.warns(UserWarning, match="no view can be held out"):
        vol = maps.reconstruct(method="tv", couple_elements=True, iterations=40)
    assert "centre of the candidates" in _parameters(vol)["selection_reason"]


def test_saturation_and_clipped_black_level_in_integer_images():
    from hyperspy_edxtomo.reconstruction.haadf import check_haadf

    rng = np.random.default_rng(0)
    views = rng.integers(20, 200, size=(5, 16, 16)).astype(np.uint8)
    views[:, :4, :4] = 200  # an integer image's brightest level repeated: not saturation
    _, mask = check_haadf(views, 5, (16, 16))
    assert mask is None
    views[:, :4, :4] = 255  # at the 8-bit limit: saturated
    with pytest.warns(UserWarning, match="saturated"):
        _, mask = check_haadf(views, 5, (16, 16))
    assert mask is not None and not mask[:, :4, :4].any() and mask[:, 8:, 8:].all()
    views[:, 8:, :] = 0  # half of every view at the black level
    with pytest.warns(UserWarning, match="vacuum level looks clipped"):
        check_haadf(views, 5, (16, 16))
