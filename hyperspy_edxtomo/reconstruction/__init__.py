"""Stage: reconstruction (``maps.reconstruct``).

``projector`` (ASTRA or torch, CPU or CUDA), ``solvers`` (SIRT, TV, L1 on it),
``strength`` (regularisation strength from held-out data), ``multichannel``
(all elements together: coupled TV, HAADF term), ``haadf`` (the HAADF series:
checks, contrast fit, edge guide), ``joint_selection`` and ``joint_series``
(choosing and running the joint reconstruction), ``fusion2d`` (one view with
its HAADF: the fusion's 2D check), ``deep_models`` (the paper's networks Q^S
and T), ``algorithms`` (the built-in plugins, one per module) and ``api``
(the signal-level entry point).
"""

from hyperspy_edxtomo.reconstruction.api import (
    DEFAULT_METHOD,
    list_algorithms,
    reconstruct,
)

__all__ = ["DEFAULT_METHOD", "reconstruct", "list_algorithms"]
