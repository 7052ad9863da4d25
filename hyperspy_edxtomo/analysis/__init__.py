"""Analysis of reconstructed element volumes.

* :mod:`~hyperspy_edxtomo.analysis.fsc` -- Fourier shell correlation between
  two independent reconstructions, resolution at the 0.143 and 1/2-bit
  thresholds;
* :mod:`~hyperspy_edxtomo.analysis.particles` -- segmentation of the particles
  in a volume, their centres, sizes and radial element profiles;
* :mod:`~hyperspy_edxtomo.analysis.shells` -- shell thickness along every
  direction (azimuth x elevation maps) and shell coverage;
* :mod:`~hyperspy_edxtomo.analysis.quality` -- flags on particles whose
  numbers should not be trusted (cut by the box, at the circle's edge,
  arc- or streak-like, smaller than the resolution).

The same analyses are methods of
:class:`~hyperspy_edxtomo.signals.ElementVolume`
(``fourier_shell_correlation``, ``find_particles``, ``shell_maps``) and of
:class:`~hyperspy_edxtomo.signals.ElementMapTiltSeries`
(``fourier_shell_correlation``, which makes the two reconstructions).
"""

from hyperspy_edxtomo.analysis.fsc import (
    fourier_shell_correlation,
    fsc_curve,
    fsc_from_tilt_series,
    half_bit_threshold,
)
from hyperspy_edxtomo.analysis.particles import Particle, ParticleList, find_particles
from hyperspy_edxtomo.analysis.quality import flag_particles, particle_flags
from hyperspy_edxtomo.analysis.shells import ShellMaps, shell_maps

__all__ = [
    "fourier_shell_correlation",
    "fsc_from_tilt_series",
    "fsc_curve",
    "half_bit_threshold",
    "find_particles",
    "Particle",
    "ParticleList",
    "shell_maps",
    "ShellMaps",
    "flag_particles",
    "particle_flags",
]
