"""The ``gantk`` console script's entry point.

It imports the CLI (and with it torch, a second or two) with SIGINT held back: a Ctrl-C
that arrives while the libraries load is noted, the imports finish (a library
interrupted half-way through its own import can be left broken, and some catch the
interrupt themselves), and the command then ends with one line and exit code 130
instead of a traceback. A process started with SIGINT ignored (``nohup``, a shell's
background job) keeps it ignored, here and in training.
"""
from __future__ import annotations

import atexit
import os
import signal
import sys

_pending: list[int] = []


def _interrupted() -> None:
    sys.stderr.write("error: interrupted\n")
    _exit_interrupted()


def _exit_interrupted() -> None:
    """End the process with status 130 after an interrupt it reported. When CPython
    considers a KeyboardInterrupt unhandled (it marks one raised inside C code that runs
    Python source, e.g. ``PyRun_String``), it ends the process by raising SIGINT against
    itself after finalising, status -2, whatever ``sys.exit`` said: seen in about 1 of
    4 interrupts landing 4 s into a ``gantk train``, just before training starts. The
    exit handlers run and the streams are flushed here, as finalisation would, and the
    status is set directly."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(130)


def _hold(signum, frame) -> None:
    _pending.append(signum)


_previous = signal.signal(signal.SIGINT, _hold)
try:
    from .cli import main as _cli_main
finally:
    signal.signal(signal.SIGINT, _previous)
if _pending and _previous is not signal.SIG_IGN:  # started with SIGINT ignored: it stays so
    _interrupted()


def main() -> None:
    """Run the command line; a Ctrl-C outside a command's own handling is one line."""
    try:
        _cli_main()
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as exc:
        if exc.code == 130:  # an interrupt the command reported (see _exit_interrupted)
            _exit_interrupted()
        raise
