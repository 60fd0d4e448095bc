"""Atomic file writes: temporary file in the same folder, fsync, rename."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


#: the suffix of atomic_path's temporary files (``.NAME.XXXX.tmp`` beside NAME)
TMP_SUFFIX = ".tmp"

_umask_lock = threading.Lock()


def _new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0o666 less the process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask.

    It is read without changing it where the system allows: Linux shows it in
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
    return mask


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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


def cut_jsonl(path: str | os.PathLike, step: int, aside: str | os.PathLike | None = None) -> int:
    """Cut a per-step JSON-lines log (metrics.jsonl) at ``step``: records whose
    ``step`` is larger (and lines that do not parse, such as a torn last line) are
    removed, or appended to ``aside`` when given. The file is rewritten atomically.
    Returns the number of lines removed."""
    path = Path(path)
    keep, moved = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            ok = isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step
        except json.JSONDecodeError:
            ok = False
        (keep if ok else moved).append(line)
    if not moved:
        return 0
    if aside is not None:
        Path(aside).parent.mkdir(parents=True, exist_ok=True)
        with open(aside, "a", encoding="utf-8") as f:
            f.write("".join(m + "\n" for m in moved))
    write_bytes_atomic(path, "".join(k + "\n" for k in keep).encode("utf-8"))
    return len(moved)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``path``; on success it is renamed to
    ``path`` (which must not exist, or be an empty folder), on failure removed."""
    path = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # the mode mkdir gives a folder (mkdtemp's is 0700)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if path.is_dir():
            path.rmdir()  # empty (checked by the caller); a non-empty one raises here
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def path_text(path: str | os.PathLike) -> str:
    """A path as text that always encodes as UTF-8 (bytes that are not UTF-8 appear as
    backslash escapes), for metadata and messages."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def round_sig(value: float, digits: int = 6) -> float:
    """``value`` to ``digits`` significant digits, for the JSON-lines logs: small numbers
    (a penalty of 3e-8) keep their value, large ones lose only noise."""
    return float(f"{value:.{digits}g}")
