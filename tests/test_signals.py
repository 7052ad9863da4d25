"""The three signal classes: registration, layout, slicing, round trips."""

import hyperspy.api as hs
import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo.signals import (
    EDXTiltSeries,
    ElementMapTiltSeries,
    ElementVolume,
    LazyEDXTiltSeries,
    LazyElementMapTiltSeries,
    LazyElementVolume,
)

TILTS = np.linspace(-60, 60, 13)
ELEMENTS = ["Se", "S", "Zn"]


def _maps(rng, lazy=False, tilts=TILTS):
    counts = rng.poisson(0.05, (3, len(tilts), 16, 12)).astype(np.uint8)
    if lazy:
        import dask.array as da

        counts = da.from_array(counts, chunks=(1, 4, 16, 12))
    return het.element_maps_from_array(counts, tilts, ELEMENTS, pixel_size_nm=0.189)


def _series(rng, lazy=False):
    data = rng.poisson(0.02, (3, 6, 5, 512)).astype(np.uint16)
    if lazy:
        import dask.array as da

        data = da.from_array(data)
    md = {"Acquisition_instrument": {"TEM": {"beam_energy": 200.0}}}
    return het.tilt_series_from_array(data, [-40, 0, 40], 0.04, pixel_size_nm=0.5, metadata=md)


def test_signal_types_are_registered():
    from hyperspy.extensions import ALL_EXTENSIONS

    known = {c["signal_type"] for c in ALL_EXTENSIONS["signals"].values()}
    assert {"EDX_tilt_series", "EDX_element_maps", "EDX_volume"} <= known


@pytest.mark.parametrize("lazy", [False, True])
def test_element_maps_layout(rng, lazy):
    maps = _maps(rng, lazy)
    assert isinstance(maps, LazyElementMapTiltSeries if lazy else ElementMapTiltSeries)
    assert maps.data.shape == (3, 13, 16, 12)
    assert maps.elements == ELEMENTS
    np.testing.assert_allclose(maps.tilts, TILTS)
    assert maps.pixel_size == (pytest.approx(0.189), "nm")
    assert [a.name for a in maps.axes_manager.navigation_axes] == ["tilt", "element"]
    assert maps.tilt_axis.units == "deg"


def test_element_extraction_keeps_names_and_data(rng):
    maps = _maps(rng)
    zn = maps.element("Zn")
    assert zn.elements == ["Zn"]
    np.testing.assert_array_equal(zn.data[0], maps.data[2])
    # integer indexing never drops the element axis
    s = maps.inav[:, 1]
    assert s.data.shape == (1, 13, 16, 12) and s.elements == ["S"]
    sub = maps.inav[2:5, 0:2]
    assert sub.elements == ["Se", "S"]
    np.testing.assert_allclose(sub.tilts, TILTS[2:5])
    with pytest.raises(ValueError, match="Unknown element 'Cd'.*Se"):
        maps.element("Cd")


def test_non_uniform_tilts_and_sorting(rng):
    tilts = np.array([30.0, -60.0, -45.0, 0.0, 12.5])
    counts = np.arange(3 * 5 * 4 * 4).reshape(3, 5, 4, 4)
    maps = het.element_maps_from_array(counts, tilts, ELEMENTS)
    order = np.argsort(tilts)
    np.testing.assert_allclose(maps.tilts, tilts[order])
    np.testing.assert_array_equal(maps.data, counts[:, order])
    assert maps.pixel_size == (1.0, "px")


def test_tilt_axis_along_columns_is_transposed(rng):
    counts = rng.poisson(1.0, (3, 13, 8, 5))
    maps = het.element_maps_from_array(counts, TILTS, ELEMENTS, tilt_axis="columns")
    np.testing.assert_array_equal(maps.data, counts.transpose(0, 1, 3, 2))
    with pytest.raises(ValueError, match="tilt_axis must be one of"):
        het.element_maps_from_array(counts, TILTS, ELEMENTS, tilt_axis="diagonal")


@pytest.mark.parametrize(
    "counts, tilts, elements, match",
    [
        (np.zeros((3, 13, 8)), TILTS, ELEMENTS, "shaped \\(element, tilt, row, column\\)"),
        (np.zeros((2, 13, 8, 8)), TILTS, ELEMENTS, "3 element names .* for 2 element maps"),
        (np.zeros((3, 12, 8, 8)), TILTS, ELEMENTS, "13 tilts given for 12 views"),
        (np.zeros((3, 13, 8, 8)), TILTS, ["Se", "S", "Xx"], "Unknown element.*Xx"),
        (np.zeros((3, 13, 8, 8)), np.zeros(13), ELEMENTS, "Repeated tilt angles"),
        (np.full((3, 13, 8, 8), np.nan), TILTS, ELEMENTS, "NaN"),
        (-np.ones((3, 13, 8, 8)), TILTS, ELEMENTS, "negative"),
        (np.zeros((3, 0, 8, 8)), TILTS[:0], ELEMENTS, "empty"),
        (np.zeros((3, 13, 8, 8)), np.r_[TILTS[:-1], np.nan], ELEMENTS, "NaN"),
    ],
)
def test_element_maps_from_array_rejects_bad_input(counts, tilts, elements, match):
    with pytest.raises(ValueError, match=match):
        het.element_maps_from_array(counts, tilts, elements)


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
@pytest.mark.parametrize("lazy", [False, True])
def test_element_maps_round_trip(rng, tmp_path, ext, lazy):
    maps = _maps(rng, lazy)
    path = tmp_path / f"maps.{ext}"
    maps.save(path)
    back = hs.load(path, lazy=lazy)
    assert type(back) is type(maps)
    assert back.elements == ELEMENTS
    np.testing.assert_allclose(back.tilts, TILTS)
    assert back.pixel_size == maps.pixel_size
    assert back.history[-1]["method"] == "from_array"
    np.testing.assert_array_equal(np.asarray(back.data), np.asarray(maps.data))


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_tilt_series_keeps_class_through_save_and_as_lazy(rng, tmp_path, ext):
    s = _series(rng)
    assert isinstance(s, EDXTiltSeries)
    assert s.metadata.Signal.signal_type == "EDX_tilt_series"
    lazy = s.as_lazy()
    assert isinstance(lazy, LazyEDXTiltSeries)
    assert lazy.metadata.Signal.signal_type == "EDX_tilt_series"
    s.save(tmp_path / f"s.{ext}")
    back = hs.load(tmp_path / f"s.{ext}")
    assert type(back) is EDXTiltSeries
    np.testing.assert_allclose(back.tilts, [-40, 0, 40])
    assert type(back.as_lazy()) is LazyEDXTiltSeries
    lazy.compute()  # in place: back to the eager class
    assert type(lazy) is EDXTiltSeries


def test_exspy_machinery_works_on_tilt_series(rng):
    s = _series(rng)
    s.add_elements(["Zn", "Se"])
    s.add_lines()
    assert s.metadata.Sample.xray_lines == ["Se_Ka", "Zn_Ka"]
    # the two exspy paths that test signal_type == "EDS_TEM"
    energy, fwhm = s._get_line_energy("Zn_Ka", FWHM_MnKa="auto")
    assert energy == pytest.approx(8.63, abs=0.01) and 0.1 < fwhm < 0.3
    # the take-off angle agrees with exspy's own class on the same metadata
    from exspy.signals import EDSTEMSpectrum

    plain = EDSTEMSpectrum(s.data[0], metadata=s.metadata.as_dictionary())
    assert s.get_take_off_angle() == pytest.approx(plain.get_take_off_angle())
    bw = s.estimate_background_windows()
    assert bw.shape == (2, 4)
    assert s.metadata.Signal.signal_type == "EDX_tilt_series"


def test_tilt_slicing_slices_reference_images(rng):
    s = _series(rng)
    ref = hs.signals.Signal2D(rng.random((3, 5, 6)))
    s.metadata.set_item("Tomography.reference_images", ref)
    sub = s.inav[:, :, 1:]
    np.testing.assert_allclose(sub.tilts, [0, 40])
    assert sub.reference_images.axes_manager.navigation_size == 2
    np.testing.assert_array_equal(sub.reference_images.data, ref.data[1:])


def test_volume_class(rng, tmp_path):
    data = rng.random((2, 6, 7, 8)).astype(np.float32)
    vol = het.volume_from_array(data, ["S", "Zn"], voxel_size_nm=0.2, history=[{"step": "x", "method": "sirt"}])
    assert isinstance(vol, ElementVolume)
    assert [a.name for a in vol.axes_manager.signal_axes] == ["x", "y"]
    assert [a.name for a in vol.axes_manager.navigation_axes] == ["z", "element"]
    assert vol.voxel_size == (pytest.approx(0.2), "nm")
    assert vol.axes_manager["z"].units == "nm"
    vol.save(tmp_path / "v.hspy")
    back = hs.load(tmp_path / "v.hspy")
    assert type(back) is ElementVolume
    assert back.elements == ["S", "Zn"] and back.history[0]["method"] == "sirt"
    assert type(back.as_lazy()) is LazyElementVolume
    np.testing.assert_array_equal(back.element("Zn").data[0], data[1])
    with pytest.raises(ValueError, match="shaped \\(element, z, y, x\\)"):
        het.volume_from_array(data[0], ["S"])


@pytest.mark.parametrize("lazy", [False, True])
def test_stack_tilts_joins_views_angles_background_and_haadf(lazy):
    """HyperSpy's own stack fails on a non-uniform tilt axis (pieces of other lengths); stack_tilts does not."""
    import hyperspy.api as hs

    from hyperspy_edxtomo import datasets

    maps = datasets.simulate_scene("chain", size=24, tilts=np.array([-60, -45, -30, -10, 0, 10, 30, 45, 60.]),
                                   background=0.5, haadf_snr=10, seed=0)
    maps = maps.as_lazy() if lazy else maps
    assert maps.background is not None and maps.reference_images is not None
    a, b = maps.inav[:3], maps.inav[3:]
    with pytest.raises(ValueError):
        hs.stack([a, b], axis="tilt")
    s = het.stack_tilts([a, b])
    assert type(s) is type(maps) and s._lazy == lazy
    np.testing.assert_array_equal(s.tilts, maps.tilts)
    np.testing.assert_array_equal(s.to_numpy(), maps.to_numpy())
    np.testing.assert_array_equal(np.asarray(s.background), np.asarray(maps.background))
    np.testing.assert_array_equal(np.asarray(s.reference_images.data), np.asarray(maps.reference_images.data))
    assert s.elements == maps.elements and s.history[-1]["method"] == "stack_tilts"
    # pieces in another order give the same series (views sorted by angle); repeated angles, other elements
    # or sizes are refused
    np.testing.assert_array_equal(het.stack_tilts([b, a]).to_numpy(), maps.to_numpy())
    with pytest.raises(ValueError, match="Repeated tilt"):
        het.stack_tilts([maps.inav[:3], maps.inav[2:]])
    with pytest.raises(ValueError, match="elements"):
        het.stack_tilts([a.element(a.elements[0]), b])
    with pytest.raises(ValueError, match="images must match"):
        het.stack_tilts([a, b.isig[:8, :]])
    bare = b.deepcopy()
    bare.metadata.Tomography.__delattr__("background")
    with pytest.raises(ValueError, match="background"):
        het.stack_tilts([a, bare])


def test_element_of_a_spectrum_series_is_refused_not_a_tilt():
    from hyperspy_edxtomo import datasets

    s = datasets.quantum_dot_tilt_series(size=16, seed=0)
    with pytest.raises(ValueError, match="no element axis.*get_element_maps"):
        s.element("P")


def test_signal_method_refuses_to_shadow_a_method():
    """A stage function named like a HyperSpy method (or another stage's) would replace it silently."""
    import pytest

    from hyperspy_edxtomo.signals import ElementVolume
    from hyperspy_edxtomo.signals.methods import signal_method

    class Volume(ElementVolume):
        pass

    def plot(volume):
        return None

    with pytest.raises(TypeError, match=r"Volume\.plot exists already"):
        signal_method(Volume)(plot)
    assert Volume.plot is ElementVolume.plot
    from hyperspy_edxtomo.reconstruction.api import reconstruct

    signal_method(Volume, name="reconstruct_again")(reconstruct)  # a new name is fine
    assert Volume.reconstruct_again is reconstruct
