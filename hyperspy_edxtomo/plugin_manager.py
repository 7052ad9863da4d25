"""Finding the installed plugins: one pluggy manager, created on first use."""

import functools

import pluggy

from . import hookspecs


@functools.lru_cache(maxsize=1)
def get_plugin_manager():
    """The plugin manager, with every plugin of the entry-point group loaded.

    Built-in and external plugins come in the same way, through the
    ``hyperspy_edxtomo`` entry-point group.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


def _collect(hook_results, kind):
    found = {}
    for classes in hook_results:
        for cls in classes or ():
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"{kind} {cls!r} has no 'name' string attribute.")
            if name in found and found[name] is not cls:
                raise ValueError(f"Two {kind}s are called {name!r}: {found[name]!r} and {cls!r}.")
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
        raise ValueError(f"Unknown {what} method {method!r}. Installed methods: {', '.join(found) or 'none'}.")
    return found[method]


def get_algorithm(method):
    """The algorithm class called ``method``; a ValueError lists the installed ones."""
    return _get(reconstruction_algorithms(), method, "reconstruction")


def get_denoiser(method):
    """The denoiser class called ``method``; a ValueError lists the installed ones."""
    return _get(denoisers(), method, "denoising")
