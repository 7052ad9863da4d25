"""Exports of element volumes: each format read back with its voxel size."""

import json

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo.exports import export_volume, read_npy, read_vti

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
