"""Finding the installed plugins: one pluggy manager, created on first use.

The built-in algorithms and denoisers are registered explicitly, by module
name, next to the entry-point group through which other packages add theirs
(as datasette does): this module imports no algorithm, so the plugin
contract stays below the stages that implement it.
"""

import functools
import importlib
import importlib.metadata

import pluggy

from hyperspy_edxtomo.base.errors import InputError, InputTypeError, warn
from hyperspy_edxtomo.plugins import hookspecs

#: modules of the built-in plugins, each implementing the hooks of :mod:`~hyperspy_edxtomo.plugins.hookspecs`
BUILTIN_PLUGINS = tuple(
    [f"hyperspy_edxtomo.reconstruction.algorithms.{name}" for name in ("fbp", "sirt", "tv", "l1", "fused",
                                                                       "two_step", "end_to_end")]
    + [f"hyperspy_edxtomo.denoising.methods.{name}" for name in ("gaussian", "moving_average", "pca", "nmf", "bm3d",
                                                               "deep", "auto")]
)


def build_plugin_manager():
    """A new plugin manager with every plugin registered.

    The built-in plugins (:data:`BUILTIN_PLUGINS`) first, then every
    module of the ``hyperspy_edxtomo`` entry-point group of other packages.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name)
    # each package's plugin on its own: one that cannot be imported (written for another version of the
    # contract, a missing dependency) is skipped with a warning naming it, and every other method works
    for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as err:  # noqa: BLE001 - any failure of a third-party import
            warn(f"The hyperspy_edxtomo plugin {ep.name!r} ({ep.value}) cannot be imported and is skipped: "
                 f"{type(err).__name__}: {err}. Update or uninstall the package that provides it.")
            continue
        pm.register(plugin, name=ep.name)
    return pm


@functools.lru_cache(maxsize=1)
def get_plugin_manager():
    """The plugin manager of this session (:func:`build_plugin_manager`, built on first use)."""
    return build_plugin_manager()


def _collect(hook_results, kind):
    found = {}
    for classes in hook_results:
        for cls in classes or ():
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise InputTypeError(f"{kind} {cls!r} has no 'name' string attribute.")
            if name in found and found[name] is not cls:
                raise InputError(f"Two {kind}s are called {name!r}: {found[name]!r} and {cls!r}.")
            found[name] = cls
    return dict(sorted(found.items()))


def reconstruction_algorithms():
    """``{name: class}`` of every installed reconstruction algorithm."""
    return _collect(get_plugin_manager().hook.edxtomo_reconstruction_algorithms(), "reconstruction algorithm")


def denoisers():
    """``{name: class}`` of every installed denoiser."""
    return _collect(get_plugin_manager().hook.edxtomo_denoisers(), "denoiser")


def _get(found, method, what):
    if not isinstance(method, str) or method not in found:
        raise InputError(f"Unknown {what} method {method!r}. Installed methods: {', '.join(found) or 'none'}.")
    return found[method]


def get_algorithm(method):
    """The algorithm class called ``method``; a ValueError lists the installed ones."""
    return _get(reconstruction_algorithms(), method, "reconstruction")


def get_denoiser(method):
    """The denoiser class called ``method``; a ValueError lists the installed ones."""
    return _get(denoisers(), method, "denoising")
