"""Progress display: one mechanism for the whole package.

Every long step shows one HyperSpy progress bar (tqdm, on standard error,
one line per step) and obeys HyperSpy's ``show_progressbar`` convention:
``None`` takes ``hs.preferences.General.show_progressbar``, a bool forces it.
Dask computations tick the same kind of bar (dask's own ``ProgressBar``
writes to standard output, one refresh per line in a log).

What a step decided (a strength chosen, an alignment stage kept, a
reconstruction's time) goes to the standard ``logging`` module, to the
loggers under ``hyperspy_edxtomo`` (``logging.getLogger("hyperspy_edxtomo")
.setLevel("INFO")`` shows them); warnings that ask the user to act go through
:func:`hyperspy_edxtomo.base.errors.warn`.
"""

import contextlib
import logging
import sys

__all__ = ["show_progress", "progress_bar", "compute", "console_lines"]


def show_progress(show_progressbar):
    """Whether to show progress: ``show_progressbar``, or HyperSpy's preference when None."""
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        return bool(preferences.General.show_progressbar)
    return bool(show_progressbar)


def progress_bar(iterable=None, *, total=None, desc=None, show=True, unit="it"):
    """A HyperSpy (tqdm) progress bar on standard error; ``show=False`` disables it.

    Use it as an iterator or as a context manager with ``update``; a loop that
    ends early (a converged iteration) should call :func:`finish` so that the
    bar ends at 100 %.
    """
    from hyperspy.external.progressbar import progressbar

    return progressbar(iterable, total=total, desc=desc, disable=not show, file=sys.stderr, unit=unit,
                       leave=True, dynamic_ncols=True)


def finish(bar):
    """End ``bar`` at 100 % of what was done (for loops that stop early, e.g. on convergence).

    Use it with a bar updated by hand: breaking out of an iterated bar closes
    it before its last step is counted.
    """
    if getattr(bar, "disable", True):
        return
    if bar.total is not None and bar.n < bar.total:
        bar.total = bar.n
    bar.refresh()


def compute(darr, *, desc=None, show=True, scheduler="synchronous"):
    """Compute a dask collection, ticking one :func:`progress_bar` per finished task.

    On a ``distributed`` cluster (a default client exists) the graph goes to
    its workers and no bar is shown here (the cluster has its dashboard).
    """
    try:
        from distributed import default_client

        default_client()
        return darr.compute()
    except (ImportError, ValueError):
        pass
    if not show:
        return darr.compute(scheduler=scheduler)
    from dask.callbacks import Callback

    # one tick per output block (a batch of slices), not per internal task
    name, total = getattr(darr, "name", None), getattr(darr, "npartitions", None)
    with progress_bar(total=total, desc=desc, show=True, unit="block") as bar:

        class _Ticks(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(key, tuple) and key and key[0] == name:
                    bar.update(1)

        with _Ticks():
            out = darr.compute(scheduler=scheduler)
        if bar.total:  # computed: every block is done, whatever keys the graph used
            bar.update(bar.total - bar.n)
    return out


@contextlib.contextmanager
def console_lines(show, logger="hyperspy_edxtomo.workflow"):
    """While the block runs, show the INFO lines of ``logger`` on standard output when ``show``.

    A run's step lines (``edxtomo run``, ``run_pipeline(verbose=True)``) are
    ordinary ``logging`` records; this adds, for the block only, the handler
    that prints them, and takes it away afterwards, so nothing of the user's
    logging set-up is changed. Nested blocks print each line once.

    Examples
    --------
    >>> import logging
    >>> with console_lines(True):
    ...     logging.getLogger("hyperspy_edxtomo.workflow.steps").info("Reconstructing with tv ...")
    Reconstructing with tv ...
    >>> logging.getLogger("hyperspy_edxtomo.workflow.steps").info("not shown outside the block")
    """
    log = logging.getLogger(logger)
    if not show or any(getattr(h, "console_lines", False) for h in log.handlers):
        yield
        return
    handler = logging.StreamHandler(sys.stdout)  # the stream of this moment: a test's capture, a redirect
    handler.console_lines = True
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        # the user's logging does not show these records: lowering the level must not make their
        # handlers (e.g. basicConfig's on stderr) print them a second time
        log.setLevel(logging.INFO)
        log.propagate = False
    try:
        yield
    finally:
        handler.flush()
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
