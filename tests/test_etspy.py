"""Alignment with etspy: the conventions are checked against etspy itself, not against our reading of it.

Every view here is 48 x 64 pixels (64 x 48 in etspy), so that a transposition
error cannot pass, and the checks compare what etspy does to its views
(``align_other``, ``trans_stack``, ``stack_register``, ``tilt_align``) with
what ``apply_etspy_alignment`` does to ours, by the centroid of each view
(sub-pixel) and by the images.
"""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

etspy = pytest.importorskip("etspy.api", reason="etspy is optional (pip install etspy, or the 'test' extra)")

import hyperspy_edxtomo as het  # noqa: E402
from hyperspy_edxtomo import datasets  # noqa: E402
from hyperspy_edxtomo.alignment import (  # noqa: E402
    Alignment,
    alignment_from_etspy,
    alignment_score,
    alignment_to_etspy,
    apply_alignment,
    apply_etspy_alignment,
    to_etspy,
)
from hyperspy_edxtomo.base.errors import InputError  # noqa: E402

NY, NX = 48, 64  # ours: rows along the tilt axis


def _views(blobs, tilts, sigma, shape=(NY, NX), shifts=None):
    """Views of Gaussian blobs ``(x, y, z, amplitude)`` (pixels from the centre) at ``tilts``: a point
    appears at column x cos(theta) + z sin(theta) and row y (docs/conventions.rst), each view moved
    by ``shifts`` (rows, columns per view)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    sy, sx = np.zeros((2, len(tilts))) if shifts is None else shifts
    out = np.zeros((len(tilts), *shape))
    for t, th in enumerate(np.deg2rad(tilts)):
        for x, y, z, a in blobs:
            row, col = cy + y + sy[t], cx + x * np.cos(th) + z * np.sin(th) + sx[t]
            out[t] += a * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma**2))
    return out


def _centroids(views):
    yy, xx = np.mgrid[: views.shape[1], : views.shape[2]]
    w = views / views.sum(axis=(1, 2), keepdims=True)
    return np.stack([(w * yy).sum(axis=(1, 2)), (w * xx).sum(axis=(1, 2))], axis=1)


def _relative_rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


def _ours(stack):
    """etspy's views in our orientation."""
    return np.asarray(stack.data, float).transpose(0, 2, 1)


@pytest.fixture(scope="module")
def smooth():
    """Five views of two smooth blobs, well inside the field (interpolation barely matters)."""
    tilts = np.array([-40.0, -20, 0, 20, 40])
    views = _views([(-5, -6, 2, 1.0), (6, 8, -3, 0.6)], tilts, sigma=3.0)
    return het.element_maps_from_array(views[None], tilts, ["Au"], pixel_size_nm=0.5)


KNOWN = {"shifts": np.array([[0.7, -1.2], [0.0, 0.0], [-1.5, 2.0], [2.2, 0.4], [-0.3, -2.6]]),
         "tiltaxis": 30.0, "xshift": 1.3, "yshift": -2.1}


def _carrier(stack, shifts, tiltaxis, xshift, yshift):
    """A copy of ``stack`` whose etspy record holds a known alignment (what etspy's aligners write)."""
    out = stack.deepcopy()
    out.shifts = shifts
    out.metadata.Tomography.tiltaxis = tiltaxis
    out.metadata.Tomography.xshift = xshift
    out.metadata.Tomography.yshift = yshift
    return out


# ---------------------------------------------------------------------------------------------
# export


def test_to_etspy_transposes_and_keeps_tilts_and_calibration(smooth):
    stack = smooth.to_etspy()
    assert isinstance(stack, etspy.TomoStack)
    assert stack.data.shape == (5, NX, NY) and stack.data.dtype == np.float32
    np.testing.assert_array_equal(_ours(stack), smooth.data[0].astype(np.float32))
    np.testing.assert_array_equal(stack.tilts.data.ravel(), smooth.tilts)
    x_e, y_e = stack.axes_manager.signal_axes
    assert (x_e.size, y_e.size) == (NY, NX) and (x_e.scale, x_e.units) == (0.5, "nm") == (y_e.scale, y_e.units)
    assert float(stack.metadata.Tomography.tiltaxis) == 0 and not np.any(stack.shifts.data)


def test_to_etspy_exports_the_haadf_images_of_maps_and_of_spectrum_images(smooth):
    haadf = smooth.data[0] * 2 + 1
    maps = het.alignment.with_reference_images(het.element_maps_from_array(
        np.stack([smooth.data[0], smooth.data[0] / 2]), smooth.tilts, ["Au", "Ag"]), haadf)
    np.testing.assert_allclose(_ours(maps.to_etspy(haadf=True)), haadf, rtol=1e-6)
    np.testing.assert_array_equal(_ours(maps.to_etspy(element="Ag")), maps.data[1].astype(np.float32))
    spectra = het.tilt_series_from_array(np.repeat(smooth.data[0][..., None], 3, axis=-1), smooth.tilts, 0.01)
    spectra = het.alignment.with_reference_images(spectra, haadf)
    stack = spectra.to_etspy(haadf=True)
    np.testing.assert_allclose(_ours(stack), haadf, rtol=1e-6)
    # the HAADF alignment moves every energy channel
    moved = spectra.apply_etspy_alignment(_carrier(stack, KNOWN["shifts"], 0.0, 0.0, 0.0))
    assert moved.metadata.Tomography.alignment.method == "etspy"
    np.testing.assert_allclose(moved.data[..., 0], moved.data[..., 2])


# ---------------------------------------------------------------------------------------------
# (a) etspy applies a known alignment; ours, converted, must move the views the same way


@pytest.mark.parametrize("shift_type", ["interp", "fourier"])
def test_known_etspy_alignment_moves_our_views_as_etspy_moves_its_own(smooth, shift_type):
    stack = smooth.to_etspy()
    carrier = _carrier(stack, **KNOWN)
    theirs = _ours(carrier.align_other(stack, shift_type=shift_type))
    ours = apply_etspy_alignment(smooth, carrier, resample="bilinear").data[0]
    np.testing.assert_allclose(_centroids(ours), _centroids(theirs), atol=0.01)  # sub-pixel agreement
    assert _relative_rms(ours, theirs) < 0.03  # the images, up to interpolation (wrong conventions: > 0.5)

    # the test can tell: etspy's tilt axis sign, its shift order or the half-pixel centre, each wrong, fail
    a = alignment_from_etspy(carrier, smooth)
    R = np.array([[np.cos(np.pi / 6), -np.sin(np.pi / 6)], [np.sin(np.pi / 6), np.cos(np.pi / 6)]])
    centre_term = (np.eye(2) - R) @ [0.5, 0.5]
    wrong = {"rotation sign": a.replace(rotation_deg=-a.rotation_deg),
             "shift order": a.replace(shift_y_px=a.shift_x_px, shift_x_px=a.shift_y_px),
             "no half-pixel centre": a.replace(shift_y_px=a.shift_y_px - centre_term[0],
                                               shift_x_px=a.shift_x_px - centre_term[1])}
    for name, w in wrong.items():
        moved = apply_alignment(smooth, w, resample="bilinear").data[0]
        assert np.abs(_centroids(moved) - _centroids(theirs)).max() > 0.15, name


def test_trans_stack_and_stack_register_outputs_match_our_move(smooth):
    """The stacks etspy's own steps return: their data are moved, their records converted."""
    stack = smooth.to_etspy()
    turned = stack.trans_stack(xshift=-1.5, yshift=2.5, angle=-8.0)  # as tilt_align records it
    ours = apply_etspy_alignment(smooth, turned, resample="bilinear").data[0]
    np.testing.assert_allclose(_centroids(ours), _centroids(_ours(turned)), atol=0.01)
    a = alignment_from_etspy(turned, smooth)
    assert a.rotation_deg == 8.0 and a.axis_offset_px == 2.5

    shifted = smooth.deepcopy()
    shifted.data = datasets.misalign(smooth.data, max_shift_px=2, seed=3)[0].astype(np.float32)
    registered = shifted.to_etspy().stack_register("PC")  # etspy moves its views (Fourier shifts)
    ours = apply_etspy_alignment(shifted, registered, resample="bilinear").data[0]
    np.testing.assert_allclose(_centroids(ours), _centroids(_ours(registered)), atol=0.02)


def test_round_trip_through_etspy_record_and_etspy_applies_our_alignment(smooth):
    rng = np.random.default_rng(0)
    a = Alignment(shift_y_px=rng.uniform(-2, 2, 5), shift_x_px=rng.uniform(-2, 2, 5), rotation_deg=3.7,
                  axis_offset_px=1.2, tilts_deg=smooth.tilts.tolist(), view_shape=[NY, NX])
    stack = smooth.to_etspy()
    carrier = alignment_to_etspy(a, stack)
    assert float(carrier.metadata.Tomography.tiltaxis) == -3.7
    np.testing.assert_array_equal(carrier.data, stack.data)  # the record only
    back = alignment_from_etspy(carrier, smooth)
    np.testing.assert_allclose(back.shift_y_px, a.shift_y_px, atol=1e-12)
    np.testing.assert_allclose(back.shift_x_px, a.shift_x_px, atol=1e-12)
    assert back.rotation_deg == pytest.approx(3.7) and back.axis_offset_px == pytest.approx(1.2)
    # and etspy, given that record, moves its views as apply_alignment moves ours
    theirs = _ours(carrier.align_other(stack, shift_type="interp"))
    ours = apply_alignment(smooth, a, resample="bilinear").data[0]
    np.testing.assert_allclose(_centroids(ours), _centroids(theirs), atol=0.01)


# ---------------------------------------------------------------------------------------------
# (b) etspy's own estimators on simulated misalignment: converted, they recover the truth


def test_etspy_phase_correlation_recovers_known_shifts():
    tilts = np.arange(-45.0, 46, 7.5)
    rng = np.random.default_rng(3)
    # a thin textured particle centred on the axis: neighbouring views look alike, as phase correlation needs
    blobs = np.c_[rng.uniform(-12, 12, 40), rng.uniform(-14, 14, 40), np.zeros(40), rng.uniform(0.5, 1, 40)]
    blobs[:, 0] -= np.average(blobs[:, 0], weights=blobs[:, 3])
    sx, sy = rng.uniform(-3, 3, tilts.size), rng.uniform(-3, 3, tilts.size)
    # drawn at the shifted places rather than interpolated (datasets.misalign): bilinear interpolation blurs
    # each view by another amount, which biases phase correlation on one-pixel blobs
    moved = _views(blobs, tilts, sigma=1.0, shifts=(sy, sx))
    counts = rng.poisson(moved * 30)[None]
    haadf = moved + rng.normal(0, 0.03, moved.shape)
    maps = het.alignment.with_reference_images(het.element_maps_from_array(counts, tilts, ["Au"]), haadf)

    registered = maps.to_etspy(haadf=True).stack_register("PC", upsample_factor=10)
    aligned = maps.apply_etspy_alignment(registered)
    a = Alignment.from_metadata(aligned)
    assert a.method == "etspy" and aligned.history[-1]["method"] == "etspy"
    assert np.all(aligned.data == np.round(aligned.data))  # counts stay counts
    # the corrections undo the misalignment, up to one common offset phase correlation cannot see
    for est, truth in ((a.shift_y_px, sy), (a.shift_x_px, sx)):
        err = est + truth
        assert np.abs(err - err.mean()).max() < 1.0
        assert np.std(err) < 0.3 * np.std(truth)
    # and our held-out criterion prefers it to doing nothing, on the counts
    score = alignment_score(counts[0], tilts, a.rotation_deg, a.shift_y_px, a.shift_x_px)
    assert score["difference"] < 0 and score["better"]


@pytest.mark.parametrize("shape", [(NY, NX), (NX, NX)])
def test_etspy_tilt_axis_estimate_has_the_sign_of_ours(shape):
    """Views whose tilt axis appears turned by +5 degrees (datasets.misalign): etspy's tilt_align
    finds tiltaxis = -5, our rotation_deg = +5, and its alignment puts the blobs back."""
    tilts = np.arange(-60.0, 61, 5)
    truth = _views([(5, -14, 3, 1.0), (-6, 0, -5, 1.0), (4, 14, 6, 1.0)], tilts, sigma=2.0, shape=shape)
    moved, _, _ = datasets.misalign(truth[None], max_shift_px=0, rotation_deg=5.0)
    maps = het.element_maps_from_array(moved, tilts, ["Au"])
    stack = maps.to_etspy().tilt_align("CoM")
    a = alignment_from_etspy(stack, maps)
    assert a.rotation_deg == pytest.approx(5.0, abs=0.5)
    aligned = apply_alignment(maps, a, resample="bilinear").data[0]
    # along the axis (each view summed across it): the blobs are back in their rows
    assert _relative_rms(aligned.sum(2), truth.sum(2)) < 0.3 * _relative_rms(moved[0].sum(2), truth.sum(2))
    if shape[0] == shape[1]:  # and the whole views
        assert _relative_rms(aligned, truth) < 0.2 * _relative_rms(moved[0], truth)
    # across the axis on views that are not square, etspy 1.3 leaves about 0.7 px: TiltCOMAligner takes the
    # axis position at slice ny / 2 (its size across the axis) instead of nx / 2; its own align_other does too


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_refused_with_what_to_do(smooth):
    stack = smooth.to_etspy()
    with pytest.raises(TypeError, match="TomoStack"):
        alignment_from_etspy(het.element_maps_from_array(np.ones((1, 5, 4, 4)), smooth.tilts, ["Au"]), smooth)
    with pytest.raises(InputError, match="4 views but the series has 5"):
        alignment_from_etspy(stack.inav[1:], smooth)
    other = stack.deepcopy()
    other.tilts = smooth.tilts + 1
    with pytest.raises(InputError, match="tilts"):
        apply_etspy_alignment(smooth, other)
    untransposed = etspy.TomoStack(np.asarray(smooth.data[0], np.float32), tilts=smooth.tilts)
    with pytest.raises(InputError, match="transposed"):
        alignment_from_etspy(untransposed, smooth)
    cropped = stack.deepcopy()
    cropped.metadata.Tomography.cropped = True
    with pytest.raises(InputError, match="crop"):
        alignment_from_etspy(cropped, smooth)
    aligned = apply_etspy_alignment(smooth, _carrier(stack, **KNOWN))
    for call in (lambda: to_etspy(aligned), lambda: alignment_from_etspy(stack, aligned)):
        with pytest.raises(InputError, match="aligned already"):
            call()
    two = het.element_maps_from_array(np.ones((2, 5, 8, 8)), smooth.tilts, ["Au", "Ag"])
    with pytest.raises(InputError, match="choose one"):
        two.to_etspy()
    with pytest.raises(InputError, match="Unknown element 'Zn'"):
        two.to_etspy(element="Zn")
    with pytest.raises(InputError, match="no reference images"):
        two.to_etspy(haadf=True)
    with pytest.raises(InputError, match="not both"):
        two.to_etspy(element="Au", haadf=True)
    spectra = het.tilt_series_from_array(np.ones((5, 8, 8, 3)), smooth.tilts, 0.01)
    with pytest.raises(InputError, match="haadf=True"):
        spectra.to_etspy()
    with pytest.raises(InputError, match="views"):
        alignment_to_etspy(Alignment.identity(3), stack)
    with pytest.raises(TypeError, match="TomoStack"):
        alignment_to_etspy(Alignment.identity(5), smooth)
    # what etspy's tilt_align("CoM") records on views without a rotation (a line fit of infinite slope)
    failed = _carrier(stack, KNOWN["shifts"], -90.0, 0.0, float("inf"))
    with pytest.raises(InputError, match="yshift is inf"):
        alignment_from_etspy(failed, smooth)


def test_without_etspy_the_error_says_how_to_install_it(smooth, monkeypatch):
    monkeypatch.setitem(sys.modules, "etspy.base", None)  # import etspy.base now raises ImportError
    with pytest.raises(ImportError, match="pip install etspy"):
        smooth.to_etspy()


def test_the_documented_example_runs():
    text = (Path(__file__).resolve().parents[1] / "docs" / "alignment.rst").read_text()
    section = text.split("Bringing an etspy alignment\n", 1)[1].split("\n----", 1)[0]
    code = re.search(r"\.\. code-block:: python\n\n(.*?)\n\S", section + "\nEND", flags=re.DOTALL).group(1)
    exec(compile("\n".join(line[4:] for line in code.splitlines()), "docs/alignment.rst", "exec"), {})
