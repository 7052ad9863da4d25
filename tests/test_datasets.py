"""Tests of the simulated datasets (phantoms, projections, maps and spectra)."""

import numpy as np
import pytest
from scipy import ndimage

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.analysis.metrics import pearson
from hyperspy_edxtomo.signals import (
    EDXTiltSeries,
    ElementMapTiltSeries,
    ElementVolume,
    LazyEDXTiltSeries,
    LazyElementMapTiltSeries,
)

DEFAULT_TILTS = np.linspace(-60, 60, 13)


@pytest.fixture(scope="module")
def series():
    return datasets.quantum_dot_tilt_series(size=32, seed=0)


@pytest.fixture(scope="module")
def series_maps(series):
    return series.get_element_maps(["Se", "S", "Zn"], show_progressbar=False)



def _smooth(images, sigma=1.5):
    # smooth each image (last two axes) only
    sig = (0,) * (images.ndim - 2) + (sigma, sigma)
    return ndimage.gaussian_filter(np.asarray(images, dtype=float), sig)


# ---------------------------------------------------------------------------------------
# reproducibility


def test_same_seed_same_data_other_seed_differs(series):
    again = datasets.quantum_dot_tilt_series(size=32, seed=0)
    other = datasets.quantum_dot_tilt_series(size=32, seed=1)
    assert np.array_equal(again.data, series.data)
    assert not np.array_equal(other.data, series.data)
    m0 = datasets.quantum_dot_element_maps(size=32, seed=3)
    assert np.array_equal(m0.data, datasets.quantum_dot_element_maps(size=32, seed=3).data)
    assert not np.array_equal(m0.data, datasets.quantum_dot_element_maps(size=32, seed=4).data)
    p0 = datasets.core_shell_phantom(size=32, seed=0).data
    assert np.array_equal(p0, datasets.core_shell_phantom(size=32, seed=0).data)
    assert not np.array_equal(p0, datasets.core_shell_phantom(size=32, seed=1).data)


# ---------------------------------------------------------------------------------------
# projection convention


@pytest.mark.parametrize("theta", [60.0, -60.0])
def test_projection_of_off_centre_point(theta):
    n, c = 33, 16
    x0, y0, z0 = 8, 3, -5
    vol = np.zeros((n, n, n))
    vol[c + z0, c + y0, c + x0] = 1.0  # (z, y, x)
    view = datasets.project(vol, [theta])[0]  # (y, x)
    rows = np.nonzero(view.sum(axis=1))[0]
    assert rows.tolist() == [c + y0]
    profile = view[c + y0]
    column = (profile * np.arange(n)).sum() / profile.sum() - c
    expected = x0 * np.cos(np.deg2rad(theta)) + z0 * np.sin(np.deg2rad(theta))
    assert column == pytest.approx(expected, abs=0.1)
    assert view.sum() == pytest.approx(1.0)


def test_projection_at_zero_is_sum_along_z_and_keeps_total():
    vol = datasets.core_shell_phantom(size=32).data
    proj = datasets.project(vol, [-60, 0, 35])
    assert proj.shape == (5, 3, 32, 32)
    np.testing.assert_allclose(proj[:, 1], vol.sum(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(proj.sum(axis=(2, 3)), vol.sum(axis=(1, 2, 3))[:, None] * np.ones(3), rtol=1e-5)


# ---------------------------------------------------------------------------------------
# phantoms


def _radial_mean(vol, i):
    n = vol.data.shape[1]
    c = np.arange(n) - (n - 1) / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    d = vol.data[i]
    return float((d * r).sum() / d.sum()), float(r[d > 0.05].max())


def test_core_shell_layers_are_nested():
    vol = datasets.core_shell_phantom("InP/ZnSe/ZnS", size=48)
    assert isinstance(vol, ElementVolume)
    assert vol.elements == ["In", "P", "Se", "S", "Zn"]
    assert vol.voxel_size == (pytest.approx(0.189), "nm")
    mean = {el: _radial_mean(vol, i)[0] for i, el in enumerate(vol.elements)}
    extent = {el: _radial_mean(vol, i)[1] for i, el in enumerate(vol.elements)}
    assert mean["In"] < mean["Se"] < mean["S"]
    assert mean["P"] == pytest.approx(mean["In"])
    assert extent["In"] < extent["Se"] < extent["S"]
    centre = vol.data[:, 24, 24, 24]
    assert centre[0] > 0.7 and centre[2] == 0 and centre[3] == 0
    # defaults scale with the box; the default particle is 8-10 nm across in the 12-nm box
    layers = vol.metadata.Simulation.phantom.layers
    assert 2 * layers.ZnS.outer_radius_nm == pytest.approx(8.2 * 48 / 64)
    big = datasets.core_shell_phantom(size=64).metadata.Simulation.phantom.layers
    assert 8.0 <= 2 * big.ZnS.outer_radius_nm <= 10.0

    cdse = datasets.core_shell_phantom("CdSe/ZnS", size=32)
    assert cdse.elements == ["Cd", "Se", "S", "Zn"]
    m = {el: _radial_mean(cdse, i)[0] for i, el in enumerate(cdse.elements)}
    assert m["Cd"] == pytest.approx(m["Se"]) and m["Cd"] < m["S"]


def test_shell_gap_is_the_fraction_of_directions_without_outer_shell():
    gap = 0.3
    vol = datasets.core_shell_phantom(size=48, shell_gap=gap, gap_direction=(0, 0, 1), seed=2)
    full = datasets.core_shell_phantom(size=48, shell_gap=0.0, seed=2)
    md = vol.metadata.Simulation.phantom
    assert md.shell_gap_fraction == gap
    assert md.shell_gap_volume_fraction == pytest.approx(gap, abs=0.03)
    s = vol.elements.index("S")
    assert vol.data[s].sum() / full.data[s].sum() == pytest.approx(1 - gap, abs=0.03)
    # count the directions from the centre along which no S is found
    rng = np.random.default_rng(0)
    u = rng.normal(size=(1500, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    radii = np.linspace(0, 23, 60)
    c = 23.5
    pts = c + u[:, None, :] * radii[None, :, None]  # (direction, r, xyz)
    coords = np.stack([pts[..., 2], pts[..., 1], pts[..., 0]]).reshape(3, -1)  # (z, y, x)
    along = ndimage.map_coordinates(vol.data[s], coords, order=1).reshape(len(u), len(radii))
    missing = along.max(axis=1) < 0.2
    assert missing.mean() == pytest.approx(gap, abs=0.04)
    # the cap is around +z and the inner ZnSe shell is still there
    assert np.all(missing[u[:, 2] > 0.5]) and not np.any(missing[u[:, 2] < 0.3])
    se = vol.elements.index("Se")
    assert vol.data[se].sum() == pytest.approx(full.data[se].sum(), rel=1e-6)
    assert full.metadata.Simulation.phantom.shell_gap_volume_fraction == 0


def test_nanorod_is_oblique_core_shell_rod():
    rod = datasets.nanorod_phantom(size=48)
    assert rod.elements == ["Cd", "Se", "S", "Zn"]
    d = rod.data[0]
    n = d.shape[0]
    c = np.arange(n) - (n - 1) / 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    pts = np.stack([x.ravel(), y.ravel(), z.ravel()])
    w = d.ravel()
    cov = (pts * w) @ pts.T / w.sum()
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, -1]
    assert evals[-1] > 3 * evals[-2]  # elongated
    assert abs(axis @ np.array([2, 1, 1]) / np.sqrt(6)) > 0.99
    assert np.abs(axis).max() < 0.9  # not along a grid axis
    # ZnS around the CdSe core: S on the outside only
    assert _radial_mean(rod, 2)[1] > _radial_mean(rod, 0)[1]
    assert rod.data[2, n // 2, n // 2, n // 2] == 0


# ---------------------------------------------------------------------------------------
# count levels


def test_element_maps_count_levels():
    maps = datasets.quantum_dot_element_maps(size=64, seed=0)
    assert isinstance(maps, ElementMapTiltSeries)
    counts = maps.to_numpy()
    assert counts.dtype == np.uint16
    per_tilt = counts.sum(axis=(2, 3))  # (element, tilt)
    for i, el in enumerate(maps.elements):
        expected = datasets.DEFAULT_COUNTS_PER_TILT[el]
        assert per_tilt[i].mean() == pytest.approx(expected, rel=0.05)
        assert 0.5 * expected < per_tilt[i].min() and per_tilt[i].max() < 1.5 * expected
        assert (counts[i] <= 1).mean() > 0.75  # sparse, like real maps
    custom = datasets.quantum_dot_element_maps(size=32, counts_per_tilt={"S": 100}, seed=0)
    totals = custom.to_numpy().sum(axis=(2, 3)).mean(axis=1)
    assert totals[custom.elements.index("S")] == pytest.approx(100, rel=0.15)
    assert totals[custom.elements.index("Zn")] == pytest.approx(2400, rel=0.05)
    flat = datasets.quantum_dot_element_maps(size=32, counts_per_tilt=300, seed=0)
    np.testing.assert_allclose(flat.to_numpy().sum(axis=(2, 3)).mean(axis=1), 300, rtol=0.1)


def test_maps_from_spectra_hold_the_requested_counts(series, series_maps):
    cpt = series.metadata.Simulation.parameters.counts_per_tilt
    totals = series_maps.to_numpy().sum(axis=(2, 3)).mean(axis=1)
    for el, total in zip(series_maps.elements, totals):
        assert total == pytest.approx(cpt[el], rel=0.15), el
    direct = datasets.simulate_element_maps(series.metadata.Simulation.ground_truth, seed=5)
    direct_totals = direct.to_numpy().sum(axis=(2, 3)).mean(axis=1)
    for el, total in zip(series_maps.elements, totals):
        assert total == pytest.approx(direct_totals[direct.elements.index(el)], rel=0.15), el


def test_maps_from_spectra_correlate_with_projections(series, series_maps):
    truth = series.metadata.Simulation.ground_truth
    proj = datasets.project(truth.data, series.tilts)
    maps = series_maps.to_numpy()
    for i, el in enumerate(series_maps.elements):
        r = pearson(_smooth(maps[i]), _smooth(proj[truth.elements.index(el)]))
        assert r > 0.8, (el, r)
    # and the ZnS shell (S) is told apart from the ZnSe shell (Se): wrong pairing scores lower
    s_vs_s = pearson(_smooth(maps[1]), _smooth(proj[truth.elements.index("S")]))
    s_vs_in = pearson(_smooth(maps[1]), _smooth(proj[truth.elements.index("In")]))
    assert s_vs_s > s_vs_in


def test_spectrum_has_lines_at_exspy_energies_and_a_continuum(series):
    spectrum = series.data.sum(axis=(0, 1, 2)).astype(float)
    scale = series.axes_manager.signal_axes[0].scale
    for line, energy in [("Se_Ka", 11.222), ("Zn_Ka", 8.6389), ("S_Ka", 2.3072), ("In_La", 3.287)]:
        i = int(round(energy / scale))
        window = spectrum[i - 15 : i + 16]
        assert abs(int(window.argmax()) - 15) <= 1, line
        assert window.max() > 10 * np.median(spectrum[700:900]) > 0, line
    # Kramers-like continuum: falls with energy, nothing below the detector cut-off
    assert spectrum[600:650].sum() > spectrum[950:1000].sum() > 0
    assert spectrum[:3].sum() == 0
    main, lines = datasets.xray_lines_of("In")
    assert main == "In_La" and "In_Ka" not in lines  # In K is beyond 20.48 keV
    assert datasets.xray_lines_of("Se")[0] == "Se_Ka"
    assert lines["In_Lb1"][1] == pytest.approx(0.3616)


# ---------------------------------------------------------------------------------------
# classes and metadata


def test_class_axes_and_metadata(series):
    assert type(series) is EDXTiltSeries
    assert series.data.shape == (13, 32, 32, 1024)
    assert series.data.dtype == np.uint16
    np.testing.assert_allclose(series.tilts, DEFAULT_TILTS)
    energy = series.axes_manager.signal_axes[0]
    assert energy.units == "keV" and energy.scale == pytest.approx(0.02) and energy.offset == 0
    assert series.axes_manager["x"].units == "nm"
    assert series.axes_manager["x"].scale == pytest.approx(0.189)
    md = series.metadata
    assert md.Acquisition_instrument.TEM.beam_energy == 200
    assert md.Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa == 130
    assert list(md.Sample.elements) == ["In", "P", "Se", "S", "Zn"]
    truth = md.Simulation.ground_truth
    assert isinstance(truth, ElementVolume)
    assert truth.elements == list(md.Sample.elements)
    assert truth.data.shape == (5, 32, 32, 32)
    assert md.Simulation.parameters.xray_lines.Se.main_line == "Se_Ka"
    steps = [(h["step"], h["method"]) for h in md.Tomography.history]
    assert steps == [("phantom", "core_shell"), ("simulation", "simulate_tilt_series")]
    maps = datasets.simulate_element_maps(truth, tilts=[-30, 0, 30])
    assert maps.tilts.tolist() == [-30.0, 0.0, 30.0]
    assert maps.metadata.Simulation.ground_truth.elements == truth.elements
    rod = datasets.nanorod_tilt_series(size=24, tilts=[-45, 0, 45], voxel_size_nm=0.5)
    assert isinstance(rod, EDXTiltSeries) and list(rod.metadata.Sample.elements) == ["Cd", "Se", "S", "Zn"]


def test_save_and_load_keep_ground_truth(tmp_path):
    import hyperspy.api as hs

    s = datasets.quantum_dot_tilt_series(size=16, voxel_size_nm=0.378, tilts=[-60, 0, 60], seed=0)
    s.save(tmp_path / "qd.hspy")
    loaded = hs.load(tmp_path / "qd.hspy")
    assert isinstance(loaded, EDXTiltSeries)
    assert np.array_equal(loaded.data, s.data)
    assert isinstance(loaded.metadata.Simulation.ground_truth, ElementVolume)


def test_lazy_twin_has_equal_data(series):
    lazy = datasets.quantum_dot_tilt_series(size=32, seed=0, lazy=True)
    assert isinstance(lazy, LazyEDXTiltSeries) and lazy._lazy
    assert np.array_equal(np.asarray(lazy.data.compute()), series.data)
    lazy_maps = datasets.quantum_dot_element_maps(size=32, seed=0, lazy=True)
    assert isinstance(lazy_maps, LazyElementMapTiltSeries)
    assert np.array_equal(lazy_maps.to_numpy(), datasets.quantum_dot_element_maps(size=32, seed=0).to_numpy())


# ---------------------------------------------------------------------------------------
# bad input


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"Unknown kind 'GaAs'.*InP/ZnSe/ZnS.*CdSe/ZnS"):
        datasets.core_shell_phantom("GaAs")
    with pytest.raises(ValueError, match=r"size must be an integer"):
        datasets.core_shell_phantom(size=4)
    with pytest.raises(ValueError, match=r"give 2 shell thickness"):
        datasets.core_shell_phantom(shell_thickness_nm=1.0)
    with pytest.raises(ValueError, match=r"shell_gap must be in \[0"):
        datasets.core_shell_phantom(size=16, shell_gap=1.5)
    with pytest.raises(ValueError, match=r"does not fit"):
        datasets.core_shell_phantom(size=16, core_radius_nm=5.0)
    with pytest.raises(ValueError, match=r"length_nm .* at least"):
        datasets.nanorod_phantom(size=16, length_nm=0.5)
    phantom = datasets.core_shell_phantom(size=16)
    with pytest.raises(ValueError, match=r"counts_per_tilt must be a finite number >= 0"):
        datasets.simulate_element_maps(phantom, counts_per_tilt=-5)
    with pytest.raises(ValueError, match=r"counts_per_tilt\['S'\] must be a finite number >= 0"):
        datasets.simulate_tilt_series(phantom, counts_per_tilt={"S": -1})
    with pytest.raises(ValueError, match=r"\['Cd'\] that are not in the phantom"):
        datasets.simulate_tilt_series(phantom, counts_per_tilt={"Cd": 100})
    with pytest.raises(ValueError, match=r"phantom must be an ElementVolume"):
        datasets.simulate_element_maps(np.ones((1, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"Repeated tilt angles"):
        datasets.simulate_element_maps(phantom, tilts=[0, 0, 10])
    with pytest.raises(ValueError, match=r"no alpha X-ray line in the energy range"):
        datasets.simulate_tilt_series(phantom, n_channels=64)  # 0-1.28 keV: no Se, S, In, P line


def test_misalign_moves_views_by_the_returned_shifts():
    views = np.zeros((2, 5, 40, 40))
    views[:, :, 14:26, 16:24] = 1.0
    moved, sx, sy = datasets.misalign(views, max_shift_px=3, seed=4)
    assert moved.shape == views.shape and np.all(np.abs(sx) <= 3) and np.all(np.abs(sy) <= 3)
    assert np.all(moved >= 0) and np.allclose(moved.sum(axis=(2, 3)), views.sum(axis=(2, 3)))
    for e in range(2):
        for t in range(5):
            cy, cx = ndimage.center_of_mass(moved[e, t])
            assert abs(cy - 19.5 - sy[t]) < 1e-6 and abs(cx - 19.5 - sx[t]) < 1e-6
    # a Generator is used as it is: the caller's later draws follow the shifts
    rng = np.random.default_rng(4)
    _, sx2, _ = datasets.misalign(views, max_shift_px=3, seed=rng)
    assert np.array_equal(sx, sx2) and rng.uniform() == np.random.default_rng(4).uniform(size=11)[-1]
    # a rotation turns the views: a bar along x leans by the angle
    bar = np.zeros((1, 1, 41, 41))
    bar[0, 0, 20, 5:36] = 1.0
    turned, _, _ = datasets.misalign(bar, max_shift_px=0, rotation_deg=10.0, seed=0)
    ys, xs = np.nonzero(turned[0, 0] > 0.3)
    assert abs(abs(np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0]))) - 10.0) < 1.5
    with pytest.raises(ValueError, match=r"element, tilt, y, x"):
        datasets.misalign(views[0])
    with pytest.raises(ValueError, match=r"max_shift_px must be a finite number >= 0"):
        datasets.misalign(views, max_shift_px=-1)
    with pytest.raises(ValueError, match=r"rotation_deg must be a finite number"):
        datasets.misalign(views, rotation_deg=float("nan"))


# -- QD1, the real series shipped with the package ------------------------------------------
def test_qd1_is_the_released_series(shared_data):
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.signals import ElementMapTiltSeries

    maps = datasets.qd1()
    z = np.load(shared_data / "qd1_element_maps.npz")
    assert isinstance(maps, ElementMapTiltSeries)
    np.testing.assert_array_equal(maps.data, z["counts"])  # every count as released
    np.testing.assert_allclose(maps.tilts, z["tilts_deg"])
    assert maps.elements == ["Se", "S", "Zn"]
    assert maps.pixel_size[0] == 0.189 and maps.axes_manager.signal_axes[0].units == "nm"
    assert "Apache-2.0" in maps.metadata.Sample.citation and "10.1038/s42256-020-00289-5" in maps.metadata.General.notes
    np.testing.assert_allclose(maps.metadata.Tomography.reference_alignment.rotation_deg, z["ref_rotation_deg"])


def test_qd1_with_the_authors_alignment_stays_counts():
    from hyperspy_edxtomo import datasets
    from hyperspy_edxtomo.base.counts import is_counts

    raw, aligned = datasets.qd1(), datasets.qd1(aligned=True)
    assert is_counts(aligned.data) and aligned.metadata.Tomography.reference_alignment.applied
    # counts are moved whole; those outside the authors' mask (about a fifth: counts far from the dot) go
    kept = aligned.data.sum() / raw.data.sum()
    assert 0.6 < kept < 0.95, kept
    # the authors' alignment lines the dot up across the views: its column centre (the bright dot's, not
    # the stray counts') varies 4x less
    from scipy import ndimage

    def column_centres(maps):
        return np.array([ndimage.center_of_mass(ndimage.gaussian_filter(v, 8) ** 4)[1] for v in maps.data.sum(0)])

    assert np.std(column_centres(aligned)) < 0.4 * np.std(column_centres(raw))
    np.testing.assert_array_equal(datasets.qd1(aligned=True, seed=0).data, aligned.data)  # seeded
