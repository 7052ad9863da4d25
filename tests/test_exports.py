"""Exports of element volumes: each format read back with its voxel size."""

import json
from pathlib import Path

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo.io.exports import export_volume, read_npy, read_vti

VOXEL = 0.189


@pytest.fixture(params=[False, True], ids=["eager", "lazy"])
def volume(request):
    rng = np.random.default_rng(7)
    data = rng.random((3, 12, 10, 14)).astype(np.float32)  # (element, z, y, x): every axis its own length
    vol = het.volume_from_array(data, ["Se", "S", "Zn"], voxel_size_nm=VOXEL, title="test volume")
    return vol.as_lazy() if request.param else vol


@pytest.mark.parametrize("suffix", [".hspy", ".zspy"])
def test_native_keeps_class_and_history(volume, tmp_path, suffix):
    import hyperspy.api as hs

    paths = volume.export(tmp_path / f"vol{suffix}")
    back = hs.load(paths[0])
    assert type(back).__name__ == "ElementVolume"
    assert back.elements == ["Se", "S", "Zn"]
    assert back.voxel_size == pytest.approx((VOXEL, "nm"))
    np.testing.assert_array_equal(np.asarray(back.data), volume.to_numpy())
    # written under a temporary name, then renamed: the volume remembers the final name
    assert volume.tmp_parameters.filename == "vol" and volume.tmp_parameters.extension == suffix


def test_mrc_one_file_per_element(volume, tmp_path):
    import mrcfile

    paths = volume.export(tmp_path / "vol.mrc")
    assert [p.name for p in paths] == ["vol_Se.mrc", "vol_S.mrc", "vol_Zn.mrc"]
    data = volume.to_numpy()
    for e, p in enumerate(paths):
        with mrcfile.open(p) as mrc:
            np.testing.assert_array_equal(mrc.data, data[e])
            for v in (mrc.voxel_size.x, mrc.voxel_size.y, mrc.voxel_size.z):
                assert v == pytest.approx(VOXEL * 10, rel=1e-5)  # Ångström
    one = volume.export(tmp_path / "zn.mrc", element="Zn")
    assert [p.name for p in one] == ["zn.mrc"]
    with mrcfile.open(one[0]) as mrc:
        np.testing.assert_array_equal(mrc.data, data[2])


def test_tif_imagej_hyperstack(volume, tmp_path):
    import tifffile

    (path,) = volume.export(tmp_path / "vol.tif")
    with tifffile.TiffFile(path) as tif:
        stack = tif.asarray()
        meta = tif.imagej_metadata
        xres = tif.pages[0].tags["XResolution"].value
    assert stack.shape == (12, 3, 10, 14)  # Z, C, Y, X
    np.testing.assert_array_equal(stack.transpose(1, 0, 2, 3), volume.to_numpy())
    assert meta["spacing"] == pytest.approx(VOXEL)
    assert meta["unit"] == "nm"
    assert meta["elements"] == "Se,S,Zn"
    assert xres[1] / xres[0] == pytest.approx(VOXEL, rel=1e-4)  # resolution = pixels per nm


def test_npy_with_sidecar(volume, tmp_path):
    paths = volume.export(tmp_path / "vol.npy")
    assert [p.suffix for p in paths] == [".npy", ".json"]
    data, side = read_npy(paths[0])
    np.testing.assert_array_equal(data, volume.to_numpy())
    assert side["voxel_size"] == pytest.approx(VOXEL) and side["units"] == "nm"
    assert side["elements"] == ["Se", "S", "Zn"] and side["axes"] == ["element", "z", "y", "x"]
    assert json.loads(paths[1].read_text())["shape"] == [3, 12, 10, 14]


def test_vti_for_paraview(volume, tmp_path):
    import xml.etree.ElementTree as ET

    (path,) = volume.export(tmp_path / "vol.vti")
    arrays, spacing, origin = read_vti(path)
    assert list(arrays) == ["Se", "S", "Zn"]
    data = volume.to_numpy()
    for e, el in enumerate(["Se", "S", "Zn"]):
        np.testing.assert_array_equal(arrays[el], data[e])
    assert spacing == pytest.approx((VOXEL,) * 3)
    assert origin[0] == pytest.approx(volume.axes_manager["x"].offset)
    head = path.read_bytes().split(b"<AppendedData")[0].decode() + "</VTKFile>"
    image = ET.fromstring(head).find("ImageData")
    assert image.get("WholeExtent") == "0 13 0 9 0 11"  # x, y, z


def test_export_errors(tmp_path):
    vol = het.volume_from_array(np.ones((1, 4, 4, 4)), ["Zn"], voxel_size_nm=0.2)
    with pytest.raises(ValueError, match="format"):
        vol.export(tmp_path / "vol.xyz")
    with pytest.raises(ValueError, match="Unknown element"):
        vol.export(tmp_path / "vol.mrc", element="Cu")
    vol.export(tmp_path / "a.npy")
    with pytest.raises(FileExistsError):
        export_volume(vol, tmp_path / "a.npy", overwrite=False)
    bad = vol._deepcopy_with_new_data(np.full((1, 4, 4, 4), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        bad.export(tmp_path / "bad.vti")
    px = het.volume_from_array(np.ones((1, 4, 4, 4)), ["Zn"])  # uncalibrated
    with pytest.raises(ValueError, match="Å"):
        px.export(tmp_path / "px.mrc")


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
    vol = het.volume_from_array(np.ones((2, 4, 4, 4), np.float32), ["S", "Zn"], voxel_size_nm=0.2)
    (tmp_path / "vol_Zn.mrc").write_bytes(b"the user's file")
    # one of the two .mrc files exists: nothing at all is written, the file is kept
    with pytest.raises(FileExistsError, match="vol_Zn.mrc exists: pass overwrite=True"):
        vol.export(tmp_path / "vol.mrc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol_Zn.mrc"]
    assert (tmp_path / "vol_Zn.mrc").read_bytes() == b"the user's file"
    assert [p.name for p in vol.export(tmp_path / "vol.mrc", overwrite=True)] == ["vol_S.mrc", "vol_Zn.mrc"]
    import mrcfile

    with mrcfile.open(tmp_path / "vol_Zn.mrc") as mrc:
        assert mrc.data.shape == (4, 4, 4)
    # a folder format (.zspy) is replaced too, and no temporary file is left behind
    vol.export(tmp_path / "vol.zspy")
    with pytest.raises(FileExistsError):
        vol.export(tmp_path / "vol.zspy")
    vol.element("S").export(tmp_path / "vol.zspy", overwrite=True)
    import hyperspy.api as hs

    assert hs.load(tmp_path / "vol.zspy").elements == ["S"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.zspy", "vol_S.mrc", "vol_Zn.mrc"]


def test_export_interrupted_keeps_the_earlier_file(tmp_path, monkeypatch):
    import tifffile

    vol = het.volume_from_array(np.ones((1, 4, 4, 4), np.float32), ["Zn"], voxel_size_nm=0.2)
    (path,) = vol.export(tmp_path / "vol.tif")
    before = path.read_bytes()

    def half_written(file, *args, **kwargs):
        Path(file).write_bytes(b"II*\x00 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(tifffile, "imwrite", half_written)
    with pytest.raises(KeyboardInterrupt):
        (vol * 2).export(path, overwrite=True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["vol.tif"]
