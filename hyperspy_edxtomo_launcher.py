"""The ``edxtomo`` command's entry point: Ctrl-C is handled from the first instant.

Importing hyperspy_edxtomo (HyperSpy, exspy, torch) takes seconds. A
KeyboardInterrupt raised then can land inside a native library's start-up
(a callback from C++), which then aborts the process (SIGABRT, seen once in
CI) instead of ending it. So while importing, a Ctrl-C ends the process at
once, with nothing raised into that code: the command exits as after any
Ctrl-C (code 130, one line, nothing written). A command started with Ctrl-C
ignored (a background job of a shell script) keeps ignoring it.
"""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    # nothing is written before the command starts; no exception may unwind through native code
    try:
        sys.stdout.flush()
        sys.stderr.write("edxtomo: interrupted while starting; nothing written\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - no stream left to say it on: exit all the same
        pass
    finally:
        os._exit(130)


def main():
    """Run ``edxtomo``: :func:`hyperspy_edxtomo.cli.main`, with Ctrl-C during start-up and shut-down handled."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _interrupted_while_starting)
    try:
        from hyperspy_edxtomo.cli import main as cli_main
    except KeyboardInterrupt:  # a library's own SIGINT handler, installed while importing, raised it
        print("edxtomo: interrupted while starting; nothing written", file=sys.stderr)
        return 130
    # from here a Ctrl-C is what it was before (a KeyboardInterrupt: the command stops cleanly and says
    # what it left; or ignored)
    signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    try:
        rc = cli_main()
    except KeyboardInterrupt:  # after the command's own handler: its work is finished or staged away
        print("edxtomo: interrupted while finishing", file=sys.stderr)
        return 130
    # the command is over: a Ctrl-C now (interpreter shut-down, worker threads) changes nothing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return rc


if __name__ == "__main__":
    sys.exit(main())
