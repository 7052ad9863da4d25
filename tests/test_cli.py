"""The edxtomo command line: the README's main job and the maps command."""

import hyperspy.api as hs
import numpy as np

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
