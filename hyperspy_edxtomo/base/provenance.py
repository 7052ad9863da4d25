"""What a result was made from: the processing history in a signal's metadata, software
versions, the call, the date, input file digests.

A report is a record: from it one can tell which files (by SHA-256), which
software and which command or call gave the numbers, and rerun it.
"""

import copy
import datetime
import hashlib
import platform
import shlex
from importlib import metadata as _dist
from pathlib import Path

import numpy as np

from hyperspy_edxtomo.base.conventions import NODE

__all__ = ["jsonable", "plain_record", "get_history", "append_history", "PACKAGES", "versions", "file_record",
           "record_command_line", "command_line", "run_record"]

def plain_record(value):
    """Metadata-friendly copy of ``value``: numpy scalars to Python, numbers in a row to an array.

    Arrays stay arrays (HyperSpy shows them on one line and saves them as
    datasets; a list of numbers shows one line per item, ordered as text).
    """
    if isinstance(value, dict):
        return {str(k): plain_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > 1 and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                                  for v in value):
            return np.asarray(value)
        return [plain_record(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.copy() if value.dtype.kind in "biuf" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def jsonable(value):
    """``value`` as plain JSON types: arrays to lists, NaN and infinity to None, anything else to its repr.

    Examples
    --------
    >>> import numpy as np
    >>> from hyperspy_edxtomo.base.provenance import jsonable
    >>> jsonable({"a": np.arange(2), "b": np.float32(np.nan)})
    {'a': [0, 1], 'b': None}
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


def get_history(signal):
    """The processing history of ``signal`` as a list of dicts (a copy)."""
    return copy.deepcopy(list(signal.metadata.get_item(f"{NODE}.history", [])))


def append_history(signal, step, method, parameters):
    """Record one processing step in ``signal``'s metadata (in place)."""
    history = get_history(signal)
    history.append(
        {
            "step": str(step),
            "method": str(method),
            "parameters": plain_record(dict(parameters)),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
        }
    )
    signal.metadata.set_item(f"{NODE}.history", history)


#: Distributions whose versions a record lists (absent ones are listed as "not installed").
PACKAGES = ("hyperspy_edxtomo", "hyperspy", "exspy", "rosettasciio", "numpy", "scipy", "dask", "numba", "torch",
            "astra-toolbox", "pluggy", "traits", "numcodecs", "h5py", "matplotlib")

_COMMAND_LINE = []


def versions():
    """``{distribution: version}`` for Python, the platform and :data:`PACKAGES`."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = _dist.version(name)
        except _dist.PackageNotFoundError:
            out[name] = "not installed"
    return out


def file_record(path, chunk=1 << 20):
    """``{"path", "bytes", "sha256"}`` of one file (read in chunks: vendor files can be large)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def record_command_line(argv):
    """Remember the command line of this process (the ``edxtomo`` command calls it)."""
    _COMMAND_LINE[:] = ["edxtomo", *map(str, argv)]


def command_line():
    """The ``edxtomo`` command line of this process, or None when called from Python."""
    return shlex.join(_COMMAND_LINE) if _COMMAND_LINE else None


def run_record(call, arguments, inputs=()):
    """The record of one run.

    Parameters
    ----------
    call : str
        The Python function, e.g. ``"hyperspy_edxtomo.workflow.pipeline.run_pipeline"``.
    arguments : dict
        Every argument it was called with (in full; signals by their description).
    inputs : sequence of path-like
        Input files: each gets its size and SHA-256.

    Returns
    -------
    dict
        ``date`` (ISO 8601, UTC), ``command_line`` (or None), ``call``,
        ``arguments``, ``inputs`` and ``versions``.

    Examples
    --------
    >>> from hyperspy_edxtomo.base.provenance import run_record
    >>> r = run_record("f", {"method": "tv"})
    >>> sorted(r), r["versions"]["hyperspy_edxtomo"] != "not installed"
    (['arguments', 'call', 'command_line', 'date', 'inputs', 'versions'], True)
    """
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command_line": command_line(),
        "call": call,
        "arguments": dict(arguments),
        "inputs": [file_record(p) for p in inputs],
        "versions": versions(),
    }
