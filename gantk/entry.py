"""The ``gantk`` console script's entry point.

It imports the CLI (and with it torch, a second or two) inside a ``try``, so that a
Ctrl-C at any moment, even while torch is still loading, ends with one line and exit
code 130 instead of a traceback.
"""
from __future__ import annotations

import sys


def _interrupted() -> None:
    sys.stderr.write("error: interrupted\n")
    sys.exit(130)


try:
    from .cli import main as _cli_main
except KeyboardInterrupt:
    _interrupted()


def main() -> None:
    """Run the command line; a Ctrl-C outside a command's own handling is one line."""
    try:
        _cli_main()
    except KeyboardInterrupt:
        _interrupted()
