"""The counts module: what the statistics of the package rest on."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from hyperspy_edxtomo.base import counts as C


@pytest.fixture(scope="module")
def raw():
    return np.random.default_rng(0).poisson(0.4, (3, 13, 32, 32))


def test_kinds_of_maps(raw):
    assert C.data_kind(raw) == "counts" and C.data_kind(raw.astype(np.float32)) == "counts"
    # normalised in float32 (a vendor export): counts in disguise, the quantum recovered
    norm = (raw / raw.max()).astype(np.float32)
    assert C.data_kind(norm) == "scaled_counts"
    assert C.counts_quantum(norm) == pytest.approx(1 / raw.max(), rel=1e-6)
    # counts per second at an odd dwell time
    assert C.counts_quantum(raw * 0.0137) == pytest.approx(0.0137)
    # subtracted, smoothed, quantified: continuous
    assert C.data_kind(raw - 0.31) == "continuous"
    # a scale and an offset: whole multiples of 0.01 (37 c + 1), yet not counts (37 times too many)
    assert C.data_kind(raw * 0.37 + 0.01) == "continuous"
    assert C.data_kind((raw * 0.37 + 0.01).astype(np.float32)) == "continuous"
    assert C.data_kind((raw + 5) * 0.37) == "scaled_counts"  # an offset of whole counts is counts
    assert C.data_kind(np.clip(raw - np.random.default_rng(1).poisson(0.6, raw.shape) / 2, 0, None)) == "continuous"
    # counts minus a background from windows twice as wide come in half counts: not counts
    assert C.counts_quantum(raw - np.minimum(raw, np.random.default_rng(3).poisson(0.5, raw.shape)) / 2) is None
    # ... but counts normalised to their maximum are, whatever the maximum
    assert C.counts_quantum(raw / 2.0 / (raw.max() / 2.0)) == pytest.approx(1 / raw.max())
    assert C.data_kind(ndimage.gaussian_filter(raw.astype(float), (0, 0, 1, 1))) == "continuous"
    assert C.data_kind(raw / (raw + 1.0 + np.random.default_rng(2).random(raw.shape))) == "continuous"
    # nothing to tell a scale from
    assert C.counts_quantum(np.zeros((4, 4))) is None and C.data_kind(np.zeros((4, 4))) == "counts"
    assert not C.is_counts(np.array([1.0, np.nan])) and not C.is_counts(np.array([-1, 0]))


def test_count_split_and_deviance(raw):
    fit, held = C.count_split(raw, 0.3, seed=4)
    np.testing.assert_array_equal(fit + held, raw)
    assert abs(fit.sum() / raw.sum() - 0.3) < 0.02
    a, b = C.count_split(raw, 0.3, seed=4)
    np.testing.assert_array_equal(a, fit)
    with pytest.raises(ValueError, match="not integer X-ray counts"):
        C.count_split(raw + 0.5)
    with pytest.raises(ValueError, match="negative"):
        C.count_split(-raw)
    mu = np.full(raw.shape, raw.mean())
    assert C.poisson_deviance(raw, raw) < C.poisson_deviance(raw, mu)
    per_view = C.poisson_deviance(raw, mu, axis=(2, 3))
    assert per_view.shape == (3, 13) and per_view.sum() == pytest.approx(C.poisson_deviance(raw, mu))


def test_package_warnings_point_at_the_users_line():
    # a warning raised deep inside the package names the line of the user's call
    import inspect

    import hyperspy_edxtomo as het

    counts = np.ones((1, 3, 8, 8), np.float32)
    counts[0, 1] *= 100  # a 100x dose ratio: check_views warns
    maps = het.element_maps_from_array(counts, [-10.0, 0.0, 10.0], ["Zn"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        maps.reconstruct("fbp", show_progressbar=False)
    ours = [w for w in caught if "times more or less" in str(w.message)]
    assert ours, [str(w.message) for w in caught]
    assert ours[0].filename == __file__ and ours[0].lineno == line


@pytest.mark.parametrize("mean", [0.4, 50.0, 500.0, 2000.0])
def test_normalised_counts_are_recognised_at_any_dose(mean):
    # float32 maps divided by their maximum: the step between values carries rounding error that grows
    # with the count; it must not turn bright maps into "continuous" ones (no count splitting, no Poisson).
    # (At ~10^4 counts in every pixel float32 no longer resolves one count: read as continuous, the safe side.)
    c = np.random.default_rng(3).poisson(mean, (13, 48, 48)).astype(np.float32)
    scaled = (c / c.max()).astype(np.float32)
    assert C.data_kind(scaled) == "scaled_counts"
    np.testing.assert_array_equal(C.as_counts(scaled, C.counts_quantum(scaled)), c)
