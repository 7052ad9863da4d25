"""Alignment: known shifts and axis rotation recovered on simulated maps, bad inputs, lazy."""

import warnings

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo import alignment as al
from hyperspy_edxtomo import datasets


@pytest.fixture(scope="module")
def clean():
    ph = datasets.core_shell_phantom(size=48, seed=1, eccentricity=0.6)
    maps = datasets.simulate_element_maps(ph, counts_per_tilt=20000, seed=0)
    counts = np.pad(maps.to_numpy().astype(np.float32), ((0, 0), (0, 0), (8, 8), (8, 8)))
    return counts, maps.tilts, maps.elements


def _observed(clean, rotation=0.0, seed=3, lazy=False):
    counts, tilts, elements = clean
    obs, sx, sy = datasets.misalign(counts, rotation_deg=rotation, seed=seed)
    if lazy:
        import dask.array as da

        obs = da.from_array(obs, chunks=(1, -1, -1, -1))
    return het.element_maps_from_array(obs, tilts, elements), sx, sy


def _errors(alignment, sx, sy, tilts):
    """rms errors of the recovered shifts; moving the object in (x, z) (x0 cos + z0 sin across,
    a constant along) cannot be seen in projections and is taken out."""
    ex = np.asarray(alignment["shift_x_px"]) + sx
    ey = np.asarray(alignment["shift_y_px"]) + sy
    th = np.deg2rad(tilts)
    A = np.stack([np.cos(th), np.sin(th)], 1)
    ex = ex - A @ np.linalg.lstsq(A, ex, rcond=None)[0]
    ey = ey - ey.mean()
    return float(np.sqrt(np.mean(ex**2))), float(np.sqrt(np.mean(ey**2)))


@pytest.mark.parametrize("method", ["com", "xcorr"])
def test_coarse_methods_recover_shifts(clean, method):
    maps, sx, sy = _observed(clean)
    aligned = maps.align(method=method)
    a = aligned.metadata.Tomography.alignment.as_dictionary()
    ex, ey = _errors(a, sx, sy, maps.tilts)
    assert ex < 0.3 and ey < 0.3
    assert type(aligned) is type(maps)
    assert aligned.history[-1]["step"] == "alignment"
    assert isinstance(a["shift_x_px"], list) and isinstance(a["rotation_deg"], float)


def test_com_keeps_axis_at_centre(clean):
    # the simulated axis runs along the centre column: no constant shift left
    maps, sx, sy = _observed(clean)
    a = al.estimate_alignment(maps, method="com")
    ex = np.asarray(a["shift_x_px"]) + sx
    th = np.deg2rad(maps.tilts)
    A = np.stack([np.ones_like(th), np.cos(th), np.sin(th)], 1)
    assert abs(np.linalg.lstsq(A, ex, rcond=None)[0][0]) < 0.3


def test_axis_rotation_and_auto(clean):
    maps, sx, sy = _observed(clean, rotation=-2.0)
    a = al.estimate_alignment(maps, method="axis")
    assert abs(a["rotation_deg"] - (-2.0)) < 0.5
    aligned = maps.align()  # auto: com, axis, projection matching
    b = aligned.metadata.Tomography.alignment.as_dictionary()
    assert abs(b["rotation_deg"] - (-2.0)) < 0.5
    assert b["projection_matching_iterations"] >= 1
    # the aligned views match the unrotated, unshifted truth up to a rigid move
    ex, ey = _errors(al.estimate_alignment(aligned, method="com"), np.zeros(13), np.zeros(13), maps.tilts)
    assert ex < 0.5 and ey < 0.5


def test_projection_matching_recovers_shifts(clean):
    maps, sx, sy = _observed(clean)
    a = al.estimate_alignment(maps, method="projection_matching", pm_iterations=3)
    ex, ey = _errors(a, sx, sy, maps.tilts)
    assert ex < 0.4 and ey < 0.4


def test_apply_alignment_and_counts(clean):
    maps, sx, sy = _observed(clean)
    aligned = maps.align(method="com")
    again = aligned.apply_alignment(maps)
    np.testing.assert_allclose(again.data, aligned.data, atol=1e-5)
    again2 = al.apply_alignment(maps, aligned.metadata.Tomography.alignment)
    np.testing.assert_allclose(again2.data, aligned.data, atol=1e-5)
    # the object stays in the field of view: counts conserved
    np.testing.assert_allclose(aligned.data.sum((2, 3)), maps.data.sum((2, 3)), rtol=1e-4)
    # every element moved identically
    one = aligned.apply_alignment(maps.element("Zn"))
    np.testing.assert_allclose(one.data[0], aligned.data[maps.elements.index("Zn")], atol=1e-5)


def test_no_wraparound():
    counts = np.zeros((1, 3, 16, 16), np.float32)
    counts[:, :, 8, 14] = 1
    maps = het.element_maps_from_array(counts, [-30, 0, 30], ["Zn"])
    out = al.apply_alignment(maps, {"shift_x_px": [4.0] * 3, "shift_y_px": [0.0] * 3, "rotation_deg": 0.0})
    assert out.data.sum() == 0  # moved out of the field of view, not around to the left


def test_lazy_equals_eager(clean):
    maps, _, _ = _observed(clean)
    lazy, _, _ = _observed(clean, lazy=True)
    a = maps.align(method="com")
    b = lazy.align(method="com")
    assert b._lazy
    np.testing.assert_allclose(b.data.compute(), a.data, atol=1e-5)


def test_edx_series_and_reference_images():
    s = datasets.quantum_dot_tilt_series(size=24, seed=0)
    refs = s.reference_images
    sa = s.align(method="com")
    assert type(sa).__name__ == type(s).__name__
    a = sa.metadata.Tomography.alignment.as_dictionary()
    assert a["estimated_on"] == ("reference_images" if refs is not None else "summed_counts")
    # every energy channel moved like the summed counts
    summed = al.apply_alignment(s, a).data.sum(-1)
    direct = al.transform_stack(np.asarray(s.data, np.float32).sum(-1), a["rotation_deg"],
                                a["shift_y_px"], a["shift_x_px"])
    np.testing.assert_allclose(summed, direct, rtol=1e-3, atol=1e-3)
    lazy = s.as_lazy().align(method="com")
    assert lazy._lazy
    np.testing.assert_allclose(lazy.data.compute(), sa.data, atol=1e-4)


def test_bad_inputs(clean):
    counts, tilts, elements = clean
    maps = het.element_maps_from_array(counts[:, :2], tilts[:2], elements)
    with pytest.raises(ValueError, match="at least 3 views"):
        maps.align()
    bad = counts.copy()
    bad[0, 4] = 0
    bad[1:, 4] = 0
    with pytest.raises(ValueError, match=r"View\(s\) \[4\].*empty"):
        het.element_maps_from_array(bad, tilts, elements).align(method="com")
    m = het.element_maps_from_array(counts.copy(), tilts, elements)
    with pytest.raises(ValueError, match="xcorr"):
        m.align(method="nope")
    m.data[0, 2, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.align(method="com")
    import hyperspy.api as hs

    m = het.element_maps_from_array(counts.copy(), tilts, elements)
    m.metadata.set_item("Tomography.reference_images", hs.signals.Signal2D(counts[0, :5].copy()))
    with pytest.raises(ValueError, match="reference images .* do not match"):
        m.align(method="com")
    m.metadata.set_item("Tomography.reference_images", hs.signals.Signal2D(counts[0, :, :32].copy()))
    with pytest.raises(ValueError, match="same size"):
        m.align(method="com")
    with pytest.raises(ValueError, match="views"):
        al.apply_alignment(m, {"shift_x_px": [0.0], "shift_y_px": [0.0], "rotation_deg": 0.0})


def test_qd1_com_follows_rigid_path(shared_data):
    d = np.load(shared_data / "qd1_element_maps.npz")
    maps = het.element_maps_from_array(d["counts"], d["tilts_deg"], [str(e) for e in d["elements"]])
    aligned = maps.align(method="com")
    sm = al._background_free(al._summed_counts(aligned), 3.0)
    cy, cx = al._com(sm)
    _, _, rms = al.rigid_path_fit(cy, cx, aligned.tilts)
    assert rms < 1.0


def test_apply_alignment_to_views_of_another_size(clean):
    # the same field of view at twice the pixels (like HAADF beside the maps): shifts scale by 2
    maps, sx, sy = _observed(clean)
    aligned = maps.align(method="com")
    a = aligned.metadata.Tomography.alignment.as_dictionary()
    counts = np.asarray(maps.data, np.float32)
    big = np.repeat(np.repeat(counts, 2, axis=2), 2, axis=3) / 4  # same counts, 2x pixels
    big_maps = het.element_maps_from_array(big, maps.tilts, maps.elements)
    moved = aligned.apply_alignment(big_maps)
    b = moved.metadata.Tomography.alignment.as_dictionary()
    np.testing.assert_allclose(b["shift_x_px"], 2 * np.asarray(a["shift_x_px"]))
    np.testing.assert_allclose(b["shift_y_px"], 2 * np.asarray(a["shift_y_px"]))
    assert b["view_shape"] == list(big.shape[2:]) and b["scaled_from_view_shape"] == a["view_shape"]
    # binned back, the big aligned views match the aligned views
    ny, nx = big.shape[2:]
    back = np.asarray(moved.data).reshape(counts.shape[0], counts.shape[1], ny // 2, 2, nx // 2, 2).sum((3, 5))
    ref = np.asarray(aligned.data)
    assert np.abs(back - ref).sum() < 0.05 * ref.sum()
    # another aspect ratio cannot be the same field of view: a clear error
    wide = het.element_maps_from_array(np.repeat(counts, 2, axis=3), maps.tilts, maps.elements)
    with pytest.raises(ValueError, match="aspect ratio"):
        aligned.apply_alignment(wide)


def test_lazy_bad_inputs_and_lazy_apply(clean):
    import dask.array as da

    counts, tilts, elements = clean
    bad = counts.copy()
    bad[:, 5, 10, 10] = np.nan
    lazy = het.element_maps_from_array(da.from_array(bad, chunks=(1, 4, -1, -1)), tilts, elements)
    with pytest.raises(ValueError, match=r"NaN.*views \[5\]"):
        lazy.align(method="com")
    two = het.element_maps_from_array(da.from_array(counts[:, :2]), tilts[:2], elements)
    with pytest.raises(ValueError, match="at least 3 views"):
        two.align(method="com")
    maps, _, _ = _observed(clean)
    lazy_maps, _, _ = _observed(clean, lazy=True)
    aligned = maps.align(method="com")
    moved = aligned.apply_alignment(lazy_maps)
    assert moved._lazy
    np.testing.assert_allclose(moved.data.compute(), aligned.data, atol=1e-5)


def test_alignment_mismatched_tilts_is_refused(clean):
    maps, _, _ = _observed(clean)
    a = maps.align(method="com").metadata.Tomography.alignment.as_dictionary()
    other = het.element_maps_from_array(np.asarray(maps.data), np.asarray(maps.tilts) + 5, maps.elements)
    with pytest.raises(ValueError, match="other tilt angles"):
        al.apply_alignment(other, a)
    with pytest.raises(ValueError, match="lacks"):
        al.apply_alignment(maps, {"shift_x_px": a["shift_x_px"]})


def test_integer_maps_stay_poisson_counts_after_alignment():
    maps = datasets.quantum_dot_element_maps(kind="CdSe/ZnS", size=32, seed=2)
    alignment = {"shift_x_px": np.linspace(-2.3, 1.7, 13).tolist(), "shift_y_px": np.linspace(1.1, -0.6, 13).tolist(),
                 "rotation_deg": 3.0}
    moved = al.apply_alignment(maps, alignment)
    data = moved.to_numpy()
    assert moved.metadata.Tomography.alignment.resample == "counts"
    np.testing.assert_array_equal(data, np.round(data))  # whole counts
    # counts are conserved except those moved out of the field of view
    assert 0.97 * maps.data.sum() <= data.sum() <= maps.data.sum()
    # seeded: the same draws again, and lazily
    np.testing.assert_array_equal(al.apply_alignment(maps, alignment).data, data)
    np.testing.assert_array_equal(al.apply_alignment(maps.as_lazy(), alignment).to_numpy(), data)
    # in expectation, the bilinear transform (pure shifts: the same operator)
    shifts = dict(alignment, rotation_deg=0.0)
    view = maps.to_numpy()[3, 6].astype(float)
    mean = np.mean([al.transform_counts(view, 0.0, 1.1, -2.3, np.random.default_rng(k)) for k in range(300)], axis=0)
    bilinear = al.transform_view(view, 0.0, 1.1, -2.3)
    assert np.abs(mean - bilinear).max() < 6 * np.sqrt(bilinear.max() / 300) + 0.05
    # non-integer maps are interpolated, and count-splitting methods keep working after alignment
    assert al.apply_alignment(maps, shifts, resample="bilinear").metadata.Tomography.alignment.resample == "bilinear"
    vol = moved.inav[:, 3].reconstruct("tv", iterations=20)
    assert vol.history[-1]["parameters"]["parameters"]["lam_selection"] == "count-splitting cross-validation"
    with pytest.raises(ValueError, match="Unknown resample"):
        al.apply_alignment(maps, alignment, resample="nearest")


def _integer_observed(dose, rotation=0.0, seed=3):
    """Poisson counts drawn after moving (and rotating) the expected maps: integer views, as measured."""
    ph = datasets.core_shell_phantom(size=48, seed=1, eccentricity=0.6)
    maps = datasets.simulate_element_maps(ph, counts_per_tilt=1e7, seed=0)
    lam = maps.to_numpy().astype(np.float64)
    lam = np.pad(lam / lam.sum(axis=(2, 3), keepdims=True) * dose, ((0, 0), (0, 0), (8, 8), (8, 8)))
    rng = np.random.default_rng(seed)
    lam, _, _ = datasets.misalign(lam, rotation_deg=rotation, seed=rng)
    counts = rng.poisson(lam)
    return het.element_maps_from_array(counts, maps.tilts, maps.elements)


def test_rotation_standard_error_and_warning():
    high = al.estimate_alignment(_integer_observed(20000), method="axis")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        low = al.estimate_alignment(_integer_observed(100), method="axis")
    assert isinstance(high["rotation_se_deg"], float) and isinstance(low["rotation_se_deg"], float)
    # fewer counts, a less certain rotation
    assert 0 < high["rotation_se_deg"] < low["rotation_se_deg"]
    assert high["rotation_se_deg"] < al.ROTATION_SE_WARN_DEG
    warned = [w for w in caught if "uncertain" in str(w.message)]
    assert bool(warned) == (low["rotation_se_deg"] > al.ROTATION_SE_WARN_DEG)
    assert low["rotation_given"] is False


def test_given_rotation_is_kept(clean):
    maps, sx, sy = _observed(clean, rotation=-2.0)
    a = al.estimate_alignment(maps, method="auto", rotation=-2.0)
    assert a["rotation_deg"] == -2.0 and a["rotation_given"] is True and a["rotation_se_deg"] is None
    aligned = al.apply_alignment(maps, a)
    ex, ey = _errors(al.estimate_alignment(aligned, method="com", rotation=0.0), np.zeros(13), np.zeros(13), maps.tilts)
    assert ex < 0.5 and ey < 0.5
    # with rotation=0 on unrotated views, the shifts are those of the plain chain
    maps0, sx0, sy0 = _observed(clean)
    b = al.estimate_alignment(maps0, method="com", rotation=0.0)
    assert max(_errors(b, sx0, sy0, maps0.tilts)) < 0.3
    with pytest.raises(ValueError, match="rotation must be a finite number"):
        al.estimate_alignment(maps0, method="axis", rotation=float("nan"))


def test_auto_applies_only_a_significant_rotation():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # few counts: the estimate cannot be told from noise, so auto does not rotate
        low = al.estimate_alignment(_integer_observed(300), method="auto")
        # many counts and a real -2 degree axis rotation: kept
        high = al.estimate_alignment(_integer_observed(300000, rotation=-2.0), method="auto")
    assert abs(low["rotation_estimate_deg"]) < 2 * low["rotation_se_deg"]
    assert low["rotation_estimate_deg"] != 0.0 and low["rotation_deg"] == 0.0
    assert abs(high["rotation_estimate_deg"]) > 2 * high["rotation_se_deg"]
    assert high["rotation_deg"] == high["rotation_estimate_deg"]
    assert abs(high["rotation_deg"] - (-2.0)) < 0.5
