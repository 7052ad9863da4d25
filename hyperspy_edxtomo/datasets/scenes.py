"""Simulated scenes that real samples bring: to test automatic choices on data
they were not tuned on.

A scene is a few CdSe/ZnS particles (elements ``Cd, Se, S, Zn`` in every
scene) on a support film (all centres at ``z = 0``), made with
:func:`core_shell_phantom` and :func:`nanorod_phantom` and placed into a box
wider than the field of view:

* box: ``(element, z, y, x)`` of ``(W, size, W)`` voxels, ``W = size + 2 *
  margin``, centred on the tilt axis; particles may lie in the margin, outside
  the field of view;
* field of view: the central ``size`` columns of every view (``x`` in
  ``[margin, margin + size)`` of the box's projection), all ``size`` rows;
* reconstruction box (the ground truth): the central ``size**3`` voxels
  (``z`` and ``x`` in ``[margin, margin + size)``).

Scenes (:data:`SCENES`): ``"dot"`` one dot; ``"chain"`` three nearly touching
dots in a line along the tilt axis ``y`` (an elongated object along the axis
fooled the rotation estimate on real data); ``"rod_along"`` / ``"rod_across"``
a rod along ``y`` / along ``x``; ``"edge_cut"`` a whole dot plus two dots cut
by the left and right field edges (30% of each inside at 0 degrees, whole
from 50 degrees); ``"entering"`` a dot plus a second one at ``x = 0.72 size``,
outside the field up to 30 degrees (at size >= 32; 1-2% inside at 24), a
fifth inside at 40, whole at 60.
"""

import numpy as np
from scipy import ndimage

from hyperspy_edxtomo.base.conventions import NODE
from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.provenance import append_history, plain_record
from hyperspy_edxtomo.datasets.misalignment import misalign
from hyperspy_edxtomo.datasets.phantoms import (
    KINDS,
    REFERENCE_BOX_NM,
    check_positive,
    core_shell_phantom,
    nanorod_phantom,
)
from hyperspy_edxtomo.datasets.spectra import (
    HAADF_EXPONENT,
    attach_truth,
    check_haadf_settings,
    default_tilts,
    haadf_noise,
    haadf_parameters,
    haadf_series,
    haadf_weights,
    int_dtype,
    per_element_counts,
    project,
)
from hyperspy_edxtomo.signals import element_maps_from_array, volume_from_array

__all__ = ["SCENES", "MAP_KINDS", "scene_phantom", "simulate_scene"]

SCENES = ("dot", "chain", "rod_along", "rod_across", "edge_cut", "entering")
MAP_KINDS = ("counts", "background_subtracted", "normalised", "smoothed")
ELEMENTS = ("Cd", "Se", "S", "Zn")
#: Smallest field of view (pixels) in which every scene's particles are resolved.
MIN_SIZE = 24

# side windows twice as wide as the line window: the estimate is Poisson(k b) / k
_BACKGROUND_WINDOW_RATIO = 2
_CDSE = KINDS["CdSe/ZnS"]
# outer radius of a default CdSe/ZnS dot as a fraction of its box
_DOT_RADIUS = (_CDSE["core_radius_nm"] + sum(_CDSE["shell_thickness_nm"])) / REFERENCE_BOX_NM


def _choice(value, choices, name):
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"Unknown {name} {value!r}: choose one of {list(choices)}.")
    return value


def _non_negative(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _layout(scene, size):
    """[(kind, voxels of its box, (x, y, z) centre in voxels from the box centre)]."""
    def box(fraction):  # same parity as size: a particle at 0 sits exactly on the axis
        n = max(8, int(round(fraction * size)))
        return n + (n - size) % 2

    if scene == "dot":
        return [("dot", box(0.75), (0.0, 0.0, 0.0))]
    if scene == "chain":
        n = box(0.36)
        step = 2 * _DOT_RADIUS * n + 1.0  # one voxel between the shells: nearly touching
        return [("dot", n, (0.0, k * step, 0.0)) for k in (-1, 0, 1)]
    if scene in ("rod_along", "rod_across"):
        return [(scene, size, (0.0, 0.0, 0.0))]
    n = box(0.4)
    if scene == "edge_cut":
        return [("dot", n, (0.0, 0.0, 0.0)), ("dot", n, (-0.55 * size, -0.2 * size, 0.0)),
                ("dot", n, (0.55 * size, 0.2 * size, 0.0))]
    # entering: at column 0.72 size cos(theta), out of the field up to 30 deg, in from 40 deg
    return [("dot", n, (0.0, 0.0, 0.0)), ("dot", box(0.3), (0.72 * size, 0.0, 0.0))]


def _particle(kind, n, voxel_size_nm, seed):
    if kind == "dot":
        return core_shell_phantom("CdSe/ZnS", size=n, voxel_size_nm=voxel_size_nm, seed=seed)
    box_nm = n * voxel_size_nm  # a rod 0.85 box long, 0.28 box wide
    return nanorod_phantom(size=n, voxel_size_nm=voxel_size_nm, length_nm=0.75 * box_nm, radius_nm=0.09 * box_nm,
                           shell_thickness_nm=0.05 * box_nm, direction=(0, 1, 0) if kind == "rod_along" else (1, 0, 0),
                           seed=seed)


def scene_phantom(scene, size=64, voxel_size_nm=0.189, seed=0, field_margin=None):
    """The particles of a scene in a box wider than the field of view.

    Parameters
    ----------
    scene : str
        One of :data:`SCENES`: ``"dot"``, ``"chain"``, ``"rod_along"``,
        ``"rod_across"``, ``"edge_cut"``, ``"entering"`` (see the module
        docstring).
    size : int
        Field of view and reconstruction box edge (voxels), >= 24. Particle
        sizes and positions scale with it.
    voxel_size_nm : float
        Voxel size (nm).
    seed : int or None
        Seeds every particle's shape and orientation.
    field_margin : None or int
        Voxels added on each side in ``x`` and ``z``. None: the fewest that
        hold the scene's particles (0 for ``dot``, ``chain``, the rods).

    Returns
    -------
    ElementVolume
        Shaped ``(4, W, size, W)`` (element, z, y, x), ``W = size + 2 *
        margin``, elements ``["Cd", "Se", "S", "Zn"]``. ``metadata.Simulation.scene``
        holds the name, the box, the margin, and for every particle its kind,
        centre (voxels and nm from the box centre, ``(x, y, z)``), box,
        size, seed and the fraction of its mass inside the reconstruction box.
        Overlapping particles take the larger density of each element.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.scene_phantom("entering", size=32)
    >>> vol.data.shape, vol.metadata.Simulation.scene.field_margin_px
    ((4, 56, 32, 56), 12)
    >>> [p["fraction_in_reconstruction_box"] for p in vol.metadata.Simulation.scene.particles]
    [1.0, 0.0]
    """
    scene = _choice(scene, SCENES, "scene")
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise InputError(f"size must be an integer number of pixels >= {MIN_SIZE} (the particles need it), "
                         f"got {size!r}")
    size = int(size)
    voxel_size_nm = check_positive(voxel_size_nm, "voxel_size_nm")
    layout = _layout(scene, size)
    needed = 0  # the fewest voxels that hold every particle's box in x and z, as placed below
    while not all(0 <= s and s + n <= size + 2 * needed for _, n, c in layout
                  for s in np.rint((size - 1) / 2 + needed + np.asarray(c)[[0, 2]] - (n - 1) / 2)):
        needed += 1
    if field_margin is None:
        margin = needed
    elif isinstance(field_margin, (int, np.integer)) and not isinstance(field_margin, bool) and field_margin >= needed:
        margin = int(field_margin)
    else:
        raise InputError(f"field_margin must be None or an integer >= {needed} (the {scene!r} scene's particles "
                         f"need it at size {size}), got {field_margin!r}")
    width = size + 2 * margin
    data = np.zeros((len(ELEMENTS), width, size, width), np.float32)
    centre = np.array([(width - 1) / 2, (size - 1) / 2, (width - 1) / 2])  # x, y, z
    seeds = np.random.default_rng(seed).integers(0, 2**31, len(layout))
    particles = []
    for (kind, n, c), s in zip(layout, seeds):
        vol = _particle(kind, n, voxel_size_nm, int(s))
        assert vol.elements == list(ELEMENTS)
        p = vol.to_numpy()
        start = np.rint(centre + np.asarray(c) - (n - 1) / 2).astype(int)  # x, y, z
        lo, hi = np.maximum(start, 0), np.minimum(start + n, [width, size, width])
        box_sl = (slice(None), slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        part = p[:, lo[2] - start[2]:hi[2] - start[2], lo[1] - start[1]:hi[1] - start[1], lo[0] - start[0]:hi[0] - start[0]]
        if part.sum() < (1 - 1e-3) * p.sum():  # rows (y) are not padded: a particle must fit in them
            raise InputError(f"A particle of the {scene!r} scene does not fit in {size} rows: increase size.")
        np.maximum(data[box_sl], part, out=data[box_sl])
        inside = [slice(max(margin - a, 0), max(min(margin + size - a, n), 0)) for a in (start[2], start[0])]
        info = vol.metadata.Simulation.phantom.as_dictionary()
        centre_px = start + (n - 1) / 2 - centre
        particles.append({
            "kind": {"dot": "CdSe/ZnS dot", "rod_along": "CdSe/ZnS rod along y"}.get(kind, "CdSe/ZnS rod along x"),
            "centre_px": centre_px.tolist(), "centre_nm": (centre_px * voxel_size_nm).tolist(),
            "box_voxels": n, "outer_radius_nm": max(v["outer_radius_nm"] for v in info["layers"].values()),
            "length_nm": info["parameters"].get("length_nm"), "seed": int(s),
            "fraction_in_reconstruction_box": round(float(p[:, inside[0], :, inside[1]].sum() / p.sum()), 4),
        })
    record = {
        "name": scene, "elements": list(ELEMENTS), "size": size, "voxel_size_nm": voxel_size_nm,
        "box_voxels_zyx": [width, size, width], "field_margin_px": margin,
        "field_of_view": f"columns [{margin}, {margin + size}) of the box's projections, all rows",
        "reconstruction_box": f"z and x in [{margin}, {margin + size}), all y: the central {size}**3 voxels",
        "particles": particles,
    }
    out = volume_from_array(data, list(ELEMENTS), voxel_size_nm=voxel_size_nm, title=f"Scene {scene!r} phantom")
    out.metadata.set_item("Simulation.scene", plain_record(record))
    append_history(out, "phantom", "scene", {"scene": scene, "size": size, "voxel_size_nm": voxel_size_nm,
                                             "seed": seed, "field_margin": margin})
    return out


def simulate_scene(scene, size=64, tilts=None, counts_per_tilt=2000, map_kind="counts", background=0.0,
                   rotation_deg=0.0, max_shift_px=0.0, haadf_snr=None, seed=0, background_mass=0.0,
                   voxel_size_nm=0.189, field_margin=None, haadf_dose=None):
    """Element maps of a scene's field of view, with known truth, misalignment
    and background.

    Steps: :func:`scene_phantom`; :func:`project` of the whole box; each
    element scaled so that the **mean over the views** of its expected counts
    in the field of view is ``counts_per_tilt`` (views with mass outside the
    field hold fewer, views where a particle enters hold more); the views
    rotated and shifted by :func:`misalign` (expected values, before noise:
    the noise stays Poisson, and what comes in from outside the field comes
    in); cropped to the field; the background added; Poisson counts.

    Parameters
    ----------
    scene : str
        One of :data:`SCENES`.
    size : int
        Pixels of the field of view (and edge of the reconstruction box), >= 24.
    tilts : None or array-like
        Tilt angles in degrees (sorted ascending); None: -60 to 60 by 10.
    counts_per_tilt : None, float or dict
        Expected counts of each element per view (mean over the views), as
        in :func:`simulate_element_maps`.
    map_kind : str
        One of :data:`MAP_KINDS`: ``"counts"`` (Poisson integers);
        ``"background_subtracted"`` (counts minus a noisy background estimate
        ``Poisson(2 b) / 2``, clipped at 0 as ``get_element_maps`` does:
        float32, not integers); ``"normalised"`` (counts divided by each
        element's maximum over the series: [0, 1]); ``"smoothed"`` (counts
        Gaussian-smoothed, sigma 1 px, per view, totals kept: correlated noise).
    background : float
        Expected flat continuum under each element's line, counts per pixel
        (support film, stray scattering), >= 0.
    background_mass : float
        Expected continuum from the sample, counts per pixel at the largest
        projected mass thickness (``sum_e A_e rho_e``), proportional to it, >= 0.
    rotation_deg, max_shift_px : float
        Passed to :func:`misalign`: in-plane rotation of the tilt axis and
        uniform random shifts in ``[-max_shift_px, max_shift_px]``.
    haadf_snr, haadf_dose : None or float
        If either is given, simulated HAADF images (projection of ``sum_e
        Z_e**1.7 rho_e`` of the whole box, peak 1, Poisson shot noise from
        ``haadf_dose`` electrons at the peak, Gaussian noise of standard
        deviation ``1 / haadf_snr``: the model of
        :func:`~hyperspy_edxtomo.datasets.simulate_haadf`), misaligned with
        the maps, in ``metadata.Tomography.reference_images``.
    seed : int or None
        Seeds the particles, the shifts and every noise.
    voxel_size_nm, field_margin
        See :func:`scene_phantom`.

    Returns
    -------
    ElementMapTiltSeries
        Shaped ``(4, n_tilts, size, size)``. ``metadata.Simulation``:
        ``ground_truth`` (the reconstruction box, an ``ElementVolume``),
        ``scene``, ``parameters``, ``misalignment`` (``rotation_deg``,
        ``shift_x_px``, ``shift_y_px``: the views are the true ones rotated
        then moved by these; corrections are their negatives),
        ``expected_counts_per_view`` (float32 (element, tilt): the expected
        counts of every view without background, after misalignment). With
        ``map_kind="counts"`` and a background, its estimate (float32, the
        maps' shape) is in ``metadata.Tomography.background``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> maps = datasets.simulate_scene("chain", size=32, max_shift_px=2, haadf_snr=10)
    >>> maps.data.shape, maps.elements
    ((4, 13, 32, 32), ['Cd', 'Se', 'S', 'Zn'])
    >>> maps.reference_images.data.shape
    (13, 32, 32)
    >>> len(maps.metadata.Simulation.misalignment.shift_x_px)
    13
    """
    map_kind = _choice(map_kind, MAP_KINDS, "map_kind")
    background = _non_negative(background, "background")
    background_mass = _non_negative(background_mass, "background_mass")
    max_shift_px = _non_negative(max_shift_px, "max_shift_px")
    try:
        rotation_deg = float(rotation_deg)
    except (TypeError, ValueError):
        rotation_deg = np.nan
    if not np.isfinite(rotation_deg):
        raise InputError("rotation_deg must be a finite number (degrees)")
    with_haadf = haadf_snr is not None or haadf_dose is not None
    haadf_snr, haadf_dose, _ = check_haadf_settings(haadf_snr, haadf_dose, HAADF_EXPONENT)
    tilts = np.sort(default_tilts(tilts))
    phantom = scene_phantom(scene, size, voxel_size_nm, seed, field_margin)
    record = phantom.metadata.Simulation.scene.as_dictionary()
    elements, m, voxel_size_nm = list(ELEMENTS), record["field_margin_px"], record["voxel_size_nm"]
    counts = per_element_counts(counts_per_tilt, elements)
    rng_shift, rng_counts, rng_bg, rng_haadf = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))

    from exspy.material import elements as db

    data = phantom.to_numpy()
    wide = project(data, tilts)  # (element, tilt, y, W)
    field = slice(m, m + size)
    mean_totals = wide[..., field].sum(axis=(2, 3)).mean(axis=1)
    scale = np.array([counts[el] / t if t > 0 else 0.0 for el, t in zip(elements, mean_totals)])
    a = np.array([float(db[el].General_properties.atomic_weight) for el in elements])
    # every channel moves together: maps, HAADF (noise added after the crop) and mass thickness
    stack = np.concatenate([wide * scale[:, None, None, None],
                            np.tensordot(haadf_weights(elements, HAADF_EXPONENT), wide, axes=1)[None],
                            np.tensordot(a, wide, axes=1)[None]])
    if rotation_deg or max_shift_px:
        stack, shift_x, shift_y = misalign(stack, max_shift_px, rotation_deg, seed=rng_shift)
    else:
        shift_x = shift_y = np.zeros(tilts.size)
    stack = stack[..., field]
    expected, haadf, mass = stack[:-2], stack[-2], stack[-1]
    bg = background + background_mass * mass / max(mass.max(), 1e-30)  # (tilt, y, x), same for every element
    sampled = rng_counts.poisson(expected + bg)
    k = _BACKGROUND_WINDOW_RATIO
    estimate = (rng_bg.poisson(k * np.broadcast_to(bg, sampled.shape)) / k).astype(np.float32)
    extra = {}
    if map_kind == "counts":
        out = sampled.astype(int_dtype(sampled.max(initial=0)))
    elif map_kind == "background_subtracted":
        out = np.clip(sampled - estimate, 0, None).astype(np.float32)
    elif map_kind == "normalised":
        peak = sampled.max(axis=(1, 2, 3)).astype(float)
        peak[peak == 0] = 1.0
        out = (sampled / peak[:, None, None, None]).astype(np.float32)
        extra["normalisation_scale"] = dict(zip(elements, peak.tolist()))
    else:  # "reflect" borders keep every view's total for a symmetric kernel
        out = ndimage.gaussian_filter(sampled.astype(float), sigma=(0, 0, 1, 1), mode="reflect").astype(np.float32)

    maps = element_maps_from_array(out, tilts, elements, pixel_size_nm=voxel_size_nm,
                                   title=f"Simulated scene {scene!r} ({map_kind})")
    truth = volume_from_array(data[:, field, :, field], elements, voxel_size_nm=voxel_size_nm,
                              history=phantom.history, title=f"Scene {scene!r} ground truth")
    truth.metadata.set_item("Simulation.scene", record)
    parameters = {
        "scene": scene, "size": size, "tilts_deg": tilts, "counts_per_tilt": counts,
        "counts_scaled_on": "mean over views of each element's expected counts in the field of view",
        "map_kind": map_kind, "background": background, "background_mass": background_mass,
        "background_estimate_window_ratio": k, "rotation_deg": rotation_deg,
        "max_shift_px": max_shift_px, **haadf_parameters(haadf_snr, haadf_dose, HAADF_EXPONENT),
        "seed": seed, "voxel_size_nm": voxel_size_nm, "field_margin": m, **extra,
    }
    attach_truth(maps, truth, "simulate_scene", parameters)
    maps.metadata.set_item("Simulation.scene", record)
    # what each view holds (after misalignment and the field crop, without background): scores edge effects
    maps.metadata.set_item("Simulation.expected_counts_per_view", expected.sum(axis=(2, 3)).astype(np.float32))
    maps.metadata.set_item("Simulation.misalignment", plain_record({
        "rotation_deg": rotation_deg, "max_shift_px": max_shift_px,
        "shift_x_px": shift_x, "shift_y_px": shift_y, "applied": "rotated about the view centre, then shifted"}))
    if map_kind == "counts" and np.any(bg > 0):
        maps.metadata.set_item(f"{NODE}.background", estimate)
    if with_haadf:
        images = haadf_noise(haadf, haadf_snr, haadf_dose, rng_haadf)
        maps.metadata.set_item(f"{NODE}.reference_images", haadf_series(images, tilts, voxel_size_nm))
    return maps
