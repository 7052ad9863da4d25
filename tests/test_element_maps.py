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
def test_maps_keep_raw_counts_and_attach_background(rng, lazy):
    s, truth = _series(rng, lazy, background=2)
    maps = s.get_element_maps(["Zn", "Se"])
    assert isinstance(maps, LazyElementMapTiltSeries if lazy else ElementMapTiltSeries)
    assert maps.elements == ["Zn", "Se"]
    assert maps.metadata.Sample.xray_lines == ["Zn_Ka", "Se_Ka"]
    data = maps.to_numpy()
    assert data.shape == (2, 3, 6, 5)
    # default: raw window counts (integers), the flat background beside them, not subtracted
    assert np.all(data == np.round(data))
    b = maps.background
    assert b.shape == data.shape and b.dtype == np.float32
    # a flat background of 2 counts per channel: b is 2 x the window width in channels, everywhere
    iw = s.estimate_integration_windows(xray_lines=["Zn_Ka", "Se_Ka"])
    for e, (el, (lo, hi)) in enumerate(zip(["Zn", "Se"], iw)):
        ax = s.axes_manager.signal_axes[0]
        assert np.ptp(b[e]) == pytest.approx(0, abs=1e-4)
        assert b[e].mean() == pytest.approx(2 * (ax.value2index(hi) - ax.value2index(lo)), rel=1e-6)
        np.testing.assert_allclose(data[e] - b[e], truth[el], atol=1e-4)
    np.testing.assert_allclose(maps.tilts, [-30, 0, 30])
    assert maps.pixel_size == (pytest.approx(0.5), "nm")
    step = maps.history[-1]
    assert step["step"] == "element_maps" and step["parameters"]["background"] == "attached"
    assert step["parameters"]["subtract_background"] is False


@pytest.mark.parametrize("lazy", [False, True])
def test_subtract_background_recovers_line_counts(rng, lazy):
    s, truth = _series(rng, lazy)
    maps = s.get_element_maps(["Zn", "Se"], subtract_background=True)
    assert isinstance(maps, LazyElementMapTiltSeries if lazy else ElementMapTiltSeries)
    assert maps.background is None
    data = maps.to_numpy()
    # a flat background is removed exactly by the two side windows
    np.testing.assert_allclose(data[0], truth["Zn"], atol=1e-9)
    np.testing.assert_allclose(data[1], truth["Se"], atol=1e-9)
    step = maps.history[-1]
    assert step["parameters"]["negative"] == "clip" and step["parameters"]["background"] == "subtracted"


@pytest.mark.parametrize("subtract", [False, True])
def test_lazy_and_eager_maps_are_equal(rng, subtract):
    s, _ = _series(rng, background=1)
    eager = s.get_element_maps(["Se", "Zn"], subtract_background=subtract)
    lazy = s.as_lazy().get_element_maps(["Se", "Zn"], subtract_background=subtract)
    np.testing.assert_allclose(lazy.data.compute(), eager.data)
    if subtract:
        assert eager.background is None and lazy.background is None
    else:
        np.testing.assert_array_equal(lazy.background, eager.background)


def test_elements_default_from_metadata_and_raw_windows(rng):
    s, truth = _series(rng, background=3)
    maps = s.get_element_maps(background_windows=None)
    assert maps.elements == ["Se", "Zn"]
    assert maps.background is None and maps.history[-1]["parameters"]["background"] == "none"
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
    clipped = s.get_element_maps(["Zn"], subtract_background=True).to_numpy()
    kept = s.get_element_maps(["Zn"], subtract_background=True, negative="keep").to_numpy()
    assert kept.min() < 0 and clipped.min() == 0
    np.testing.assert_allclose(clipped, kept.clip(0))
    with pytest.raises(ValueError, match="negative after background subtraction"):
        s.get_element_maps(["Zn"], subtract_background=True, negative="raise")
    with pytest.raises(ValueError, match="negative must be one of"):
        s.get_element_maps(["Zn"], negative="zero")
    # the default keeps raw counts: nothing negative, and the background is never negative either
    raw = s.get_element_maps(["Zn"], negative="raise")
    assert raw.to_numpy().min() >= 0 and raw.background.min() >= 0
    np.testing.assert_allclose(raw.subtract_background(negative="keep").to_numpy(), kept, atol=1e-4)


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


def test_elements_without_a_countable_line_are_refused(rng):
    # H: exspy's H_Ka (1.4 eV) sits in the zero-energy noise peak; with a negative energy offset (a
    # Bruker .bcf starts at -0.48 keV) its window fitted and the maps of H were that peak, without a word
    s, _ = _series(rng)
    data = np.concatenate([np.full(s.data.shape[:3] + (24,), 50), s.data], axis=-1)  # the spectra from -0.48 keV
    below_zero = het.tilt_series_from_array(data, list(s.tilts), SCALE, energy_offset_keV=-24 * SCALE,
                                            pixel_size_nm=0.5, metadata={"Sample": {"elements": ["H"]}})
    for series in (s, below_zero):
        with pytest.raises(ValueError, match=r"Element H has no X-ray line .* in the energy range .*"
                                             r"H_Ka .* zero-energy noise peak.*Leave H out"):
            series.get_element_maps(["Zn", "H"])
    with pytest.raises(ValueError, match=r"Element He has no X-ray line"):
        s.get_element_maps(["He"], xray_lines=["He_Ka"], background_windows=None)
    with pytest.raises(ValueError, match=r"Element Li has no X-ray line in the energy range"):
        s.get_element_maps(["Li"])  # exspy lists no line at all for Li (was a KeyError)
    with pytest.raises(ValueError, match=r"Unknown X-ray line 'Li_Ka'"):
        s.get_element_maps(["Li"], xray_lines=["Li_Ka"])
    # Be_Ka (0.11 keV) is countable, but its lower background window would start below 0 keV
    with pytest.raises(ValueError, match=r"background windows of Be_Ka .* leave the energy range.*"
                                         r"background_windows=None"):
        s.get_element_maps(["Be"])
    assert s.get_element_maps(["Be"], background_windows=None, show_progressbar=False).elements == ["Be"]
    assert below_zero.get_element_maps(["Be"], show_progressbar=False).background is not None
