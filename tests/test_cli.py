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


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process on POSIX")
def test_ctrl_c_while_the_command_starts_exits_130_without_a_traceback():
    import shutil
    import signal
    import subprocess
    import time

    exe = shutil.which("edxtomo")
    if exe is None:
        pytest.skip("the edxtomo command is not installed in this environment")
    p = subprocess.Popen([exe, "algorithms"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # importing HyperSpy takes longer than this
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err and "interrupted" in err
