"""Outputs that appear whole or not at all, and never over the user's input.

Every command (and :func:`hyperspy_edxtomo.workflow.pipeline.run_pipeline`) writes into
a temporary folder -- a sibling of its output, ``<out>.tmp-<pid>-<random>``,
or, for the step commands writing into a folder that exists,
``<out>/.edxtomo.tmp-<pid>-<random>`` -- and only when everything is written
moves it into place:

* ``mode="folder"`` (``edxtomo run``, ``edxtomo demo``: the folder holds one
  run's results): the old folder is renamed to a backup, the new one renamed
  into place, then whatever of the old folder the new results do not replace
  and that is not a result of the earlier run (``stale``) -- the user's own
  files, other commands' results -- is moved into the new folder, and the
  backup deleted;
* ``mode="files"`` (the step commands, which share a folder): each new file
  replaces its namesake (``os.replace``, atomic per file); the rest of the
  folder is left alone.

On any error or KeyboardInterrupt before that point the temporary folder is
removed and the old output is untouched. Ctrl-C during the final renames (a
fraction of a second) is held back until they are done.
"""

import glob
import os
import shutil
import signal
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

from hyperspy_edxtomo.base.errors import InputError, OutputError
from hyperspy_edxtomo.base.private_api import is_lazy

__all__ = ["staged_output", "input_files", "check_inputs_outside", "check_not_inputs", "OutputError", "saved_as"]


def input_files(source):
    """The files behind ``source`` (paths, globs, lists of them, or a lazy signal read from a file).

    Returns
    -------
    list of pathlib.Path
        Resolved paths of the files that exist (signals in memory: none).
    """
    if source is None:
        return []
    if isinstance(source, (str, Path)):
        text = str(source)
        paths = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
        return [Path(p).resolve() for p in paths if Path(p).exists()]
    if isinstance(source, (list, tuple)):
        return [p for item in source for p in input_files(item)]
    # a lazy signal still reads its file: that file is an input too
    if is_lazy(source):
        tp = getattr(source, "tmp_parameters", None)
        folder, name, ext = (tp.get_item(k, None) for k in ("folder", "filename", "extension")) if tp else (None,) * 3
        if folder and name and ext:
            return input_files(Path(folder) / f"{name}.{str(ext).lstrip('.')}")
    return []


def _inside(path, folder):
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def check_inputs_outside(inputs, out, option="--out"):
    """Refuse an output folder that holds an input: the folder is replaced as a whole.

    Raises
    ------
    OutputError
        Naming the input and the folder.
    """
    folder = Path(out).resolve()
    for p in inputs:
        if _inside(Path(p).resolve(), folder):
            raise OutputError(f"The input {p} lies inside the output folder {out}, whose results are replaced as a "
                              f"whole: choose another {option} (for example {Path(out) / 'results'}).")


def check_not_inputs(targets, inputs, option="--out"):
    """Refuse output files that are input files (same resolved path).

    Raises
    ------
    OutputError
        Naming the file.
    """
    given = {Path(p).resolve() for p in inputs}
    for t in targets:
        if Path(t).resolve() in given:
            raise OutputError(f"{t} is an input of this command: writing it would replace the input; choose "
                              f"another {option}.")


@contextmanager
def _interrupt_deferred():
    """Hold SIGINT back (main thread only) while the output is moved into place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    except (ValueError, OSError):  # no signals here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)
    # a Ctrl-C that came during the renames is dropped: the command has finished, its output is in place


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _sibling(path, tag):
    return path.parent / f"{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _move_entries(work, out, protect=()):
    """Move every entry of ``work`` into ``out``, replacing namesakes; never a path in ``protect``."""
    protect = {Path(p).resolve() for p in protect}
    entries = sorted(work.iterdir())
    for entry in entries:  # all checked before anything is moved
        if (out / entry.name).resolve() in protect:
            raise OutputError(f"{out / entry.name} is an input of this command: not replaced; choose another "
                              "output folder or name.")
    for entry in entries:
        dest = out / entry.name
        if dest.is_dir() and not dest.is_symlink():
            old = _sibling(dest, "old")  # a folder (e.g. .zspy) cannot be replaced in one rename
            os.rename(dest, old)
            os.rename(entry, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, dest)


def _replace_folder(work, out, stale):
    new = {e.name for e in work.iterdir()}
    backup = _sibling(out, "old")
    renamed = False
    if out.resolve() != Path.cwd().resolve():  # never pull the working folder from under the process
        try:
            os.rename(out, backup)
            renamed = True
        except OSError:  # a mount point, a folder in use: replaced entry by entry below
            pass
    if not renamed:
        _move_entries(work, out)
        for entry in list(out.iterdir()):
            if entry.name in stale and entry.name not in new:
                _remove(entry)
        return
    try:
        os.rename(work, out)
    except BaseException:
        os.rename(backup, out)
        raise
    # keep what the new results do not replace and that is no result of the earlier run
    for entry in backup.iterdir():
        if entry.name not in stale and entry.name not in new:
            os.rename(entry, out / entry.name)
    shutil.rmtree(backup, ignore_errors=True)


@contextmanager
def staged_output(out, mode="folder", stale=(), protect=(), guard=()):
    """Write into a temporary sibling of ``out``; put it in place only when the block succeeds.

    Parameters
    ----------
    out : str or Path
        The output folder (created if absent).
    mode : {"folder", "files"}
        ``"folder"``: ``out`` becomes the new folder, plus the entries of the
        old one that are neither replaced nor in ``stale``. ``"files"``: the
        new entries replace their namesakes in ``out``; nothing else changes.
    stale : iterable of str
        Names in the old folder that are results of an earlier run: dropped
        (``mode="folder"``).
    protect : iterable of paths
        Paths that must never be replaced (the inputs): OutputError instead.
    guard : iterable of str
        Names that must not have appeared in ``out`` while the block ran
        (another run writing to the same folder without ``--overwrite``):
        FileExistsError at the end instead of replacing them.

    Yields
    ------
    pathlib.Path
        The temporary folder to write into.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from hyperspy_edxtomo.io.staging import staged_output
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "results"
    >>> with staged_output(out) as work:
    ...     _ = (work / "a.txt").write_text("new")
    >>> sorted(p.name for p in out.parent.iterdir()), (out / "a.txt").read_text()
    (['results'], 'new')
    >>> try:
    ...     with staged_output(out) as work:
    ...         _ = (work / "a.txt").write_text("half")
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> sorted(p.name for p in out.parent.iterdir()), (out / "a.txt").read_text()
    (['results'], 'new')
    """
    if mode not in ("folder", "files"):
        raise InputError(f"mode must be 'folder' or 'files', got {mode!r}")
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another output folder.")
    if mode == "files" and out.exists():
        # inside the folder itself: same file system (renames stay atomic), no write access above it needed
        work = Path(tempfile.mkdtemp(prefix=f".edxtomo.tmp-{os.getpid()}-", dir=out))
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        yield work
        with _interrupt_deferred():
            _check_guard(out, guard)
            if not out.exists():
                try:
                    os.rename(work, out)
                    return
                except OSError:  # created meanwhile (another run): as into an existing folder
                    if not out.is_dir():
                        raise
                    _check_guard(out, guard)
            if mode == "files":
                _move_entries(work, out, protect)
            else:
                _replace_folder(work, out, set(stale))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_guard(out, guard):
    arrived = [n for n in guard if (out / n).exists()]
    if arrived:
        raise FileExistsError(
            f"{out / arrived[0]} appeared while this run was working (another run writing to {out}?): nothing of "
            "this run was written; choose another output folder, or pass --overwrite.")


def saved_as(signal, path):
    """Make ``signal`` remember ``path`` as its file (HyperSpy's ``tmp_parameters``, which a later
    ``signal.save()`` without a name uses) once the temporary file it was saved to has moved there."""
    if signal is None:
        return
    path = Path(path)
    signal.tmp_parameters.set_item("folder", path.parent)
    signal.tmp_parameters.set_item("filename", path.stem)
    signal.tmp_parameters.set_item("extension", path.suffix)
