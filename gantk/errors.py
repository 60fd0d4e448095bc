"""Every exception and warning class of gantk (a leaf module: it imports nothing of gantk).

Library code raises these and never exits the process; only the CLI's ``main()``
turns them into a one-line message and a non-zero exit code. Warnings are
:class:`GantkWarning` (advice) and :class:`GantkNote` (a choice gantk made).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class GantkError(Exception):
    """Base class of every error gantk raises on purpose."""

    exit_code = 1


class UsageError(GantkError):
    """A bad value given by the user (an option, a config key); exit code 2."""

    exit_code = 2


class UnknownComponentError(UsageError):
    """A model, loss, enforcer, dataset or preset name that nobody registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        msg = f"unknown {kind} {name!r}"
        close = difflib.get_close_matches(name, self.known, n=1, cutoff=0.5)
        if close:
            msg += f"; did you mean {close[0]!r}?"
        msg += f" (known: {', '.join(self.known) or 'none'})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class DuplicateComponentError(GantkError):
    """Two plugins registered the same name for one kind of component."""


class PluginError(GantkError):
    """A plugin misbehaved (bad hook, bad registration)."""


class DataError(GantkError):
    """Data could not be found, read or used."""


class CheckpointError(GantkError):
    """A checkpoint is missing, truncated, corrupt or not gantk's."""


class ConfigError(UsageError):
    """An impossible combination of settings (e.g. BatchNorm critic under a gradient penalty)."""


class OutputError(GantkError):
    """An output path cannot be written."""


class ExtensionError(GantkError):
    """The compiled extension was asked for explicitly and cannot be had."""


class RunLockedError(GantkError):
    """Another process is training in this run folder."""


class TrainingError(GantkError):
    """Training cannot go on (e.g. the losses became NaN)."""


class DistributedError(GantkError):
    """The process group could not be set up."""


class TrainingInterrupted(GantkError):
    """SIGINT/SIGTERM: the run stopped after writing a checkpoint."""

    def __init__(self, msg: str, exit_code: int):
        super().__init__(msg)
        self.exit_code = exit_code


class GantkWarning(UserWarning):
    """Advice about a run (e.g. Adam with weight clipping)."""


class GantkNote(UserWarning):
    """Information about a choice gantk made for the user (shown as a note)."""
