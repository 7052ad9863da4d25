"""Errors and warnings the package raises for the user."""

import inspect
import warnings

# modules whose frames a warning skips (the package, its built-in plugins among it, and the libraries it calls)
_INTERNAL = ("hyperspy_edxtomo", "dask.", "hyperspy.")


def _stacklevel():
    """The stack level of the first frame outside this package and its built-in plugins: a
    warning then points at the user's line, however deep inside the package it was raised."""
    level = 1
    frame = inspect.currentframe().f_back  # warn() itself: level 1 of warnings.warn
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(_INTERNAL):
            return level
        frame = frame.f_back
        level += 1
    return level


def warn(message, category=UserWarning):
    """``warnings.warn`` pointing at the user's code rather than at this package's internals.

    Examples
    --------
    >>> import warnings
    >>> from hyperspy_edxtomo.base.errors import warn
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("check the views")
    >>> str(caught[0].message)
    'check the views'
    """
    warnings.warn(message, category, stacklevel=_stacklevel())
