"""Counts stay counts: the X-ray background as a term of the model, y ~ Poisson(A x + b).

``get_element_maps()`` keeps the raw window counts and attaches exspy's
background estimate as ``metadata.Tomography.background``; these tests check
that it is right, that it follows the data through slicing, saving, lazy
evaluation, denoising and the FSC count split, and that bad input is refused.
"""

import hyperspy.api as hs
import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo import datasets
from hyperspy_edxtomo.signals import ElementMapTiltSeries, LazyElementMapTiltSeries

TILTS = [-40.0, -20.0, 0.0, 20.0, 40.0]
ELEMENTS = ["Se", "S", "Zn"]


@pytest.fixture(scope="module")
def simulated():
    """A small simulated spectrum-image tilt series (lines and a continuum)."""
    phantom = datasets.core_shell_phantom(size=24)
    return datasets.simulate_tilt_series(phantom, tilts=TILTS, seed=1)


def _maps(rng, lazy=False, shape=(3, 5, 8, 6)):
    """Counts and a background whose every value is different (so misalignment shows)."""
    counts = rng.poisson(3.0, shape).astype(np.uint16)
    background = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 7.0).astype(np.float32)
    if lazy:
        import dask.array as da

        counts = da.from_array(counts, chunks=(1, 2) + shape[2:])
        background = da.from_array(background, chunks=(1, 2) + shape[2:])
    maps = het.element_maps_from_array(counts, TILTS[: shape[1]], ELEMENTS[: shape[0]], pixel_size_nm=0.5,
                                       background=background)
    return maps, np.asarray(background)


# -- get_element_maps on spectra ------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [False, True])
def test_default_maps_are_raw_counts_with_background(simulated, lazy):
    s = simulated.as_lazy() if lazy else simulated
    maps = s.get_element_maps()
    assert isinstance(maps, LazyElementMapTiltSeries if lazy else ElementMapTiltSeries)
    raw = maps.to_numpy()
    b = maps.background
    assert isinstance(b, np.ndarray) and b.dtype == np.float32 and b.shape == raw.shape
    # raw window counts: non-negative integers, exactly those of exspy without background windows
    assert np.all(raw >= 0) and np.all(raw == np.round(raw))
    exspy_raw = [img.data for img in simulated.get_lines_intensity(
        xray_lines=maps.metadata.Sample.xray_lines, background_windows=None)]
    np.testing.assert_array_equal(raw, np.stack(exspy_raw))
    # the simulation has a continuum: every element gets a background, never negative
    assert np.all(b >= 0) and np.all(b.sum(axis=(1, 2, 3)) > 0)
    # raw minus the attached background has the mean of the old subtracted maps (before clipping)
    old = simulated.get_element_maps(subtract_background=True, negative="keep").to_numpy()
    np.testing.assert_allclose((raw - b).mean(axis=(1, 2, 3)), old.mean(axis=(1, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(raw - b, old, atol=1e-3)
    step = maps.history[-1]
    assert step["parameters"]["background"] == "attached" and step["parameters"]["subtract_background"] is False


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("negative", ["clip", "keep"])
def test_subtract_background_equals_the_old_subtraction(simulated, lazy, negative):
    s = simulated.as_lazy() if lazy else simulated
    maps = s.get_element_maps()
    net = maps.subtract_background(negative=negative)
    assert type(net) is type(maps)
    assert net.background is None and not net.metadata.has_item("Tomography.background")
    old = s.get_element_maps(subtract_background=True, negative=negative)
    assert old.background is None and old.history[-1]["parameters"]["background"] == "subtracted"
    np.testing.assert_allclose(net.to_numpy(), old.to_numpy(), atol=1e-3)
    if negative == "keep":
        assert net.to_numpy().min() < 0  # the test is not vacuous: subtraction does go negative
    else:
        assert net.to_numpy().min() == 0
    assert net.history[-1]["step"] == "background" and net.history[-1]["method"] == "subtract"
    assert net.history[-1]["parameters"]["negative"] == negative
    # the original keeps its background
    assert maps.background is not None


def test_subtract_background_errors(rng, simulated):
    maps, _ = _maps(rng)
    with pytest.raises(ValueError, match="negative must be one of"):
        maps.subtract_background(negative="zero")
    with pytest.raises(ValueError, match="carry no background"):
        maps.subtract_background().subtract_background()
    with pytest.raises(ValueError, match="subtract_background=True needs background windows"):
        simulated.get_element_maps(background_windows=None, subtract_background=True)
    with pytest.raises(TypeError, match="subtract_background must be True or False"):
        simulated.get_element_maps(subtract_background="yes")


def test_background_windows_none_gives_no_background(simulated):
    maps = simulated.get_element_maps(["Se", "Zn"], background_windows=None)
    assert maps.background is None and maps.history[-1]["parameters"]["background"] == "none"
    attached = simulated.get_element_maps(["Se", "Zn"])
    np.testing.assert_array_equal(maps.to_numpy(), attached.to_numpy())


def test_vendor_file_maps_are_counts_with_background(bcf_views):
    s = het.load_tilt_series([str(p) for p in bcf_views], tilts=[-20, 0, 20])
    maps = s.get_element_maps(["Cu", "Pd"])
    raw, b = maps.to_numpy(), maps.background
    assert raw.shape == b.shape == (2, 3, 64, 64)
    assert np.all(raw == np.round(raw)) and raw.sum() > 0
    assert np.all(b >= 0) and b.sum() > 0
    old = s.get_element_maps(["Cu", "Pd"], subtract_background=True, negative="keep").to_numpy()
    np.testing.assert_allclose(raw - b, old, atol=1e-3)


# -- the node follows the data ----------------------------------------------------------------------
@pytest.mark.parametrize("lazy", [False, True])
def test_slicing_slices_the_background_like_the_data(rng, lazy):
    maps, b = _maps(rng, lazy)
    counts = maps.to_numpy()
    assert type(maps.metadata.Tomography.background).__name__ == ("LazySignal2D" if lazy else "Signal2D")
    np.testing.assert_array_equal(maps.background, b)
    # (the sliced signal, the same slice in numpy order (element, tilt, y, x))
    cases = [
        (maps.inav[1:4], np.s_[:, 1:4]),
        (maps.inav[::2], np.s_[:, ::2]),
        (maps.inav[2], np.s_[:, 2]),  # one tilt: the tilt axis is dropped, from both
        (maps.inav[:, 1], np.s_[1:2]),  # the element axis stays
        (maps.inav[3, 2], np.s_[2:3, 3]),
        (maps.element("Zn"), np.s_[2:3]),
        (maps.element("S").inav[1:3], np.s_[1:2, 1:3]),
        (maps.isig[1:4, 2:7], np.s_[..., 2:7, 1:4]),
    ]
    for sub, index in cases:
        assert sub.background.shape == sub.data.shape == counts[index].shape
        np.testing.assert_array_equal(sub.background, b[index])
        np.testing.assert_array_equal(sub.to_numpy(), counts[index])
    # the slice's node is its own: changing it leaves the original alone
    if not lazy:
        sub = maps.inav[1:3]
        sub.metadata.Tomography.background.data[:] = -1
        np.testing.assert_array_equal(maps.background, b)


@pytest.mark.parametrize("lazy", [False, True])
def test_deepcopy_as_lazy_and_compute_keep_the_background(rng, lazy):
    maps, b = _maps(rng, lazy)
    np.testing.assert_array_equal(maps.deepcopy().background, b)
    other = maps.as_lazy()
    assert other._lazy
    np.testing.assert_array_equal(other.background, b)
    if lazy:
        maps.compute()
        assert isinstance(maps.metadata.Tomography.background.data, np.ndarray)
        np.testing.assert_array_equal(maps.background, b)


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
@pytest.mark.parametrize("lazy", [False, True])
def test_save_and_load_keep_the_background(rng, tmp_path, ext, lazy):
    maps, b = _maps(rng, lazy)
    path = tmp_path / f"maps.{ext}"
    maps.save(path)
    back = hs.load(path, lazy=lazy)
    assert type(back) is type(maps)
    np.testing.assert_array_equal(back.background, b)
    np.testing.assert_array_equal(back.to_numpy(), maps.to_numpy())
    # and it still follows the data after loading
    np.testing.assert_array_equal(back.inav[1:3, 2].background, b[2:3, 1:3])
    np.testing.assert_allclose(back.subtract_background(negative="keep").to_numpy(), maps.to_numpy() - b)


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_plain_numpy_background_from_other_code(rng, tmp_path, ext):
    counts = rng.poisson(2.0, (3, 5, 8, 6))
    maps = het.element_maps_from_array(counts, TILTS, ELEMENTS)
    b = rng.random(counts.shape).astype(np.float32)
    maps.metadata.set_item("Tomography.background", b)  # what simulation code may store
    np.testing.assert_array_equal(maps.background, b)
    sub = maps.inav[1:4, 0]
    assert isinstance(sub.metadata.Tomography.background, np.ndarray)
    np.testing.assert_array_equal(sub.background, b[0:1, 1:4])
    maps.save(tmp_path / f"m.{ext}")
    for lazy in (False, True):
        back = hs.load(tmp_path / f"m.{ext}", lazy=lazy)
        np.testing.assert_array_equal(back.background, b)
        np.testing.assert_array_equal(back.element("Zn").background, b[2:3])
    np.testing.assert_allclose(maps.subtract_background(negative="keep").data, counts - b, rtol=1e-6)


def test_stale_background_is_refused(rng):
    maps, _ = _maps(rng)
    maps.metadata.set_item("Tomography.background", np.zeros((3, 4, 8, 6), np.float32))
    with pytest.raises(ValueError, match="no longer belongs to these data"):
        maps.background
    with pytest.raises(ValueError, match="no longer belongs to these data"):
        maps.subtract_background()


def test_denoise_keeps_the_background(rng):
    maps, b = _maps(rng)
    den = maps.denoise("gaussian", sigma=1.0)
    assert not np.allclose(den.data, maps.data)
    np.testing.assert_array_equal(den.background, b)


def test_volume_never_carries_the_background(rng):
    maps, _ = _maps(rng)
    vol = maps.reconstruct("fbp")
    assert not vol.metadata.has_item("Tomography.background")
    assert maps.background is not None


# -- the FSC halves ----------------------------------------------------------------------------------
def test_count_split_halves_get_half_the_background(rng):
    from hyperspy_edxtomo.analysis.fsc import split_tilt_series

    maps, b = _maps(rng)
    first, second = split_tilt_series(maps, "counts", seed=3)
    np.testing.assert_array_equal(first.to_numpy() + second.to_numpy(), maps.to_numpy())
    for half in (first, second):
        assert half.background.dtype == np.float32
        np.testing.assert_allclose(half.background, 0.5 * b, rtol=1e-6)
    np.testing.assert_allclose(first.background + second.background, b, rtol=1e-6)
    a, c = split_tilt_series(maps, "tilts")
    np.testing.assert_array_equal(a.background, b[:, 0::2])
    np.testing.assert_array_equal(c.background, b[:, 1::2])


def test_count_split_without_background_stays_without(rng):
    from hyperspy_edxtomo.analysis.fsc import split_tilt_series

    maps = het.element_maps_from_array(rng.poisson(3.0, (1, 5, 8, 6)), TILTS, ["Zn"])
    first, second = split_tilt_series(maps, "counts", seed=0)
    assert first.background is None and second.background is None


# -- element_maps_from_array -------------------------------------------------------------------------
def test_element_maps_from_array_background_follows_transpose_and_sorting(rng):
    counts = rng.poisson(2.0, (2, 3, 4, 5))
    b = rng.random(counts.shape).astype(np.float32)
    maps = het.element_maps_from_array(counts, [20, -20, 0], ["S", "Zn"], tilt_axis="columns", background=b)
    expected = b.transpose(0, 1, 3, 2)[:, [1, 2, 0]]
    np.testing.assert_array_equal(maps.background, expected)
    np.testing.assert_array_equal(maps.data, counts.transpose(0, 1, 3, 2)[:, [1, 2, 0]])
    assert maps.history[-1]["parameters"]["background"] == "attached"


@pytest.mark.parametrize(
    "background, error, match",
    [
        (np.zeros((3, 5, 8, 5)), ValueError, "shaped like the counts"),
        (np.full((3, 5, 8, 6), np.nan), ValueError, "NaN or infinite"),
        (-np.ones((3, 5, 8, 6)), ValueError, "negative values"),
        (np.full((3, 5, 8, 6), "a"), TypeError, "numeric"),
        (np.zeros((3, 5, 8, 6), dtype=bool), TypeError, "numeric"),
    ],
)
def test_element_maps_from_array_rejects_bad_background(rng, background, error, match):
    counts = rng.poisson(2.0, (3, 5, 8, 6))
    with pytest.raises(error, match=match):
        het.element_maps_from_array(counts, TILTS, ELEMENTS, background=background)


# -- pipeline and command line -----------------------------------------------------------------------
def test_load_input_background_modes(simulated):
    from hyperspy_edxtomo.workflow.pipeline import PipelineError, load_input

    model, _, _ = load_input(simulated, elements=["Se", "Zn"])
    assert model.background is not None and np.all(model.data == np.round(model.data))
    subtracted, _, _ = load_input(simulated, elements=["Se", "Zn"], background="subtract")
    assert subtracted.background is None
    np.testing.assert_allclose(subtracted.data, model.subtract_background().data, atol=1e-3)
    none, _, _ = load_input(simulated, elements=["Se", "Zn"], background="none")
    assert none.background is None
    np.testing.assert_array_equal(none.data, model.data)
    assert load_input(simulated, elements=["Se"], background=False)[0].background is None
    with pytest.raises(PipelineError, match="background must be one of"):
        load_input(simulated, background="yes")
    # element maps given as maps: a subset keeps the matching background
    sub, _, _ = load_input(model, elements=["Zn"])
    np.testing.assert_array_equal(sub.background, model.background[1:2])
    np.testing.assert_array_equal(sub.data, model.data[1:2])
    assert load_input(model, background="none")[0].background is None
    np.testing.assert_allclose(load_input(model, background="subtract")[0].data, model.subtract_background().data)


def test_cli_maps_background_options(simulated, tmp_path, capsys):
    from exspy.signals import EDSTEMSpectrum

    from hyperspy_edxtomo.cli import main

    # one spectrum image per tilt, as exspy saves them (what 'edxtomo maps' reads, like vendor files)
    files = []
    for i, tilt in enumerate(TILTS):
        view = EDSTEMSpectrum(simulated.data[i], metadata=simulated.metadata.as_dictionary())
        view.metadata.Signal.signal_type = "EDS_TEM"
        view.axes_manager.signal_axes[0].scale = simulated.axes_manager.signal_axes[0].scale
        view.axes_manager.signal_axes[0].units = "keV"
        files.append(tmp_path / f"view_{i}.hspy")
        view.save(files[-1])
    base = ["--quiet", "maps", *map(str, files), "--tilts", *map(str, TILTS), "--elements", "Se", "Zn"]
    assert main(base + ["--out", str(tmp_path / "model")]) == 0
    model = hs.load(tmp_path / "model" / "element_maps.hspy")
    assert model.background is not None and np.all(model.data == np.round(model.data))
    assert main(base + ["--subtract-background", "--out", str(tmp_path / "sub")]) == 0
    sub = hs.load(tmp_path / "sub" / "element_maps.hspy")
    assert sub.background is None
    np.testing.assert_allclose(sub.data, model.subtract_background().data, atol=1e-3)
    assert main(base + ["--no-background", "--out", str(tmp_path / "none")]) == 0
    none = hs.load(tmp_path / "none" / "element_maps.hspy")
    assert none.background is None
    np.testing.assert_array_equal(none.data, model.data)
    with pytest.raises(SystemExit):
        main(base + ["--no-background", "--subtract-background", "--out", str(tmp_path / "x")])
    assert "not allowed with argument" in capsys.readouterr().err
