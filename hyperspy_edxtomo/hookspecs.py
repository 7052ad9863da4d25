"""The hooks a plugin implements (pluggy, project name ``hyperspy_edxtomo``).

A plugin is a module registered in the entry-point group ``hyperspy_edxtomo``
of its package's ``pyproject.toml``::

    [project.entry-points.hyperspy_edxtomo]
    my_algorithm = "my_package.my_algorithm"

and implements one or more of these hooks with :data:`hookimpl`. The built-in
algorithms in ``plugins/`` are registered exactly the same way.
"""

import pluggy

PROJECT = "hyperspy_edxtomo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def edxtomo_reconstruction_algorithms():
    """Reconstruction algorithms this plugin provides.

    Returns
    -------
    list of type
        Subclasses of :class:`hyperspy_edxtomo.algorithms.ReconstructionAlgorithm`,
        each with a unique ``name`` (what users pass as ``method=``).
    """


@hookspec
def edxtomo_denoisers():
    """Denoisers of element maps this plugin provides.

    Returns
    -------
    list of type
        Denoiser classes, each with a unique ``name`` (what users pass as
        ``method=`` to ``maps.denoise``).
    """
