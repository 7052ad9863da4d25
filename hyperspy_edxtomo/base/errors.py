"""Errors and warnings the package raises for the user.

Every error a user can act on (bad input, a damaged file, an output that
would overwrite something) is an :class:`EdxtomoError`; the command line
reports those in one line and exits 2, anything else is a failure of the
package (exit 1, traceback with ``--debug``). Each class also derives from
the built-in exception it refines (``ValueError``, ``TypeError``,
``OSError``), so ``except ValueError`` keeps working.

* :class:`InputError` -- data or arguments that cannot be used (wrong shape,
  NaN, unknown element or method, a parameter out of range);
* :class:`InputTypeError` -- an argument of the wrong type;
* :class:`FileError` -- a file that cannot be read as what it should be
  (empty, truncated, corrupt); a reader that crashes in its child process
  raises ``io.vendor_read.ReaderCrashError``, an ``OSError`` (that module
  runs alone in the child and imports nothing of the package);
* :class:`OutputError` -- an output refused because it is an input; an
  existing result without ``overwrite`` is Python's ``FileExistsError``.
"""

import inspect
import warnings

__all__ = ["EdxtomoError", "InputError", "InputTypeError", "FileError", "OutputError", "warn"]


class EdxtomoError(Exception):
    """Base of the errors a user can act on; the message names the problem and the fix."""


class InputError(EdxtomoError, ValueError):
    """Data or arguments that cannot be used: the message names the argument or the file."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type."""


class FileError(EdxtomoError, OSError):
    """A file that cannot be read as what it should be (empty, truncated, corrupt)."""


class OutputError(EdxtomoError, ValueError):
    """An output that would replace something the user keeps (an existing result, an input)."""


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
