"""Atomic file writes: temporary file in the same folder, fsync, rename."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


_umask_lock = threading.Lock()


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process's umask.

    The umask is read without changing it where the system allows: Linux shows it in
    /proc/self/status ("Umask:", since 4.7). Elsewhere it can only be read by setting
    and restoring it (it is process-wide); the lock keeps two such reads from
    interleaving, but a file another thread creates in that instant gets umask 022."""
    mask = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    mask = int(line.split()[1], 8)
                    break
    if mask is None:
        with _umask_lock:
            mask = os.umask(0o022)
            os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over
    ``path``, on failure removed. Readers never see a half-written file.

    The file gets the mode a plain ``open()`` gives a new file (0o666 less the umask;
    ``mkstemp`` alone would make it 0600), also when it replaces an existing file: the
    old file's mode is not carried over. A writer may still ``chmod`` the temporary."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _new_file_mode())  # before the body, so a writer may chmod it
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk (metrics.jsonl): a crash can lose at most
    the line being written, which readers skip."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and make sure files can be written in it."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gantk-probe-", dir=p)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"cannot write to {p}: {exc.strerror or exc}") from None
    return p


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file written with :func:`append_line`, skipping a last line
    left incomplete by a crash."""
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the torn last line of a killed writer
                break
            raise
    return records


def user_cache_dir(sub: str = "") -> Path:
    """gantk's cache folder: ``$GANTK_CACHE_DIR``, else ``$XDG_CACHE_HOME/gantk``, else
    ``~/.cache/gantk``; ``sub`` names a folder inside it."""
    if os.environ.get("GANTK_CACHE_DIR"):
        base = Path(os.environ["GANTK_CACHE_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gantk"
    return base / sub if sub else base
