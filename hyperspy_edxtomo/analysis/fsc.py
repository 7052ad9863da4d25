"""Fourier shell correlation (FSC) between two independent reconstructions.

The FSC of two volumes ``a`` and ``b`` in the shell of spatial frequencies
``|k| ~ f`` is

.. math:: FSC(f) = \\frac{\\mathrm{Re}\\sum_{|k| \\in f} A(k) B^*(k)}
          {\\sqrt{\\sum |A(k)|^2 \\sum |B(k)|^2}}

with ``A``, ``B`` their Fourier transforms. Two reconstructions from
independent halves of the data (binomially split counts, or even and odd
tilts) agree where the signal dominates the noise; the resolution is the
inverse of the frequency where the FSC first falls below a threshold:

* ``0.143`` (Rosenthal & Henderson 2003), and
* the 1/2-bit curve of van Heel & Schatz (2005),
  ``T(n) = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))`` with
  ``n`` the number of voxels in the shell.

Both are for the FSC of *half* data sets: a reconstruction from all the data
resolves somewhat finer than the number given.

A mask shared by the two volumes correlates them by itself: its edge turns
their common low-frequency content into common high-frequency content. For
smooth (regularised, denoised) volumes, whose own high-frequency power is
small, that alone can hold the FSC up to Nyquist. The masked FSC is
therefore corrected by noise substitution (Chen et al. 2013,
Ultramicroscopy 135, 24): the phases of both volumes are randomised beyond
a frequency where their FSC is still high, the randomised volumes are
masked and correlated (``FSC_n``), and beyond that frequency
``FSC = (FSC_t - FSC_n) / (1 - FSC_n)``. The phases are randomised from
where the FSC of the unmasked volumes, or the masked one, first falls below
0.8, whichever comes first.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np
from hyperspy.signals import Signal1D

from hyperspy_edxtomo.analysis.checks import (
    normalised_sum,
    positive,
    select_elements,
    volume_array,
)
from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.counts import count_split, is_counts
from hyperspy_edxtomo.base.errors import InputError, InputTypeError, warn
from hyperspy_edxtomo.base.private_api import is_lazy, with_new_data
from hyperspy_edxtomo.base.provenance import append_history, get_history, plain_record
from hyperspy_edxtomo.plugins.manager import get_algorithm
from hyperspy_edxtomo.reconstruction.api import DEFAULT_METHOD
from hyperspy_edxtomo.signals.background import set_background
from hyperspy_edxtomo.signals.element_maps import ElementMapTiltSeries
from hyperspy_edxtomo.signals.methods import signal_method
from hyperspy_edxtomo.signals.tilts import element_axis_dict
from hyperspy_edxtomo.signals.volume import ElementVolume, volume_from_array

__all__ = ["fourier_shell_correlation", "fsc_from_tilt_series", "fsc_curve", "half_bit_threshold", "randomise_phases",
           "soft_mask", "fsc_sampling_problem", "fsc_halves_parameters", "halves_tilts"]

#: The fixed FSC threshold (Rosenthal & Henderson 2003).
THRESHOLD_0143 = 0.143
Mask = Literal["auto", "sphere"]
MASK_CHOICES = (*get_args(Mask), None)
#: The FSC (unmasked or masked) below which the phases are randomised (noise substitution).
RANDOMISE_BELOW = 0.8
RANDOMISE_SEED = 0
Split = Literal["counts", "tilts"]
SPLIT_CHOICES = get_args(Split)
#: halves with fewer tilts than this, or with a wider step between neighbouring tilts, get a warning
MIN_FSC_TILTS = 3
MAX_FSC_STEP_DEG = 30.0


def half_bit_threshold(n_voxels):
    """The 1/2-bit threshold curve of van Heel & Schatz (2005).

    Parameters
    ----------
    n_voxels : array-like
        Number of Fourier voxels in each shell.

    Returns
    -------
    numpy.ndarray
        ``(0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))``: 1 for
        one voxel, tending to 0.1716 for large shells.

    Examples
    --------
    >>> from hyperspy_edxtomo.analysis import half_bit_threshold
    >>> [round(float(t), 4) for t in half_bit_threshold([1, 100, 1e12])]
    [1.0, 0.3067, 0.1716]
    """
    n = np.maximum(np.asarray(n_voxels, dtype=float), 1.0)
    s = 1.0 / np.sqrt(n)
    return (0.2071 + 1.9102 * s) / (1.2071 + 0.9102 * s)


def fsc_curve(a, b, voxel_size=1.0):
    """FSC of two 3D numpy arrays, shell by shell.

    Shells are one Fourier voxel of the smallest dimension thick
    (``1 / (min(shape) * voxel_size)``), centred on multiples of that step,
    from 0 to the Nyquist frequency ``1 / (2 * voxel_size)``.

    Parameters
    ----------
    a, b : numpy.ndarray
        Two volumes of the same 3D shape (already masked if wanted).
    voxel_size : float
        Voxel size; frequencies are in its inverse units.

    Returns
    -------
    frequencies, fsc, n_voxels : numpy.ndarray
        Shell centres, the FSC (NaN in a shell where either volume has no
        power) and the number of Fourier voxels in each shell.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.analysis import fsc_curve
    >>> a = np.random.default_rng(0).normal(size=(16, 16, 16))
    >>> f, fsc, n = fsc_curve(a, 2 * a, voxel_size=0.5)
    >>> bool(np.allclose(fsc, 1)), float(f[-1])
    (True, 1.0)
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 3:
        raise InputError(f"fsc_curve needs two 3D arrays of the same shape, got {a.shape} and {b.shape}.")
    A = np.fft.fftn(a)
    B = np.fft.fftn(b)
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d=voxel_size) for n in a.shape], indexing="ij")
    k = np.sqrt(sum(f**2 for f in freqs))
    step = 1.0 / (min(a.shape) * voxel_size)
    n_shells = int(np.floor(0.5 / voxel_size / step + 1e-9)) + 1
    shell = np.rint(k / step).astype(np.int64).ravel()
    keep = shell < n_shells
    shell = shell[keep]
    num = np.bincount(shell, (A * np.conj(B)).real.ravel()[keep], n_shells)
    pa = np.bincount(shell, (np.abs(A) ** 2).ravel()[keep], n_shells)
    pb = np.bincount(shell, (np.abs(B) ** 2).ravel()[keep], n_shells)
    count = np.bincount(shell, minlength=n_shells)[:n_shells]
    den = np.sqrt(pa * pb)
    tiny = 1e-12 * max(float(pa.max()), float(pb.max()), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = np.where((pa > tiny) & (pb > tiny), num / np.where(den > 0, den, 1.0), np.nan)
    return np.arange(n_shells) * step, np.clip(fsc, -1.0, 1.0), count


def crossing(frequencies, fsc, threshold):
    """First frequency (after the zero shell) where ``fsc`` falls below ``threshold``.

    Linear interpolation between the shells around the crossing.

    Returns
    -------
    frequency : float
        The crossing, or the last frequency if the FSC never falls below.
    reached_end : bool
        True if the FSC stays above the threshold up to the last shell (the
        resolution is then limited by the sampling: at most 2 voxels).
    """
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), np.shape(fsc))
    diff = np.asarray(fsc, dtype=float) - thr
    diff = np.where(np.isnan(diff), -1.0, diff)  # no power: no correlation
    below = np.nonzero(diff[1:] < 0)[0]
    if below.size == 0:
        return float(frequencies[-1]), True
    i = int(below[0]) + 1
    d0, d1 = diff[i - 1], diff[i]
    t = d0 / (d0 - d1) if d0 > 0 else 0.0
    return float(frequencies[i - 1] + t * (frequencies[i] - frequencies[i - 1])), False


def soft_mask(shape, kind="sphere", data=None, voxel_size=1.0, dilation=1.0, edge=1.0):
    """A mask with a raised-cosine edge, values in [0, 1], shaped ``shape`` (z, y, x).

    Parameters
    ----------
    shape : tuple of int
    kind : {"sphere", "auto"}
        ``"sphere"``: the largest sphere in the box (less ``edge``).
        ``"auto"``: the object in ``data`` (a 3D array), thresholded (Otsu)
        after a Gaussian smoothing of one voxel, grown by ``dilation``.
    data : numpy.ndarray, optional
        Needed for ``"auto"``.
    voxel_size : float
    dilation, edge : float
        Growth of the object and width of the cosine edge, in the units of
        ``voxel_size``.

    Returns
    -------
    numpy.ndarray
    """
    from scipy import ndimage

    edge_vox = max(edge / voxel_size, 1e-6)
    if kind == "sphere":
        grids = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in shape], indexing="ij")
        r = np.sqrt(sum(g**2 for g in grids))
        radius = min(shape) / 2 - edge_vox - 0.5
        if radius <= 0:
            raise InputError(f"The box {shape} is too small for a spherical mask with a {edge} edge.")
        dist = r - radius
    elif kind == "auto":
        from skimage.filters import threshold_otsu

        smooth = ndimage.gaussian_filter(np.asarray(data, dtype=float), 1.0)
        if not np.ptp(smooth) > 0:
            raise InputError("Cannot make a mask from a constant (e.g. empty) volume: pass mask=None or 'sphere'.")
        obj = smooth > threshold_otsu(smooth)
        dist = ndimage.distance_transform_edt(~obj) - dilation / voxel_size
    else:
        raise InputError(f"Unknown mask kind {kind!r}: choose one of {MASK_CHOICES} or give an array.")
    return np.where(dist <= 0, 1.0, np.where(dist >= edge_vox, 0.0, 0.5 + 0.5 * np.cos(np.pi * dist / edge_vox)))


def randomise_phases(volume, beyond, voxel_size=1.0, rng=None):
    """``volume`` with the Fourier phases beyond the frequency ``beyond``
    replaced by random ones (amplitudes kept; the result stays real).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.analysis.fsc import randomise_phases
    >>> v = np.random.default_rng(0).normal(size=(8, 8, 8))
    >>> w = randomise_phases(v, 0.2, rng=np.random.default_rng(1))
    >>> bool(np.allclose(np.abs(np.fft.fftn(w)), np.abs(np.fft.fftn(v))))
    True
    """
    rng = np.random.default_rng(rng)
    F = np.fft.fftn(np.asarray(volume, dtype=float))
    k = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(n, d=voxel_size) for n in F.shape], indexing="ij")))
    # the phases of real white noise: Hermitian, so the volume stays real
    phase = np.exp(1j * np.angle(np.fft.fftn(rng.standard_normal(F.shape))))
    return np.fft.ifftn(np.where(k > beyond, F * phase, F)).real


def _masked(x, m):
    """``x`` masked, less its masked mean (so the DC term does not leak into low shells)."""
    x = x * m
    return x - m * (x.sum() / m.sum())


def _noise_substituted(a, b, m, voxel_size, freqs, fsc, rng):
    """The masked FSC corrected for the mask (Chen et al. 2013), and the
    frequency beyond which the phases were randomised: where the FSC of the
    unmasked volumes, or the masked one, first falls below
    ``RANDOMISE_BELOW`` (the mask can hold the masked FSC up past the point
    where the signal ends). None: neither falls below, nothing to correct."""
    _, plain, _ = fsc_curve(a - a.mean(), b - b.mean(), voxel_size)
    firsts = []
    for curve in (plain, fsc):
        below = np.nonzero(np.nan_to_num(curve[1:], nan=-1.0) < RANDOMISE_BELOW)[0]
        if below.size:
            firsts.append(int(below[0]) + 1)
    if not firsts:
        return fsc, None
    beyond = float(freqs[min(firsts)])
    _, fsc_n, _ = fsc_curve(_masked(randomise_phases(a, beyond, voxel_size, rng), m),
                            _masked(randomise_phases(b, beyond, voxel_size, rng), m), voxel_size)
    fsc_n = np.nan_to_num(fsc_n, nan=0.0)
    corrected = (fsc - fsc_n) / np.maximum(1.0 - fsc_n, 1e-6)
    return np.where(freqs > beyond, np.clip(corrected, -1.0, 1.0), fsc), beyond


@signal_method(ElementVolume)
def fourier_shell_correlation(volume: ElementVolume, other: ElementVolume, elements: Sequence[str] | str | None = None,
                              mask: Mask | None = "auto", mask_dilation_nm: float = 1.0, mask_edge_nm: float = 1.0,
                              mask_correction: bool = True) -> Signal1D:
    """Fourier shell correlation between two reconstructions of the same object.

    Parameters
    ----------
    volume, other : ElementVolume
        Two reconstructions from independent halves of the data, of the same
        shape, voxel size and elements.
    elements : None, str or list of str
        Elements to compare; None: all.
    mask : {"auto", "sphere", None} or array-like
        Applied to both volumes before the Fourier transform (the same mask
        for every element):

        * ``"auto"`` (default): the object (both volumes, all elements,
          Otsu threshold) grown by ``mask_dilation_nm`` with a raised-cosine
          edge ``mask_edge_nm`` wide -- keeps the noise of the empty
          surroundings out of the correlation;
        * ``"sphere"``: the largest sphere in the box with a cosine edge
          (apodisation of the box edges only);
        * None: no mask (edges of the box contribute);
        * an array shaped (z, y, x) with values in [0, 1].
    mask_dilation_nm, mask_edge_nm : float
        Growth of the ``"auto"`` mask and width of the soft edge (``"auto"``
        and ``"sphere"``), in the volume's units (nm).
    mask_correction : bool
        With a mask: correct the FSC for the correlation the mask makes by
        itself, by noise substitution (see the module's description).

    Returns
    -------
    hyperspy.signals.Signal1D
        The FSC (corrected for the mask), navigation axis ``element``, signal
        axis ``spatial_frequency`` (1/nm) from 0 to Nyquist. In
        ``metadata.Tomography.FSC``: ``resolution_0143`` and
        ``resolution_half_bit`` (``{element: value}``, in ``units``),
        ``nyquist_limited_0143`` / ``nyquist_limited_half_bit``
        (``{element: bool}``: the FSC never fell below the threshold, so the
        resolution is only bounded by 2 voxels), ``half_bit_threshold`` and
        ``shell_voxels`` (per shell); with the correction also
        ``randomised_beyond`` (``{element: frequency or None}``),
        ``uncorrected`` (the masked FSC before it, per element) and
        ``resolution_0143_uncorrected``. The analysis is in the history.

    Raises
    ------
    ValueError
        Volumes of different shapes, voxel sizes or elements; NaN; an empty
        or constant volume with ``mask="auto"``; a bad mask.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom(size=32)
    >>> fsc = vol.fourier_shell_correlation(vol)      # identical: FSC = 1
    >>> fsc.axes_manager.signal_axes[0].units
    '1/nm'
    >>> round(fsc.metadata.Tomography.FSC.resolution_0143["Zn"], 3)   # 2 voxels: Nyquist
    0.378
    """
    a, scale, units, els = volume_array(volume, "first volume")
    b, scale_b, units_b, els_b = volume_array(other, "second volume")
    if a.shape != b.shape:
        raise InputError(f"The two volumes differ in shape: {a.shape} and {b.shape}.")
    if els != els_b:
        raise InputError(f"The two volumes hold different elements: {els} and {els_b}.")
    if not np.isclose(scale, scale_b, rtol=1e-6) or units != units_b:
        raise InputError(f"The two volumes differ in voxel size: {scale} {units} and {scale_b} {units_b}.")
    idx = select_elements(els, elements)
    shape = a.shape[1:]
    if min(shape) < 4:
        raise InputError(f"The volumes are too small for an FSC (shape {shape}); at least 4 voxels a side.")
    mask_dilation_nm = positive(mask_dilation_nm, "mask_dilation_nm", allow_zero=True)
    mask_edge_nm = positive(mask_edge_nm, "mask_edge_nm", allow_zero=True)
    if mask is None:
        m, mask_desc = None, "none"
    elif isinstance(mask, str):
        if mask not in ("auto", "sphere"):
            raise InputError(f"Unknown mask {mask!r}: choose one of {MASK_CHOICES} or give an array.")
        ref = normalised_sum(a[idx]) + normalised_sum(b[idx]) if mask == "auto" else None
        m = soft_mask(shape, mask, ref, scale, mask_dilation_nm, mask_edge_nm)
        mask_desc = mask
    else:
        m = np.asarray(mask, dtype=float)
        if m.shape != shape or not np.all(np.isfinite(m)) or m.min() < 0 or m.max() > 1:
            raise InputError(f"A mask array must be shaped {shape} (z, y, x) with values in [0, 1].")
        mask_desc = "array"
    if m is not None and not m.any():
        raise InputError("The mask is empty: nothing to correlate.")

    correct = bool(mask_correction) and m is not None
    rng = np.random.default_rng(RANDOMISE_SEED)
    curves, res143, res_hb, lim143, lim_hb = [], {}, {}, {}, {}
    beyond, uncorrected, res143_unc = {}, {}, {}
    freqs = counts = threshold = None
    for i in idx:
        x, y = (a[i], b[i]) if m is None else (_masked(a[i], m), _masked(b[i], m))
        freqs, fsc, counts = fsc_curve(x, y, scale)
        if correct:
            uncorrected[els[i]] = np.asarray(fsc, float)
            f_unc, _ = crossing(freqs, fsc, THRESHOLD_0143)
            res143_unc[els[i]] = float(1.0 / f_unc) if f_unc > 0 else float("inf")
            fsc, beyond[els[i]] = _noise_substituted(a[i], b[i], m, scale, freqs, fsc, rng)
        threshold = half_bit_threshold(counts)
        f143, l143 = crossing(freqs, fsc, THRESHOLD_0143)
        fhb, lhb = crossing(freqs, fsc, threshold)
        el = els[i]
        res143[el] = float(1.0 / f143) if f143 > 0 else float("inf")
        res_hb[el] = float(1.0 / fhb) if fhb > 0 else float("inf")
        lim143[el], lim_hb[el] = l143, lhb
        curves.append(fsc)

    from hyperspy.signals import Signal1D

    names = [els[i] for i in idx]
    freq_units = f"1/{units}"
    sig = Signal1D(
        np.stack(curves),
        axes=[
            element_axis_dict(len(names)),
            {"name": "spatial_frequency", "size": len(freqs), "offset": 0.0, "scale": float(freqs[1] - freqs[0]),
             "units": freq_units, "navigate": False},
        ],
    )
    sig.metadata.General.title = f"Fourier shell correlation of {volume.metadata.General.title}"
    sig.metadata.set_item("Sample.elements", names)
    sig.metadata.set_item("Signal.quantity", "FSC")
    info = {
        "resolution_0143": res143,
        "resolution_half_bit": res_hb,
        "nyquist_limited_0143": lim143,
        "nyquist_limited_half_bit": lim_hb,
        "units": units,
        "voxel_size": scale,
        "threshold_0143": THRESHOLD_0143,
        "half_bit_threshold": np.asarray(threshold, float),
        "shell_voxels": np.asarray(counts),
        "mask": mask_desc,
        "mask_dilation_nm": mask_dilation_nm,
        "mask_edge_nm": mask_edge_nm,
        "mask_correction": correct,
    }
    if correct:
        info.update(randomised_beyond=beyond, uncorrected=uncorrected, resolution_0143_uncorrected=res143_unc,
                    randomise_below=RANDOMISE_BELOW, randomise_seed=RANDOMISE_SEED)
    sig.metadata.set_item(f"{NODE}.FSC", plain_record(info))
    sig.metadata.set_item(f"{NODE}.history", get_history(volume))
    append_history(
        sig,
        "analysis",
        "fourier_shell_correlation",
        {"elements": names, "mask": mask_desc, "mask_dilation_nm": mask_dilation_nm, "mask_edge_nm": mask_edge_nm,
         "mask_correction": correct, "resolution_0143": res143, "resolution_half_bit": res_hb, "units": units,
         "other_history": get_history(other)[-1:]},
    )
    return sig


def fsc_sampling_problem(tilts_first, tilts_second, split="counts"):
    """Why halves with these tilts make an FSC that cannot be trusted, or None.

    Both halves of a count split hold the same few views, and the halves of
    a tilt split each hold every other view: with few views (fewer than
    :data:`MIN_FSC_TILTS` in a half) or a wide angular step (over
    :data:`MAX_FSC_STEP_DEG` degrees between neighbouring views of a half),
    the streaks of the sparse sampling dominate both reconstructions. They
    are the same in both halves of a count split, so the halves agree on
    them and the FSC claims a resolution the data do not hold; each half of
    a tilt split has its own, so the FSC measures the sampling, not the
    noise.

    Parameters
    ----------
    tilts_first, tilts_second : array-like
        Tilt angles (degrees) of the two halves.
    split : str
        How the halves were made (for the message).

    Returns
    -------
    None or str

    Examples
    --------
    >>> from hyperspy_edxtomo.analysis.fsc import fsc_sampling_problem
    >>> fsc_sampling_problem([-20, 0, 20], [-20, 0, 20]) is None
    True
    >>> print(fsc_sampling_problem([-30, 30], [-30, 30]))  # doctest: +ELLIPSIS
    each FSC half holds only 2 tilts (fewer than 3): ...
    """
    halves = [np.sort(np.asarray(t, dtype=float).ravel()) for t in (tilts_first, tilts_second)]
    n = min(h.size for h in halves)
    same = "the same views in both halves" if split == "counts" else "a different set of views in each half"
    if n < MIN_FSC_TILTS:
        return (f"each FSC half holds only {n} tilt{'s' if n != 1 else ''} (fewer than {MIN_FSC_TILTS}): the "
                f"reconstructions are dominated by the streaks of so few views ({same}), and the FSC resolution "
                "does not measure the resolution of the volume")
    step = max(float(np.diff(h).max()) for h in halves)
    if step > MAX_FSC_STEP_DEG:
        return (f"the FSC halves have tilt steps of up to {step:.0f} deg (more than {MAX_FSC_STEP_DEG:g}): the "
                f"reconstructions are dominated by the streaks of the sparse angular sampling ({same}), and the "
                "FSC resolution does not measure the resolution of the volume")
    return None


def halves_tilts(tilts, split: str = "counts") -> tuple[np.ndarray, np.ndarray]:
    """The tilt angles of the two halves :func:`split_tilt_series` makes of a series with ``tilts``.

    Parameters
    ----------
    tilts : array-like
        Tilt angles (degrees) of the series, in its order.
    split : {"counts", "tilts"}
        ``"counts"``: both halves hold every view; ``"tilts"``: the even and
        the odd views.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        What :func:`fsc_sampling_problem` judges.

    Examples
    --------
    >>> from hyperspy_edxtomo.analysis.fsc import halves_tilts
    >>> [h.tolist() for h in halves_tilts([-40, -20, 0, 20, 40], "tilts")]
    [[-40.0, 0.0, 40.0], [-20.0, 20.0]]
    """
    tilts = np.asarray(tilts, dtype=float).ravel()
    if split == "counts":
        return tilts, tilts.copy()
    if split == "tilts":
        return tilts[0::2], tilts[1::2]
    raise InputError(f"Unknown split {split!r}: choose one of {SPLIT_CHOICES}.")


def split_tilt_series(maps: ElementMapTiltSeries, split: Split = "counts", seed: int = 0,
                      raw: ElementMapTiltSeries | None = None):
    """Two independent halves of an element-map tilt series.

    Parameters
    ----------
    maps : ElementMapTiltSeries
    split : {"counts", "tilts"}
        ``"counts"``: every count goes to one half or the other at random
        (binomial thinning, :func:`hyperspy_edxtomo.base.counts.count_split`):
        two series of the same views with half the dose each (needs integer
        counts); a background attached to the maps
        (``metadata.Tomography.background``) is halved with them. ``"tilts"``:
        even and odd views (each half has twice the tilt step, and the
        background of its views).
    seed : int
        Seed of the count split.
    raw : None or ElementMapTiltSeries
        For aligned ``maps`` (interpolated: no longer integer counts) and
        ``split="counts"``: the unaligned counts of the same views. They are
        split, and each half is moved by the alignment stored in ``maps``.

    Returns
    -------
    (ElementMapTiltSeries, ElementMapTiltSeries)
    """
    if not isinstance(maps, ElementMapTiltSeries):
        raise InputTypeError(f"Needs an ElementMapTiltSeries, got {type(maps).__name__}.")
    if split == "counts":

        source = maps if raw is None else raw
        counts = source.to_numpy()
        if raw is None and not is_counts(counts):
            aligned = maps.metadata.has_item(f"{NODE}.alignment")
            raise InputError(
                "These maps are not integer counts" + (" (they were aligned, i.e. interpolated)" if aligned else "")
                + ": a count split needs the raw counts. Pass raw=<the unaligned maps> (each half is then moved "
                "by the stored alignment), or use split='tilts'."
            )
        if raw is not None:
            if not isinstance(raw, ElementMapTiltSeries) or raw.data.shape != maps.data.shape:
                raise InputError("raw must be the unaligned ElementMapTiltSeries of the same shape as maps.")
            if raw.elements != maps.elements or not np.allclose(raw.tilts, maps.tilts):
                raise InputError("raw must hold the same elements and tilts as maps.")
        fraction = 0.5
        first, second = count_split(counts, fraction, seed)
        # each count of the data goes to a half with probability fraction (1 - fraction): the
        # background counts too, so each half's expected background is that fraction of b
        background = source.background
        halves = []
        for k, (data, share) in enumerate(((first, fraction), (second, 1.0 - fraction))):
            half = with_new_data(source, data)
            if is_lazy(half):
                half.compute()
            set_background(half, None if background is None else np.float32(share) * background)
            if raw is not None:
                half = maps.apply_alignment(half)
            append_history(half, "fsc_split", "counts", {"half": k, "seed": seed})
            halves.append(half)
        _warn_sampling(halves, split)
        return tuple(halves)
    if split == "tilts":
        n = maps.tilts.size
        if n < 4:
            raise InputError(f"Splitting into even and odd tilts needs at least 4 tilts, got {n}.")
        halves = []
        for k in (0, 1):
            half = maps.inav[k::2].deepcopy()
            append_history(half, "fsc_split", "tilts", {"half": k, "tilts_deg": half.tilts})
            halves.append(half)
        _warn_sampling(halves, split)
        return tuple(halves)
    raise InputError(f"Unknown split {split!r}: choose one of {SPLIT_CHOICES}.")


def _warn_sampling(halves, split):
    problem = fsc_sampling_problem(halves[0].tilts, halves[1].tilts, split)
    if problem:
        warn(f"FSC: {problem}. Record more tilts (a step of at most {MAX_FSC_STEP_DEG:g} deg) for a meaningful "
             "resolution.")


@signal_method(ElementMapTiltSeries, name="fourier_shell_correlation")
def fsc_from_tilt_series(maps: ElementMapTiltSeries, method: str = DEFAULT_METHOD, split: Split = "counts",
                         seed: int = 0, raw: ElementMapTiltSeries | None = None,
                         elements: Sequence[str] | str | None = None, mask: Mask | None = "auto",
                         mask_dilation_nm: float = 1.0, mask_edge_nm: float = 1.0, mask_correction: bool = True,
                         return_volumes: bool = False,
                         element_parameters: Mapping[str, Mapping[str, Any]] | None = None,
                         **reconstruct_params) -> Signal1D | tuple[Signal1D, ElementVolume, ElementVolume]:
    """Reconstruct two independent halves of a tilt series and their FSC.

    Parameters
    ----------
    maps : ElementMapTiltSeries
        Aligned element maps.
    method : str
        Reconstruction method (``hyperspy_edxtomo.list_algorithms()``).
    split : {"counts", "tilts"}
        How to make the halves (see :func:`split_tilt_series`).
    seed : int
        Seed of the count split and of the halves' reconstructions
        (``reconstruct(seed=)``).
    raw : None or ElementMapTiltSeries
        The unaligned counts when ``maps`` are aligned (see
        :func:`split_tilt_series`).
    elements, mask, mask_dilation_nm, mask_edge_nm, mask_correction
        See :func:`fourier_shell_correlation`.
    return_volumes : bool
        Also return the two reconstructions.
    element_parameters : None or dict
        ``{element: parameters}``, e.g. from :func:`fsc_halves_parameters`:
        each element of each half is reconstructed on its own, with
        ``reconstruct_params`` updated by its own parameters (a strength
        chosen per element). None: each half in one call.
    **reconstruct_params
        Passed to ``maps.reconstruct`` for both halves (e.g. ``lam``,
        ``iterations``, ``show_progressbar``).

    Returns
    -------
    Signal1D, or (Signal1D, ElementVolume, ElementVolume)
        The FSC as from :func:`fourier_shell_correlation`, with ``split``,
        ``seed`` and ``method`` added to ``metadata.Tomography.FSC``. The
        resolution is that of half the data.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.quantum_dot_element_maps(size=24, seed=0)
    >>> fsc = maps.fourier_shell_correlation("sirt", element_parameters={el: {"iterations": 5} for el in maps.elements})
    >>> fsc.metadata.Tomography.FSC.method, fsc.metadata.Sample.elements == maps.elements
    ('sirt', True)
    """
    if split not in SPLIT_CHOICES:
        raise InputError(f"Unknown split {split!r}: choose one of {SPLIT_CHOICES}.")
    first, second = split_tilt_series(maps, split, seed, raw=raw)
    reconstruct_params = {**reconstruct_params, "seed": seed}  # one seed: the split's and the method's
    if element_parameters is None:
        v1 = first.reconstruct(method=method, **reconstruct_params)
        v2 = second.reconstruct(method=method, **reconstruct_params)
    else:
        v1 = _reconstruct_by_element(first, method, element_parameters, reconstruct_params)
        v2 = _reconstruct_by_element(second, method, element_parameters, reconstruct_params)
    fsc = fourier_shell_correlation(v1, v2, elements=elements, mask=mask, mask_dilation_nm=mask_dilation_nm,
                                    mask_edge_nm=mask_edge_nm, mask_correction=mask_correction)
    fsc.metadata.set_item(f"{NODE}.FSC.split", split)
    fsc.metadata.set_item(f"{NODE}.FSC.seed", seed)
    fsc.metadata.set_item(f"{NODE}.FSC.method", method)
    return (fsc, v1, v2) if return_volumes else fsc


def _reconstruct_by_element(half, method, element_parameters, common):
    """One half, each element reconstructed with its own parameters, stacked into one volume."""

    missing = [el for el in half.elements if el not in element_parameters]
    if missing:
        raise InputError(f"element_parameters names no parameters for {missing}: give them for every element "
                         f"of {half.elements}.")
    data = []
    for el in half.elements:
        v = half.element(el).reconstruct(method=method, **{**common, **element_parameters[el]})
        data.append(v.to_numpy()[0])
    scale, units = half.pixel_size
    # the history of one element's reconstruction stands for the half's (same method, same data)
    return volume_from_array(np.stack(data), half.elements, voxel_size_nm=scale if units == "nm" else None,
                             history=v.history, title=f"{method} reconstruction of an FSC half")


def fsc_halves_parameters(volume, method: str, fsc_method: str | None = None,
                          fsc_parameters: Mapping[str, Any] | None = None) -> tuple[str, dict[str, dict[str, Any]]]:
    """The method and per-element parameters that reconstruct the FSC halves of ``volume``.

    Parameters
    ----------
    volume : ElementVolume
        The full reconstruction (its history holds the parameters used).
    method : str
        The method that made ``volume``.
    fsc_method : None or str
        None: ``method`` itself, unless it trains networks or uses the HAADF
        (then the default method, ``tv``: a learned method is not run twice
        more, and two halves sharing one HAADF series would be correlated
        through it).
    fsc_parameters : None or dict
        Parameters for the halves; they replace what is reused.

    Returns
    -------
    (str, dict)
        The method and ``{element: parameters}``, for
        :func:`fsc_from_tilt_series` (``element_parameters``). When the halves
        use the same method, the parameters of the full reconstruction are
        reused per element, with a strength ``lam`` chosen from the data
        halved (each half holds half the counts, and the data term scales
        with the counts): no second strength search. Another method gets its
        quick parameters.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> from hyperspy_edxtomo.analysis.fsc import fsc_halves_parameters
    >>> maps = datasets.quantum_dot_element_maps(size=32, seed=0)
    >>> vol = maps.reconstruct("tv", lam=4.0, iterations=20)
    >>> fsc_halves_parameters(vol, "tv")[1]["Zn"]["lam"]
    2.0
    """
    if fsc_method is None:
        # an algorithm that trains networks is not run twice more; one that uses the HAADF would give both
        # halves the same HAADF, which correlates them (its FSC would measure the HAADF, not the counts):
        # their halves get the default method
        cls = get_algorithm(method)
        fsc_method = DEFAULT_METHOD if cls.learned or cls.uses_haadf is True else method
    names = get_algorithm(fsc_method).parameter_names()
    per_element = {el: {} for el in volume.elements}
    if fsc_method == method:
        used = volume.history[-1].get("parameters", {}).get("parameters", {})
        for el in volume.elements:
            p = used.get(el, used) if isinstance(used, dict) else {}
            p = {k: v for k, v in p.items() if k in names}
            if isinstance(p.get("lam"), (int, float)):
                p["lam"] = float(p["lam"]) / 2
            per_element[el] = p
    else:
        quick = get_algorithm(fsc_method).quick_parameters
        for el in volume.elements:
            per_element[el] = dict(quick)
    for el in volume.elements:
        per_element[el].update(fsc_parameters or {})
    return fsc_method, per_element


def resolutions(fsc):
    """``{element: (resolution_0143, resolution_half_bit)}`` from an FSC signal."""
    info = fsc.metadata.get_item(f"{NODE}.FSC")
    r1 = info["resolution_0143"]
    r2 = info["resolution_half_bit"]
    return {el: (float(r1[el]), float(r2[el])) for el in fsc.metadata.Sample.elements}
