"""The hooks a plugin implements (pluggy, project name ``hyperspy_edxtomo``).

A plugin is a module registered in the entry-point group ``hyperspy_edxtomo``
of its package's ``pyproject.toml``::

    [project.entry-points.hyperspy_edxtomo]
    my_algorithm = "my_package.my_algorithm"

and implements one or more of these hooks with :data:`hookimpl`. The built-in
algorithms (``hyperspy_edxtomo.reconstruction.algorithms``) and denoisers
(``hyperspy_edxtomo.denoising.methods``) implement the same hooks and are
registered explicitly (:data:`~hyperspy_edxtomo.plugins.manager.BUILTIN_PLUGINS`).
The classes a hook returns follow :mod:`hyperspy_edxtomo.plugins.contract`.
"""

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the classes the hooks return, for the annotations only
    from hyperspy_edxtomo.plugins.contract import Denoiser, ReconstructionAlgorithm

PROJECT = "hyperspy_edxtomo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def edxtomo_reconstruction_algorithms() -> list[type["ReconstructionAlgorithm"]]:
    """Reconstruction algorithms this plugin provides.

    Takes no arguments: the classes are asked for once per session, when a
    method is first looked up.

    Returns
    -------
    list of type
        Subclasses of :class:`hyperspy_edxtomo.plugins.contract.ReconstructionAlgorithm`,
        each with a unique ``name`` (what users pass as ``method=``).
    """


@hookspec
def edxtomo_denoisers() -> list[type["Denoiser"]]:
    """Denoisers of element maps this plugin provides.

    Takes no arguments, like :func:`edxtomo_reconstruction_algorithms`.

    Returns
    -------
    list of type
        Subclasses of :class:`hyperspy_edxtomo.plugins.contract.Denoiser`, each with a unique ``name`` (what users pass as
        ``method=`` to ``maps.denoise``).
    """
