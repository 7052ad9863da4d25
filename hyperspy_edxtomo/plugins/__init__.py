"""The plugin contract: what a plugin package imports.

* :mod:`~hyperspy_edxtomo.plugins.hookspecs` -- the hooks (``hookimpl`` marks an implementation);
* :mod:`~hyperspy_edxtomo.plugins.contract` -- the base classes, the :class:`Context` a plugin is
  given and the result objects it returns;
* :mod:`~hyperspy_edxtomo.plugins.slices` -- running a slice-wise algorithm over batches;
* :mod:`~hyperspy_edxtomo.plugins.manager` -- discovery: the built-in plugins and the entry points.
"""

from hyperspy_edxtomo.plugins.contract import (
    Context,
    Denoiser,
    DenoisingResult,
    ParameterisedMethod,
    ReconstructionAlgorithm,
    ReconstructionResult,
)
from hyperspy_edxtomo.plugins.hookspecs import hookimpl

__all__ = ["hookimpl", "Context", "ReconstructionAlgorithm", "ReconstructionResult", "Denoiser", "DenoisingResult",
           "ParameterisedMethod"]
