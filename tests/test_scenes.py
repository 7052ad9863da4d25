"""Simulated scenes (datasets/scenes.py): geometry, counts, map kinds,
misalignment, HAADF references and input checks."""

import numpy as np
import pytest

from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume

SIZE = 32
ELEMENTS = ["Cd", "Se", "S", "Zn"]


def _extent(volume, axis):
    """Voxels along ``axis`` (0 z, 1 y, 2 x) where the summed density is present."""
    d = volume.data.sum(axis=0)
    profile = d.sum(axis=tuple(i for i in range(3) if i != axis))
    return int((profile > 1e-3 * profile.max()).sum())


def _com(images):
    """(row, column) centre of mass of every image of a (tilt, y, x) stack."""
    images = np.asarray(images, dtype=float)
    y, x = np.mgrid[: images.shape[1], : images.shape[2]]
    total = images.sum(axis=(1, 2))
    return (images * y).sum(axis=(1, 2)) / total, (images * x).sum(axis=(1, 2)) / total


@pytest.mark.parametrize("scene", datasets.SCENES)
def test_every_scene_builds_with_counts_per_view(scene):
    counts = 4000
    maps = datasets.simulate_scene(scene, size=SIZE, counts_per_tilt=counts, seed=3)
    assert isinstance(maps, ElementMapTiltSeries)
    assert maps.elements == ELEMENTS and maps.data.shape == (4, 13, SIZE, SIZE)
    truth = maps.metadata.Simulation.ground_truth
    assert isinstance(truth, ElementVolume) and truth.data.shape == (4, SIZE, SIZE, SIZE)
    assert truth.elements == ELEMENTS and truth.data.sum() > 0
    per_view = maps.data.sum(axis=(2, 3)).astype(float)  # (element, tilt)
    # the mean over the views is what counts_per_tilt sets, whatever leaves the field
    assert np.all(np.abs(per_view.mean(axis=1) - counts) < 5 * np.sqrt(counts / per_view.shape[1]))
    if scene in ("dot", "chain", "rod_along", "rod_across"):  # all in the field at every tilt
        assert np.all(np.abs(per_view - counts) < 5 * np.sqrt(counts))
    record = maps.metadata.Simulation.scene
    assert record.name == scene and record.box_voxels_zyx[1] == SIZE
    assert maps.metadata.Simulation.parameters.scene == scene
    assert maps.history[-1]["method"] == "simulate_scene"


def test_elongated_scenes_point_along_their_axis():
    truth = {s: datasets.scene_phantom(s, size=SIZE) for s in ("dot", "chain", "rod_along", "rod_across")}
    for scene in ("chain", "rod_along"):  # along the tilt axis y
        assert _extent(truth[scene], 1) >= 2.2 * _extent(truth[scene], 2), scene
        assert _extent(truth[scene], 1) >= 2.2 * _extent(truth[scene], 0), scene
    assert _extent(truth["rod_across"], 2) >= 2.2 * _extent(truth["rod_across"], 1)
    dot = [_extent(truth["dot"], a) for a in range(3)]
    assert max(dot) <= 1.3 * min(dot)
    chain = truth["chain"].metadata.Simulation.scene.particles
    assert len(chain) == 3 and len({round(p["centre_px"][1]) for p in chain}) == 3
    assert all(p["centre_px"][0] == 0 and p["centre_px"][2] == 0 for p in chain)


def test_edge_cut_particles_touch_the_field_edges():
    views = {}
    for scene in ("edge_cut", "dot"):
        maps = datasets.simulate_scene(scene, size=SIZE, tilts=[-20, 0, 20], counts_per_tilt=20000, seed=1)
        views[scene] = maps.data[:, 1].sum(axis=0).astype(float)  # 0 degrees, all elements
    edge = views["edge_cut"]
    assert edge[:, 0].sum() > 0.01 * edge.sum() and edge[:, -1].sum() > 0.01 * edge.sum()
    assert views["dot"][:, [0, -1]].sum() == 0
    phantom = datasets.scene_phantom("edge_cut", size=SIZE)
    fractions = [p["fraction_in_reconstruction_box"] for p in phantom.metadata.Simulation.scene.particles]
    assert fractions[0] == 1.0 and all(0.1 < f < 0.6 for f in fractions[1:])


def test_entering_particle_enters_the_field_at_high_tilt():
    tilts = np.arange(-60, 61, 10.0)
    phantom = datasets.scene_phantom("entering", size=SIZE)
    record = phantom.metadata.Simulation.scene
    m = record.field_margin_px
    second = phantom.data.copy()
    second[:, m:m + SIZE, :, m:m + SIZE] = 0  # the second particle only
    assert second.sum() > 0.1 * phantom.data.sum()
    inside = datasets.project(second, tilts)[..., m:m + SIZE].sum(axis=(0, 2, 3)) / second.sum()
    low, high = np.abs(tilts) <= 30, np.abs(tilts) >= 60
    assert np.all(inside[low] < 0.005) and np.all(inside[high] > 0.95)
    assert np.all(inside[np.abs(tilts) == 40] > 0.1)

    maps = datasets.simulate_scene("entering", size=SIZE, tilts=tilts, counts_per_tilt=10000, seed=2)
    total = maps.data.sum(axis=(0, 2, 3)).astype(float)
    zero = total[tilts == 0][0]
    assert np.all(total[high] > 1.3 * zero)
    assert np.all(np.abs(total[low] - zero) < 5 * np.sqrt(2 * zero))
    # the recorded expectation shows the same pattern, noiseless: flat up to 30 deg, then rising
    expected = np.asarray(maps.metadata.Simulation.expected_counts_per_view).sum(axis=0)
    assert expected.shape == tilts.shape
    np.testing.assert_allclose(expected[low], expected[tilts == 0][0], rtol=0.01)
    assert np.all(np.diff(expected[tilts >= 30]) > 0) and np.all(np.diff(expected[tilts <= -30]) < 0)
    np.testing.assert_allclose(expected.mean(), 4 * 10000, rtol=1e-5)  # the mean is counts_per_tilt
    assert record.particles[1]["fraction_in_reconstruction_box"] == 0.0


def test_map_kinds():
    kw = dict(size=SIZE, tilts=[-50, 0, 50], counts_per_tilt=3000, background=0.4, seed=5)
    maps = {kind: datasets.simulate_scene("dot", map_kind=kind, **kw) for kind in datasets.MAP_KINDS}
    counts = maps["counts"].data
    assert np.issubdtype(counts.dtype, np.integer)
    estimate = maps["counts"].metadata.Tomography.background
    assert isinstance(estimate, np.ndarray) and estimate.dtype == np.float32 and estimate.shape == counts.shape
    assert abs(estimate.mean() - 0.4) < 0.05 and np.any(estimate % 1 != 0)  # Poisson(2 b) / 2

    sub = maps["background_subtracted"].data
    assert np.issubdtype(sub.dtype, np.floating) and sub.min() >= 0 and np.any(sub % 1 != 0)
    np.testing.assert_allclose(sub, np.clip(counts - estimate, 0, None))  # same seed: same draws

    norm = maps["normalised"].data
    assert np.issubdtype(norm.dtype, np.floating) and norm.min() >= 0
    np.testing.assert_allclose(norm.max(axis=(1, 2, 3)), 1.0)
    assert np.any((norm > 0) & (norm < 1))

    smooth = maps["smoothed"].data
    assert np.issubdtype(smooth.dtype, np.floating) and np.any(smooth % 1 != 0)
    np.testing.assert_allclose(smooth.sum(axis=(2, 3)), counts.sum(axis=(2, 3)), rtol=1e-5)
    assert np.abs(np.diff(smooth, axis=-1)).mean() < 0.6 * np.abs(np.diff(counts.astype(float), axis=-1)).mean()
    for kind in ("background_subtracted", "normalised", "smoothed"):
        assert not maps[kind].metadata.has_item("Tomography.background"), kind

    quiet = datasets.simulate_scene("dot", map_kind="counts", **dict(kw, background=0.0))
    assert not quiet.metadata.has_item("Tomography.background")
    assert quiet.data[:, :, :, [0, -1]].sum() == 0 and counts[:, :, :, [0, -1]].sum() > 0


def test_misalignment_is_recorded_and_moves_the_views():
    kw = dict(size=SIZE, counts_per_tilt=100000, seed=4)
    still = datasets.simulate_scene("dot", **kw)
    moved = datasets.simulate_scene("dot", max_shift_px=3, **kw)
    mis = moved.metadata.Simulation.misalignment
    sx, sy = np.array(mis.shift_x_px), np.array(mis.shift_y_px)
    assert sx.shape == (13,) and np.all(np.abs(sx) <= 3) and np.abs(sx).max() > 1 and mis.rotation_deg == 0
    y0, x0 = _com(still.data.sum(axis=0))
    y1, x1 = _com(moved.data.sum(axis=0))
    np.testing.assert_allclose(x1 - x0, sx, atol=0.5)
    np.testing.assert_allclose(y1 - y0, sy, atol=0.5)
    assert np.all(np.array(still.metadata.Simulation.misalignment.shift_x_px) == 0)

    rotated = datasets.simulate_scene("rod_along", rotation_deg=20, **kw)
    assert rotated.metadata.Simulation.misalignment.rotation_deg == 20
    view = rotated.data[:, 6].sum(axis=0).astype(float)  # 0 deg: the rod leans by 20 degrees
    y, x = np.mgrid[:SIZE, :SIZE]
    w = view / view.sum()
    cy, cx = (w * y).sum(), (w * x).sum()
    cov = np.cov(np.stack([(y - cy).ravel(), (x - cx).ravel()]), aweights=w.ravel())
    angle = np.degrees(np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]) / 2)  # long axis from the rows
    assert 15 < abs(angle) < 25


def test_background_from_the_sample_follows_its_mass():
    maps = datasets.simulate_scene("dot", size=SIZE, tilts=[0, 40], background_mass=4.0, seed=7)
    estimate = maps.metadata.Tomography.background[0, 0]  # Cd, 0 deg
    centre, corner = estimate[12:20, 12:20].mean(), estimate[:6, :6].mean()
    assert corner == 0 and 2.5 < centre < 4.5
    assert maps.metadata.Simulation.parameters.background_mass == 4.0


def test_haadf_reference_images_follow_the_maps():
    maps = datasets.simulate_scene("chain", size=SIZE, counts_per_tilt=50000, max_shift_px=3, haadf_snr=50, seed=6)
    refs = maps.reference_images
    assert refs is not None and refs.axes_manager.signal_dimension == 2
    assert refs.data.shape == (13, SIZE, SIZE) and refs.axes_manager["tilt"].axis.tolist() == maps.tilts.tolist()
    summed = maps.data.sum(axis=0).astype(float)
    for t in range(13):
        assert np.corrcoef(refs.data[t].ravel(), summed[t].ravel())[0, 1] > 0.8
    np.testing.assert_allclose(_com(refs.data)[1], _com(summed)[1], atol=0.5)
    noise = refs.data[:, :, :3].std()  # columns the chain never reaches
    assert 0.5 / 50 < noise < 2 / 50
    assert datasets.simulate_scene("chain", size=SIZE, seed=6).reference_images is None


def test_same_seed_same_data_other_seed_differs():
    a = datasets.simulate_scene("edge_cut", size=SIZE, tilts=[0, 30], max_shift_px=2, background=0.2, seed=8)
    b = datasets.simulate_scene("edge_cut", size=SIZE, tilts=[0, 30], max_shift_px=2, background=0.2, seed=8)
    c = datasets.simulate_scene("edge_cut", size=SIZE, tilts=[0, 30], max_shift_px=2, background=0.2, seed=9)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.metadata.Tomography.background, b.metadata.Tomography.background)
    assert not np.array_equal(a.data, c.data)
    assert not np.array_equal(a.metadata.Simulation.misalignment.shift_x_px, c.metadata.Simulation.misalignment.shift_x_px)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(scene="blob"), "Unknown scene 'blob'.*chain"),
        (dict(map_kind="raw"), "Unknown map_kind 'raw'.*smoothed"),
        (dict(counts_per_tilt=-5), "counts_per_tilt must be a finite number >= 0"),
        (dict(counts_per_tilt={"Fe": 10}), "not in the phantom"),
        (dict(background=-1), "background must be a finite number >= 0"),
        (dict(background_mass=np.nan), "background_mass must be a finite number >= 0"),
        (dict(max_shift_px=-1), "max_shift_px must be a finite number >= 0"),
        (dict(rotation_deg=np.inf), "rotation_deg must be a finite number"),
        (dict(haadf_snr=0), "haadf_snr must be a positive number"),
        (dict(size=16), "size must be an integer number of pixels >= 24"),
        (dict(size=32.0), "size must be an integer"),
        (dict(scene="entering", field_margin=2), r"field_margin must be None or an integer >= \d+ \(the 'entering'"),
        (dict(tilts=[0, 0, 10]), "Repeated tilt angles"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match):
    kwargs = {"scene": "dot", "size": 24, "tilts": [0, 10], **kwargs}
    if kwargs["size"] == 24 and kwargs["scene"] == "entering":
        kwargs["size"] = SIZE
    with pytest.raises(ValueError, match=match):
        datasets.simulate_scene(**kwargs)
