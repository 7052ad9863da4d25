"""Read vendor files in a separate process, so that a reader crash cannot kill the caller.

The RosettaSciIO readers of binary vendor formats (Bruker ``.bcf``, Velox
``.emd``, JEOL ``.pts``, TIA ``.emi``/``.ser``) decode with compiled code
(Cython, numba) that trusts the file: a truncated or bit-flipped ``.bcf``
ends the whole interpreter with a segmentation fault or a bus error. Here
one child interpreter reads all the vendor files of a call, one after the
other, and a crash becomes a Python error naming the file.

The child is a plain ``python -c`` running this file (not a
``multiprocessing`` worker): it neither re-imports the user's ``__main__``
(scripts without an ``if __name__ == "__main__"`` guard would run again) nor
``hyperspy_edxtomo`` (torch, exspy: seconds). It imports only NumPy,
RosettaSciIO and HyperSpy's ``DictionaryTreeBrowser`` and calls the reader's
``file_reader`` itself. Measured cost, once per call: about 0.4 s to start;
readers that compile with numba on first use (Velox ``.emd``: about 1 s
eager, 3 s lazy) compile again in each new child. Per file, eager reads
cost what the reader costs plus one copy of the data through the pipe
(a few ms for 10 MB).

- Eager reads: the child sends the reader's signal dictionaries back, the
  arrays as raw out-of-band buffers (pickle protocol 5) received straight
  into their final memory (one copy, through a pipe); the parent then builds
  the signals with ``hyperspy.api.load`` on a reader that replays them, so
  classes, metadata and ``General.FileIO`` are what ``hs.load`` gives.
- Lazy reads: dask arrays cannot cross processes, so the child *probes*: it
  reads the file lazily and sums every dataset chunk by chunk (the whole
  decoding path runs, in bounded memory), and the parent reads the file
  lazily only when the probe survived. The cost is one extra streaming pass
  over each file; the sums serve the empty-file check.

Only this module's own messages are unpickled in the parent, with an
allow-list of classes (NumPy arrays and dtypes, plain Python values); when a
reader returns anything else, or something the child cannot send (e.g.
``post_process`` functions), the child says so and the parent reads that file
itself: the child has just read it without crashing.
"""

import functools
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import warnings

#: file extensions read in the child process (lower case, with the dot)
CHILD_EXTENSIONS = (".bcf", ".emd", ".pts", ".emi", ".ser")

#: False reads every file in the calling process (debugging; no protection against crashes); the
#: environment variable HYPERSPY_EDXTOMO_READ_IN_CHILD=0 sets it at import
READ_IN_CHILD = os.environ.get("HYPERSPY_EDXTOMO_READ_IN_CHILD", "1").strip() not in ("0", "false", "False", "no")

# hs.load's own keywords: applied by the parent, never passed to a reader's file_reader
LOAD_KEYWORDS = frozenset({
    "signal_type", "convert_units", "load_original_metadata", "stack", "stack_axis",
    "new_axis_name", "stack_metadata", "show_progressbar", "escape_square_brackets",
})
FORMAT_KEYWORDS = ("file_format", "reader")

_FRAME = struct.Struct("<QI")  # payload length, number of out-of-band buffers
_LENGTH = struct.Struct("<Q")


#: Seconds one file may take to read before its reader is stopped (a damaged file can make a
#: reader loop forever); ``EDXTOMO_READ_TIMEOUT`` sets it, 0 for none.
READ_TIMEOUT = float(os.environ.get("EDXTOMO_READ_TIMEOUT", "600") or 0)


class ReaderCrashError(OSError):
    """The reader process died while reading a file (a signal or an abnormal exit)."""


# -- framing (both sides) ---------------------------------------------------------------
def _send(stream, message):
    buffers = []
    try:
        payload = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    except Exception as exc:  # e.g. a lambda left in a reader's dictionary
        if message[0] != "done":
            raise
        _, index, body = message
        body = {"totals": body.get("totals"), "spikes": body.get("spikes"), "warnings": body.get("warnings", []),
                "signals": None,
                "fallback": f"{type(exc).__name__}: {exc}"}
        buffers = []
        payload = pickle.dumps(("done", index, body), protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    stream.write(_FRAME.pack(len(payload), len(raws)))
    for raw in raws:
        stream.write(_LENGTH.pack(raw.nbytes))
    stream.write(payload)
    for raw in raws:
        stream.write(raw)
    stream.flush()


def _read_exact(stream, n):
    """``n`` bytes into a new bytearray, or None at end of stream (the child died)."""
    out = bytearray(n)
    view = memoryview(out)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            return None
        got += k
    return out


# Classes the parent accepts in a child's message: arrays, dtypes and plain values.
_SAFE_GLOBALS = {
    "numpy": {"dtype", "ndarray"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "builtins": {"complex", "set", "frozenset", "slice", "range", "bytearray", "bytes"},
    "datetime": {"datetime", "date", "time", "timedelta", "timezone"},
    "collections": {"OrderedDict"},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in _SAFE_GLOBALS.get(module, ()) or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a reader's result")


def _receive(stream):
    """The next message of the child, or None at end of stream."""
    head = _read_exact(stream, _FRAME.size)
    if head is None:
        return None
    n_payload, n_buffers = _FRAME.unpack(head)
    lengths = []
    for _ in range(n_buffers):
        raw = _read_exact(stream, _LENGTH.size)
        if raw is None:
            return None
        lengths.append(_LENGTH.unpack(raw)[0])
    payload = _read_exact(stream, n_payload)
    if payload is None:
        return None
    buffers = []
    for n in lengths:
        buf = _read_exact(stream, n)  # the array's final memory: writable, no further copy
        if buf is None:
            return None
        buffers.append(buf)
    try:
        return _Unpickler(io.BytesIO(payload), buffers=buffers).load()
    except pickle.UnpicklingError as exc:
        return ("unsafe", str(exc))


# -- parent side --------------------------------------------------------------------------
def reader_api(path, file_format=None):
    """The RosettaSciIO module that reads ``path`` in the child, or None to read it here.

    Parameters
    ----------
    path : str
    file_format : None or str
        A format name given to ``hs.load`` (``file_format=``/``reader=``).

    Returns
    -------
    str or None
        e.g. ``"rsciio.bruker"``; None for other formats (HyperSpy's own
        ``.hspy``/``.zspy`` among them), for a format given as an object, or
        when :data:`READ_IN_CHILD` is False.

    Examples
    --------
    >>> from hyperspy_edxtomo.io.vendor_read import reader_api
    >>> reader_api("view_01.bcf"), reader_api("view.EMI"), reader_api("series.hspy")
    ('rsciio.bruker', 'rsciio.tia', None)
    """
    if not READ_IN_CHILD or not sys.executable:
        return None
    from rsciio import IO_PLUGINS

    if file_format is not None:
        if not isinstance(file_format, str):
            return None
        name = file_format.lower()
        for plugin in IO_PLUGINS:
            names = [plugin["name"].lower()] + [a.lower() for a in plugin.get("name_aliases") or ()]
            if name in names:
                ext = "." + plugin["file_extensions"][0].lower()
                return plugin["api"] if ext in CHILD_EXTENSIONS else None
        return None
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in CHILD_EXTENSIONS:
        return None
    apis = [p["api"] for p in IO_PLUGINS if ext[1:] in [e.lower() for e in p["file_extensions"]]]
    return apis[0] if len(apis) == 1 else None


def split_options(reader_options):
    """``(load keywords, file_reader keywords, format name)`` of ``hs.load`` keyword arguments."""
    load, reader, fmt = {}, {}, None
    for key, value in reader_options.items():
        if key in FORMAT_KEYWORDS:
            fmt = value
        elif key in LOAD_KEYWORDS:
            load[key] = value
        else:
            reader[key] = value
    return load, reader, fmt


class _Replay:
    """A reader object for ``hs.load(file_format=...)`` that returns dictionaries already read."""

    def __init__(self, api, dictionaries):
        self.__loader__ = type("Loader", (), {"name": api})()  # recorded in General.FileIO, as hs.load does
        self._dictionaries = dictionaries

    def file_reader(self, filename, **kwargs):
        return self._dictionaries


def replay(path, api, dictionaries, load_options):
    """Signals from a child's dictionaries, through ``hyperspy.api.load``."""
    import hyperspy.api as hs

    return hs.load(path, lazy=False, escape_square_brackets=True, file_format=_Replay(api, dictionaries),
                   **load_options)


class ChildReader:
    """One child interpreter that reads the given files in order.

    Parameters
    ----------
    jobs : list of (str, str)
        ``(path, reader module)`` of each file, in the order they are asked for.
    lazy : bool
        Probe (read lazily and sum) instead of sending the data back.
    reader_options : dict
        ``file_reader`` keyword arguments, the same for every file.
    timeout : None or float
        Seconds one file may take; the reader is then stopped and
        :meth:`next` raises :class:`ReaderCrashError` saying so. None:
        :data:`READ_TIMEOUT`; 0: no limit.

    Use :meth:`next` once per job, in order; :meth:`close` (or ``with``) ends
    the child.
    """

    def __init__(self, jobs, lazy, reader_options, timeout=None):
        self.paths = [p for p, _ in jobs]
        self._next = 0
        self.process = None
        self.timeout = READ_TIMEOUT if timeout is None else float(timeout)
        self._timed_out = False
        if not jobs:
            return
        code = (
            # not the working folder ('' first in sys.path with -c): nothing there may shadow a module
            "import sys, runpy; sys.path[:] = [p for p in sys.path if p != '']; "
            f"runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')"
        )
        request = [{"path": os.fspath(p), "api": api, "lazy": bool(lazy), "options": reader_options} for p, api in jobs]
        try:
            request = pickle.dumps(request, protocol=5)
        except Exception as exc:  # a reader option that cannot be sent (a function, an open file)
            raise OSError(f"the reader options cannot be sent to another process ({exc})") from exc
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.process.stdin.write(request)
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once: next() reports it

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """End the child (still running only when a read failed or was interrupted)."""
        p, self.process = self.process, None
        if p is None:
            return
        if p.poll() is None:
            p.kill()
        p.wait()
        for stream in (p.stdin, p.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def next(self):
        """The child's result for the next file.

        Returns
        -------
        dict
            ``signals``: the reader's dictionaries (eager) or None (lazy, or
            not transferable: then ``fallback`` says why and the file is to
            be read here); ``totals``: the sum of each dataset with
            metadata (None where it has no sum); ``spikes``: their
            :func:`~hyperspy_edxtomo.io.damage.scan_dictionary`; ``warnings``:
            ``(category name, message)`` the reader issued.

        Raises
        ------
        ReaderCrashError
            The child died reading the file.
        OSError
            The reader raised (the message names the file, the exception
            type and its message).
        """
        index = self._next
        path = self.paths[index]
        self._next += 1
        watchdog = None
        if self.timeout > 0:
            # a reader looping forever on a damaged file: stop its process, then report like a crash
            watchdog = threading.Timer(self.timeout, self._stop_for_timeout)
            watchdog.daemon = True
            watchdog.start()
        try:
            return self._wait_for(index, path)
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _stop_for_timeout(self):
        process = self.process
        if process is not None and process.poll() is None:
            self._timed_out = True
            process.kill()

    def _wait_for(self, index, path):
        while True:
            message = _receive(self.process.stdout)
            if message is None:
                raise self._crash(path)
            kind = message[0]
            if kind == "unsafe":
                # the child survived the read: the parent can read the file itself
                return {"signals": None, "totals": None, "spikes": None, "warnings": [], "fallback": message[1]}
            if message[1] != index:
                continue  # a "begin"
            if kind == "done":
                return message[2]
            if kind == "error":
                body = message[2]
                _rewarn(path, body.get("warnings", []))
                raise OSError(f"Could not read {path} (corrupt or unsupported file?): "
                              f"{exception_str(body['type'], body['message'])}")

    def _crash(self, path):
        rc = self.process.wait()
        if self._timed_out:
            return ReaderCrashError(
                f"Reading {path} took longer than {self.timeout:g} s: the reader was stopped (the file may be damaged; "
                "set EDXTOMO_READ_TIMEOUT to allow more, 0 for no limit).")
        if rc < 0:
            try:
                name = f", {signal.Signals(-rc).name}"
            except ValueError:
                name = ""
            return ReaderCrashError(
                f"Reading {path} crashed the reader (signal {-rc}{name}): the file is damaged or truncated. "
                "The file was read in a separate process, so only that process ended.")
        return ReaderCrashError(
            f"The reader process ended (exit code {rc}) while reading {path}: the file is probably damaged or "
            "truncated (see any messages above).")


def exception_str(kind, message):
    """``"Type: message"``, or ``"Type"`` alone for an exception without a message (StopIteration)."""
    return f"{kind}: {message}" if message else kind


def _rewarn(path, caught):
    import builtins

    from hyperspy_edxtomo.base.errors import warn

    for category, message in caught:
        cls = getattr(builtins, category, None)
        if not (isinstance(cls, type) and issubclass(cls, Warning)):
            cls = UserWarning
        warn(f"{path}: {message}", cls)


def rewarn(path, result):
    """Issue again, in the caller, the warnings the reader gave in the child."""
    _rewarn(path, result.get("warnings", []))


# -- child side -----------------------------------------------------------------------------
def total_counts(data):
    """Sum of a dataset (dask: chunk by chunk, in bounded memory); None for non-numeric data.

    The child's probe and the parent's empty-file check (loading) both use it.

    A reader error while summing is not caught: in a lazy probe it is the
    reader failing on the file.
    """
    import numpy as np

    if np.dtype(data.dtype).kind not in "biuf":
        return None
    if hasattr(data, "compute"):
        return float(data.sum(dtype=np.float64).compute())
    return float(np.sum(data, dtype=np.float64))


def _apply_mapping(d):
    """What ``hyperspy.io.dict2signal`` does with a reader's ``mapping`` (functions cannot be sent)."""
    from hyperspy.misc.utils import DictionaryTreeBrowser

    mapping = d.pop("mapping", None)
    if not mapping:
        return
    om = DictionaryTreeBrowser(d.get("original_metadata") or {})
    md = DictionaryTreeBrowser(d.get("metadata") or {})
    for opattr, (mpattr, function) in mapping.items():
        if opattr in om:
            value = om.get_item(opattr)
            if function is not None:
                value = function(value)
            if value is not None:
                md.set_item(mpattr, value)
    d["metadata"] = md.as_dictionary()


@functools.lru_cache(maxsize=None)
def _sibling(name):
    """A module of this folder that imports nothing of the package (numpy at most): in the child, which
    runs this file alone, it is loaded from its path."""
    import importlib

    if __package__:
        return importlib.import_module(f"{__package__}.{name}")
    import importlib.util

    where = os.path.join(os.path.dirname(__file__), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_edxtomo_{name}", where)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_one(job):
    import importlib

    reader = importlib.import_module(job["api"])
    dictionaries = reader.file_reader(job["path"], lazy=job["lazy"], **job["options"])
    # a spectrum image's sum and its damaged bytes read as counts, in one pass over its data (a lazy
    # probe reads them here); plain tuples: the parent cannot unpickle a class of a module loaded by path
    damage = _sibling("damage")
    totals, spikes = [], []
    for d in dictionaries:
        if "metadata" in d:
            scanned = damage.scan_dictionary(d)
            totals.append(total_counts(d["data"]) if scanned is None else scanned[0])
            spikes.append(None if scanned is None else tuple(scanned[1]))
    body = {"totals": totals, "spikes": spikes, "signals": None, "fallback": None}
    if job["lazy"]:
        return body
    if any("post_process" in d for d in dictionaries):
        body["fallback"] = "the reader post-processes the signals"
        return body
    for d in dictionaries:
        _apply_mapping(d)
    body["signals"] = dictionaries
    return body


def _child_main():
    # Ctrl-C reaches the whole process group: the parent handles it (and kills this child); the
    # child must not print a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the protocol goes through a private copy of stdout; whatever a reader prints goes to stderr
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    jobs = pickle.load(sys.stdin.buffer)
    for index, job in enumerate(jobs):
        _send(channel, ("begin", index))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                body = _read_one(job)
            except Exception as exc:
                body = {"type": type(exc).__name__, "message": str(exc)}
                kind = "error"
            else:
                kind = "done"
        # what the user would see from hs.load; import-time deprecations of the readers are noise here
        seen = dict.fromkeys((w.category.__name__, str(w.message)) for w in caught
                             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning,
                                                            ImportWarning)))
        body["warnings"] = list(seen)
        _send(channel, (kind, index, body))
        del body
    channel.close()


if __name__ == "__main__":
    _child_main()
