"""Quality flags: when the numbers of a segmented particle should not be trusted.

A reconstruction from ~13 noisy views over +-60 degrees has artefacts that a
threshold segments like particles: bright arcs near the edge of the
reconstruction circle (views cut by the field edge, the missing wedge), and
streaks along the beam direction. A real particle can also be cut by the box
or be smaller than the resolution. Each flag is a sentence with the number it
rests on; an unflagged particle is not proven right, a flagged one needs a
look at the volume cuts before its shell numbers are used.

Geometry: volumes are ``(z, y, x)`` with the tilt axis along ``y``; the
reconstruction circle lies in the ``(z, x)`` plane, centred on the box, with
the radius of half the field width ``n_x / 2`` (voxels beyond it are seen by
only some views).
"""

import numpy as np

from hyperspy_edxtomo.base.errors import InputError

__all__ = ["OUTER_RING", "ARC_FRACTION", "STREAK_ELONGATION", "particle_flags", "flag_particles"]

#: Radius (fraction of the circle's) beyond which a voxel lies in the outer ring.
OUTER_RING = 0.8
#: A particle with at least this fraction of its voxels in the outer ring is arc-like.
ARC_FRACTION = 0.5
#: A particle at least this many times longer along its main axis than across it, that axis
#: within 30 degrees of the beam (z), is streak-like.
STREAK_ELONGATION = 3.0


def _principal(z, x, y):
    """Elongation (sqrt of the largest over the smallest second moment) and the main axis."""
    coords = np.stack([z, y, x]).astype(np.float64)
    if coords.shape[1] < 4:
        return 1.0, np.array([1.0, 0.0, 0.0])
    w, v = np.linalg.eigh(np.cov(coords))
    w = np.clip(w, 0, None) + 1 / 12  # a voxel's own extent: a one-voxel-thick sheet is not infinitely thin
    return float(np.sqrt(w[-1] / w[0])), v[:, -1]


def particle_flags(labels, diameters=None, fsc_resolution=None):
    """Quality flags of every labelled particle of a volume.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(z, y, x)`` integer labels: 0 background, ``k`` particle ``k``.
    diameters : None or dict
        ``{label: equivalent diameter}`` (nm, or voxels for an uncalibrated volume).
    fsc_resolution : None or dict
        ``{element: FSC resolution}`` in the same units; a particle smaller
        than an element's resolution is flagged for that element.

    Returns
    -------
    dict
        ``{label: {"flags": [sentence, ...], "outer_fraction", "max_radius",
        "elongation", "touches_box"}}`` (radii as fractions of the circle's).

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.analysis.quality import particle_flags
    >>> labels = np.zeros((32, 8, 32), int)
    >>> labels[12:20, 2:6, 12:20] = 1          # a blob in the middle
    >>> labels[1:3, 2:6, 10:22] = 2            # a thin plate at the circle's edge
    >>> f = particle_flags(labels)
    >>> f[1]["flags"], len(f[2]["flags"]) >= 1
    ([], True)
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be a 3D (z, y, x) array, got shape {labels.shape}")
    n_z, n_y, n_x = labels.shape
    radius = n_x / 2.0
    out = {}
    for lab in np.unique(labels[labels > 0]):
        z, y, x = np.nonzero(labels == lab)
        r = np.hypot(z - (n_z - 1) / 2, x - (n_x - 1) / 2) / radius
        outer = float(np.mean(r > OUTER_RING))
        r_max = float(r.max())
        elongation, axis = _principal(z, x, y)
        faces = [name for name, lo, hi, n in (("z", z.min(), z.max(), n_z), ("y", y.min(), y.max(), n_y),
                                              ("x", x.min(), x.max(), n_x)) if lo == 0 or hi == n - 1]
        flags = []
        if faces:
            flags.append(f"cut by the box (touches its {'/'.join(faces)} faces): its size and shells are incomplete")
        if r_max >= 1.0 - 1.0 / radius:
            flags.append(f"reaches the edge of the reconstruction circle (r = {r_max:.2f} of its radius), "
                         "where fewer views see it")
        if outer >= ARC_FRACTION:
            flags.append(f"arc-like: {100 * outer:.0f} % of it lies in the outer ring (r > {OUTER_RING} of the "
                         "circle), where edge and missing-wedge artefacts gather")
        if elongation >= STREAK_ELONGATION and abs(axis[0]) >= np.cos(np.radians(30)):
            flags.append(f"streak-like: {elongation:.1f} times longer along the beam (z) than across, the "
                         "direction the missing wedge smears")
        if fsc_resolution and diameters and int(lab) in diameters:
            d = float(diameters[int(lab)])
            coarse = {el: float(v) for el, v in fsc_resolution.items() if np.isfinite(v) and float(v) > d}
            if coarse:
                flags.append("smaller than the FSC resolution (" + ", ".join(f"{el} {v:.3g}" for el, v in
                                                                         coarse.items()) + f") at {d:.3g} across")
        out[int(lab)] = {"flags": flags, "outer_fraction": outer, "max_radius": r_max, "elongation": elongation,
                         "touches_box": faces}
    return out


def flag_particles(particles, fsc_resolution=None):
    """:func:`particle_flags` of a :class:`~hyperspy_edxtomo.analysis.ParticleList`.

    ``fsc_resolution`` (``{element: resolution}``) is in the particles' length units.
    """
    diameters = {p.label: p.equivalent_diameter for p in particles}
    return particle_flags(particles.labels, diameters, fsc_resolution)
