"""Simulated HAADF images (datasets.simulate_haadf and the haadf_* arguments of the simulators):
the Z**1.7 projection, the noise model, seeds, the metadata, and refused arguments."""

import numpy as np
import pytest

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.base.errors import InputError

SIZE = 24
TILTS = [-60.0, -20.0, 0.0, 30.0, 60.0]
Z = {"Cd": 48, "Se": 34, "S": 16, "Zn": 30}


@pytest.fixture(scope="module")
def phantom():
    return datasets.core_shell_phantom("CdSe/ZnS", size=SIZE, seed=1)


def _clean(phantom, tilts=TILTS, exponent=1.7):
    """What the HAADF images are without noise: sum_e Z_e**exponent rho_e, projected, peak 1."""
    proj = datasets.project(phantom.to_numpy(), tilts)
    weights = np.array([Z[el] ** exponent for el in phantom.elements])
    clean = np.tensordot(weights, proj, axes=1)
    return clean / clean.max()


def test_element_maps_carry_haadf_of_the_same_views(phantom):
    maps = datasets.simulate_element_maps(phantom, TILTS, counts_per_tilt=500, seed=0, haadf_snr=40, haadf_dose=2000)
    refs = maps.reference_images
    assert refs is not None and refs.data.shape == (len(TILTS), SIZE, SIZE) and refs.data.dtype == np.float32
    assert refs.axes_manager.navigation_shape == (len(TILTS),)
    np.testing.assert_allclose(refs.axes_manager["tilt"].axis, TILTS)
    assert refs.axes_manager[-1].scale == pytest.approx(phantom.voxel_size[0])
    params = maps.metadata.Simulation.parameters
    assert (params.haadf_snr, params.haadf_dose, params.haadf_exponent) == (40.0, 2000.0, 1.7)
    # slicing the maps slices the images with them
    assert maps.inav[1:3].reference_images.data.shape == (2, SIZE, SIZE)


def test_noiseless_haadf_is_the_z_weighted_projection(phantom):
    maps = datasets.simulate_element_maps(phantom, TILTS, seed=0, haadf_snr=float("inf"))
    np.testing.assert_allclose(maps.reference_images.data, _clean(phantom), atol=1e-6)
    direct = datasets.simulate_haadf(phantom, TILTS)
    np.testing.assert_allclose(direct.data, _clean(phantom), atol=1e-6)
    # an array with its elements gives the same; exponent 0 is the projected atom density
    arr = datasets.simulate_haadf(phantom.to_numpy(), TILTS, elements=phantom.elements, exponent=0)
    np.testing.assert_allclose(arr.data, _clean(phantom, exponent=0), atol=1e-6)
    assert arr.axes_manager[-1].units == "px"


def test_noise_follows_the_model(phantom):
    clean = _clean(phantom)
    # read noise only: Gaussian of std 1 / snr everywhere
    snr = 20.0
    noisy = datasets.simulate_haadf(phantom, TILTS, snr=snr, seed=3).data
    resid = noisy - clean
    assert abs(resid.mean()) < 3 / snr / np.sqrt(resid.size)
    assert resid.std() == pytest.approx(1 / snr, rel=0.05)
    # shot noise only: Poisson(dose I) / dose, variance I / dose, nothing where there is no sample
    dose = 500.0
    shot = datasets.simulate_haadf(phantom, TILTS, dose=dose, seed=3).data
    bright = clean > 0.3
    assert np.mean((shot - clean)[bright] ** 2 / (clean[bright] / dose)) == pytest.approx(1.0, rel=0.1)
    assert np.all(shot[clean == 0] == 0)
    assert np.allclose(shot * dose, np.round(shot * dose), atol=1e-2)  # whole electrons
    # both: independent, the variances add
    both = datasets.simulate_haadf(phantom, TILTS, snr=snr, dose=dose, seed=3).data
    var = (both - clean)[bright] ** 2 / (clean[bright] / dose + 1 / snr**2)
    assert np.mean(var) == pytest.approx(1.0, rel=0.1)


def test_seed_reproducible_and_counts_unchanged(phantom):
    kw = dict(tilts=TILTS, counts_per_tilt=300, haadf_snr=30, haadf_dose=1000)
    a = datasets.simulate_element_maps(phantom, seed=5, **kw)
    b = datasets.simulate_element_maps(phantom, seed=5, **kw)
    c = datasets.simulate_element_maps(phantom, seed=6, **kw)
    np.testing.assert_array_equal(a.reference_images.data, b.reference_images.data)
    assert not np.array_equal(a.reference_images.data, c.reference_images.data)
    # the counts are drawn first: the same with or without HAADF
    plain = datasets.simulate_element_maps(phantom, tilts=TILTS, counts_per_tilt=300, seed=5)
    np.testing.assert_array_equal(a.data, plain.data)
    assert plain.reference_images is None and "haadf_snr" not in plain.metadata.Simulation.parameters
    d1 = datasets.simulate_haadf(phantom, TILTS, snr=10, seed=2).data
    np.testing.assert_array_equal(d1, datasets.simulate_haadf(phantom, TILTS, snr=10, seed=2).data)


def test_wrappers_and_spectra_pass_haadf_on():
    maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=SIZE, tilts=TILTS, shell_gap=0.1, haadf_snr=50,
                                             haadf_dose=3000)
    assert maps.reference_images.data.shape == (len(TILTS), SIZE, SIZE)
    assert maps.metadata.Simulation.ground_truth.metadata.Simulation.phantom.shell_gap_fraction == 0.1
    s = datasets.nanorod_tilt_series(size=SIZE, tilts=[-45, 0, 45], counts_per_tilt=200, n_channels=512,
                                     haadf_snr=50)
    assert s.reference_images.data.shape == (3, SIZE, SIZE)
    assert s.metadata.Simulation.parameters.haadf_snr == 50.0
    assert s.get_element_maps(["Se", "Zn"], show_progressbar=False).reference_images.data.shape == (3, SIZE, SIZE)


def test_scenes_use_the_same_model():
    maps = datasets.simulate_scene("dot", size=SIZE, counts_per_tilt=500, haadf_snr=30, haadf_dose=2000, seed=2)
    refs = maps.reference_images
    assert refs.data.shape == (13, SIZE, SIZE) and refs.data.dtype == np.float32
    params = maps.metadata.Simulation.parameters
    assert (params.haadf_snr, params.haadf_dose, params.haadf_exponent) == (30.0, 2000.0, 1.7)
    # no misalignment and nothing outside the field: the scene's HAADF is the truth's, up to noise
    clean = _clean(maps.metadata.Simulation.ground_truth, maps.tilts)
    assert np.corrcoef(refs.data.ravel(), clean.ravel())[0, 1] > 0.98
    again = datasets.simulate_scene("dot", size=SIZE, counts_per_tilt=500, haadf_snr=30, haadf_dose=2000, seed=2)
    np.testing.assert_array_equal(refs.data, again.reference_images.data)
    assert datasets.simulate_scene("dot", size=SIZE, seed=2).reference_images is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(haadf_snr=0), "haadf_snr must be a positive number"),
    (dict(haadf_snr=-5), "haadf_snr must be a positive number"),
    (dict(haadf_snr=float("nan")), "haadf_snr must be a positive number"),
    (dict(haadf_snr="high"), "haadf_snr must be a positive number"),
    (dict(haadf_dose=0), "haadf_dose must be a positive number"),
    (dict(haadf_dose=float("inf")), "haadf_dose must be a positive number"),
    (dict(haadf_snr=10, haadf_exponent=float("nan")), "haadf_exponent must be a finite number"),
])
def test_bad_haadf_arguments_are_refused(phantom, kwargs, message):
    with pytest.raises(InputError, match=message):
        datasets.simulate_element_maps(phantom, TILTS, **kwargs)
    if "haadf_exponent" not in kwargs:
        with pytest.raises(InputError, match=message):
            datasets.simulate_scene("dot", size=SIZE, **kwargs)


def test_simulate_haadf_refuses_bad_volumes(phantom):
    with pytest.raises(InputError, match="needs elements"):
        datasets.simulate_haadf(phantom.to_numpy(), TILTS)
    with pytest.raises(InputError, match="element, z, y, x"):
        datasets.simulate_haadf(np.ones((4, 4, 4)), TILTS, elements=["Cd"])
    with pytest.raises(InputError, match="Unknown element"):
        datasets.simulate_haadf(np.ones((1, 4, 4, 4)), TILTS, elements=["Qq"])
    with pytest.raises(InputError, match="haadf_snr must be a positive number"):
        datasets.simulate_haadf(phantom, TILTS, snr=0)
