"""3D phantoms of nanocrystals: relative atom density of each element per voxel.

Every phantom is an :class:`~hyperspy_edxtomo.signals.ElementVolume` shaped
``(element, z, y, x)`` on a cubic grid centred on the particle, with the
ground truth of how it was made in ``metadata.Simulation.phantom`` and in its
history.

Densities are number densities of each element divided by that of Zn (or S)
in zinc-blende ZnS (:data:`DENSITY_UNIT_PER_NM3` = 25.3 atoms nm^-3), from the
lattice constants in :data:`LATTICE_CONSTANTS_NM` (zinc-blende, 4 formula
units per cubic cell). Interfaces are soft over about one voxel (partial
volume), so a voxel cut by a boundary holds the mixture of both phases.

Default sizes are those of a 12.1-nm box (64 voxels of 0.189 nm) and scale
with the box (``size * voxel_size_nm``), so ``size=32`` gives the same
particle at half the sampling with the default ``voxel_size_nm`` halved, and a
proportionally smaller particle if ``voxel_size_nm`` is kept.
"""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError
from hyperspy_edxtomo.base.provenance import append_history, plain_record
from hyperspy_edxtomo.signals import volume_from_array

__all__ = ["KINDS", "LATTICE_CONSTANTS_NM", "DENSITY_UNIT_PER_NM3", "core_shell_phantom", "nanorod_phantom"]

#: Zinc-blende lattice constants (nm) of the phases used by the phantoms.
LATTICE_CONSTANTS_NM = {"InP": 0.5869, "ZnSe": 0.5668, "ZnS": 0.5409, "CdSe": 0.6077}

#: Number density (atoms nm^-3) of each element in ZnS: the unit of the phantoms.
DENSITY_UNIT_PER_NM3 = 4.0 / LATTICE_CONSTANTS_NM["ZnS"] ** 3

# The box the default sizes are given for: 64 voxels of 0.189 nm.
REFERENCE_BOX_NM = 64 * 0.189

_PHASE_ELEMENTS = {"InP": ("In", "P"), "ZnSe": ("Zn", "Se"), "ZnS": ("Zn", "S"), "CdSe": ("Cd", "Se")}

#: The core-shell kinds: layers from the core outwards, element order of the
#: output volume, default core radius and shell thicknesses (nm, for a
#: 12.1-nm box).
KINDS = {
    "InP/ZnSe/ZnS": {
        "layers": ("InP", "ZnSe", "ZnS"),
        "elements": ("In", "P", "Se", "S", "Zn"),
        "core_radius_nm": 2.0,
        "shell_thickness_nm": (1.2, 0.9),
    },
    "CdSe/ZnS": {
        "layers": ("CdSe", "ZnS"),
        "elements": ("Cd", "Se", "S", "Zn"),
        "core_radius_nm": 2.8,
        "shell_thickness_nm": (1.3,),
    },
}

_NANOROD = {
    "layers": ("CdSe", "ZnS"),
    "elements": ("Cd", "Se", "S", "Zn"),
    "length_nm": 8.0,
    "radius_nm": 1.4,
    "shell_thickness_nm": 1.0,
    "direction": (2.0, 1.0, 1.0),
}

# Crystal facet normals of a truncated octahedron: {100} and {111}.
_FACET_NORMALS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=float
)
_FACET_NORMALS /= np.linalg.norm(_FACET_NORMALS, axis=1, keepdims=True)


def _phase_density(phase):
    """{element: relative atom density} of one phase."""
    n = 4.0 / LATTICE_CONSTANTS_NM[phase] ** 3 / DENSITY_UNIT_PER_NM3
    return {el: n for el in _PHASE_ELEMENTS[phase]}


def _check_kind(kind):
    if isinstance(kind, str):
        for name in KINDS:
            if kind.replace(" ", "").lower() == name.lower():
                return name
    raise InputError(f"Unknown kind {kind!r}: choose one of {list(KINDS)}.")


def _check_size(size):
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 8:
        raise InputError(f"size must be an integer number of voxels >= 8, got {size!r}")
    return int(size)


def check_positive(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return value


def _check_fraction(value, name, low=0.0, high=1.0, high_open=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [{low}, {high}{')' if high_open else ']'}, got {value!r}") from None
    ok = np.isfinite(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        raise InputError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")
    return value


def _grid(size, voxel_size_nm):
    """Voxel-centre coordinates (nm) from the box centre, each shaped (z, y, x)."""
    c = (np.arange(size) - (size - 1) / 2) * voxel_size_nm
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return x, y, z


def _random_rotation(rng):
    """A uniformly random 3x3 rotation matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _legendre(l, t):
    t2 = t * t
    if l == 2:
        return 1.5 * t2 - 0.5
    if l == 3:
        return t * (2.5 * t2 - 1.5)
    return (35 * t2 - 30) * t2 / 8 + 0.375


def _roughness_field(rng, u):
    """Smooth random function of direction ``u`` (3, ...) with values in [-1, 1].

    A sum of zonal harmonics of degree 2 to 4 about random axes; the
    coefficients' absolute values sum to 1, so ``|f| <= 1``.
    """
    n_terms = 6
    axes = rng.normal(size=(n_terms, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    degrees = rng.integers(2, 5, size=n_terms)
    coef = rng.normal(size=n_terms)
    coef /= np.abs(coef).sum()
    f = np.zeros(u.shape[1:])
    for a, l, c in zip(axes, degrees, coef):
        f += c * _legendre(int(l), np.tensordot(a, u, axes=1))
    return f


def _unit_vector(direction, name):
    d = np.asarray(direction, dtype=float).ravel()
    if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) == 0:
        raise InputError(f"{name} must be a non-zero (x, y, z) vector, got {direction!r}")
    return d / np.linalg.norm(d)


def _layer_masks(r_eff_per_layer, radii, voxel_size_nm):
    """Soft cumulative masks 'inside boundary k', nested, and the layer fractions."""
    inside = []
    previous = None
    for r_eff, radius in zip(r_eff_per_layer, radii):
        m = np.clip(0.5 + (radius - r_eff) / voxel_size_nm, 0.0, 1.0)
        if previous is not None:
            m = np.maximum(m, previous)  # every layer encloses the ones inside it
        inside.append(m)
        previous = m
    fractions = [inside[0]] + [inside[k] - inside[k - 1] for k in range(1, len(inside))]
    return inside, fractions


def _check_fits(outer_mask, size, what):
    border = np.zeros_like(outer_mask, dtype=bool)
    border[[0, -1], :, :] = border[:, [0, -1], :] = border[:, :, [0, -1]] = True
    if np.any(outer_mask[border] > 1e-3):
        raise InputError(
            f"The {what} does not fit in the {size}-voxel box: reduce its dimensions, "
            "increase size or voxel_size_nm."
        )


def _assemble(phases, fractions, elements):
    data = np.zeros((len(elements),) + fractions[0].shape, dtype=np.float32)
    for phase, frac in zip(phases, fractions):
        for el, n in _phase_density(phase).items():
            data[elements.index(el)] += (n * frac).astype(np.float32)
    return data


def core_shell_phantom(
    kind="InP/ZnSe/ZnS",
    size=64,
    voxel_size_nm=0.189,
    core_radius_nm=None,
    shell_thickness_nm=None,
    eccentricity=0.4,
    faceting=0.3,
    roughness=0.04,
    shell_gap=0.0,
    gap_direction=None,
    seed=0,
):
    """A core-shell quantum dot: relative atom density of each element per voxel.

    The particle is a slightly elongated, faceted, rough sphere: each
    boundary is a surface ``r_eff(p) = R_k`` where ``r_eff`` blends the
    distance in a prolate spheroid of the given eccentricity with that to a
    truncated octahedron ({100} and {111} facets), both in a random crystal
    orientation, and ``R_k`` varies with direction by up to ``roughness``
    (smooth, different for every boundary, so the shells are not uniformly
    thick).

    Parameters
    ----------
    kind : {"InP/ZnSe/ZnS", "CdSe/ZnS"}
        Core/shell(/shell) materials. Element order of the output:
        ``["In", "P", "Se", "S", "Zn"]`` for InP/ZnSe/ZnS,
        ``["Cd", "Se", "S", "Zn"]`` for CdSe/ZnS.
    size : int
        Voxels along each edge of the cubic box (>= 8).
    voxel_size_nm : float
        Voxel size in nm (0.189 nm: 64 voxels make a 12.1-nm box).
    core_radius_nm : None or float
        Core radius. None: 2.0 nm (InP) or 2.8 nm (CdSe) for a 12.1-nm box,
        scaled with the box ``size * voxel_size_nm``.
    shell_thickness_nm : None, float or sequence of float
        Thickness of each shell from the inside out (two for InP/ZnSe/ZnS,
        one for CdSe/ZnS). None: (1.2, 0.9) nm or 1.3 nm for a 12.1-nm box,
        scaled with the box. The default particles are 8.2 nm across in a
        12.1-nm box.
    eccentricity : float
        Eccentricity ``sqrt(1 - b**2 / a**2)`` of the prolate spheroid (same
        volume as the sphere) that the particle follows, in [0, 1).
    faceting : float
        0: round; 1: a truncated octahedron; in between a blend.
    roughness : float
        Relative amplitude of the smooth random variation of each boundary's
        radius with direction, in [0, 0.5).
    shell_gap : float
        Fraction of directions (of the solid angle seen from the centre) in
        which the outermost shell is missing: a cap of half-angle
        ``arccos(1 - 2 * shell_gap)`` about ``gap_direction`` is removed,
        exposing the shell (or core) beneath. In [0, 1].
    gap_direction : None or (x, y, z)
        Axis of the missing cap; None: a random direction (from ``seed``).
    seed : int or None
        Seed of the random orientation, roughness and gap direction.

    Returns
    -------
    ElementVolume
        Shaped (element, z, y, x), voxel size in nm. The recipe is in
        ``metadata.Simulation.phantom``: kind, layers (phase, elements,
        radii), ``shell_gap_fraction`` (true solid-angle fraction of the
        missing cap), ``shell_gap_volume_fraction`` (fraction of the outer
        shell's material removed, measured on the voxels),
        ``shell_gap_direction`` and the shape parameters.

    Raises
    ------
    ValueError
        For an unknown kind, non-positive sizes, the wrong number of shell
        thicknesses, parameters out of range, or a particle that does not fit
        in the box.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom(size=32, shell_gap=0.25, seed=1)
    >>> vol.elements
    ['In', 'P', 'Se', 'S', 'Zn']
    >>> vol.data.shape
    (5, 32, 32, 32)
    >>> vol.metadata.Simulation.phantom.shell_gap_fraction
    0.25
    """
    kind = _check_kind(kind)
    spec = KINDS[kind]
    size = _check_size(size)
    voxel_size_nm = check_positive(voxel_size_nm, "voxel_size_nm")
    box_scale = size * voxel_size_nm / REFERENCE_BOX_NM
    n_shells = len(spec["layers"]) - 1

    if core_radius_nm is None:
        core_radius_nm = spec["core_radius_nm"] * box_scale
    core_radius_nm = check_positive(core_radius_nm, "core_radius_nm")
    if shell_thickness_nm is None:
        shells = [t * box_scale for t in spec["shell_thickness_nm"]]
    else:
        shells = list(np.atleast_1d(np.asarray(shell_thickness_nm, dtype=float)))
        if len(shells) != n_shells:
            raise InputError(
                f"{kind} has {n_shells} shell(s) {list(spec['layers'][1:])}: give {n_shells} "
                f"shell thickness(es), got {len(shells)}."
            )
    shells = [check_positive(t, "shell_thickness_nm") for t in shells]
    eccentricity = _check_fraction(eccentricity, "eccentricity", high_open=True)
    faceting = _check_fraction(faceting, "faceting")
    roughness = _check_fraction(roughness, "roughness", high=0.5, high_open=True)
    shell_gap = _check_fraction(shell_gap, "shell_gap")

    rng = np.random.default_rng(seed)
    rotation = _random_rotation(rng)
    if gap_direction is None:
        gap_dir = rng.normal(size=3)
        gap_dir /= np.linalg.norm(gap_dir)
    else:
        gap_dir = _unit_vector(gap_direction, "gap_direction")
        rng.normal(size=3)  # same random stream either way

    x, y, z = _grid(size, voxel_size_nm)
    p = np.stack([x, y, z])  # (3, z, y, x), nm
    r = np.sqrt((p**2).sum(0))
    u = p / np.where(r > 0, r, 1.0)
    u[2][r == 0] = 1.0

    # particle frame: spheroid (long axis = first crystal axis) of equal volume
    q = np.tensordot(rotation.T, p, axes=1)
    ratio = np.sqrt(1.0 - eccentricity**2)  # b / a
    semi = np.array([ratio ** (-2.0 / 3.0), ratio ** (1.0 / 3.0), ratio ** (1.0 / 3.0)])
    qs = q / semi[:, None, None, None]
    round_r = np.sqrt((qs**2).sum(0))
    facet_r = np.abs(np.tensordot(_FACET_NORMALS, qs, axes=1)).max(0)
    shape_r = (1 - faceting) * round_r + faceting * facet_r

    radii = list(np.cumsum([core_radius_nm] + shells))
    r_eff = [shape_r / (1.0 + roughness * _roughness_field(rng, u)) for _ in radii]
    inside, fractions = _layer_masks(r_eff, radii, voxel_size_nm)
    _check_fits(inside[-1], size, f"{kind} particle (outer radius {radii[-1]:.3g} nm)")

    # the missing cap of the outermost shell: soft over about one voxel at the
    # outer radius; since solid angle is uniform in cos(angle), a ramp
    # symmetric about cos(alpha) removes exactly the fraction shell_gap
    if shell_gap >= 1.0:
        cap = np.ones_like(r)
    elif shell_gap <= 0.0:
        cap = np.zeros_like(r)
    else:
        cos_alpha = 1.0 - 2.0 * shell_gap
        width = min(voxel_size_nm / radii[-1], 1 - cos_alpha, 1 + cos_alpha)
        cap = np.clip(0.5 + (np.tensordot(gap_dir, u, axes=1) - cos_alpha) / width, 0.0, 1.0)
    outer_full = fractions[-1]
    fractions[-1] = outer_full * (1.0 - cap)
    removed = float((outer_full * cap).sum())
    volume_fraction = removed / float(outer_full.sum()) if outer_full.sum() > 0 else 0.0

    elements = list(spec["elements"])
    data = _assemble(spec["layers"], fractions, elements)

    layers = {}
    inner = 0.0
    for phase, outer in zip(spec["layers"], radii):
        layers[phase] = {
            "elements": list(_PHASE_ELEMENTS[phase]),
            "relative_density": float(_phase_density(phase)[_PHASE_ELEMENTS[phase][0]]),
            "inner_radius_nm": float(inner),
            "outer_radius_nm": float(outer),
        }
        inner = outer
    parameters = {
        "kind": kind,
        "size": size,
        "voxel_size_nm": voxel_size_nm,
        "core_radius_nm": core_radius_nm,
        "shell_thickness_nm": shells,
        "eccentricity": eccentricity,
        "faceting": faceting,
        "roughness": roughness,
        "shell_gap": shell_gap,
        "gap_direction": None if gap_direction is None else gap_dir.tolist(),
        "seed": seed,
    }
    vol = volume_from_array(data, elements, voxel_size_nm=voxel_size_nm, title=f"{kind} quantum dot phantom")
    vol.metadata.set_item(
        "Simulation.phantom",
        plain_record({
            "kind": kind,
            "elements": elements,
            "layers": layers,
            "density_unit_atoms_per_nm3": DENSITY_UNIT_PER_NM3,
            "shell_gap_fraction": shell_gap,
            "shell_gap_volume_fraction": volume_fraction,
            "shell_gap_direction": gap_dir.tolist(),
            "orientation_matrix": rotation.tolist(),
            "parameters": parameters,
        }),
    )
    append_history(vol, "phantom", "core_shell", parameters)
    return vol


def nanorod_phantom(
    size=64,
    voxel_size_nm=0.189,
    length_nm=None,
    radius_nm=None,
    shell_thickness_nm=None,
    direction=None,
    roughness=0.04,
    seed=0,
):
    """A CdSe nanorod with a ZnS shell, its long axis oblique to the grid axes.

    The core is a spherocylinder (a cylinder with hemispherical ends) of the
    given length and radius along ``direction``, the shell a layer of the
    given thickness around it; each boundary's radius varies smoothly with
    direction by up to ``roughness``.

    Parameters
    ----------
    size : int
        Voxels along each edge of the cubic box (>= 8).
    voxel_size_nm : float
        Voxel size in nm.
    length_nm : None or float
        End-to-end length of the CdSe core. None: 8.0 nm for a 12.1-nm box
        (64 voxels of 0.189 nm), scaled with the box ``size * voxel_size_nm``.
    radius_nm : None or float
        Radius of the CdSe core. None: 1.4 nm for a 12.1-nm box, scaled.
    shell_thickness_nm : None or float
        ZnS shell thickness. None: 1.0 nm for a 12.1-nm box, scaled.
    direction : None or (x, y, z)
        Direction of the long axis in the volume's (x, y, z) frame (``y``
        along the tilt axis). None: ``(2, 1, 1) / sqrt(6)``, parallel to no
        axis and to no plane of the grid.
    roughness : float
        Relative amplitude of the smooth random radius variation, in [0, 0.5).
    seed : int or None
        Seed of the roughness.

    Returns
    -------
    ElementVolume
        Shaped (element, z, y, x) with elements ``["Cd", "Se", "S", "Zn"]``;
        the recipe in ``metadata.Simulation.phantom``.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> rod = datasets.nanorod_phantom(size=32)
    >>> rod.elements
    ['Cd', 'Se', 'S', 'Zn']
    >>> [round(float(v), 3) for v in rod.metadata.Simulation.phantom.direction]
    [0.816, 0.408, 0.408]
    """
    size = _check_size(size)
    voxel_size_nm = check_positive(voxel_size_nm, "voxel_size_nm")
    box_scale = size * voxel_size_nm / REFERENCE_BOX_NM
    length_nm = check_positive(_NANOROD["length_nm"] * box_scale if length_nm is None else length_nm, "length_nm")
    radius_nm = check_positive(_NANOROD["radius_nm"] * box_scale if radius_nm is None else radius_nm, "radius_nm")
    shell = check_positive(
        _NANOROD["shell_thickness_nm"] * box_scale if shell_thickness_nm is None else shell_thickness_nm,
        "shell_thickness_nm",
    )
    if length_nm < 2 * radius_nm:
        raise InputError(
            f"length_nm ({length_nm:.3g}) must be at least the core diameter 2 * radius_nm ({2 * radius_nm:.3g})."
        )
    d = _unit_vector(_NANOROD["direction"] if direction is None else direction, "direction")
    roughness = _check_fraction(roughness, "roughness", high=0.5, high_open=True)
    rng = np.random.default_rng(seed)

    x, y, z = _grid(size, voxel_size_nm)
    p = np.stack([x, y, z])
    half = length_nm / 2 - radius_nm  # half-length of the axis segment
    t = np.clip(np.tensordot(d, p, axes=1), -half, half)
    radial = p - t[None] * d[:, None, None, None]
    dist = np.sqrt((radial**2).sum(0))
    u = radial / np.where(dist > 0, dist, 1.0)
    u[0][dist == 0] = 1.0

    radii = [radius_nm, radius_nm + shell]
    r_eff = [dist / (1.0 + roughness * _roughness_field(rng, u)) for _ in radii]
    inside, fractions = _layer_masks(r_eff, radii, voxel_size_nm)
    _check_fits(inside[-1], size, f"nanorod ({length_nm + 2 * shell:.3g} nm long)")

    elements = list(_NANOROD["elements"])
    data = _assemble(_NANOROD["layers"], fractions, elements)
    parameters = {
        "size": size,
        "voxel_size_nm": voxel_size_nm,
        "length_nm": length_nm,
        "radius_nm": radius_nm,
        "shell_thickness_nm": shell,
        "direction": d.tolist(),
        "roughness": roughness,
        "seed": seed,
    }
    layers = {
        "CdSe": {"elements": ["Cd", "Se"], "relative_density": float(_phase_density("CdSe")["Cd"]),
                 "inner_radius_nm": 0.0, "outer_radius_nm": radius_nm},
        "ZnS": {"elements": ["Zn", "S"], "relative_density": float(_phase_density("ZnS")["Zn"]),
                "inner_radius_nm": radius_nm, "outer_radius_nm": radius_nm + shell},
    }
    vol = volume_from_array(data, elements, voxel_size_nm=voxel_size_nm, title="CdSe/ZnS nanorod phantom")
    vol.metadata.set_item(
        "Simulation.phantom",
        plain_record({
            "kind": "CdSe/ZnS nanorod",
            "elements": elements,
            "layers": layers,
            "density_unit_atoms_per_nm3": DENSITY_UNIT_PER_NM3,
            "direction": d.tolist(),
            "parameters": parameters,
        }),
    )
    append_history(vol, "phantom", "nanorod", parameters)
    return vol
