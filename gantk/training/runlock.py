"""The lock a training process holds on its run folder.

An advisory ``flock`` on ``RUN/.gantk.lock``: the kernel drops it when the process ends,
however it ends (kill -9 included), so a lock is never stale. The holder writes its PID
into the file so a refused process can name it. Taking the lock also removes the
temporary files that a killed writer left in the run (``.NAME.*.tmp`` from
:func:`gantk.fsutil.atomic_path`): nothing else writes there while the lock is held.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import RunLockedError
from ..fsutil import TMP_SUFFIX

LOCK_NAME = ".gantk.lock"
#: the folders of a run that receive atomically written files
_WRITTEN = ("", "checkpoints", "images")


class RunLock:
    """Hold the run folder's lock until :meth:`release` (or the process ends)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by process {holder} (another gantk train); "
                "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        remove_stale_temporaries(self.run_dir)
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __del__(self) -> None:  # a trainer dropped without training frees the folder
        self.release()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove the hidden temporaries of interrupted atomic writes in a run folder."""
    removed = []
    for sub in _WRITTEN:
        folder = run_dir / sub if sub else run_dir
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
