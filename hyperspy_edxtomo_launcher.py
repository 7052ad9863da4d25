"""The ``edxtomo`` command's entry point: Ctrl-C is handled from the first instant.

Importing hyperspy_edxtomo (HyperSpy, exspy, torch) takes seconds; a Ctrl-C
then would end the command with a KeyboardInterrupt traceback. This module
imports nothing heavy itself, so it can catch that and exit as the command
does after a Ctrl-C (code 130, one line, nothing written).
"""

import signal
import sys


def main():
    """Run ``edxtomo``: :func:`hyperspy_edxtomo.cli.main`, with Ctrl-C during start-up and shut-down handled."""
    try:
        from hyperspy_edxtomo.cli import main as cli_main
    except KeyboardInterrupt:
        print("edxtomo: interrupted while starting; nothing written", file=sys.stderr)
        return 130
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
