"""The ``edxtomo`` command's entry point: Ctrl-C is handled from the first instant.

Importing hyperspy_edxtomo (HyperSpy, exspy, torch) takes seconds. A
KeyboardInterrupt raised then can land inside a native library's start-up
(a callback from C++), which then aborts the process (SIGABRT, seen once in
CI) instead of ending it. So while importing, a Ctrl-C ends the process at
once, with nothing raised into that code: the command exits as after any
Ctrl-C (code 130, one line, nothing written).
"""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    # nothing is written before the command starts; no exception may unwind through native code
    sys.stderr.write("edxtomo: interrupted while starting; nothing written\n")
    sys.stderr.flush()
    os._exit(130)


def main():
    """Run ``edxtomo``: :func:`hyperspy_edxtomo.cli.main`, with Ctrl-C during start-up and shut-down handled."""
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from hyperspy_edxtomo.cli import main as cli_main

    # from here a Ctrl-C is a KeyboardInterrupt: the command stops cleanly and says what it left
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
