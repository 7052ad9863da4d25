"""What a result was made from: software versions, the call, the date, input file digests.

A report is a record: from it one can tell which files (by SHA-256), which
software and which command or call gave the numbers, and rerun it.
"""

import datetime
import hashlib
import platform
import shlex
import sys
from importlib import metadata as _dist
from pathlib import Path

__all__ = ["PACKAGES", "versions", "file_record", "record_command_line", "command_line", "run_record"]

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
        The Python function, e.g. ``"hyperspy_edxtomo.pipeline.run_pipeline"``.
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
    >>> from hyperspy_edxtomo.provenance import run_record
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
