"""Damaged and untrusted input files: load_tilt_series fails with an error naming the file.

Damaged copies of the real vendor files of ../shared/data/vendor are written
into tmp_path (truncated, bytes flipped) and read with the real RosettaSciIO
readers. Some of them crash the reader (segmentation fault, bus error): the
vendor files are read in a child process (hyperspy_edxtomo.io.vendor_read), so
the crash must come back as an OSError, never end the test process.
"""

import os
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
VENDOR = DATA / "vendor"

needs_vendor = pytest.mark.skipif(
    not VENDOR.is_dir(), reason=f"real vendor files absent: {VENDOR.resolve()} (../shared/data beside the checkout)"
)

hs = pytest.importorskip("hyperspy.api")

from hyperspy_edxtomo import load_tilt_series  # noqa: E402
from hyperspy_edxtomo.io import vendor_read  # noqa: E402
from hyperspy_edxtomo.io.loading import check_zarr_codecs  # noqa: E402

TEM_BCF = "test_TEM.bcf"  # 332 kB; its spectrum image holds 26005 counts
EMD = "Test_SI_16x16_215_kx.emd"


def _damaged(tmp_path, name, fraction=1.0, flips=0, seed=0):
    """A copy of test_TEM.bcf cut to ``fraction`` of its size and/or with ``flips`` bytes inverted
    (in the data part, after the 150 kB header)."""
    raw = bytearray((VENDOR / TEM_BCF).read_bytes())
    raw = raw[: int(len(raw) * fraction)]
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(150_000, len(raw)), flips, replace=False):
        raw[i] ^= 0xFF
    path = tmp_path / name
    path.write_bytes(bytes(raw))
    return path


def _good(tmp_path, n=2):
    import shutil

    paths = []
    for i in range(n):
        paths.append(tmp_path / f"good_{i}.bcf")
        shutil.copy(VENDOR / TEM_BCF, paths[-1])
    return paths


# -- damaged vendor files ---------------------------------------------------------------------
@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.65, 0.7, 0.9])
def test_truncated_bcf_is_an_error_naming_the_file(tmp_path, fraction, lazy):
    # with rsciio 0.15 these cuts give, in turn: a parse error, an all-zero spectrum image, a
    # segmentation fault (0.65, 0.7 eager; 0.9 lazy) and a StopIteration; all must name the file
    bad = _damaged(tmp_path, f"cut_{int(fraction * 100)}.bcf", fraction=fraction)
    with pytest.raises((OSError, ValueError)) as info:
        load_tilt_series([*_good(tmp_path), bad], tilts=[0, 10, 20], lazy=lazy)
    assert str(bad) in str(info.value)


TIA = "16x16-diffraction_imagel_5x5x256x256_EDS.emi"  # with its _1.ser: a 5 x 5 spectrum image of 23 counts


def _tia_copy(tmp_path, name, flips=0, seed=0, spike=None):
    """A copy of the TIA pair; ``flips`` bytes of the .ser inverted after its first 20 % (as the reliability
    benchmark does), or ``spike=(offset, value)``: one uint32 count of the data overwritten."""
    import random
    import shutil

    emi = tmp_path / f"{name}.emi"
    shutil.copy(VENDOR / TIA, emi)
    raw = bytearray((VENDOR / TIA.replace(".emi", "_1.ser")).read_bytes())
    rng = random.Random(seed)
    for i in rng.sample(range(int(len(raw) * 0.2), len(raw)), flips):
        raw[i] ^= 0xFF
    if spike is not None:
        offset, value = spike
        raw[offset : offset + 4] = int(value).to_bytes(4, "little")
    (tmp_path / f"{name}_1.ser").write_bytes(bytes(raw))
    return emi


@needs_vendor
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_byte_flipped_tia_is_refused_naming_the_file(tmp_path, seed, lazy):
    """TIA has no checksum: 16 flipped bytes read as one-channel spikes of up to 4e9 counts. They are
    refused, naming the file, because no X-ray line is one channel wide."""
    good = [_tia_copy(tmp_path, f"good{i}") for i in range(2)]
    bad = _tia_copy(tmp_path, "flipped", flips=16, seed=seed)
    with pytest.raises(OSError, match="single-channel spike") as info:
        load_tilt_series([*good, bad], tilts=[0, 10, 20], lazy=lazy)
    assert str(bad) in str(info.value) and "not X-rays" in str(info.value)


@needs_vendor
def test_one_spike_among_real_counts_is_a_warning(tmp_path):
    """A spike holding a minority of the counts is warned about (the maps may not be touched), not refused."""
    from hyperspy_edxtomo.io.damage import single_channel_spikes

    s = next(x for x in hs.load(VENDOR / TEM_BCF) if x.axes_manager.signal_dimension == 1)  # 64 x 64 x 2048
    spectrum = s.data[10, 10]
    channel = next(i for i in range(100, spectrum.size - 1) if spectrum[i - 1 : i + 2].sum() == 0)
    paths = []
    for i in range(3):
        if i == 2:
            s.data[10, 10, channel] = 200  # one damaged byte of a uint8 count
        paths.append(tmp_path / f"view{i}.hspy")
        s.save(paths[-1])
    with pytest.warns(UserWarning, match="single-channel spike") as record:
        series = load_tilt_series(paths, tilts=[0, 10, 20])
    assert any("view2.hspy" in str(w.message) for w in record)
    assert not any("view0.hspy" in str(w.message) or "view1.hspy" in str(w.message) for w in record)
    assert single_channel_spikes(series.data[2]) == (1, 200.0, 200.0)


@needs_vendor
@pytest.mark.parametrize("name", [TIA, EMD, TEM_BCF, "bcf_v2_50x50px.bcf"])
def test_intact_vendor_files_have_no_spikes(name):
    """No false alarm on the real files (their lines spread over channels as X-rays do); the summed
    spectra of exspy's real EDS data neither."""
    import exspy

    from hyperspy_edxtomo.io.damage import single_channel_spikes

    loaded = hs.load(VENDOR / name)
    spectra = [x for x in (loaded if isinstance(loaded, list) else [loaded]) if x.axes_manager.signal_dimension == 1]
    assert spectra and all(single_channel_spikes(x.data) == (0, 0.0, 0.0) for x in spectra)
    for real in (exspy.data.EDS_SEM_TM002(), exspy.data.EDS_TEM_FePt_nanoparticles()):
        assert real.data.max() > 1000 and single_channel_spikes(real.data) == (0, 0.0, 0.0)


@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("lazy", [False, True])
def test_byte_flipped_bcf_is_an_error_naming_the_file(tmp_path, lazy):
    # 16 inverted bytes in the compressed spectra: a segmentation fault of the reader (rsciio 0.15)
    bad = _damaged(tmp_path, "flipped.bcf", flips=16, seed=1)
    with pytest.raises(OSError) as info:
        load_tilt_series([*_good(tmp_path), bad], tilts=[0, 10, 20], lazy=lazy)
    msg = str(info.value)
    assert str(bad) in msg
    if isinstance(info.value, vendor_read.ReaderCrashError) and os.name == "posix":
        assert "crashed the reader (signal" in msg and "damaged or truncated" in msg


@needs_vendor
@pytest.mark.parametrize("lazy", [False, True])
def test_half_size_bcf_reads_empty_and_is_refused(tmp_path, lazy):
    # the reader fills the missing half with zeros: a spectrum image of 0 counts, no error of its own
    bad = _damaged(tmp_path, "half.bcf", fraction=0.5)
    assert not [s for s in hs.load(bad) if s.axes_manager.signal_dimension == 1][0].data.any()
    with pytest.raises(ValueError, match="empty EDX spectrum image") as info:
        load_tilt_series([*_good(tmp_path), bad], tilts=[0, 10, 20], lazy=lazy)
    assert str(bad) in str(info.value)


@needs_vendor
def test_process_survives_crashes_and_reads_again(tmp_path):
    bad = _damaged(tmp_path, "cut_65.bcf", fraction=0.65)
    for _ in range(2):
        with pytest.raises(OSError, match="cut_65.bcf"):
            load_tilt_series([bad], tilts=[0])
    s = load_tilt_series(_good(tmp_path), tilts=[0, 10])  # a fresh child after the crash
    assert s.data.sum() == 2 * 26005


# -- the child process itself, with a reader that crashes on purpose ---------------------------
CRASHING_READER = '''
import os, signal, sys

def file_reader(filename, lazy=False, how="segv", **kwargs):
    if how == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(3)
    if how == "raise":
        raise KeyError("no such node")
    if how == "hang":
        import time
        time.sleep(3600)
    if how == "print":
        print("a reader that prints to stdout")  # must not corrupt the messages
        import numpy as np
        return [{"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "metadata": {"General": {"title": "t"}},
                 "axes": [], "original_metadata": {}}]
'''


@pytest.fixture
def crashing_reader(tmp_path, monkeypatch):
    """The module name of a reader that crashes, exits, raises or prints, importable by the child."""
    (tmp_path / "crashing_reader_for_tests.py").write_text(CRASHING_READER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    victim = tmp_path / "victim.xyz"
    victim.write_bytes(b"anything")
    return "crashing_reader_for_tests", victim


@pytest.mark.skipif(os.name != "posix", reason="signals end processes on POSIX only")
def test_child_crash_becomes_an_error_naming_file_and_signal(crashing_reader):
    api, victim = crashing_reader
    with vendor_read.ChildReader([(str(victim), api)], lazy=False, reader_options={"how": "segv"}) as child:
        with pytest.raises(vendor_read.ReaderCrashError) as info:
            child.next()
    msg = str(info.value)
    assert f"Reading {victim} crashed the reader (signal {int(signal.SIGSEGV)}, SIGSEGV)" in msg
    assert "damaged or truncated" in msg


def test_a_reader_that_hangs_is_stopped_and_named(crashing_reader):
    import time

    api, victim = crashing_reader
    t0 = time.perf_counter()
    with vendor_read.ChildReader([(str(victim), api)], lazy=False, reader_options={"how": "hang"},
                                 timeout=2) as child:
        with pytest.raises(vendor_read.ReaderCrashError, match=r"Reading .*victim\.xyz took longer than 2 s"):
            child.next()
    assert time.perf_counter() - t0 < 60


def test_child_exit_and_exception_name_the_file(crashing_reader):
    api, victim = crashing_reader
    with vendor_read.ChildReader([(str(victim), api)], lazy=False, reader_options={"how": "exit"}) as child:
        with pytest.raises(vendor_read.ReaderCrashError, match=r"exit code 3\) while reading .*victim\.xyz"):
            child.next()
    with vendor_read.ChildReader([(str(victim), api)], lazy=False, reader_options={"how": "raise"}) as child:
        with pytest.raises(OSError, match=r"Could not read .*victim\.xyz .*KeyError: 'no such node'"):
            child.next()


def test_child_output_and_arrays_come_back(crashing_reader):
    api, victim = crashing_reader
    with vendor_read.ChildReader([(str(victim), api)] * 2, lazy=False, reader_options={"how": "print"}) as child:
        for _ in range(2):
            result = child.next()
            (d,) = result["signals"]
            np.testing.assert_array_equal(d["data"], np.arange(6).reshape(2, 3))
            assert d["data"].flags.writeable  # received into its own memory
            assert result["totals"] == [15.0]


def test_child_results_are_unpickled_with_an_allow_list():
    import io

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo never",))

    buf = io.BytesIO()
    vendor_read._send(buf, ("done", 0, {"signals": [Evil()], "totals": [], "warnings": []}))
    buf.seek(0)
    kind, reason = vendor_read._receive(buf)
    assert kind == "unsafe" and "system" in reason
    buf = io.BytesIO()
    vendor_read._send(buf, ("done", 0, {"signals": [{"data": np.ones(3), "when": None}], "totals": [3.0]}))
    buf.seek(0)
    assert vendor_read._receive(buf)[2]["totals"] == [3.0]


# -- what comes back from the child is what hs.load gives -------------------------------------
def _without_times(d):
    """A metadata dictionary without what differs from one read to the next (time stamps)."""
    d = dict(d)
    general = dict(d.get("General", {}))
    general["FileIO"] = {k: {kk: vv for kk, vv in v.items() if kk != "timestamp"}
                         for k, v in general.get("FileIO", {}).items()}
    d["General"] = general
    tomo = dict(d.get("Tomography", {}))
    tomo.pop("history", None)
    d["Tomography"] = tomo
    return d


@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", [TEM_BCF, EMD, "16x16-diffraction_imagel_5x5x256x256_EDS.emi"])
def test_child_read_equals_in_process_read(name, monkeypatch):
    from hyperspy_edxtomo.io.loading import _Reader

    path = str(VENDOR / name)
    results = {}
    for in_child in (True, False):
        monkeypatch.setattr(vendor_read, "READ_IN_CHILD", in_child)
        with _Reader([path], False, {}) as reader:
            assert (reader.child is not None) is in_child
            view = reader.read(path)
        results[in_child] = (view, load_tilt_series([path], tilts=[0]))
    (v_child, child), (v_here, here) = results[True], results[False]
    # the spectrum image as hs.load gives it: data, class, metadata (the reader's mapping of stage
    # tilt, beam energy ... applied in the child as hs.load does; General.FileIO naming the plugin)
    assert type(v_child["signal"]) is type(v_here["signal"])
    np.testing.assert_array_equal(v_child["signal"].data, v_here["signal"].data)
    np.testing.assert_equal(_without_times(v_child["signal"].metadata.as_dictionary()),
                            _without_times(v_here["signal"].metadata.as_dictionary()))
    np.testing.assert_equal(v_child["signal"].original_metadata.as_dictionary(),
                            v_here["signal"].original_metadata.as_dictionary())
    assert v_child["file_tilt"] == v_here["file_tilt"] and v_child["total"] == v_here["total"] > 0
    # and the series built from it
    assert type(child) is type(here)
    np.testing.assert_array_equal(child.data, here.data)
    np.testing.assert_equal(_without_times(child.metadata.as_dictionary()),
                            _without_times(here.metadata.as_dictionary()))


# -- low counts -------------------------------------------------------------------------------
@needs_vendor
@pytest.mark.parametrize("lazy", [False, True])
def test_low_count_view_warns_naming_the_file(tmp_path, lazy):
    good = _good(tmp_path, 3)
    si = [s for s in hs.load(good[0]) if s.axes_manager.signal_dimension == 1][0]
    low = si.deepcopy()
    # keep each count with probability 1/20, like a file that lost most of its counts
    low.data[:] = np.random.default_rng(0).binomial(si.data, 0.05)
    assert 0 < low.data.sum() * 10 < si.data.sum()
    low_path = tmp_path / "low_counts.hspy"
    low.save(low_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_tilt_series([*good, low_path], tilts=[0, 10, 20, 30], lazy=lazy)
    (low_warning,) = [w for w in caught if "fewer than 1/10" in str(w.message)]
    assert str(low_path) in str(low_warning.message) and str(good[0]) not in str(low_warning.message)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_tilt_series(good, tilts=[0, 10, 20], lazy=lazy)
    assert not [w for w in caught if "fewer than 1/10" in str(w.message)]


def test_empty_hspy_is_refused_too(tmp_path):
    # the generic checks apply to every format (e.g. a JEOL .pts cut short, a saved .hspy)
    s = hs.signals.Signal1D(np.zeros((4, 4, 32), dtype=np.uint16))
    s.axes_manager.signal_axes[0].units = "keV"
    s.set_signal_type("EDS_TEM")
    path = tmp_path / "zeros.hspy"
    s.save(path)
    with pytest.raises(ValueError, match=r"zeros\.hspy holds an empty EDX spectrum image"):
        load_tilt_series([path], tilts=[0])


# -- untrusted .zspy: a pickle codec is refused before anything is decoded --------------------
class _Payload:
    """Unpickling it creates the marker file: code from the file would have run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickle_zspy(tmp_path, name, store="local"):
    """A .zspy saved by HyperSpy, with one more metadata array encoded by numcodecs.Pickle."""
    zarr = pytest.importorskip("zarr")
    numcodecs = pytest.importorskip("numcodecs")
    s = hs.signals.Signal1D(np.ones((4, 4, 32), dtype=np.uint16))
    s.axes_manager.signal_axes[0].units = "keV"
    s.set_signal_type("EDS_TEM")
    folder = tmp_path / (name if store == "local" else "folder.zspy")
    s.save(folder)
    marker = tmp_path / f"{name}.ran"
    meta = zarr.open_group(str(folder), mode="a")["Experiments/__unnamed__/metadata"]
    arr = meta.create_dataset("innocent", shape=(1,), dtype=object, object_codec=numcodecs.Pickle())
    arr[0] = _Payload(marker)
    if store == "local":
        return folder, marker
    import zipfile  # a zip store is the folder's files, zipped with their keys as names

    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for f in folder.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(folder).as_posix())
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("store", ["local", "zip"])
def test_zspy_with_pickle_codec_is_refused_and_runs_nothing(tmp_path, monkeypatch, store):
    numcodecs = pytest.importorskip("numcodecs")
    path, marker = _pickle_zspy(tmp_path, "crafted.zspy", store)
    # as with numcodecs < 0.15.2 (or NUMCODECS_ALLOW_UNSAFE_PICKLE_DECODE=1): pickles are decoded
    monkeypatch.setattr(numcodecs.pickles, "ALLOW_UNSAFE_PICKLE_DECODE", True, raising=False)
    from hyperspy_edxtomo import cli
    from hyperspy_edxtomo.io.loading import load_native
    from hyperspy_edxtomo.workflow.pipeline import load_input

    calls = (lambda: load_tilt_series([path], tilts=[0]), lambda: check_zarr_codecs(path),
             lambda: load_native(path), lambda: load_input(path))  # a saved series, maps or volume
    for call in calls:
        with pytest.raises(OSError, match=r"crafted\.zspy is refused") as info:
            call()
        assert "Experiments/__unnamed__/metadata/innocent" in str(info.value)
        assert "'pickle' codec" in str(info.value)
        assert not marker.exists()
    for command in ("reconstruct", "analyse"):  # the CLI's loaders of saved maps and volumes
        assert cli.main([command, str(path), "--out", str(tmp_path / command)]) == 2
    assert not marker.exists()
    # the control: a plain hs.load runs the file's code, which is what the check prevents
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            hs.load(path)
        except Exception:
            pass
    assert marker.exists()


def test_zspy_saved_by_hyperspy_passes_the_check(tmp_path):
    pytest.importorskip("zarr")
    s = hs.signals.Signal1D(np.ones((4, 4, 32), dtype=np.uint16))
    s.metadata.set_item("Sample.elements", ["Se", "S", "Zn"])  # lists and strings: object arrays
    s.metadata.set_item("Tomography.source_files", ["a.bcf", "b.bcf"])
    s.save(tmp_path / "plain.zspy")
    check_zarr_codecs(tmp_path / "plain.zspy")
    check_zarr_codecs(tmp_path / "not_a_store.hspy")  # not zarr: nothing to check


# -- the CLI's path: lazy Velox .emd, and an empty .bcf ----------------------------------------
@needs_vendor
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cli_load_path_lazy_emd(tmp_path):
    import shutil

    from hyperspy_edxtomo.workflow.pipeline import load_input

    paths = []
    for name in "ab":
        paths.append(str(tmp_path / f"{name}.emd"))
        shutil.copy(VENDOR / EMD, paths[-1])
    # what `edxtomo run --lazy` does first: load_tilt_series(lazy=True), then the element maps
    maps, spectra, _ = load_input(paths, tilts=[-10, 10], lazy=True)
    assert spectra._lazy and not maps._lazy
    assert maps.elements == ["C", "O", "Ca", "Cu"]
    # two copies of one file: the same counts in both views (test_loading compares lazy with eager)
    np.testing.assert_array_equal(maps.data[:, 0], maps.data[:, 1])
    assert np.all(maps.data.sum(axis=(1, 2, 3)) > 0)


@needs_vendor
def test_cli_load_path_refuses_empty_bcf(tmp_path):
    from hyperspy_edxtomo.workflow.pipeline import PipelineError, load_input

    bad = [_damaged(tmp_path, f"half_{i}.bcf", fraction=0.5) for i in range(3)]
    with pytest.raises(PipelineError, match=r"half_0\.bcf holds an empty EDX spectrum image"):
        load_input([str(p) for p in bad], tilts=[-10, 0, 10], lazy=True)


def test_vendor_extensions_go_to_the_child():
    assert vendor_read.reader_api("a.bcf") == "rsciio.bruker"
    assert vendor_read.reader_api("a.EMD") == "rsciio.emd"
    assert vendor_read.reader_api("a.pts") == "rsciio.jeol"
    assert vendor_read.reader_api("a.emi") == vendor_read.reader_api("a_1.ser") == "rsciio.tia"
    assert vendor_read.reader_api("a.hspy") is None and vendor_read.reader_api("a.zspy") is None
    assert vendor_read.reader_api("a.dat", file_format="bruker") == "rsciio.bruker"
    assert sys.executable


def test_spikes_are_judged_only_where_lines_must_be_wider_than_a_channel():
    """A one-channel peak is damage only on channels narrower than the detector's resolution and above the
    zero-energy strobe peak: coarse (rebinned) channels and the lowest energies are not judged."""
    from hyperspy_edxtomo.io.damage import MAX_CHANNEL_KEV, MIN_ENERGY_KEV, single_channel_spikes

    si = np.zeros((3, 200), np.uint16)
    si[0, 100] = 300  # at 1 keV with 10 eV channels
    si[1, 5] = 300  # at 0.05 keV: the strobe peak's place
    assert single_channel_spikes(si, 0.01, 0.0) == (1, 300.0, 300.0)
    assert single_channel_spikes(si) == (2, 600.0, 300.0)  # no energy axis known: every channel judged
    assert 5 * 0.01 < MIN_ENERGY_KEV and single_channel_spikes(si, 2 * MAX_CHANNEL_KEV, 0.0) == (0, 0.0, 0.0)
    assert single_channel_spikes(si.astype(np.float32), 0.01, 0.0) == (0, 0.0, 0.0)  # processed, not counts
