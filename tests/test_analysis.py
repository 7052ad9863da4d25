"""Analysis on volumes: FSC, particles, shell maps; the pictures."""

import numpy as np
import pytest
from scipy import ndimage

import hyperspy_edxtomo as het
from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.analysis import (
    find_particles,
    fourier_shell_correlation,
    fsc_curve,
    half_bit_threshold,
    shell_maps,
)
from hyperspy_edxtomo.analysis.fsc import crossing, randomise_phases, split_tilt_series
from hyperspy_edxtomo.workflow import figures as plotting

VOXEL = 0.2


def _volume(arrays, elements, lazy=False, voxel=VOXEL):
    data = np.stack(arrays).astype(np.float32)
    if lazy:
        import dask.array as da

        data = da.from_array(data, chunks=data.shape)
    return het.volume_from_array(data, elements, voxel_size_nm=voxel)


def _bandlimited(rng, n, cutoff_frac):
    """White noise low-passed with a sharp cut at ``cutoff_frac`` of Nyquist."""
    f = np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij")
    k = np.sqrt(sum(x**2 for x in f))
    return np.fft.ifftn(np.fft.fftn(rng.normal(size=(n,) * 3)) * (k <= 0.5 * cutoff_frac)).real


# ---------------------------------------------------------------------------------------
# FSC


@pytest.mark.parametrize("lazy", [False, True])
def test_fsc_identical_halves_is_one(lazy):
    vol = datasets.core_shell_phantom(size=32)
    other = vol.as_lazy() if lazy else vol.deepcopy()
    fsc = vol.fourier_shell_correlation(other, mask="sphere")
    assert fsc.axes_manager.signal_axes[0].units == "1/nm"
    assert fsc.metadata.Sample.elements == vol.elements
    finite = np.isfinite(fsc.data)
    assert finite[:, 1:8].all()  # shell 0 (the mean, removed under the mask) is NaN
    np.testing.assert_allclose(fsc.data[finite], 1.0, atol=1e-9)
    info = fsc.metadata.Tomography.FSC
    scale = vol.voxel_size[0]
    for el in vol.elements:
        # never falls below: limited by the sampling, 2 voxels
        assert info.nyquist_limited_0143[el]
        assert info.resolution_0143[el] == pytest.approx(2 * scale, rel=1e-6)
    assert fsc.metadata.Tomography.history[-1]["method"] == "fourier_shell_correlation"


def test_fsc_curve_signs_and_independent_noise(rng):
    a = rng.normal(size=(32, 32, 32))
    f, fsc, n = fsc_curve(a, -3 * a, voxel_size=0.5)
    np.testing.assert_allclose(fsc, -1.0, atol=1e-12)
    assert f[-1] == pytest.approx(1.0)  # Nyquist of 0.5 nm voxels: 1/nm
    assert n.sum() <= a.size and n[0] == 1
    # independent noise: FSC ~ 0 within a few 1/sqrt(n)
    _, fsc, n = fsc_curve(a, rng.normal(size=a.shape), voxel_size=0.5)
    assert np.all(np.abs(fsc[3:]) < 5 / np.sqrt(n[3:]))


def test_fsc_equal_snr_is_one_half(rng):
    s = rng.normal(size=(32,) * 3)
    a = s + rng.normal(size=s.shape)
    b = s + rng.normal(size=s.shape)
    _, fsc, n = fsc_curve(a, b)
    # SNR 1 in every shell: FSC = SNR / (1 + SNR) = 0.5
    assert np.abs(np.mean(fsc[4:]) - 0.5) < 0.02
    assert np.all(np.abs(fsc[4:] - 0.5) < 6 / np.sqrt(n[4:]))


def test_fsc_known_resolution_from_band_limited_signal(rng):
    n, cut = 48, 0.5
    s = 20 * _bandlimited(rng, n, cut)
    a = _volume([s + rng.normal(size=s.shape)], ["Zn"])
    b = _volume([s + rng.normal(size=s.shape)], ["Zn"])
    fsc = a.fourier_shell_correlation(b, mask=None)
    info = fsc.metadata.Tomography.FSC
    f_cut = cut / (2 * VOXEL)  # 1.25 / nm: 0.8 nm
    step = fsc.axes_manager.signal_axes[0].scale
    # the crossing lies in the shell that holds the cut-off (half a shell either side)
    assert abs(1 / info.resolution_0143["Zn"] - f_cut) <= step
    assert abs(1 / info.resolution_half_bit["Zn"] - f_cut) <= step
    assert not info.nyquist_limited_0143["Zn"]


def test_half_bit_threshold_and_crossing():
    t = half_bit_threshold([1, 1e10])
    assert t[0] == pytest.approx(1.0, abs=1e-3) and t[1] == pytest.approx(0.2071 / 1.2071, abs=1e-4)
    f = np.arange(5.0)
    fsc = np.array([1, 0.8, 0.4, 0.0, -0.1])
    freq, limited = crossing(f, fsc, 0.2)
    assert freq == pytest.approx(2.5) and not limited
    assert crossing(f, np.ones(5), 0.143) == (4.0, True)


def test_fsc_mask_reduces_noise_from_empty_surroundings(rng):
    vol = datasets.core_shell_phantom(size=32)
    d = vol.to_numpy()
    a = _volume(list(d + 0.3 * rng.normal(size=d.shape)), vol.elements, voxel=vol.voxel_size[0])
    b = _volume(list(d + 0.3 * rng.normal(size=d.shape)), vol.elements, voxel=vol.voxel_size[0])
    plain = a.fourier_shell_correlation(b, mask=None, elements="Zn")
    masked = a.fourier_shell_correlation(b, mask="auto", elements="Zn")
    assert masked.metadata.Tomography.FSC.mask == "auto"
    # noise outside the particle is cut away: the masked FSC resolves finer
    r_plain = plain.metadata.Tomography.FSC.resolution_0143["Zn"]
    r_masked = masked.metadata.Tomography.FSC.resolution_0143["Zn"]
    assert not plain.metadata.Tomography.FSC.nyquist_limited_0143["Zn"]
    assert r_masked < r_plain


def test_fsc_bad_inputs():
    vol = datasets.core_shell_phantom(size=16)
    with pytest.raises(ValueError, match="shape"):
        vol.fourier_shell_correlation(datasets.core_shell_phantom(size=20))
    with pytest.raises(ValueError, match="elements"):
        vol.inav[:, 0:2].fourier_shell_correlation(vol.inav[:, 1:3])
    bad = vol.deepcopy()
    bad.data[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vol.fourier_shell_correlation(bad)
    empty = vol._deepcopy_with_new_data(np.zeros_like(vol.data))
    with pytest.raises(ValueError, match="empty"):
        empty.fourier_shell_correlation(empty)
    with pytest.raises(ValueError, match="mask"):
        vol.fourier_shell_correlation(vol, mask="box")
    with pytest.raises(ValueError, match="Unknown element"):
        vol.fourier_shell_correlation(vol, elements="Cu")
    with pytest.raises(TypeError, match="ElementVolume"):
        fourier_shell_correlation(vol, np.zeros((5, 16, 16, 16)))


@pytest.mark.parametrize("split", ["counts", "tilts"])
def test_fsc_from_tilt_series(split):
    maps = datasets.quantum_dot_element_maps(size=24, seed=0, counts_per_tilt=20000)
    maps = maps.inav[:, 3:]  # S, Zn
    fsc, v1, v2 = maps.fourier_shell_correlation(method="sirt", split=split, seed=3, return_volumes=True,
                                                  iterations=30, show_progressbar=False)
    info = fsc.metadata.Tomography.FSC
    assert info.split == split and info.method == "sirt"
    assert not np.allclose(v1.data, v2.data)  # two different halves
    for el in ("S", "Zn"):
        # well resolved at low frequency, not perfect at the finest
        assert fsc.data[fsc.metadata.Sample.elements.index(el), 1] > 0.8
        assert 2 * v1.voxel_size[0] - 1e-9 <= info.resolution_0143[el] < 3.0
    if split == "counts":
        total = maps.to_numpy().sum()
        h1, h2 = split_tilt_series(maps, "counts", seed=3)
        assert h1.to_numpy().sum() + h2.to_numpy().sum() == pytest.approx(total)
    else:
        assert v1.history[-2]["step"] == "fsc_split"


def test_fsc_split_needs_counts():
    maps = datasets.quantum_dot_element_maps(size=16, seed=0).inav[:, 3:]
    floats = maps._deepcopy_with_new_data(maps.data + 0.5)
    with pytest.raises(ValueError, match="integer counts"):
        split_tilt_series(floats, "counts")
    with pytest.raises(ValueError, match="split"):
        split_tilt_series(maps, "halves")


# ---------------------------------------------------------------------------------------
# particles


def _two_dots(size=48, voxel=VOXEL):
    """Two uniform balls of radii 5 and 3.5 voxels at known places; Zn everywhere, Se in the big one only."""
    z, y, x = np.mgrid[:size, :size, :size].astype(float)
    big = ((x - 14) ** 2 + (y - 20) ** 2 + (z - 24) ** 2) <= 5**2
    small = ((x - 34) ** 2 + (y - 30) ** 2 + (z - 20) ** 2) <= 3.5**2
    zn = (big | small).astype(float)
    se = big.astype(float) * 0.5
    return _volume([se, zn], ["Se", "Zn"], voxel=voxel), big, small


@pytest.mark.parametrize("lazy", [False, True])
def test_find_particles_two_dots(lazy):
    vol, big, small = _two_dots()
    if lazy:
        vol = vol.as_lazy()
    found = vol.find_particles(smooth_nm=0)
    assert len(found) == 2
    ax = {n: vol.axes_manager[n] for n in "xyz"}
    for p, mask, (cx, cy, cz) in zip(found, (big, small), ((14, 20, 24), (34, 30, 20))):
        expected = (ax["x"].offset + cx * VOXEL, ax["y"].offset + cy * VOXEL, ax["z"].offset + cz * VOXEL)
        np.testing.assert_allclose(p.centre, expected, atol=0.3 * VOXEL)
        d_true = (6 * mask.sum() / np.pi) ** (1 / 3) * VOXEL
        assert p.equivalent_diameter == pytest.approx(d_true, rel=0.1)
        assert p.radial_profile.axes_manager.signal_axes[0].units == "nm"
    # Se in the big dot only
    prof = found[0].radial_profile.data
    assert prof[0, 0] == pytest.approx(0.5, rel=0.05) and prof[1, 0] == pytest.approx(1.0, rel=0.05)
    assert found[1].radial_profile.data[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert found.history[-1]["method"] == "find_particles"
    assert "d_eq" in str(found) and len(found.as_table()) == 2


def test_find_particles_min_size_and_errors():
    vol, _, _ = _two_dots()
    one = vol.find_particles(smooth_nm=0, min_size_nm3=250 * VOXEL**3)  # the small ball has ~180 voxels
    assert len(one) == 1
    with pytest.raises(ValueError, match="No particle found"):
        vol.find_particles(smooth_nm=0, min_size_nm3=1e6)
    empty = vol._deepcopy_with_new_data(np.zeros_like(vol.data))
    with pytest.raises(ValueError, match="empty"):
        empty.find_particles()
    with pytest.raises(ValueError, match="threshold"):
        vol.find_particles(threshold=1.5)
    for bad in (1.5, -0.1, "big", float("nan")):
        with pytest.raises(ValueError, match="min_relative_size must be a fraction"):
            vol.find_particles(min_relative_size=bad)


def test_find_particles_drops_specks_relative_to_the_largest():
    vol, big, small = _two_dots()
    data = vol.data.copy()
    for z, y, x in ((5, 5, 5), (40, 8, 40), (8, 40, 30)):  # three 4x4x4 specks (64 voxels, 12 % of the big ball)
        data[:, z : z + 4, y : y + 4, x : x + 4] = 1.0
    specks = vol._deepcopy_with_new_data(data)
    assert len(specks.find_particles(smooth_nm=0, min_relative_size=0)) == 5
    found = specks.find_particles(smooth_nm=0, min_relative_size=0.2)  # the small ball is 35 % of the big one
    assert len(found) == 2 and found[1].n_voxels == small.sum()
    assert found.history[-1]["parameters"]["n_components"] == 5
    assert len(specks.find_particles(smooth_nm=0, min_relative_size=0.5)) == 1


# ---------------------------------------------------------------------------------------
# shells


@pytest.mark.parametrize("gap", [0.0, 0.1, 0.25])
def test_shell_gap_is_found(gap):
    vol = datasets.core_shell_phantom(size=40, shell_gap=gap, seed=1)
    shells = vol.shell_maps(elements=["S", "Zn", "Se"], n_azimuth=48, n_elevation=24)
    truth = vol.metadata.Simulation.phantom.shell_gap_fraction
    assert shells.absent("S") == pytest.approx(truth, abs=0.03)
    assert shells.absent("Zn") == 0.0  # ZnSe under the gap
    assert shells.absent("Se") == 0.0
    t = shells.thickness_map("S")
    assert t.shape == (24, 48)
    # where present, the ZnS shell is about as thick as it was made
    made = vol.metadata.Simulation.phantom.layers.ZnS
    thick = made.outer_radius_nm - made.inner_radius_nm
    assert np.median(t[t > 0]) == pytest.approx(thick, rel=0.35)


def test_shell_maps_caution_after_a_learned_denoiser():
    """A network denoiser can smooth a small shell gap away (docs/benchmarks.rst): coverage from such a
    volume warns and says so in its record; from the raw counts it does not."""
    import warnings

    from hyperspy_edxtomo.analysis.shells import learned_denoising
    from hyperspy_edxtomo.base.provenance import get_history

    maps = datasets.quantum_dot_element_maps(kind="CdSe/ZnS", size=32, seed=3)
    raw = maps.reconstruct("fbp", show_progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = raw.shell_maps(elements=["S"], max_particles=1)
    assert plain.parameters["learned_denoiser"] == "none"
    deep = maps.denoise_deep(steps=10, show_progressbar=False).reconstruct("fbp", show_progressbar=False)
    with pytest.warns(UserWarning, match="denoise_deep; a learned denoiser can smooth a small gap in a shell away"):
        cautioned = deep.shell_maps(elements=["S"], max_particles=1)
    assert cautioned.parameters["learned_denoiser"] == "the maps were denoised by denoise_deep"
    # two_step's real record: its deep Q^D feeds the MBIR by default
    fast = dict(lam=2.0, mbir_iterations=5, enhancer_steps=5, patch_size=32, angle_step=6.0)
    q_d = maps.reconstruct("two_step", denoiser_parameters={"steps": 10}, show_progressbar=False, **fast)
    assert learned_denoising(get_history(q_d)) == "two_step's deep Q^D fed its MBIR or Q^S"


def test_learned_denoising_reads_every_kind_of_record():
    from hyperspy_edxtomo.analysis.shells import learned_denoising

    def two_step(per_element=False, **record):
        used = {"denoiser_used": {"method": "deep"}, "mbir_input": "denoised", "target": "denoised",
                "enhancer_steps": 300, **record}
        used = {"S": used, "Zn": dict(used)} if per_element else used
        return [{"step": "reconstruction", "method": "two_step", "parameters": {"parameters": used}}]

    assert learned_denoising(two_step()) == "two_step's deep Q^D fed its MBIR or Q^S"
    assert learned_denoising(two_step(per_element=True)) == "two_step's deep Q^D fed its MBIR or Q^S"
    assert learned_denoising(two_step(denoiser_used={"method": "gaussian", "sigma": 2.0})) is None
    assert learned_denoising(two_step(denoiser_used={"method": "none"})) is None
    # the "auto" denoiser: a network where it kept one (on counts, or for an element of other maps)
    kept = {"method": "auto", "chosen": "per element", "elements": {"S": {"chosen": "gaussian"},
                                                                   "Zn": {"chosen": "deep (blind spot)"}}}
    assert learned_denoising(two_step(denoiser_used=kept)) == "two_step's deep Q^D fed its MBIR or Q^S"
    assert learned_denoising(two_step(denoiser_used={"method": "auto", "chosen": "deep"})) is not None
    gaussian_only = {"method": "auto", "chosen": "per element", "elements": {"Zn": {"chosen": "gaussian"}}}
    assert learned_denoising(two_step(denoiser_used=gaussian_only)) is None
    assert "network" in learned_denoising([{"step": "denoising", "method": "auto", "parameters": kept}])
    assert learned_denoising(two_step(mbir_input="counts", target="counts")) is None
    # Q^S's target reaches the volume only when Q^S trains
    assert learned_denoising(two_step(mbir_input="counts", enhancer_steps=0)) is None
    assert learned_denoising(two_step(mbir_input="counts")) == "two_step's deep Q^D fed its MBIR or Q^S"
    e2e = [{"step": "reconstruction", "method": "end_to_end", "parameters": {"parameters": {}}}]
    assert learned_denoising(e2e) == "end_to_end's network made the volume"
    denoised = [{"step": "denoising", "method": "deep", "parameters": {}},
                {"step": "reconstruction", "method": "tv", "parameters": {"parameters": {}}}]
    assert learned_denoising(denoised) == "the maps were denoised by denoise_deep"
    assert learned_denoising([{"step": "denoising", "method": "gaussian", "parameters": {}}]) is None
    assert learned_denoising([]) is None


def test_shell_coverage_robust_to_origin():
    vol = datasets.core_shell_phantom(size=40, shell_gap=0.15, seed=4)
    particles = vol.find_particles()
    base = vol.shell_maps(elements="S", particles=particles, n_azimuth=48, n_elevation=24)
    centre = np.array(particles[0].centre)
    scale = vol.voxel_size[0]
    for shift in ([2, 0, 0], [0, -2, 2], [-2, 2, -1]):
        moved = vol.shell_maps(elements="S", particles=particles, origin=tuple(centre + scale * np.array(shift)),
                               n_azimuth=48, n_elevation=24)
        assert abs(moved.absent("S") - base.absent("S")) < 0.02
    with pytest.raises(ValueError, match="not inside"):
        vol.shell_maps(particles=particles, origin=(100.0, 0.0, 0.0))


def test_shell_maps_signal_and_errors():
    vol = datasets.core_shell_phantom(size=32, shell_gap=0.2, seed=0)
    shells = vol.shell_maps(elements=["S", "Se"], n_azimuth=36, n_elevation=18)
    s = shells.thickness
    assert s.data.shape == (1, 2, 18, 36)
    assert [a.units for a in s.axes_manager.signal_axes] == ["deg", "deg"]
    assert shells.history[-1]["method"] == "shell_maps"
    assert shells.coverage[0, 0] == pytest.approx(1 - shells.absent("S"))
    with pytest.raises(ValueError, match="level"):
        vol.shell_maps(level=1.5)
    with pytest.raises(ValueError, match="Unknown element"):
        vol.shell_maps(elements="Cu")
    with pytest.raises(TypeError, match="ParticleList"):
        shell_maps(vol, particles=[1, 2])


def _ball_and_ring(n=48):
    """A core-shell ball (Se core, S shell) and a smaller ring of the same, side by side: the
    ring's centroid lies in its hole, outside it, so its shells cannot be mapped from there."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float)] * 3, indexing="ij")
    r_ball = np.sqrt((z - 24) ** 2 + (y - 24) ** 2 + (x - 13) ** 2)
    core = r_ball <= 5
    shell = (r_ball > 5) & (r_ball <= 8)
    # a torus about the z axis through (24, 24, 36): major radius 5, tube radius 2
    rho = np.sqrt((y - 24) ** 2 + (x - 36) ** 2)
    ring = (rho - 5) ** 2 + (z - 24) ** 2 <= 2.0**2
    return _volume([1.0 * core + 0.5 * ring, 1.0 * shell + 0.5 * ring], ["Se", "S"]), ring


def test_one_bad_particle_does_not_stop_the_others():
    vol, ring = _ball_and_ring()
    particles = vol.find_particles(smooth_nm=0)
    assert len(particles) == 2 and particles[1].n_voxels == ring.sum()
    # the ring's centroid lies in its hole: its shells are measured from the point deepest inside it
    both = vol.shell_maps(particles=particles, n_azimuth=36, n_elevation=18)
    assert both.labels == [1, 2] and not both.skipped and list(both.parameters["origin_moved_inside"]) == ["2"]
    assert both.absent("Se", particle=1) < 0.5  # the ring holds Se and S all round its tube
    # an origin given for all that lies outside the ring: the ball is analysed, the ring reported, not dropped
    with pytest.warns(UserWarning, match=r"particle 2: The origin of particle 2 .* is not inside it"):
        shells = vol.shell_maps(particles=particles, origin=particles[0].centre, n_azimuth=36, n_elevation=18)
    assert shells.labels == [1] and list(shells.skipped) == [2] and "not inside" in shells.skipped[2]
    assert shells.thickness.data.shape == (1, 2, 18, 36)
    alone = vol.shell_maps(particles=particles, max_particles=1, n_azimuth=36, n_elevation=18)
    np.testing.assert_array_equal(shells.absent_fraction, alone.absent_fraction)
    assert shells.absent("Se") == 0.0 and shells.absent("S") == 0.0
    assert shells.thickness.metadata.Tomography.shells.skipped["2"] == shells.skipped[2]
    assert shells.parameters["particles"] == [1] and "2" in shells.parameters["skipped"]
    # no particle that can be analysed: an error that names each one's reason
    with pytest.raises(ValueError, match="No particle could be analysed: particle 1: The origin of particle 1"):
        vol.shell_maps(particles=particles, origin=(100.0, 0.0, 0.0))


def test_analyse_volume_reports_the_particle_it_cannot_analyse():
    from hyperspy_edxtomo.workflow.report import report_tables
    from hyperspy_edxtomo.workflow.steps import analyse_volume

    vol, _ = _ball_and_ring()
    numbers = {}
    particles, shells = analyse_volume(vol, numbers=numbers)
    # the ring is measured from inside it, and the report says so
    assert len(numbers["particles"]) == 2 and {row["particle"] for row in numbers["shells"]} == {1, 2}
    rows = dict((r[0], r[1]) for heading, _, rs in report_tables({"numbers": numbers, "timings": {}}) for r in rs
                if heading == "Shell coverage")
    assert "particle 2: the centroid lies outside the particle" in rows["note"]
    # a particle that cannot be analysed is reported beside the others
    numbers["shells_skipped"] = {"2": "some reason"}
    numbers["shells_note"] = "not analysed: particle 2: some reason"
    numbers["shells"] = [r for r in numbers["shells"] if r["particle"] == 1]
    rows = dict((r[0], r[1]) for heading, _, rs in report_tables({"numbers": numbers, "timings": {}}) for r in rs
                if heading == "Shell coverage")
    assert "particle 2: some reason" in rows["note"]


def test_fsc_warns_when_the_halves_hold_too_few_tilts():
    import warnings

    from hyperspy_edxtomo.analysis.fsc import fsc_sampling_problem

    two = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, tilts=[-30, 30], seed=0)
    with pytest.warns(UserWarning, match="each FSC half holds only 2 tilts"):
        split_tilt_series(two, "counts")
    sparse = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, tilts=[-60, -20, 20, 60], seed=0)
    with pytest.warns(UserWarning, match="only 2 tilts"):  # a tilt split: 2 views a half
        split_tilt_series(sparse, "tilts")
    with pytest.warns(UserWarning, match="tilt steps of up to 40 deg"):
        split_tilt_series(sparse, "counts")
    # the usual series: no warning
    fine = datasets.quantum_dot_element_maps("CdSe/ZnS", size=24, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        split_tilt_series(fine, "counts")
        split_tilt_series(fine, "tilts")
    assert fsc_sampling_problem([-60, -40, -20, 0, 20, 40, 60], [-50, -30, -10, 10, 30, 50]) is None


# ---------------------------------------------------------------------------------------
# pictures


def test_figures_written(tmp_path):
    from matplotlib.image import imread

    vol = datasets.core_shell_phantom(size=32, shell_gap=0.2, seed=0)
    fsc = vol.fourier_shell_correlation(vol, mask="sphere", elements=["S", "Zn"])
    shells = vol.shell_maps(elements=["Se", "S", "Zn"], n_azimuth=36, n_elevation=18)
    paths = [
        plotting.volume_cuts(vol, tmp_path / "cuts.png", truth=vol, position=find_particles(vol)[0].centre,
                             elements=["S", "Zn"]),
        plotting.max_projections(vol, tmp_path / "mip.png", elements=["Se", "S"]),
        plotting.rgb_overlay(vol, tmp_path / "rgb.png", elements=["Se", "S", "Zn"]),
        plotting.fsc_plot(fsc, tmp_path / "fsc.png"),
        plotting.shell_thickness_maps(shells, tmp_path / "shells.png"),
        plotting.shell_thickness_histogram(shells, tmp_path / "hist.png"),
    ]
    for p in paths:
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0.01  # not blank
    with pytest.raises(ValueError, match="three"):
        plotting.rgb_overlay(vol, tmp_path / "x.png", elements=["In", "P", "Se", "S"])


def test_hyperspy_plot_still_works():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vol = datasets.core_shell_phantom(size=16)
    maps = datasets.quantum_dot_element_maps(size=16, seed=0)
    fsc = vol.fourier_shell_correlation(vol, mask="sphere")
    shells = vol.shell_maps(elements="S", n_azimuth=16, n_elevation=8)
    for s in (vol, maps, fsc, shells.thickness, find_particles(vol)[0].radial_profile):
        s.plot()
        assert len(plt.get_fignums()) >= 1
        plt.close("all")


def test_fsc_mask_correction_removes_what_the_mask_correlates():
    # both halves share only frequencies below f0 (true resolution 1/f0 = 1 nm) and carry
    # weak independent content above it; a smooth background reaches the mask's edge, so
    # the mask alone correlates the halves up to Nyquist (0.4 nm)
    n, vs, f0 = 40, 0.2, 1.0
    rng = np.random.default_rng(0)
    grid = np.meshgrid(*[np.arange(n) - (n - 1) / 2] * 3, indexing="ij")
    r = np.sqrt(sum(g**2 for g in grid))
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(n, d=vs)] * 3, indexing="ij")))
    obj = (r < 10) * (1 + 0.3 * ndimage.gaussian_filter(rng.normal(size=(n,) * 3), 2)) + 0.3 * np.exp(-(r**2) / 392)
    shared = np.fft.ifftn(np.where(k <= f0, np.fft.fftn(obj), 0)).real

    def half():
        return shared + 0.003 * np.fft.ifftn(np.where(k > f0, np.fft.fftn(rng.normal(size=(n,) * 3)), 0)).real

    a, b = (het.volume_from_array(half()[None], ["Zn"], voxel_size_nm=vs) for _ in range(2))
    raw = a.fourier_shell_correlation(b, mask_correction=False).metadata.Tomography.FSC
    fsc = a.fourier_shell_correlation(b)
    info = fsc.metadata.Tomography.FSC
    assert raw.resolution_0143["Zn"] < 0.5  # the mask's own correlation
    assert 0.75 < info.resolution_0143["Zn"] < 1.1
    assert info.mask_correction is True and info.resolution_0143_uncorrected["Zn"] == raw.resolution_0143["Zn"]
    assert 0 < info.randomised_beyond["Zn"] <= f0 + 0.25
    assert len(info.uncorrected["Zn"]) == fsc.data.shape[-1]
    # phases randomised beyond a frequency keep every amplitude
    w = randomise_phases(shared, 0.5, vs, rng=1)
    np.testing.assert_allclose(np.abs(np.fft.fftn(w)), np.abs(np.fft.fftn(shared)), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.fft.fftn(w)[k <= 0.5], np.fft.fftn(shared)[k <= 0.5], atol=1e-8)


def test_shell_figures_show_every_particle_and_bins_follow_the_ray_step(tmp_path):
    from matplotlib.image import imread

    vol, _ = _ball_and_ring()
    shells = vol.shell_maps(n_azimuth=36, n_elevation=18)
    assert len(shells.labels) == 2
    both = imread(plotting.shell_thickness_maps(shells, tmp_path / "both.png"))
    one = imread(plotting.shell_thickness_maps(shells, tmp_path / "one.png", particle=0))
    assert both.shape[0] > 1.6 * one.shape[0]  # a row per particle
    hist_both = imread(plotting.shell_thickness_histogram(shells, tmp_path / "hist.png"))
    assert hist_both.shape[0] > imread(plotting.shell_thickness_histogram(shells, tmp_path / "h1.png", 0)).shape[0]
    # thicknesses are whole multiples of the ray step: bins a whole number of steps wide never comb
    step = shells.parameters["ray_step_nm"]
    t = shells.thickness.data
    np.testing.assert_allclose(t / step, np.round(t / step), atol=1e-4)
    with pytest.raises(ValueError, match="particle must be an index below 2"):
        plotting.shell_thickness_maps(shells, tmp_path / "x.png", particle=5)
