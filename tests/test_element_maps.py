"""get_element_maps on spectrum-image tilt series with known line counts."""

import numpy as np
import pytest

import hyperspy_edxtomo as het
from hyperspy_edxtomo.signals import ElementMapTiltSeries, LazyElementMapTiltSeries

SCALE = 0.02  # keV per channel
LINES = {"Zn": 8.6389, "Se": 11.2224}


def _series(rng, lazy=False, background=2, tilts=(-30, 0, 30)):
    """Spectra whose Zn_Ka and Se_Ka peaks hold a known number of counts per pixel."""
    n_t, ny, nx, ne = len(tilts), 6, 5, 1024
    truth = {
        "Zn": rng.integers(0, 40, (n_t, ny, nx)),
        "Se": rng.integers(0, 40, (n_t, ny, nx)),
    }
    data = np.full((n_t, ny, nx, ne), background, dtype=np.int64)
    for el, energy in LINES.items():
        c = int(round(energy / SCALE))
        # all counts within +-1 channel of the line: well inside the +-1 FWHM window
        data[..., c] += truth[el] // 2
        data[..., c + 1] += truth[el] - truth[el] // 2
    md = {
        "Acquisition_instrument": {"TEM": {"beam_energy": 200.0}},
        "Sample": {"elements": ["Se", "Zn"]},
    }
    if lazy:
        import dask.array as da

        data = da.from_array(data, chunks=(1, 3, 5, 1024))
    return het.tilt_series_from_array(data, list(tilts), SCALE, pixel_size_nm=0.5, metadata=md), truth


@pytest.mark.parametrize("lazy", [False, True])
def test_maps_recover_line_counts_after_background(rng, lazy):
    s, truth = _series(rng, lazy)
    maps = s.get_element_maps(["Zn", "Se"])
    assert isinstance(maps, LazyElementMapTiltSeries if lazy else ElementMapTiltSeries)
    assert maps.elements == ["Zn", "Se"]
    assert maps.metadata.Sample.xray_lines == ["Zn_Ka", "Se_Ka"]
    data = maps.to_numpy()
    assert data.shape == (2, 3, 6, 5)
    # a flat background is removed exactly by the two side windows
    np.testing.assert_allclose(data[0], truth["Zn"], atol=1e-9)
    np.testing.assert_allclose(data[1], truth["Se"], atol=1e-9)
    np.testing.assert_allclose(maps.tilts, [-30, 0, 30])
    assert maps.pixel_size == (pytest.approx(0.5), "nm")
    step = maps.history[-1]
    assert step["step"] == "element_maps" and step["parameters"]["negative"] == "clip"


def test_lazy_and_eager_maps_are_equal(rng):
    s, _ = _series(rng, background=1)
    eager = s.get_element_maps(["Se", "Zn"]).data
    lazy = s.as_lazy().get_element_maps(["Se", "Zn"]).data.compute()
    np.testing.assert_allclose(lazy, eager)


def test_elements_default_from_metadata_and_raw_windows(rng):
    s, truth = _series(rng, background=3)
    maps = s.get_element_maps(background_windows=None)
    assert maps.elements == ["Se", "Zn"]
    data = maps.to_numpy()
    # without background subtraction: line counts plus background inside the window
    excess = data[1] - truth["Zn"]
    assert np.all(excess > 0) and np.ptp(excess) == 0
    assert np.issubdtype(data.dtype, np.floating) and np.all(data == np.round(data))


def test_negative_values_are_handled_explicitly(rng):
    s, _ = _series(rng, background=0)
    # background only on the high-energy side of Zn: subtraction goes negative
    ax = s.axes_manager.signal_axes[0]
    bw = s.estimate_background_windows(xray_lines=["Zn_Ka"])
    hi = ax.value2index(bw[0, 2])
    s.data[..., hi : hi + 40] += 50
    clipped = s.get_element_maps(["Zn"]).to_numpy()
    kept = s.get_element_maps(["Zn"], negative="keep").to_numpy()
    assert kept.min() < 0 and clipped.min() == 0
    np.testing.assert_allclose(clipped, kept.clip(0))
    with pytest.raises(ValueError, match="negative after background subtraction"):
        s.get_element_maps(["Zn"], negative="raise")
    with pytest.raises(ValueError, match="negative must be one of"):
        s.get_element_maps(["Zn"], negative="zero")


def test_bad_elements_and_lines(rng):
    s, _ = _series(rng)
    del s.metadata.Sample.elements
    with pytest.raises(ValueError, match="No elements given"):
        s.get_element_maps()
    with pytest.raises(ValueError, match="Unknown element.*Qq"):
        s.get_element_maps(["Zn", "Qq"])
    with pytest.raises(ValueError, match="does not belong to element"):
        s.get_element_maps(["Zn"], xray_lines=["Se_Ka"])
    with pytest.raises(ValueError, match="one X-ray line per element"):
        s.get_element_maps(["Zn", "Se"], xray_lines=["Zn_Ka"])
    short = s.isig[2.0:5.0]
    with pytest.raises(ValueError, match="no X-ray line in the energy range"):
        short.get_element_maps(["Zn"])
    with pytest.raises(ValueError, match="outside the energy range"):
        short.get_element_maps(["Zn"], xray_lines=["Zn_Ka"])
