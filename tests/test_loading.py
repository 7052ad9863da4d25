"""load_tilt_series on the real vendor files of ../shared/data/vendor.

None of the vendor files is a tilt series: each is copied three times and
given explicit tilts, which exercises the real RosettaSciIO readers, the
choice of signals in multi-signal files and the stacking.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
VENDOR = DATA / "vendor"

pytestmark = [
    pytest.mark.skipif(
        not VENDOR.is_dir(),
        reason=f"real vendor files absent: {VENDOR.resolve()} (../shared/data beside the checkout)",
    ),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

hs = pytest.importorskip("hyperspy.api")

from hyperspy_edxtomo import EDXTiltSeries, LazyEDXTiltSeries, load_tilt_series  # noqa: E402
from hyperspy_edxtomo.base.provenance import get_history  # noqa: E402

EMI = "16x16-diffraction_imagel_5x5x256x256_EDS"

# kind: (vendor files, scan (y, x), channels, energy units, reference image title or None)
CASES = {
    "bcf_tem": (["test_TEM.bcf"], (64, 64), 2048, "keV", "HAADF"),
    "bcf_sem": (["bcf_v2_50x50px.bcf"], (50, 50), 2048, "keV", "Ch 1"),
    "emd": (["Test_SI_16x16_215_kx.emd"], (16, 16), 4096, "keV", "HAADF"),
    "emi": ([f"{EMI}.emi", f"{EMI}_1.ser"], (5, 5), 4000, "eV", None),
}
KINDS = list(CASES)
TILTS = [20, -20, 0]  # for copies a, b, c: deliberately unsorted
ORDER = [1, 2, 0]  # the copies in ascending tilt order: b (-20), c (0), a (20)


def _copy(kind, folder, stem):
    """Copy the vendor file(s) of ``kind`` into ``folder`` as ``stem``; return the path to load."""
    files = CASES[kind][0]
    main = folder / (stem + Path(files[0]).suffix)
    shutil.copy(VENDOR / files[0], main)
    if kind == "emi":  # TIA: foo.emi reads foo_1.ser
        shutil.copy(VENDOR / files[1], folder / f"{stem}_1.ser")
    return main


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """kind -> three copies (a, b, c) of the vendor file, each in its own folder per kind."""
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(kind)
        out[kind] = [_copy(kind, folder, f"view_{c}") for c in "abc"]
    return out


@pytest.fixture(scope="module")
def loaded(copies):
    """Load each kind once per laziness (tilts unsorted), shared by the tests."""
    cache = {}

    def get(kind, lazy=False):
        if (kind, lazy) not in cache:
            cache[kind, lazy] = load_tilt_series(copies[kind], tilts=TILTS, lazy=lazy)
        return cache[kind, lazy]

    return get


@pytest.fixture(scope="module")
def tem_si():
    """The EDX spectrum image of test_TEM.bcf, as the reader gives it."""
    return [s for s in hs.load(VENDOR / "test_TEM.bcf") if s.axes_manager.signal_dimension == 1][0]


def _reference(kind):
    """Spectrum image and reference image of the vendor file, read directly."""
    signals = hs.load(VENDOR / CASES[kind][0][0])
    signals = signals if isinstance(signals, list) else [signals]
    si = max(
        (s for s in signals if s.axes_manager.signal_dimension == 1 and s.axes_manager.navigation_dimension == 2),
        key=lambda s: s.axes_manager.navigation_size,
    )
    scan = si.data.shape[:2]
    title = CASES[kind][4]
    images = [
        s
        for s in signals
        if s.axes_manager.signal_dimension == 2 and s.metadata.General.title == title and s.data.shape == scan
    ]
    return si, (images[0] if images else None)


# -- the vendor files ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_vendor_files_load_as_tilt_series(kind, copies, loaded):
    _, (ny, nx), channels, units, image_title = CASES[kind]
    s = loaded(kind)
    si, image = _reference(kind)

    assert type(s) is EDXTiltSeries
    assert s.metadata.Signal.signal_type == "EDX_tilt_series"
    np.testing.assert_array_equal(s.tilts, [-20.0, 0.0, 20.0])
    assert s.axes_manager.navigation_shape == (nx, ny, 3)
    assert s.axes_manager.signal_shape == (channels,)
    assert s.data.shape == (3, ny, nx, channels)
    assert [a.name for a in s.axes_manager.navigation_axes] == ["x", "y", "tilt"]
    energy = s.axes_manager.signal_axes[0]
    assert energy.units == units
    assert energy.scale == pytest.approx(si.axes_manager.signal_axes[0].scale)
    assert energy.offset == pytest.approx(si.axes_manager.signal_axes[0].offset)
    # the spatial axes keep the reader's calibration
    for name, reader_axis in zip(("y", "x"), si.axes_manager._axes[:2]):
        assert s.axes_manager[name].scale == pytest.approx(reader_axis.scale)
        assert s.axes_manager[name].units == reader_axis.units
    for i in range(3):
        np.testing.assert_array_equal(s.data[i], si.data)

    # files in tilt order
    expected = [os.path.abspath(copies[kind][i]) for i in ORDER]
    assert list(s.metadata.Tomography.source_files) == expected
    step = get_history(s)[-1]
    assert step["step"] == "load" and step["method"] == "load_tilt_series"
    assert step["parameters"]["files"] == expected
    assert list(step["parameters"]["tilts"]) == [-20.0, 0.0, 20.0]

    refs = s.reference_images
    if image_title is None:
        assert refs is None
    else:
        assert refs.data.shape == (3, ny, nx)
        np.testing.assert_array_equal(refs.axes_manager["tilt"].axis, [-20.0, 0.0, 20.0])
        assert image_title in refs.metadata.General.title
        for i in range(3):
            np.testing.assert_array_equal(refs.data[i], image.data)


def test_metadata_of_first_file(loaded):
    s = loaded("bcf_tem")
    assert s.metadata.Sample.elements == ["Cu", "O", "Pd", "Ti"]
    assert s.metadata.Acquisition_instrument.TEM.beam_energy == pytest.approx(200.0)
    sem = loaded("bcf_sem")  # SEM metadata is moved to TEM for the STEM class
    assert sem.metadata.Acquisition_instrument.TEM.beam_energy == pytest.approx(20.0)
    assert not sem.metadata.has_item("Acquisition_instrument.SEM")
    emd = loaded("emd")
    assert emd.metadata.Sample.elements == ["C", "O", "Ca", "Cu"]


def test_glob_pattern_and_sorted_tilts(copies, loaded):
    folder = copies["bcf_tem"][0].parent
    s = load_tilt_series(str(folder / "view_*.bcf"), tilts=[-20, 0, 20])
    np.testing.assert_array_equal(s.tilts, [-20.0, 0.0, 20.0])
    assert list(s.metadata.Tomography.source_files) == [os.path.abspath(p) for p in copies["bcf_tem"]]
    np.testing.assert_array_equal(s.data, loaded("bcf_tem").data)


def test_glob_reads_tia_pair_once(copies):
    folder = copies["emi"][0].parent
    s = load_tilt_series(folder / "view_*", tilts=[-20, 0, 20])  # matches .emi and _1.ser
    assert s.axes_manager.navigation_shape == (5, 5, 3)


def test_element_maps_of_bcf_series(loaded):
    s = loaded("bcf_tem")
    maps = s.get_element_maps()  # elements from the file's metadata
    assert maps.elements == ["Cu", "O", "Pd", "Ti"]
    assert maps.data.shape == (4, 3, 64, 64)
    np.testing.assert_array_equal(maps.tilts, [-20.0, 0.0, 20.0])
    # identical copies give identical maps, and there are counts
    np.testing.assert_allclose(maps.data[:, 0], maps.data[:, 2])
    assert np.all(maps.data.sum(axis=(1, 2, 3)) > 0)


@pytest.mark.parametrize("kind", KINDS)
def test_lazy_equals_eager(kind, loaded):
    eager = loaded(kind)
    lazy = loaded(kind, lazy=True)
    assert type(lazy) is LazyEDXTiltSeries
    assert hasattr(lazy.data, "dask")
    assert lazy.data.shape == eager.data.shape
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)
    np.testing.assert_array_equal(lazy.tilts, eager.tilts)
    if eager.reference_images is not None:
        np.testing.assert_array_equal(lazy.reference_images.data, eager.reference_images.data)


@pytest.mark.parametrize("kind", ["bcf_tem", "emi"])
def test_save_and_hs_load_round_trip(kind, loaded, tmp_path):
    s = loaded(kind)
    fname = tmp_path / "series.hspy"
    s.save(fname)
    back = hs.load(fname)
    assert type(back) is EDXTiltSeries
    np.testing.assert_array_equal(back.tilts, s.tilts)
    np.testing.assert_array_equal(back.data, s.data)
    assert list(back.metadata.Tomography.source_files) == list(s.metadata.Tomography.source_files)
    assert get_history(back)[-1]["method"] == "load_tilt_series"
    if s.reference_images is not None:
        np.testing.assert_array_equal(back.reference_images.data, s.reference_images.data)
    assert type(hs.load(fname, lazy=True)) is LazyEDXTiltSeries


def test_same_file_several_times(copies):
    path = copies["emi"][0]
    s = load_tilt_series([path, path, path], tilts=[10, -10, 0])
    np.testing.assert_array_equal(s.tilts, [-10.0, 0.0, 10.0])
    assert s.data.shape == (3, 5, 5, 4000)


def test_tilts_read_from_metadata(tem_si, tmp_path):
    paths = []
    for i, (name, tilt) in enumerate([("a", 30.0), ("b", -30.0), ("c", 0.0)]):
        view = tem_si.inav[:8, :8].deepcopy()
        view.data[0, 0, 0] = i  # marks the view
        view.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha", tilt)
        paths.append(tmp_path / f"{name}.hspy")
        view.save(paths[-1])
    s = load_tilt_series(tmp_path / "*.hspy")
    np.testing.assert_array_equal(s.tilts, [-30.0, 0.0, 30.0])
    assert [Path(p).name for p in s.metadata.Tomography.source_files] == ["b.hspy", "c.hspy", "a.hspy"]
    assert s.data[:, 0, 0, 0].tolist() == [1, 2, 0]
    assert s.reference_images is None  # .hspy spectrum images carry no image
    # tilts= overrides the metadata
    s2 = load_tilt_series(paths, tilts=[1, 2, 3])
    np.testing.assert_array_equal(s2.tilts, [1.0, 2.0, 3.0])
    assert list(get_history(s2)[-1]["parameters"]["file_tilts"]) == [30.0, -30.0, 0.0]


def test_zspy_folders(tem_si, tmp_path):
    pytest.importorskip("zarr")
    for name, tilt in (("m.zspy", 15.0), ("n.zspy", -15.0)):
        view = tem_si.inav[:4, :4].deepcopy()
        view.metadata.set_item("Acquisition_instrument.TEM.Stage.tilt_alpha", tilt)
        view.save(tmp_path / name)
    s = load_tilt_series(str(tmp_path / "*.zspy"), lazy=True)
    assert type(s) is LazyEDXTiltSeries
    np.testing.assert_array_equal(s.tilts, [-15.0, 15.0])
    assert [Path(p).name for p in s.metadata.Tomography.source_files] == ["n.zspy", "m.zspy"]


def test_files_without_image_store_no_reference_images(copies, tem_si, tmp_path):
    path = tmp_path / "no_image.hspy"
    tem_si.save(path)
    with pytest.warns(UserWarning, match="no_image.hspy"):
        s = load_tilt_series([copies["bcf_tem"][0], path], tilts=[0, 10])
    assert s.reference_images is None


def test_progressbar(copies, capsys):
    load_tilt_series(copies["emi"], tilts=[0, 1, 2], show_progressbar=True)
    assert "Reading tilt series" in capsys.readouterr().err


# -- errors ---------------------------------------------------------------------------------
def test_missing_file(copies, tmp_path):
    missing = tmp_path / "nowhere.bcf"
    with pytest.raises(FileNotFoundError, match="nowhere.bcf"):
        load_tilt_series([copies["bcf_tem"][0], missing], tilts=[0, 1])
    with pytest.raises(FileNotFoundError, match="nowhere.bcf"):
        load_tilt_series(missing, tilts=[0])


def test_glob_matching_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing_\*\.emd"):
        load_tilt_series(str(tmp_path / "nothing_*.emd"))


def test_empty_input_and_directory(tmp_path):
    with pytest.raises(ValueError, match="No files"):
        load_tilt_series([])
    with pytest.raises(OSError, match="is a directory"):
        load_tilt_series(tmp_path)


@pytest.mark.parametrize(
    "name, content",
    [("empty.bcf", b""), ("garbage.bcf", b"not a bruker file" * 50), ("garbage.hspy", b"\x00\x01junk" * 100)],
)
def test_empty_or_corrupt_file(copies, tmp_path, name, content):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(OSError, match=name):
        load_tilt_series([copies["bcf_tem"][0], bad], tilts=[0, 10])


def test_image_only_file_is_not_edx(tmp_path):
    path = tmp_path / "image_only.hspy"
    hs.signals.Signal2D(np.zeros((8, 8))).save(path)
    with pytest.raises(ValueError, match=r"image_only\.hspy holds no EDX data"):
        load_tilt_series(path, tilts=[0])


def test_sum_spectrum_is_not_a_spectrum_image(tem_si, tmp_path):
    path = tmp_path / "sum_spectrum.hspy"
    tem_si.sum(axis=(0, 1)).save(path)
    with pytest.raises(ValueError, match=r"sum_spectrum\.hspy holds EDX spectra but no spectrum image"):
        load_tilt_series(path, tilts=[0])


def test_scan_sizes_differ(copies):
    tem, sem = copies["bcf_tem"][0], copies["bcf_sem"][0]
    with pytest.raises(ValueError, match="Scan sizes") as info:
        load_tilt_series([tem, sem], tilts=[0, 10])
    assert str(tem) in str(info.value) and str(sem) in str(info.value)
    assert "64x64" in str(info.value) and "50x50" in str(info.value)


def test_energy_axes_differ_bcf(copies, tem_si, tmp_path):
    shifted = tem_si.deepcopy()
    shifted.axes_manager.signal_axes[0].offset += 0.05
    path = tmp_path / "shifted.hspy"
    shifted.save(path)
    with pytest.raises(ValueError, match="Energy axes differ") as info:
        load_tilt_series([copies["bcf_tem"][0], path], tilts=[0, 10])
    msg = str(info.value)
    assert "shifted.hspy" in msg and str(copies["bcf_tem"][0]) in msg
    assert "cutoff_at_kV" in msg and "downsample" in msg


def test_energy_axes_differ_emd(copies, tmp_path):
    si, _ = _reference("emd")
    shorter = si.isig[:2048]
    path = tmp_path / "cropped.hspy"
    shorter.save(path)
    with pytest.raises(ValueError, match="Energy axes differ") as info:
        load_tilt_series([copies["emd"][0], path], tilts=[0, 10])
    msg = str(info.value)
    assert "cropped.hspy" in msg
    assert "rebin_energy" in msg and "SI_dtype" in msg and "sum_frames" in msg


def test_wrong_number_of_tilts(copies):
    with pytest.raises(ValueError, match="2 tilts given for 3 files") as info:
        load_tilt_series(copies["bcf_tem"], tilts=[0, 10])
    assert "view_a.bcf" in str(info.value)


@pytest.mark.parametrize(
    "tilts, match",
    [([0, 0, 10], "Repeated tilt angles"), ([-200, 0, 200], "within"), ([0, np.nan, 10], "NaN")],
)
def test_bad_tilts_given(copies, tilts, match):
    with pytest.raises(ValueError, match=match) as info:
        load_tilt_series(copies["emi"], tilts=tilts)
    assert "view_a.emi" in str(info.value)


def test_repeated_stage_tilts_of_velox_copies(copies):
    # the Velox file reads tilt_alpha = 0.005 (degrees): the same value in every copy
    with pytest.raises(ValueError, match="Repeated stage tilts") as info:
        load_tilt_series(copies["emd"])
    msg = str(info.value)
    assert "0.005" in msg and "tilts=" in msg and "view_a.emd" in msg


def test_all_zero_stage_tilts(copies):
    with pytest.raises(ValueError, match="stage tilt 0.0") as info:
        load_tilt_series(copies["bcf_tem"])
    assert "tilts=" in str(info.value) and "view_b.bcf" in str(info.value)


def test_missing_stage_tilt(tmp_path):
    # a plain Signal1D with an energy axis in eV counts as EDX, but has no stage tilt
    s = hs.signals.Signal1D(np.ones((4, 4, 64), dtype=np.uint16))
    s.axes_manager.signal_axes[0].units = "eV"
    s.axes_manager.signal_axes[0].scale = 10.0
    paths = []
    for name in ("p", "q"):
        paths.append(tmp_path / f"{name}.hspy")
        s.save(paths[-1])
    with pytest.raises(ValueError, match="No stage tilt") as info:
        load_tilt_series(paths)
    assert "p.hspy" in str(info.value) and "tilts=" in str(info.value)
    # with tilts it loads
    series = load_tilt_series(paths, tilts=[-5, 5])
    assert series.axes_manager.signal_axes[0].units == "eV"
