"""The edxtomo command line: the README's main job and the maps command."""

import os
import sys

import hyperspy.api as hs
import numpy as np
import pytest

from hyperspy_edxtomo.cli import main
from hyperspy_edxtomo.signals import ElementMapTiltSeries, ElementVolume


def test_demo_writes_maps_volume_and_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["--quiet", "demo", "--out", str(out), "--size", "32", "--kind", "CdSe/ZnS", "--method", "sirt"]) == 0
    maps = hs.load(out / "element_maps.hspy")
    assert isinstance(maps, ElementMapTiltSeries)
    assert maps.elements == ["Cd", "Se", "S", "Zn"] and len(maps.tilts) == 13
    vol = hs.load(out / "volume.hspy")
    assert isinstance(vol, ElementVolume) and vol.history[-1]["method"] == "sirt"
    for png in ("element_maps.png", "volume_cuts.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pearson correlation with the ground truth" in capsys.readouterr().out


def test_maps_from_vendor_files(bcf_views, tmp_path):
    paths = bcf_views
    out = tmp_path / "out"
    rc = main(["--quiet", "maps", *map(str, paths), "--tilts", "20", "-20", "0", "--elements", "Cu", "Pd", "--out", str(out)])
    assert rc == 0
    maps = hs.load(out / "element_maps.hspy")
    assert maps.elements == ["Cu", "Pd"]
    np.testing.assert_allclose(maps.tilts, [-20, 0, 20])
    assert maps.to_numpy().sum() > 0
    # a second run does not replace what is there unless told to
    args = ["--quiet", "maps", *map(str, paths), "--tilts", "20", "-20", "0", "--elements", "Cu", "--out", str(out)]
    assert main(args) == 2
    assert hs.load(out / "element_maps.hspy").elements == ["Cu", "Pd"]
    assert main(args + ["--overwrite"]) == 0
    assert hs.load(out / "element_maps.hspy").elements == ["Cu"]


def test_maps_refuses_an_element_without_a_countable_line(bcf_views, tmp_path, capsys):
    # H_Ka (1.4 eV) fits the .bcf's energy axis (from -0.48 keV): its maps were the zero-energy noise peak
    out = tmp_path / "out"
    args = ["--quiet", "maps", *map(str, bcf_views), "--tilts", "-10", "0", "10", "--elements", "Cu", "H"]
    assert main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo maps: error:") and "Element H has no X-ray line" in err
    assert "energy range -0.475 to 20 keV" in err and "Leave H out" in err and not out.exists()


def test_denoise_refuses_one_pixel_maps(tmp_path, capsys):
    import hyperspy_edxtomo as het

    maps = tmp_path / "m.hspy"
    het.element_maps_from_array(np.full((2, 3, 1, 1), 5.0), [-60, 0, 60], ["Se", "Zn"]).save(maps)
    assert main(["--quiet", "denoise", str(maps), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "error: The element maps are 1 x 1 pixel: there is no image to denoise" in err
    assert not (tmp_path / "d").exists()


def test_errors_name_the_file_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.bcf"
    assert main(["--quiet", "maps", str(missing), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nope.bcf" in err and err.startswith("edxtomo maps: error:")


@pytest.mark.parametrize("args, expected", [
    (["analyse", "v.hspy", "--max-particles", "-1"], "argument --max-particles: expected a positive whole number"),
    (["analyse", "v.hspy", "--max-particles", "two"], "argument --max-particles: expected a positive whole number"),
    (["run", "a.bcf", "--seed", "-3"], "argument --seed: expected a whole number >= 0"),
    (["run", "a.bcf", "--tilts", "0", "nan"], "argument --tilts: expected a finite number"),
    (["align", "m.hspy", "--rotation", "inf"], "argument --rotation: expected a finite number"),
    # 1e300 was used as given, the views turned by whatever the float made of it, without a word
    (["align", "m.hspy", "--rotation", "1e300"],
     "argument --rotation: rotation must be in degrees within (-180, 180], got 1e+300."),
    (["align", "m.hspy", "--rotation", "270"], "got 270 (the same turn as -90: give that)"),
    (["demo", "--size", "0"], "argument --size: expected a positive whole number"),
])
def test_bad_numbers_are_refused_before_any_work(args, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


def test_unexpected_errors_exit_1_with_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys):
    from hyperspy_edxtomo import datasets

    vol = tmp_path / "vol.hspy"
    datasets.core_shell_phantom(size=24).save(vol)

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setattr("hyperspy_edxtomo.workflow.figures.volume_cuts", broken)  # a step of analyse, after the shells
    assert main(["--quiet", "analyse", str(vol), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edxtomo analyse: error: RuntimeError: CUDA error") and "--debug" in err
    assert "Traceback" not in err and not (tmp_path / "a").exists()
    assert main(["--quiet", "analyse", str(vol), "--out", str(tmp_path / "a"), "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("EDXTOMO_DEBUG", "1")
    assert main(["--quiet", "analyse", str(vol), "--out", str(tmp_path / "a")]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.hspy"]


def test_import_prints_no_warnings_a_user_cannot_act_on():
    # exspy's imports of names HyperSpy deprecated printed three warnings at every start of edxtomo
    import subprocess

    proc = subprocess.run([sys.executable, "-W", "default", "-c", "import hyperspy_edxtomo.cli"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]


def test_demo_real_runs_the_pipeline_on_the_shipped_qd1(tmp_path):
    out = tmp_path / "qd1_demo"
    assert main(["demo", "--real", "--size", "96", "--method", "fbp", "--no-fsc", "--quiet", "--out", str(out)]) == 0
    maps = hs.load(out / "element_maps.hspy")
    assert isinstance(maps, ElementMapTiltSeries) and maps.data.shape == (3, 13, 96, 96)
    assert "Apache-2.0" in maps.metadata.Sample.citation  # the attribution travels with the data
    aligned = hs.load(out / "element_maps_aligned.hspy")  # the raw views are not aligned: the demo aligns them
    assert aligned.metadata.has_item("Tomography.alignment.validation")
    vol = hs.load(out / "volume.hspy")
    assert isinstance(vol, ElementVolume) and vol.elements == ["Se", "S", "Zn"]
    assert vol.data.max() > 0


def test_demo_real_refuses_a_size_larger_than_qd1(tmp_path, capsys):
    # --real --size 4096 ran on QD1's 256 px without a word
    out = tmp_path / "qd1_demo"
    assert main(["demo", "--real", "--size", "4096", "--method", "fbp", "--no-fsc", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo demo: error: --size 4096 is larger than the real QD1 series (256 x 256 px)")
    assert "give --size 256 or less" in err and not out.exists()


def test_demo_real_refuses_a_kind(tmp_path, capsys):
    # --real --kind CdSe/ZnS ran the InP/ZnSe/ZnS series QD1 without a word
    out = tmp_path / "qd1_demo"
    assert main(["demo", "--real", "--kind", "CdSe/ZnS", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edxtomo demo: error: --kind CdSe/ZnS applies to the simulated demo") and not out.exists()


@pytest.mark.parametrize("param, expected", [
    ("steps=0", "--param steps=0: steps must be a whole number >= 1 (steps=0 would save an untrained network)"),
    ("batch_size=-2", "--param batch_size=-2: batch_size must be a whole number >= 1"),
    ("learning_rate=nan", "--param learning_rate='nan': learning_rate must be a positive number"),
    ("bogus=1", "--param unknown end-to-end settings ['bogus']"),
])
def test_train_end_to_end_refuses_settings_that_cannot_train_before_any_work(tmp_path, capsys, param, expected):
    # steps=0 ran the two_step reconstructions, then saved an untrained network as if trained
    maps = tmp_path / "maps.hspy"  # never read: the settings are checked first
    out = tmp_path / "w.pt"
    assert main(["train-end-to-end", str(maps), "--out", str(out), "--param", param, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"edxtomo train-end-to-end: error: {expected}") and not out.exists()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process on POSIX")
def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback():
    import shutil
    import signal
    import subprocess
    import time

    exe = shutil.which("edxtomo")
    if exe is None:
        pytest.skip("the edxtomo command is not installed in this environment")
    # a user's Ctrl-C reaches a command started from an interactive shell, whatever ran this test: a test
    # run started as a background job of a script inherits Ctrl-C ignored (the next test), and would pass it on
    p = subprocess.Popen([exe, "algorithms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.5)  # importing HyperSpy takes longer than this
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err and "interrupted" in err


def test_a_command_started_with_ctrl_c_ignored_keeps_ignoring_it():
    """A background job of a shell script inherits Ctrl-C ignored: a Ctrl-C while it starts, or later,
    must not end it (the launcher's start-up handler must not replace an inherited SIG_IGN)."""
    import shutil
    import signal
    import subprocess
    import time

    exe = shutil.which("edxtomo")
    if exe is None:
        pytest.skip("the edxtomo command is not installed in this environment")
    p = subprocess.Popen([exe, "algorithms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "interrupted" not in err and "tv" in out
