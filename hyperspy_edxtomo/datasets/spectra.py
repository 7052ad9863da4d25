"""Simulated STEM-EDX tilt series of a phantom: element maps or full spectra.

Projection (the one the whole package uses, see ``signals/_tilts.py``): rows
``y`` run along the tilt axis and every row is an independent (z, x) slice;
a point ``(x, y, z)`` of the object (coordinates from the volume centre)
appears in the view at tilt ``theta`` at column ``x cos(theta) + z sin(theta)``
and row ``y``. A view is the parallel-beam line integral of the density along
the beam direction ``(-sin(theta), cos(theta))`` in the (x, z) plane.

Counts are Poisson. ``counts_per_tilt`` is the expected number of counts of
each element per tilt in its main X-ray line (the line that
:meth:`~hyperspy_edxtomo.signals.EDXTiltSeries.get_element_maps` picks), so
maps extracted from a simulated spectrum series hold about as many counts as
maps simulated directly.
"""

import inspect

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE, atomic_number
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.private_api import fwhm_at_energy, is_lazy
from hyperspy_edxtomo.base.provenance import append_history, get_history, plain_record
from hyperspy_edxtomo.datasets.phantoms import check_positive as _positive
from hyperspy_edxtomo.datasets.phantoms import core_shell_phantom, nanorod_phantom
from hyperspy_edxtomo.signals import (
    ElementVolume,
    element_maps_from_array,
    tilt_series_from_array,
)
from hyperspy_edxtomo.signals.tilts import check_tilts, tilt_axis_dict

# docstring fragment shared by the simulators (HyperSpy's convention)
PHANTOM_TILTS_ARGS = """phantom : ElementVolume
        Relative atom densities, e.g. from :func:`core_shell_phantom`.
    tilts : None or array-like
        Tilt angles in degrees; None: 13 tilts from -60 to 60 degrees."""

__all__ = [
    "DEFAULT_COUNTS_PER_TILT",
    "HAADF_EXPONENT",
    "project",
    "simulate_haadf",
    "simulate_element_maps",
    "simulate_tilt_series",
    "xray_lines_of",
    "quantum_dot_tilt_series",
    "quantum_dot_element_maps",
    "nanorod_tilt_series",
]

#: Expected counts per element per tilt in the main X-ray line, close to real
#: STEM-EDX maps of single quantum dots (most pixels hold 0 or 1 count).
DEFAULT_COUNTS_PER_TILT = {"Se": 1500, "S": 800, "Zn": 2400, "In": 1500, "Cd": 1500, "P": 600}
#: Used for an element not in :data:`DEFAULT_COUNTS_PER_TILT`.
FALLBACK_COUNTS_PER_TILT = 1000

# Continuum in every pixel (support film, stray scattering), as a fraction of
# that at the largest projected mass thickness.
_SUPPORT_BACKGROUND = 0.02
# Default continuum from the particle, as a fraction of all X-ray line counts.
_DEFAULT_BACKGROUND_FRACTION = 0.25
# Detector low-energy cut-off (keV): efficiency exp(-(E_c / E)**3).
_DETECTOR_CUTOFF_KEV = 0.35
#: HAADF intensity per atom ~ Z**1.7 (Rutherford-like scattering, screened).
HAADF_EXPONENT = 1.7


def default_tilts(tilts):

    return check_tilts(np.linspace(-60.0, 60.0, 13) if tilts is None else tilts)


def _footprint_cdf(t, a, b):
    """CDF of a unit square's shadow (boxes of widths a >= b convolved), centred at 0."""
    if b < 1e-9:
        return np.clip(t / a + 0.5, 0.0, 1.0)

    def q(v):
        return 0.5 * np.maximum(v, 0.0) ** 2

    h, d = (a + b) / 2, (a - b) / 2
    return (q(t + h) - q(t + d) - q(t - d) + q(t - h)) / (a * b)


def _projector(theta, nz, nx):
    """Sparse (nx, nz * nx) matrix projecting a (z, x) slice at tilt ``theta`` (rad).

    Each voxel is a unit square centred at column ``x cos + z sin`` (from the
    centres); its shadow along the beam (a trapezoid) is shared among the
    columns it covers in proportion to the overlap, so a point lands where
    the convention says, every view keeps the total and no moire appears.
    """
    from scipy import sparse

    cz, cx = (nz - 1) / 2, (nx - 1) / 2
    c, s = abs(np.cos(theta)), abs(np.sin(theta))
    a, b = max(c, s), min(c, s)
    z, x = np.meshgrid(np.arange(nz) - cz, np.arange(nx) - cx, indexing="ij")
    u = (x * np.cos(theta) + z * np.sin(theta) + cx).ravel()
    voxels = np.arange(nz * nx)
    rows, cols, weights = [], [], []
    for k in range(-2, 3):  # the shadow is at most sqrt(2) wide: 3 columns
        col = np.rint(u).astype(np.int64) + k
        w = _footprint_cdf(col + 0.5 - u, a, b) - _footprint_cdf(col - 0.5 - u, a, b)
        keep = (col >= 0) & (col < nx) & (w > 1e-12)
        rows.append(col[keep])
        cols.append(voxels[keep])
        weights.append(w[keep])
    return sparse.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(nx, nz * nx)
    )


def project(volume_array, tilts_deg):
    """Parallel-beam projections of a volume at the given tilts.

    Every row ``y`` is an independent (z, x) slice; its view at tilt
    ``theta`` sums the slice along the beam ``(-sin(theta), cos(theta))``:
    each voxel ``(x, z)`` (from the centre), a unit square, adds its value
    around column ``x cos(theta) + z sin(theta)`` (from the centre column),
    shared among the columns its shadow covers.

    Parameters
    ----------
    volume_array : array-like
        Shaped (element, z, y, x), or (z, y, x) for one element.
    tilts_deg : array-like
        Tilt angles in degrees.

    Returns
    -------
    numpy.ndarray
        Shaped (element, tilt, y, x) (or (tilt, y, x) for a 3D input),
        float64. A view's total is the volume's total as long as the object
        stays in the field of view.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.datasets import project
    >>> vol = np.zeros((9, 5, 9)); vol[4 + 2, 1, 4 + 2] = 1.0   # x = z = +2, row 1
    >>> p = project(vol, [0, 90])
    >>> int(p[0, 1].argmax()) - 4, int(p[1, 1].argmax()) - 4   # columns at 0 and 90 degrees
    (2, 2)
    """
    vol = np.asarray(volume_array, dtype=float)
    squeeze = vol.ndim == 3
    if squeeze:
        vol = vol[None]
    if vol.ndim != 4:
        raise InputError(f"volume_array must be shaped (element, z, y, x) or (z, y, x), got shape {vol.shape}")
    tilts = np.atleast_1d(np.asarray(tilts_deg, dtype=float)).ravel()
    n_el, nz, ny, nx = vol.shape
    # (z, x) voxels as rows, every (element, y) slice as a column
    columns = np.ascontiguousarray(vol.transpose(1, 3, 0, 2)).reshape(nz * nx, n_el * ny)
    out = np.empty((n_el, tilts.size, ny, nx))
    for j, theta in enumerate(np.deg2rad(tilts)):
        views = _projector(theta, nz, nx) @ columns  # (nx, n_el * ny)
        out[:, j] = views.reshape(nx, n_el, ny).transpose(1, 2, 0)
    return out[0] if squeeze else out


# ---------------------------------------------------------------------------------------
# inputs


def _check_phantom(phantom):
    if not isinstance(phantom, ElementVolume):
        raise InputError(
            f"phantom must be an ElementVolume (e.g. from core_shell_phantom), got {type(phantom).__name__}"
        )
    data = phantom.to_numpy()
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise InputError("The phantom must hold finite, non-negative densities.")
    if is_lazy(phantom):
        phantom = phantom.deepcopy()
        phantom.compute()
    value, units = phantom.voxel_size
    pixel_size_nm = value if units == "nm" else None
    return phantom, data, list(phantom.elements), pixel_size_nm


def per_element_counts(counts_per_tilt, elements):
    """{element: expected main-line counts per tilt}, validated."""
    def check(value, what):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"counts_per_tilt{what} must be a number, got {value!r}") from None
        if not np.isfinite(value) or value < 0:
            raise InputError(f"counts_per_tilt{what} must be a finite number >= 0, got {value!r}")
        return value

    resolved = {el: float(DEFAULT_COUNTS_PER_TILT.get(el, FALLBACK_COUNTS_PER_TILT)) for el in elements}
    if counts_per_tilt is None:
        return resolved
    if isinstance(counts_per_tilt, dict):
        unknown = [k for k in counts_per_tilt if k not in elements]
        if unknown:
            raise InputError(
                f"counts_per_tilt names element(s) {unknown} that are not in the phantom {elements}."
            )
        for el, value in counts_per_tilt.items():
            resolved[el] = check(value, f"[{el!r}]")
        return resolved
    value = check(counts_per_tilt, "")
    return {el: value for el in elements}


def _rng(seed):
    return np.random.default_rng(seed)


def _expected_maps(data, tilts, elements, counts):
    """Projections scaled so that each element's views total its counts per tilt."""
    proj = project(data, tilts)
    totals = proj.sum(axis=(2, 3), keepdims=True)
    scale = np.array([counts[el] for el in elements])[:, None, None, None]
    return proj, np.divide(proj * scale, totals, out=np.zeros_like(proj), where=totals > 0)


def int_dtype(max_value):
    return np.uint16 if max_value < np.iinfo(np.uint16).max else np.uint32


def attach_truth(signal, phantom, method, parameters):
    truth = phantom.deepcopy()
    signal.metadata.set_item("Simulation.ground_truth", truth)
    signal.metadata.set_item("Simulation.parameters", plain_record(parameters))
    signal.metadata.set_item("Tomography.history", get_history(phantom))
    append_history(signal, "simulation", method, parameters)


def _lazy(data, chunks):
    import dask.array as da

    return da.from_array(data, chunks=chunks)


# ---------------------------------------------------------------------------------------
# HAADF


def check_haadf_settings(snr, dose, exponent):
    """``(snr, dose, exponent)`` validated: snr positive or inf (None: no read noise), dose positive (None: no
    shot noise), exponent finite and >= 0."""
    def number(value, name, allow_inf=False):
        try:
            out = float(value)
        except (TypeError, ValueError):
            out = np.nan
        if not (out > 0 and (np.isfinite(out) or (allow_inf and out == np.inf))):
            raise InputError(f"{name} must be a positive number{' (or inf)' if allow_inf else ''}, got {value!r}")
        return out

    snr = None if snr is None else number(snr, "haadf_snr", allow_inf=True)
    dose = None if dose is None else number(dose, "haadf_dose")
    try:
        exponent = float(exponent)
    except (TypeError, ValueError):
        exponent = np.nan
    if not (np.isfinite(exponent) and exponent >= 0):
        raise InputError(f"haadf_exponent must be a finite number >= 0, got {exponent!r}")
    return snr, dose, exponent


def haadf_weights(elements, exponent=HAADF_EXPONENT):
    """``Z**exponent`` of each element (exspy's atomic numbers): its HAADF signal per unit density."""
    return np.array([float(atomic_number(el)) for el in elements]) ** exponent


def haadf_noise(clean, snr, dose, rng):
    """Noisy HAADF images from noiseless ones (tilt, y, x), in units of the noiseless peak.

    The images are scaled to peak 1 over the whole series; with ``dose``
    (electrons reaching the detector at that peak) each pixel becomes
    ``Poisson(dose * I) / dose`` (shot noise); with ``snr`` (finite) Gaussian
    read noise of standard deviation ``1 / snr`` is added. Without dose the
    random draws are those ``simulate_scene`` made before the dose existed.
    """
    clean = np.asarray(clean, dtype=float)
    images = clean / max(float(clean.max(initial=0.0)), 1e-30)
    if dose is not None:
        # interpolated (misaligned) views may dip below 0 by rounding: no negative rates
        images = rng.poisson(dose * np.clip(images, 0.0, None)) / dose
    if snr is not None and np.isfinite(snr):
        images = images + rng.normal(scale=1.0 / snr, size=images.shape)
    return images


def haadf_series(images, tilts, pixel_size_nm, title="Simulated HAADF reference images"):
    """(tilt, y, x) images as the ``Signal2D`` navigated by tilt that ``metadata.Tomography.reference_images``
    holds (float32; axes in nm, or pixels when ``pixel_size_nm`` is None)."""
    import hyperspy.api as hs

    scale, units = (1.0, "px") if pixel_size_nm is None else (float(pixel_size_nm), "nm")
    space = {"offset": 0.0, "scale": scale, "units": units, "navigate": False}
    axes = [tilt_axis_dict(tilts), {"name": "y", "size": images.shape[1], **space},
            {"name": "x", "size": images.shape[2], **space}]
    md = {"General": {"title": title}, "Signal": {"signal_type": ""}}
    return hs.signals.Signal2D(np.asarray(images, dtype=np.float32), axes=axes, metadata=md)


def haadf_parameters(snr, dose, exponent):
    """The HAADF entries of ``metadata.Simulation.parameters``."""
    return {"haadf_snr": snr, "haadf_dose": dose, "haadf_exponent": exponent,
            "haadf_model": "projection of sum_e Z_e**haadf_exponent rho_e scaled to peak 1; "
                           "Poisson(haadf_dose * I) / haadf_dose if haadf_dose; + Normal(0, 1 / haadf_snr)"}


def _haadf_from_projections(proj, elements, tilts, pixel_size_nm, snr, dose, exponent, rng):
    clean = np.tensordot(haadf_weights(elements, exponent), proj, axes=1)  # (tilt, y, x)
    return haadf_series(haadf_noise(clean, snr, dose, rng), tilts, pixel_size_nm)


def simulate_haadf(volume, tilts=None, snr=None, dose=None, exponent=HAADF_EXPONENT, seed=0, elements=None,
                   pixel_size_nm=None):
    """HAADF images of a phantom at every tilt.

    Model: the HAADF signal of a voxel is ``sum_e Z_e**exponent rho_e``
    (incoherent Rutherford-like scattering, screened: ``exponent`` 1.7 by
    default), projected like the X-ray maps (:func:`project`), so it lines
    up with them pixel for pixel. The noiseless series is scaled to peak 1
    (its brightest pixel over all tilts), then:

    * ``dose``: shot noise, ``Poisson(dose * I) / dose``, ``dose`` the
      electrons reaching the annular detector at the brightest pixel (a
      relative standard deviation of ``1 / sqrt(dose)`` there);
    * ``snr``: Gaussian detector (read / amplifier) noise of standard
      deviation ``1 / snr`` in every pixel, the vacuum included.

    The peak signal-to-noise ratio is then ``1 / sqrt(1 / dose + 1 / snr**2)``.
    Real STEM HAADF images of nanocrystals have peak SNRs of roughly 20 to
    100: e.g. ``dose=2000, snr=100`` gives about 41. There is no dark
    offset, no detector non-linearity and no diffraction contrast.

    Parameters
    ----------
    volume : ElementVolume or array-like
        Densities (element, z, y, x), e.g. from :func:`core_shell_phantom`.
        An array needs ``elements``.
    tilts : None or array-like
        Tilt angles in degrees; None: 13 tilts from -60 to 60 degrees.
    snr : None or float
        Peak over the Gaussian noise's standard deviation, > 0; None or
        ``inf``: no Gaussian noise.
    dose : None or float
        Electrons per pixel at the brightest pixel, > 0; None: no shot noise.
    exponent : float
        ``Z`` exponent, >= 0.
    seed : int, None or numpy.random.Generator
        Seed of the noise.
    elements : None or list of str
        Element symbols of an array's first axis (an ``ElementVolume``
        brings its own).
    pixel_size_nm : None or float
        Pixel size of an array (an ``ElementVolume`` brings its own); None:
        axes in pixels.

    Returns
    -------
    hyperspy.signals.Signal2D
        Shaped (tilt, y, x), float32, navigated by tilt, in units of the
        noiseless peak; the parameters in ``metadata.Simulation.parameters``.
        It is what ``metadata.Tomography.reference_images`` holds (see
        :func:`simulate_element_maps`, which adds it to simulated maps).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom("CdSe/ZnS", size=32)
    >>> haadf = datasets.simulate_haadf(vol, tilts=[-60, 0, 60], snr=50, dose=2000, seed=1)
    >>> haadf.data.shape, haadf.axes_manager[0].name
    ((3, 32, 32), 'tilt')
    >>> clean = datasets.simulate_haadf(vol, tilts=[-60, 0, 60])   # no noise
    >>> float(clean.data.max())
    1.0
    >>> bool(np.std(haadf.data - clean.data) < 0.05)
    True
    """
    if isinstance(volume, ElementVolume):
        _, data, vol_elements, vol_pixel = _check_phantom(volume)
        if elements is not None and list(elements) != vol_elements:
            raise InputError(f"elements {list(elements)} differ from the volume's {vol_elements}: leave elements "
                             "out for an ElementVolume.")
        elements = vol_elements
        pixel_size_nm = vol_pixel if pixel_size_nm is None else pixel_size_nm
    else:
        try:
            data = np.asarray(volume, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"volume must be an ElementVolume or an array (element, z, y, x), "
                             f"got {type(volume).__name__}") from None
        if data.ndim != 4:
            raise InputError(f"volume must be shaped (element, z, y, x), got shape {data.shape}")
        if not np.all(np.isfinite(data)) or np.any(data < 0):
            raise InputError("The volume must hold finite, non-negative densities.")
        if elements is None or isinstance(elements, str) or len(elements) != data.shape[0]:
            raise InputError(f"An array volume needs elements: one symbol per entry of its first axis "
                             f"({data.shape[0]}), got {elements!r}")
        elements = list(elements)
    if pixel_size_nm is not None:
        pixel_size_nm = _positive(pixel_size_nm, "pixel_size_nm")
    snr, dose, exponent = check_haadf_settings(snr, dose, exponent)
    tilts = default_tilts(tilts)
    out = _haadf_from_projections(project(data, tilts), elements, tilts, pixel_size_nm, snr, dose, exponent,
                                  _rng(seed))
    parameters = {"tilts_deg": tilts, "elements": elements, **haadf_parameters(snr, dose, exponent),
                  "seed": seed if not isinstance(seed, np.random.Generator) else "numpy Generator"}
    out.metadata.set_item("Simulation.parameters", plain_record(parameters))
    return out


# ---------------------------------------------------------------------------------------
# element maps


def simulate_element_maps(phantom, tilts=None, counts_per_tilt=None, seed=0, lazy=False, haadf_snr=None,
                          haadf_dose=None, haadf_exponent=HAADF_EXPONENT):
    """Poisson element maps of a phantom at every tilt, optionally with HAADF images.

    Parameters
    ----------
    {PHANTOM_TILTS_ARGS}
    counts_per_tilt : None, float or dict
        Expected counts of each element per tilt (the total of one map).
        A number applies to every element; a dict ``{"Se": 1500, ...}`` sets
        some elements and leaves the others at their default
        (:data:`DEFAULT_COUNTS_PER_TILT`: Se 1500, S 800, Zn 2400, In and Cd
        1500, P 600, other elements 1000).
    seed : int or None
        Seed of the counting noise (and of the HAADF noise, drawn after the
        counts: the counts do not depend on whether HAADF is simulated).
    lazy : bool
        If True, return the lazy (dask) twin.
    haadf_snr, haadf_dose : None or float
        If either is given, HAADF images of the same views (see
        :func:`simulate_haadf`: peak 1, Poisson shot noise from
        ``haadf_dose`` electrons at the brightest pixel, Gaussian noise of
        standard deviation ``1 / haadf_snr``; ``haadf_snr=float("inf")``
        alone gives noiseless images) in
        ``metadata.Tomography.reference_images``.
    haadf_exponent : float
        HAADF signal per atom ``Z**haadf_exponent``.

    Returns
    -------
    ElementMapTiltSeries
        Counts shaped (element, tilt, y, x) (uint16), elements in the
        phantom's order, the phantom in ``metadata.Simulation.ground_truth``
        and the parameters (the HAADF ones when simulated) in
        ``metadata.Simulation.parameters``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom("CdSe/ZnS", size=32)
    >>> maps = datasets.simulate_element_maps(vol, counts_per_tilt={"S": 500})
    >>> maps.elements, maps.tilts.size
    (['Cd', 'Se', 'S', 'Zn'], 13)
    >>> maps = datasets.simulate_element_maps(vol, haadf_snr=100, haadf_dose=2000)
    >>> maps.reference_images.data.shape
    (13, 32, 32)
    """
    phantom, data, elements, pixel_size_nm = _check_phantom(phantom)
    tilts = default_tilts(tilts)
    counts = per_element_counts(counts_per_tilt, elements)
    with_haadf = haadf_snr is not None or haadf_dose is not None
    if with_haadf:
        haadf_snr, haadf_dose, haadf_exponent = check_haadf_settings(haadf_snr, haadf_dose, haadf_exponent)
    proj, expected = _expected_maps(data, tilts, elements, counts)
    rng = _rng(seed)
    sampled = rng.poisson(expected)
    sampled = sampled.astype(int_dtype(sampled.max(initial=0)))
    if lazy:
        sampled = _lazy(sampled, (1, -1, -1, -1))
    maps = element_maps_from_array(sampled, tilts, elements, pixel_size_nm=pixel_size_nm, title="Simulated element maps")
    parameters = {"tilts_deg": tilts, "counts_per_tilt": counts, "seed": seed}
    if with_haadf:
        parameters.update(haadf_parameters(haadf_snr, haadf_dose, haadf_exponent))
    attach_truth(maps, phantom, "simulate_element_maps", parameters)
    if with_haadf:
        refs = _haadf_from_projections(proj, elements, tilts, pixel_size_nm, haadf_snr, haadf_dose, haadf_exponent,
                                       rng)
        maps.metadata.set_item(f"{NODE}.reference_images", refs)
    return maps


# ---------------------------------------------------------------------------------------
# spectra


def _fwhm_keV(energy_resolution_MnKa_eV, energy_keV):
    return float(fwhm_at_energy(energy_resolution_MnKa_eV, energy_keV))


def _main_line(element, beam_energy_keV, e_min, e_max):
    """The line exspy's ``get_element_maps`` picks: the first alpha line (sorted
    by name) in the energy range below half the beam energy, else the last."""
    from exspy.material import elements as db

    lines = db[element].Atomic_properties.Xray_lines
    alphas = sorted(
        name for name in lines.keys()
        if name in ("Ka", "La", "Ma") and e_min <= lines[name]["energy (keV)"] <= e_max
    )
    if not alphas:
        raise InputError(
            f"Element {element} has no alpha X-ray line in the energy range {e_min:.3g} to {e_max:.3g} keV: "
            "increase n_channels or energy_scale_keV."
        )
    for name in alphas:
        if lines[name]["energy (keV)"] < beam_energy_keV / 2:
            return name
    return alphas[-1]


def xray_lines_of(element, beam_energy_keV=200.0, energy_range_keV=(0.0, 20.48), other_lines_fraction=0.3):
    """The X-ray lines a simulated spectrum holds for one element.

    All lines of the family of the main line (the one exspy picks: K for S,
    P, Zn, Se; L for In, Cd in a 0-20 keV spectrum), with exspy's relative
    weights, and the lines of the other families above 0.5 keV with their
    weights times ``other_lines_fraction``. Lines above the beam energy or
    outside ``energy_range_keV`` are left out.

    Returns
    -------
    main : str
        The main line, e.g. ``"Se_Ka"``.
    lines : dict
        ``{line: (energy_keV, weight)}``; the main line has weight 1.

    Examples
    --------
    >>> from hyperspy_edxtomo.datasets.spectra import xray_lines_of
    >>> main, lines = xray_lines_of("S")
    >>> main, sorted(lines)
    ('S_Ka', ['S_Ka', 'S_Kb'])
    """
    from exspy.material import elements as db

    xlines = db[element].Atomic_properties.Xray_lines
    main = _main_line(element, beam_energy_keV, *energy_range_keV)
    family = main[0]
    w_main = float(xlines[main]["weight"])
    out = {}
    for name in xlines.keys():
        energy = float(xlines[name]["energy (keV)"])
        weight = float(xlines[name]["weight"]) / w_main
        if energy >= beam_energy_keV or not energy_range_keV[0] <= energy <= energy_range_keV[1]:
            continue
        if name[0] != family:
            if energy <= 0.5:
                continue
            weight *= other_lines_fraction
        out[f"{element}_{name}"] = (energy, weight)
    return f"{element}_{main}", out


def _continuum_shape(energies_keV, beam_energy_keV):
    """Kramers-like continuum (E0 - E) / E times a low-energy detector cut-off."""
    e = np.asarray(energies_keV, dtype=float)
    shape = np.zeros_like(e)
    ok = (e > 0) & (e < beam_energy_keV)
    shape[ok] = (beam_energy_keV - e[ok]) / e[ok] * np.exp(-((_DETECTOR_CUTOFF_KEV / e[ok]) ** 3))
    return shape


def _draw_events(pixel_counts, channel_sampler, n_channels):
    """Flat (pixel * n_channels + channel) indices of the events, one per count."""
    n = pixel_counts.ravel()
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    pixels = np.repeat(np.arange(n.size, dtype=np.int64), n)
    channels = channel_sampler(total)
    keep = (channels >= 0) & (channels < n_channels)
    return pixels[keep] * n_channels + channels[keep]


def simulate_tilt_series(
    phantom,
    tilts=None,
    counts_per_tilt=None,
    beam_energy_keV=200.0,
    energy_scale_keV=0.02,
    n_channels=1024,
    energy_resolution_MnKa_eV=130.0,
    background_counts_per_pixel=None,
    other_lines_fraction=0.3,
    seed=0,
    lazy=False,
    haadf_snr=None,
    haadf_dose=None,
    haadf_exponent=HAADF_EXPONENT,
):
    """STEM-EDX spectrum images of a phantom at every tilt (Poisson counts).

    Events are drawn sparsely: per pixel a Poisson number of X-rays of each
    element (and of the continuum), then an energy for each, histogrammed
    into channels; no expected spectra are ever built.

    * Lines: for each element all lines of the family of its main line (the
      line :meth:`~hyperspy_edxtomo.signals.EDXTiltSeries.get_element_maps`
      picks) with the relative weights of exspy's database, plus the lines of
      the other families above 0.5 keV at ``other_lines_fraction`` of their
      weight (see :func:`xray_lines_of`). Gaussian peaks whose FWHM follows
      the detector resolution (exspy's Fiori-Newbury ``get_FWHM_at_Energy``).
    * Continuum: Kramers-like ``(E0 - E) / E`` with a detector cut-off
      ``exp(-(0.35 keV / E)**3)``, in each pixel proportional to the
      projected mass thickness (densities times atomic weights) plus 2% of
      its maximum everywhere (support film).

    Parameters
    ----------
    {PHANTOM_TILTS_ARGS}
    counts_per_tilt : None, float or dict
        Expected counts of each element per tilt in its main line (e.g.
        ``Se_Ka``); the other lines add to these in proportion to their
        weights. A number applies to every element; a dict sets some
        elements and leaves the others at their default (Se 1500, S 800,
        Zn 2400, In and Cd 1500, P 600, other elements 1000).
    beam_energy_keV : float
        Beam energy (keV).
    energy_scale_keV, n_channels : float, int
        Energy axis: ``n_channels`` channels of ``energy_scale_keV`` from 0.
    energy_resolution_MnKa_eV : float
        Detector resolution (FWHM at Mn Ka, eV).
    background_counts_per_pixel : None or float
        Expected continuum counts (whole spectrum) per pixel and tilt where
        the projected mass thickness is largest. None: the continuum from the
        particle is 25% of all X-ray line counts (a few percent of a line's
        counts fall under its window).
    other_lines_fraction : float
        Weight of the lines of the other families relative to their exspy
        weights, in [0, 1].
    seed : int or None
        Seed of the counting noise (and of the HAADF noise, drawn last).
    lazy : bool
        If True, return the lazy (dask) twin.
    haadf_snr, haadf_dose, haadf_exponent
        HAADF images of the same views in
        ``metadata.Tomography.reference_images`` when ``haadf_snr`` or
        ``haadf_dose`` is given, as in :func:`simulate_element_maps`
        (``get_element_maps`` passes them on to the maps).

    Returns
    -------
    EDXTiltSeries
        Counts shaped (tilt, y, x, energy) (uint16), energy axis in keV.
        ``metadata.Sample.elements`` in the phantom's order, the microscope
        in ``metadata.Acquisition_instrument.TEM``, the phantom in
        ``metadata.Simulation.ground_truth`` and the parameters (including
        the lines and their weights) in ``metadata.Simulation.parameters``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom(size=32)
    >>> s = datasets.simulate_tilt_series(vol, counts_per_tilt=1000, seed=1)
    >>> s.data.shape, s.data.dtype
    ((13, 32, 32, 1024), dtype('uint16'))
    """
    phantom, data, elements, pixel_size_nm = _check_phantom(phantom)
    tilts = default_tilts(tilts)
    counts = per_element_counts(counts_per_tilt, elements)
    beam_energy_keV = _positive(beam_energy_keV, "beam_energy_keV")
    energy_scale_keV = _positive(energy_scale_keV, "energy_scale_keV")
    energy_resolution_MnKa_eV = _positive(energy_resolution_MnKa_eV, "energy_resolution_MnKa_eV")
    if isinstance(n_channels, (bool, np.bool_)) or not isinstance(n_channels, (int, np.integer)) or n_channels < 16:
        raise InputError(f"n_channels must be an integer >= 16, got {n_channels!r}")
    n_channels = int(n_channels)
    other_lines_fraction = float(other_lines_fraction)
    if not (0.0 <= other_lines_fraction <= 1.0):
        raise InputError(f"other_lines_fraction must be in [0, 1], got {other_lines_fraction!r}")
    e_range = (0.0, n_channels * energy_scale_keV)
    with_haadf = haadf_snr is not None or haadf_dose is not None
    if with_haadf:
        haadf_snr, haadf_dose, haadf_exponent = check_haadf_settings(haadf_snr, haadf_dose, haadf_exponent)

    from exspy.material import elements as db

    rng = _rng(seed)
    proj, expected = _expected_maps(data, tilts, elements, counts)
    shape = expected.shape[1:]  # (tilt, y, x)
    events = []  # flat indices into (tilt, y, x, channel)
    pixel_totals = np.zeros(shape, dtype=np.int64)

    def sampler_for(energies, weights, sigmas):
        p = np.asarray(weights) / np.sum(weights)

        def sample(n):
            which = rng.choice(len(p), size=n, p=p)
            e = energies[which] + rng.normal(size=n) * sigmas[which]
            return np.floor(e / energy_scale_keV).astype(np.int64)

        return sample

    line_table = {}
    for i, el in enumerate(elements):
        main, lines = xray_lines_of(el, beam_energy_keV, e_range, other_lines_fraction)
        line_table[el] = {"main_line": main, "lines": {k: [v[0], v[1]] for k, v in lines.items()}}
        energies = np.array([v[0] for v in lines.values()])
        weights = np.array([v[1] for v in lines.values()])
        sigmas = np.array([_fwhm_keV(energy_resolution_MnKa_eV, e) for e in energies]) / (2 * np.sqrt(2 * np.log(2)))
        n = rng.poisson(expected[i] * weights.sum())
        pixel_totals += n
        events.append(_draw_events(n, sampler_for(energies, weights, sigmas), n_channels))

    # continuum
    atomic_weights = np.array([float(db[el].General_properties.atomic_weight) for el in elements])
    mass = np.tensordot(atomic_weights, proj, axes=1)  # (tilt, y, x)
    mass_max = mass.max(initial=0.0)
    relative_mass = mass / mass_max if mass_max > 0 else mass
    if background_counts_per_pixel is None:
        line_total = sum(counts[el] * sum(w for _, w in line_table[el]["lines"].values()) for el in elements)
        per_view = relative_mass.sum(axis=(1, 2)).mean()
        background_counts_per_pixel = _DEFAULT_BACKGROUND_FRACTION * line_total / per_view if per_view > 0 else 0.0
    else:
        background_counts_per_pixel = float(background_counts_per_pixel)
        if not np.isfinite(background_counts_per_pixel) or background_counts_per_pixel < 0:
            raise InputError(f"background_counts_per_pixel must be a finite number >= 0, got {background_counts_per_pixel!r}")
    centres = (np.arange(n_channels) + 0.5) * energy_scale_keV
    continuum = _continuum_shape(centres, beam_energy_keV)
    if continuum.sum() > 0 and background_counts_per_pixel > 0:
        p_channel = continuum / continuum.sum()
        n_bg = rng.poisson(background_counts_per_pixel * (relative_mass + _SUPPORT_BACKGROUND))
        pixel_totals += n_bg
        events.append(_draw_events(n_bg, lambda n: rng.choice(n_channels, size=n, p=p_channel), n_channels))

    # histogram: no channel can hold more counts than its pixel
    out = np.zeros(shape + (n_channels,), dtype=int_dtype(pixel_totals.max(initial=0)))
    np.add.at(out.reshape(-1), np.concatenate(events), 1)
    if lazy:
        out = _lazy(out, (1, -1, -1, -1))
    metadata = {
        "Acquisition_instrument": {
            "TEM": {
                "beam_energy": beam_energy_keV,
                "Detector": {"EDS": {"energy_resolution_MnKa": energy_resolution_MnKa_eV}},
            }
        },
        "Sample": {"elements": list(elements)},
    }
    s = tilt_series_from_array(
        out,
        tilts,
        energy_scale_keV=energy_scale_keV,
        energy_offset_keV=0.0,
        pixel_size_nm=pixel_size_nm,
        metadata=metadata,
        title="Simulated EDX tilt series",
    )
    parameters = {
        "tilts_deg": tilts,
        "counts_per_tilt": counts,
        "beam_energy_keV": beam_energy_keV,
        "energy_scale_keV": energy_scale_keV,
        "n_channels": n_channels,
        "energy_resolution_MnKa_eV": energy_resolution_MnKa_eV,
        "background_counts_per_pixel": float(background_counts_per_pixel),
        "other_lines_fraction": other_lines_fraction,
        "xray_lines": line_table,
        "seed": seed,
    }
    if with_haadf:
        parameters.update(haadf_parameters(haadf_snr, haadf_dose, haadf_exponent))
    attach_truth(s, phantom, "simulate_tilt_series", parameters)
    if with_haadf:  # drawn last: the spectra do not depend on it
        refs = _haadf_from_projections(proj, elements, tilts, pixel_size_nm, haadf_snr, haadf_dose, haadf_exponent,
                                       rng)
        s.metadata.set_item(f"{NODE}.reference_images", refs)
    return s


# ---------------------------------------------------------------------------------------
# one-call datasets


def _split_kwargs(kwargs, simulator):
    names = set(inspect.signature(simulator).parameters) - {"phantom"}
    sim = {k: v for k, v in kwargs.items() if k in names}
    phantom = {k: v for k, v in kwargs.items() if k not in names}
    return phantom, sim


def quantum_dot_tilt_series(
    kind="InP/ZnSe/ZnS", size=64, tilts=None, counts_per_tilt=None, seed=0, lazy=False, **kwargs
):
    """A simulated spectrum-image tilt series of a core-shell quantum dot.

    :func:`core_shell_phantom` followed by :func:`simulate_tilt_series`;
    ``seed`` seeds both the particle's shape and the counting noise (for the
    same particle with other noise, call the two yourself).

    Parameters
    ----------
    kind : {"InP/ZnSe/ZnS", "CdSe/ZnS"}
        Elements ``["In", "P", "Se", "S", "Zn"]`` or ``["Cd", "Se", "S", "Zn"]``.
    size : int
        Pixels along each image edge (voxels of the phantom).
    tilts, counts_per_tilt, seed, lazy
        See :func:`simulate_tilt_series`.
    **kwargs
        Passed to :func:`simulate_tilt_series` when they name one of its
        parameters (``beam_energy_keV``, ``energy_resolution_MnKa_eV``, ...),
        otherwise to :func:`core_shell_phantom` (``voxel_size_nm``,
        ``shell_gap``, ...).

    Returns
    -------
    EDXTiltSeries
        The ground-truth phantom is in ``metadata.Simulation.ground_truth``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> s = datasets.quantum_dot_tilt_series(size=32, seed=0)
    >>> maps = s.get_element_maps(["Se", "S", "Zn"])
    >>> maps.data.shape
    (3, 13, 32, 32)
    """
    phantom_kwargs, sim_kwargs = _split_kwargs(kwargs, simulate_tilt_series)
    phantom = core_shell_phantom(kind=kind, size=size, seed=seed, **phantom_kwargs)
    return simulate_tilt_series(
        phantom, tilts=tilts, counts_per_tilt=counts_per_tilt, seed=seed, lazy=lazy, **sim_kwargs
    )


def quantum_dot_element_maps(
    kind="InP/ZnSe/ZnS", size=64, tilts=None, counts_per_tilt=None, seed=0, lazy=False, **kwargs
):
    """Simulated element maps of a core-shell quantum dot.

    :func:`core_shell_phantom` followed by :func:`simulate_element_maps`;
    ``seed`` seeds both the particle's shape and the counting noise.

    Parameters
    ----------
    kind : {"InP/ZnSe/ZnS", "CdSe/ZnS"}
    size : int
    tilts, counts_per_tilt, seed, lazy
        See :func:`simulate_element_maps`.
    **kwargs
        Passed to :func:`simulate_element_maps` when they name one of its
        parameters (``haadf_snr``, ``haadf_dose``, ``haadf_exponent``),
        otherwise to :func:`core_shell_phantom` (``shell_gap``, ...).

    Returns
    -------
    ElementMapTiltSeries

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.quantum_dot_element_maps("CdSe/ZnS", size=32, shell_gap=0.2, haadf_snr=50)
    >>> maps.elements, maps.reference_images.data.shape
    (['Cd', 'Se', 'S', 'Zn'], (13, 32, 32))
    """
    phantom_kwargs, sim_kwargs = _split_kwargs(kwargs, simulate_element_maps)
    phantom = core_shell_phantom(kind=kind, size=size, seed=seed, **phantom_kwargs)
    return simulate_element_maps(
        phantom, tilts=tilts, counts_per_tilt=counts_per_tilt, seed=seed, lazy=lazy, **sim_kwargs
    )


def nanorod_tilt_series(size=64, tilts=None, counts_per_tilt=None, seed=0, lazy=False, **kwargs):
    """A simulated spectrum-image tilt series of a CdSe/ZnS nanorod.

    :func:`nanorod_phantom` followed by :func:`simulate_tilt_series`.

    Parameters
    ----------
    size : int
    tilts, counts_per_tilt, seed, lazy
        See :func:`simulate_tilt_series`.
    **kwargs
        Passed to :func:`simulate_tilt_series` when they name one of its
        parameters, otherwise to :func:`nanorod_phantom`.

    Returns
    -------
    EDXTiltSeries
        Elements ``["Cd", "Se", "S", "Zn"]``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> s = datasets.nanorod_tilt_series(size=32, tilts=[-45, 0, 45])
    >>> s.tilts.tolist()
    [-45.0, 0.0, 45.0]
    """
    phantom_kwargs, sim_kwargs = _split_kwargs(kwargs, simulate_tilt_series)
    phantom = nanorod_phantom(size=size, seed=seed, **phantom_kwargs)
    return simulate_tilt_series(
        phantom, tilts=tilts, counts_per_tilt=counts_per_tilt, seed=seed, lazy=lazy, **sim_kwargs
    )


for _f in (simulate_element_maps, simulate_tilt_series):
    _f.__doc__ = _f.__doc__.replace("{PHANTOM_TILTS_ARGS}", PHANTOM_TILTS_ARGS)
del _f
