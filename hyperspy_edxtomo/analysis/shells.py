"""Shell thickness along every direction and shell coverage (Han et al. 2021's polar maps).

From an origin inside a particle (its centroid by default), rays go out in
every direction of an azimuth x elevation grid:

* azimuth ``phi`` in the xy plane (the 0-degree view), from +x towards +y,
  -180 to 180 degrees;
* elevation ``theta`` from the xy plane towards +z (the beam direction at 0
  degrees tilt), -90 to 90 degrees. Missing-wedge elongation shows at high
  ``|theta|``.

Along each ray every element's density is sampled (trilinear, steps of a
quarter voxel) inside the particle's own region (see
:mod:`~hyperspy_edxtomo.analysis.particles`). The element is *present* where
its density exceeds ``level`` times a reference density: the median over all
directions of the ray's maximum, so that the threshold follows the element's
own typical shell density (self-calibrating: reconstructions are in arbitrary
units). The *thickness* in a direction is the length of the ray where the
element is present (for a core element: its radius in that direction); the
element is *absent* in a direction where that length is below
``absent_below_nm`` (default one voxel). The *absent fraction* is the
fraction of the particle's surface area lying in absent directions: each
direction cell weighs its solid angle times the squared distance to the
particle's surface (where the shell is missing, that distance is bridged by
an ellipsoid-like quadric fitted to the rest of the surface). The
*coverage* is its complement. The plain solid-angle fraction (as seen from
the origin) is also given, ``absent_solid_angle``.

The area weighting is what makes the result robust to the choice of origin:
a gap seen from a point off centre covers a different solid angle but the
same area. Moving the origin by a few voxels inside the particle changes the
absent fraction by about one percent (the tests check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hyperspy_edxtomo.analysis.checks import (
    history_entry,
    positive,
    select_elements,
    volume_array,
)
from hyperspy_edxtomo.analysis.particles import ParticleList, find_particles
from hyperspy_edxtomo.base.errors import InputError, InputTypeError, warn
from hyperspy_edxtomo.base.provenance import get_history
from hyperspy_edxtomo.signals.methods import signal_method
from hyperspy_edxtomo.signals.volume import ElementVolume

__all__ = ["ShellMaps", "shell_maps", "direction_grid"]


def direction_grid(n_azimuth=72, n_elevation=36):
    """Cell centres (degrees) and solid-angle weights of the direction grid.

    Returns
    -------
    azimuth, elevation : numpy.ndarray
        1D, degrees.
    weights : numpy.ndarray
        Shaped (elevation, azimuth), summing to 1 (proportional to the cells'
        solid angle).
    """
    n_azimuth, n_elevation = int(n_azimuth), int(n_elevation)
    if n_azimuth < 4 or n_elevation < 2:
        raise InputError(f"Need n_azimuth >= 4 and n_elevation >= 2, got {n_azimuth}, {n_elevation}.")
    az = -180 + (np.arange(n_azimuth) + 0.5) * 360 / n_azimuth
    el = -90 + (np.arange(n_elevation) + 0.5) * 180 / n_elevation
    # exact solid angle of each elevation band
    edges = np.deg2rad(-90 + np.arange(n_elevation + 1) * 180 / n_elevation)
    band = np.diff(np.sin(edges))
    w = np.repeat(band[:, None], n_azimuth, axis=1)
    return az, el, w / w.sum()


@dataclass
class ShellMaps:
    """Shell thickness maps and coverage of the particles of a volume.

    Attributes
    ----------
    thickness : hyperspy.signals.Signal2D
        Path length (nm) inside each element along each direction; data
        shaped (particle, element, elevation, azimuth), signal axes
        ``azimuth`` and ``elevation`` (degrees).
    outer_radius : hyperspy.signals.Signal2D
        Distance (nm) from the origin to the element's last sample above
        the threshold in each direction (NaN where absent).
    absent_fraction : numpy.ndarray
        Shaped (particle, element): fraction of the particle's surface area
        where the element is absent.
    thresholds : numpy.ndarray
        Shaped (particle, element): the density threshold used.
    absent_solid_angle : numpy.ndarray
        Shaped (particle, element): solid-angle fraction of absent
        directions as seen from the origin (depends on the origin).
    origins : list of tuple
        ``(x, y, z)`` of each particle's origin (nm).
    elements : list of str
    labels : list of int
        Particle labels (as in :class:`ParticleList`).
    units : str
    parameters : dict
    history : list of dict
    skipped : dict
        ``{label: reason}`` of the particles that could not be analysed (for
        example an irregular particle whose centroid lies outside it); they
        have no row in the arrays above, whose particle axis follows
        ``labels``.
    """
    thickness: object = field(repr=False)
    outer_radius: object = field(repr=False)
    absent_fraction: np.ndarray
    thresholds: np.ndarray = field(repr=False)
    absent_solid_angle: np.ndarray = field(repr=False)
    origins: list
    elements: list
    labels: list
    units: str = "nm"
    parameters: dict = field(repr=False, default_factory=dict)
    history: list = field(repr=False, default_factory=list)
    skipped: dict = field(default_factory=dict)

    @property
    def coverage(self):
        """Shaped (particle, element): ``1 - absent_fraction``."""
        return 1.0 - self.absent_fraction

    def absent(self, element, particle=0):
        """Absent fraction of ``element`` on particle number ``particle`` (0: the largest)."""
        if element not in self.elements:
            raise InputError(f"Unknown element {element!r}: the maps hold {self.elements}.")
        return float(self.absent_fraction[particle, self.elements.index(element)])

    def thickness_map(self, element, particle=0):
        """Thickness map (elevation, azimuth) of one element, nm, as a numpy array."""
        if element not in self.elements:
            raise InputError(f"Unknown element {element!r}: the maps hold {self.elements}.")
        return np.asarray(self.thickness.data[particle, self.elements.index(element)])

    def as_table(self):
        """One dict per (particle, element): absent fraction, coverage, mean/median thickness."""
        rows = []
        _, _, w = direction_grid(*self.thickness.data.shape[:-3:-1])
        for p, lab in enumerate(self.labels):
            for e, el in enumerate(self.elements):
                t = self.thickness.data[p, e]
                present = t >= self.parameters.get("absent_below_nm", 0)
                mean = float((t * w * present).sum() / max((w * present).sum(), 1e-12))
                rows.append({"particle": lab, "element": el, "absent_fraction": float(self.absent_fraction[p, e]),
                             "coverage": float(1 - self.absent_fraction[p, e]),
                             "mean_thickness_where_present": mean, "threshold": float(self.thresholds[p, e])})
        return rows

    def __str__(self):
        lines = [f"{'particle':>8} {'element':>7} {'absent':>7} {'mean thickness/' + self.units:>20}"]
        for r in self.as_table():
            lines.append(f"{r['particle']:>8} {r['element']:>7} {100 * r['absent_fraction']:6.1f}% "
                         f"{r['mean_thickness_where_present']:20.2f}")
        return "\n".join(lines)


#: why a learned denoiser matters to coverage (measured: benchmarks/bench_fusion.py, docs/benchmarks.rst)
LEARNED_DENOISER_NOTE = ("a learned denoiser can smooth a small gap in a shell away: on simulated CdSe/ZnS dots a "
                         "7 % gap measured 0.0 % after two_step's deep Q^D and 4.7-6.5 % without it. For coverage, "
                         "compare with tv, fused or two_step(denoiser='none')")


def learned_denoising(history):
    """What in a volume's history put its data through a network before the volume was made.

    Parameters
    ----------
    history : list of dict
        The volume's processing history (:func:`~hyperspy_edxtomo.base.provenance.get_history`).

    Returns
    -------
    str or None
        ``denoise_deep`` (or the ``auto`` denoiser where it kept its network)
        on the maps, such a Q^D of ``two_step`` where it reaches the volume
        (its MBIR input, or Q^S's target when Q^S trains), or ``end_to_end`` (its network T, and its Q^D); None if nothing did.
    """
    for entry in history:
        step, method = entry.get("step"), entry.get("method")
        if step == "denoising" and _network_denoised(method, entry.get("parameters") or {}):
            if method == "deep":
                return "the maps were denoised by denoise_deep"
            return f"the maps were denoised by a network (denoise method {method!r})"
        if step != "reconstruction":
            continue
        if method == "end_to_end":
            return "end_to_end's network made the volume"
        if method == "two_step":
            used = (entry.get("parameters") or {}).get("parameters") or {}
            records = [used] if "denoiser_used" in used else [r for r in used.values() if isinstance(r, dict)]
            for r in records:
                feeds = r.get("mbir_input") == "denoised" or (r.get("target") == "denoised"
                                                                and r.get("enhancer_steps", 0) > 0)
                q_d = r.get("denoiser_used") or {}
                if _network_denoised(q_d.get("method"), q_d) and feeds:
                    return "two_step's deep Q^D fed its MBIR or Q^S"
    return None


def _network_denoised(method, record):
    """Whether a denoiser's record (its method, and what it chose) says the maps went through a network:
    ``deep``, or ``auto`` where it kept the network (on counts, or for an element on other maps)."""
    if method == "deep":
        return True
    if method != "auto":
        return False
    per_element = (record.get("elements") or {}).values()
    return record.get("chosen") == "deep" or any(str(e.get("chosen", "")).startswith("deep") for e in per_element)


def _envelope(surface, u, gone):
    """Surface radius in every direction, bridging the directions in ``gone``.

    Where an element is absent the particle's surface lies lower (the shell
    is missing); its area is judged on a quadric surface
    ``q^T A q + b^T q = 1`` fitted to the surface points of the other
    directions (an ellipsoid for a roundish particle). Falls back to the
    measured surface where the fit fails.
    """
    if not gone.any() or gone.all():
        return surface
    q = (surface * u).reshape(3, -1).T  # points (N, 3), from the origin
    keep = ~gone.ravel()
    x, y, z = q[keep].T
    design = np.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, x, y, z], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.ones(keep.sum()), rcond=None)
    a = np.array([[coef[0], coef[3], coef[4]], [coef[3], coef[1], coef[5]], [coef[4], coef[5], coef[2]]])
    uu = u.reshape(3, -1)
    alpha = np.einsum("in,ij,jn->n", uu, a, uu)
    beta = coef[6:] @ uu
    disc = beta**2 + 4 * alpha
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = (-beta + np.sqrt(disc)) / (2 * alpha)
    fit = fit.reshape(surface.shape)
    good = (alpha > 0).reshape(surface.shape) & (disc >= 0).reshape(surface.shape) & np.isfinite(fit) & (fit > 0)
    return np.where(gone & good, fit, surface)


def _inside_origin(labels, particle):
    """The particle's centroid (voxel indices) when it lies inside the particle, else the point deepest
    inside it (farthest from its surface): rays from an origin outside would measure nothing."""
    from scipy import ndimage

    c = particle.centre_index
    ci = np.round(c).astype(int)
    if np.all(ci >= 0) and np.all(ci < np.array(labels.shape)) and labels[tuple(ci)] == particle.label:
        return c
    mask = labels == particle.label
    if not mask.any():
        return c
    depth = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1, 1:-1]
    return tuple(float(i) for i in np.unravel_index(int(np.argmax(depth)), depth.shape))


@dataclass(frozen=True)
class _Rays:
    """How every particle is sampled: the directions, their solid-angle weights, the ray step."""

    u: np.ndarray  # unit vectors (x, y, z) over (elevation, azimuth)
    w: np.ndarray  # solid-angle weights, summing to 1
    scale: float  # voxel size, nm
    step: float  # ray step, nm
    axes: tuple  # the volume's z, y, x axes
    level: float
    absent_below: float
    max_radius_nm: float | None


def _one_particle(part, o, particles, data, idx, rays):
    """One particle: ``(thickness, outer radius, absent fraction, absent solid angle, threshold)`` per
    element in ``idx``, and its origin in nm.

    Raises ValueError when the particle cannot be analysed (its origin outside it).
    """
    from scipy import ndimage

    u, w, scale, step = rays.u, rays.w, rays.scale, rays.step
    n_e = len(idx)
    thick = np.zeros((n_e,) + u.shape[1:], np.float32)
    outer = np.full((n_e,) + u.shape[1:], np.nan, np.float32)
    absent, absent_sa, thresholds = np.zeros(n_e), np.zeros(n_e), np.zeros(n_e)
    region = particles.regions == part.label
    oi = np.round(o).astype(int)
    if np.any(oi < 0) or np.any(oi >= np.array(region.shape)) or particles.labels[tuple(oi)] != part.label:
        raise InputError(
            f"The origin of particle {part.label} (voxel z, y, x = {tuple(round(float(c), 1) for c in o)}) is not "
            "inside it (an irregular or hollow particle: give origin= a point inside it)"
        )
    rmax = max(part.equivalent_diameter, 4 * scale) if rays.max_radius_nm is None else rays.max_radius_nm
    r = (np.arange(int(np.ceil(rmax / step))) + 0.5) * step  # nm
    # sample points (3: z, y, x in voxel indices, elevation, azimuth, radius)
    pts = np.stack([o[k] + u[2 - k][..., None] * r / scale for k in range(3)])
    flat = pts.reshape(3, -1)
    inside = ndimage.map_coordinates(region.astype(np.float32), flat, order=0, mode="constant", cval=0.0)
    inside = inside.reshape(pts.shape[1:]) > 0.5
    # distance to the particle's surface along every ray: area weights
    body = ndimage.map_coordinates((particles.labels == part.label).astype(np.float32), flat, order=1,
                                   mode="constant", cval=0.0).reshape(pts.shape[1:]) > 0.5
    last_in = np.where(body.any(axis=-1), body.shape[-1] - 1 - np.argmax(body[..., ::-1], axis=-1), 0)
    surface = r[last_in] + step / 2
    for j, e in enumerate(idx):
        vals = ndimage.map_coordinates(data[e], flat, order=1, mode="constant", cval=0.0).reshape(pts.shape[1:])
        vals = np.where(inside, vals, 0.0)
        ray_max = vals.max(axis=-1)
        ref = float(np.median(ray_max))
        if not ref > 0:
            ref = float(ray_max.max())
        thr = rays.level * ref if ref > 0 else np.inf
        above = vals > thr
        t = above.sum(axis=-1) * step
        thick[j] = t
        last = np.where(above.any(axis=-1), above.shape[-1] - 1 - np.argmax(above[..., ::-1], axis=-1), -1)
        outer[j] = np.where(last >= 0, r[np.clip(last, 0, None)] + step / 2, np.nan)
        gone = t < rays.absent_below
        radius = _envelope(surface, u, gone)
        w_area = w * radius**2
        absent[j] = float((w_area * gone).sum() / w_area.sum())
        absent_sa[j] = float((w * gone).sum())
        thresholds[j] = thr
    origin_nm = tuple(float(ax.offset + ax.scale * c) for ax, c in zip(rays.axes[::-1], o[::-1]))
    return (thick, outer, absent, absent_sa, thresholds), origin_nm


@signal_method(ElementVolume)
def shell_maps(volume: ElementVolume, elements: Sequence[str] | str | None = None, particles: ParticleList | None = None,
               origin: Literal["centroid"] | Sequence = "centroid", n_azimuth: int = 72, n_elevation: int = 36,
               level: float = 0.5, absent_below_nm: float | None = None, max_radius_nm: float | None = None,
               max_particles: int | None = None) -> ShellMaps:
    """Shell thickness along every direction and shell coverage, per particle and element.

    Parameters
    ----------
    volume : ElementVolume
    elements : None, str or list of str
        Elements to map; None: all.
    particles : None or ParticleList
        From :func:`find_particles` (or ``vol.find_particles()``); None: found
        with the defaults.
    origin : "centroid" or (x, y, z) or list of (x, y, z)
        Where the rays start, nm in the volume's coordinates: the particle's
        centroid, or given points (one for all particles, or one each).
    n_azimuth, n_elevation : int
        Direction grid (default 5-degree cells).
    level : float
        Presence threshold relative to the element's reference density (the
        median over directions of the ray maxima), in (0, 1).
    absent_below_nm : None or float
        An element is absent in a direction where its thickness is below
        this; None: one voxel.
    max_radius_nm : None or float
        Ray length; None: the particle's equivalent diameter (twice its
        radius), at least 4 voxels.
    max_particles : None or int
        Only the largest few particles.

    Returns
    -------
    ShellMaps
        Every particle is analysed on its own: one that cannot be (its
        origin lies outside it, e.g. an irregular or hollow particle's
        centroid) is left out, named with the reason in ``skipped`` and in
        ``metadata.Tomography.shells.skipped`` of the signals, with a
        warning; the others are kept.

    Raises
    ------
    ValueError
        NaN or empty volume, no particle found, no particle that can be
        analysed (the message gives each one's reason), bad parameters.

    Warns
    -----
    UserWarning
        When the volume's data went through a network (``denoise_deep``,
        ``two_step``'s deep Q^D, ``end_to_end``; :func:`learned_denoising`):
        it can smooth a small gap in a shell away. The record's
        ``learned_denoiser`` says so too.

    Examples
    --------
    >>> from hyperspy_edxtomo import datasets
    >>> vol = datasets.core_shell_phantom(size=48, shell_gap=0.1, seed=2)
    >>> shells = vol.shell_maps(elements=["S", "Se"])
    >>> abs(shells.absent("S") - 0.1) < 0.03       # the 10 % gap of the ZnS shell
    True
    >>> shells.absent("Se")                          # the core is everywhere
    0.0
    """
    data, scale, units, els = volume_array(volume)
    idx = select_elements(els, elements)
    level = positive(level, "level")
    if level >= 1:
        raise InputError(f"level must be in (0, 1), got {level}")
    absent_below = scale if absent_below_nm is None else positive(absent_below_nm, "absent_below_nm", True)
    if particles is None:
        particles = find_particles(volume)
    elif not isinstance(particles, ParticleList):
        raise InputTypeError(f"particles must be a ParticleList from find_particles(), got {type(particles).__name__}")
    if particles.labels.shape != data.shape[1:]:
        raise InputError(f"The particles were found in a volume of shape {particles.labels.shape}, "
                         f"not this one {data.shape[1:]}.")
    plist = list(particles)[: None if max_particles is None else int(max_particles)]
    az, el, w = direction_grid(n_azimuth, n_elevation)
    phi, theta = np.meshgrid(np.deg2rad(az), np.deg2rad(el))  # (elevation, azimuth)
    u = np.stack([np.cos(theta) * np.cos(phi), np.cos(theta) * np.sin(phi), np.sin(theta)])  # x, y, z

    # origins, in voxel indices (z, y, x)
    axes = [volume.axes_manager[n] for n in "zyx"]

    def to_index(point):
        point = np.asarray(point, dtype=float).ravel()
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise InputError(f"An origin must be a finite (x, y, z) point in nm, got {point!r}")
        x, y, z = point
        return tuple((v - ax.offset) / ax.scale for v, ax in zip((z, y, x), axes))

    moved = {}
    if isinstance(origin, str):
        if origin != "centroid":
            raise InputError(f"origin must be 'centroid' or (x, y, z) in nm, got {origin!r}")
        origins = [_inside_origin(particles.labels, p) for p in plist]
        moved = {int(p.label): o for p, o in zip(plist, origins) if o is not p.centre_index}
    else:
        o = np.asarray(origin, dtype=float)
        if o.ndim == 1:
            origins = [to_index(o)] * len(plist)
        else:
            if len(o) != len(plist):
                raise InputError(f"{len(o)} origins for {len(plist)} particles.")
            origins = [to_index(p) for p in o]

    step = scale / 4.0
    n_e = len(idx)
    if max_radius_nm is not None:
        max_radius_nm = positive(max_radius_nm, "max_radius_nm")
    rays = _Rays(u, w, scale, step, tuple(axes), level, absent_below, max_radius_nm)
    rows, origin_nm, analysed, skipped = [], [], [], {}
    for p, (part, o) in enumerate(zip(plist, origins)):
        # each particle on its own: one that cannot be analysed is reported, the others kept
        try:
            row, at = _one_particle(part, o, particles, data, idx, rays)
        except (ValueError, ArithmeticError) as err:
            skipped[int(part.label)] = str(err)
            continue
        rows.append(row)
        origin_nm.append(at)
        analysed.append(p)
    if not analysed:
        raise InputError("No particle could be analysed: " + "; ".join(f"particle {k}: {v}" for k, v in skipped.items()))
    if skipped:
        warn(f"Shell maps: {len(skipped)} of {len(plist)} particles not analysed ("
             + "; ".join(f"particle {k}: {v}" for k, v in skipped.items())
             + "); the others are, and ShellMaps.skipped lists these.")
    thick, outer, absent, absent_sa, thresholds = (np.stack(column) for column in zip(*rows))
    denoised_by = learned_denoising(get_history(volume))
    if denoised_by:
        warn(f"Shell maps: {denoised_by}; {LEARNED_DENOISER_NOTE}.")
    plist = [plist[p] for p in analysed]
    n_p = len(plist)

    from hyperspy.signals import Signal2D

    names = [els[i] for i in idx]

    def signal(arr, title):
        s = Signal2D(arr, axes=[
            {"name": "particle", "size": n_p, "offset": 1, "scale": 1, "units": "", "navigate": True},
            {"name": "element", "size": n_e, "offset": 0, "scale": 1, "units": "", "navigate": True},
            {"name": "elevation", "size": el.size, "offset": float(el[0]), "scale": float(el[1] - el[0]),
             "units": "deg", "navigate": False},
            {"name": "azimuth", "size": az.size, "offset": float(az[0]), "scale": float(az[1] - az[0]),
             "units": "deg", "navigate": False},
        ])
        s.metadata.General.title = title
        s.metadata.set_item("Sample.elements", names)
        s.metadata.set_item("Signal.quantity", f"{title} ({units})")
        return s

    params = {"elements": names, "origin": origin if isinstance(origin, str) else np.asarray(origin).tolist(),
              "n_azimuth": int(n_azimuth), "n_elevation": int(n_elevation), "level": level,
              "absent_below_nm": absent_below, "max_radius_nm": max_radius_nm, "ray_step_nm": step,
              "particles": [p.label for p in plist], "absent_fraction": absent.tolist(),
              "skipped": {str(k): v for k, v in skipped.items()},
              "learned_denoiser": denoised_by or "none",
              "origin_moved_inside": {str(k): "the centroid lies outside the particle (irregular or hollow): the "
                                      f"point deepest inside it, voxel (z, y, x) {tuple(round(float(c), 1) for c in o)}"
                                      for k, o in moved.items()}}
    history = get_history(volume) + [history_entry("analysis", "shell_maps", params)]
    result = ShellMaps(signal(thick, "Shell thickness"), signal(outer, "Outer radius"), absent, thresholds,
                       absent_sa, origin_nm, names, [p.label for p in plist], units, params, history, skipped)
    for s in (result.thickness, result.outer_radius):
        s.metadata.set_item("Tomography.history", history)
        s.metadata.set_item("Tomography.shells.absent_fraction", {n: absent[:, j].copy() for j, n in enumerate(names)})
        s.metadata.set_item("Tomography.shells.particles", np.array([int(p.label) for p in plist], int))
        s.metadata.set_item("Tomography.shells.skipped", {str(k): v for k, v in skipped.items()})
    return result
