"""Simulated STEM-EDX tomography data with ground truth.

Phantoms (relative atom density per element and voxel, as
:class:`~hyperspy_edxtomo.signals.ElementVolume`):

* :func:`core_shell_phantom` -- InP/ZnSe/ZnS (elements ``In, P, Se, S, Zn``)
  or CdSe/ZnS (``Cd, Se, S, Zn``) quantum dots, optionally with a gap in the
  outer shell;
* :func:`nanorod_phantom` -- a CdSe rod with a ZnS shell (``Cd, Se, S, Zn``).

Tilt series of a phantom (Poisson counts, the phantom in
``metadata.Simulation.ground_truth``):

* :func:`simulate_element_maps` -- element maps (element, tilt, y, x);
* :func:`simulate_tilt_series` -- spectrum images (tilt, y, x, energy) with
  exspy's X-ray lines and a continuum;
* :func:`project` -- the noiseless projections;
* :func:`simulate_haadf` -- HAADF images (``Z**1.7`` contrast, shot and
  read noise); ``haadf_snr`` / ``haadf_dose`` of the simulators above add
  them to a series as ``metadata.Tomography.reference_images``;
* :func:`misalign` -- views rotated and moved by known shifts, to test
  alignment on.

One-call datasets: :func:`quantum_dot_tilt_series`,
:func:`quantum_dot_element_maps`, :func:`nanorod_tilt_series`.

Scenes that real samples bring, to test automatic choices on (element maps
of a field of view with truth, misalignment, background, HAADF):

* :func:`scene_phantom` -- particles of a scene (:data:`SCENES`: ``dot``,
  ``chain``, ``rod_along``, ``rod_across``, ``edge_cut``, ``entering``) in a
  box wider than the field of view;
* :func:`simulate_scene` -- its element maps, as counts or as vendors export
  them (:data:`MAP_KINDS`).

Real data: :func:`qd1`, the 13-tilt EDX series of a quantum dot from the
paper's public release (Apache-2.0, with attribution).

Examples
--------
>>> from hyperspy_edxtomo import datasets
>>> s = datasets.quantum_dot_tilt_series(size=32, seed=0)
>>> maps = s.get_element_maps(["Se", "S", "Zn"])
>>> truth = s.metadata.Simulation.ground_truth
>>> truth.elements
['In', 'P', 'Se', 'S', 'Zn']
"""

from hyperspy_edxtomo.datasets.misalignment import misalign
from hyperspy_edxtomo.datasets.phantoms import (
    KINDS,
    core_shell_phantom,
    nanorod_phantom,
)
from hyperspy_edxtomo.datasets.real import QD1_CITATION, qd1
from hyperspy_edxtomo.datasets.scenes import (
    MAP_KINDS,
    SCENES,
    scene_phantom,
    simulate_scene,
)
from hyperspy_edxtomo.datasets.spectra import (
    DEFAULT_COUNTS_PER_TILT,
    nanorod_tilt_series,
    project,
    quantum_dot_element_maps,
    quantum_dot_tilt_series,
    simulate_element_maps,
    simulate_haadf,
    simulate_tilt_series,
    xray_lines_of,
)

__all__ = [
    "KINDS",
    "DEFAULT_COUNTS_PER_TILT",
    "core_shell_phantom",
    "nanorod_phantom",
    "project",
    "misalign",
    "simulate_element_maps",
    "simulate_tilt_series",
    "simulate_haadf",
    "xray_lines_of",
    "quantum_dot_tilt_series",
    "quantum_dot_element_maps",
    "nanorod_tilt_series",
    "SCENES",
    "MAP_KINDS",
    "scene_phantom",
    "simulate_scene",
    "qd1",
    "QD1_CITATION",
]
