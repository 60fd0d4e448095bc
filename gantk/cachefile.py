"""Memory-mapped sample caches: a preprocessed data set stored once, as raw uint8 rows,
in a folder named by a key of everything it was made from (a leaf: it imports nothing
of gantk but the file helpers and errors).

A cache is a folder ``<root>/<key>/`` holding ``samples.u8`` (N rows of
``prod(sample_shape)`` bytes, sample after sample) and ``meta.json`` (N, the sample
shape, labels and anything the builder adds). It is built in a hidden temporary folder
and renamed into place only when complete (:func:`gantk.fsutil.atomic_folder`), so a
build that is interrupted, even by ``kill -9``, leaves nothing that :func:`open_cache`
trusts: the key folder either does not exist or is whole. :func:`open_cache` also
checks that the file holds exactly the rows its metadata says.

* :func:`cache_key`: the key of a JSON-able description of the source.
* :func:`build_cache`: run a filler that writes rows into a memory map, then publish.
* :func:`open_cache`: the cache as a (N, *sample_shape) uint8 tensor backed by the
  memory-mapped file (nothing is read until used), or None.
* :func:`read_rows`: rows by index with ``os.pread`` (what DataLoader workers use:
  no mapping, so reading never grows a process's resident memory).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .fsutil import TMP_SUFFIX, atomic_folder

#: bump when the layout of a cache changes: older caches are then rebuilt
FORMAT = 1
SAMPLES, META = "samples.u8", "meta.json"


@dataclass(frozen=True)
class CacheInfo:
    """Where a cached tensor's rows live: the file, and the shape of one sample."""

    path: Path
    sample_shape: tuple[int, ...]
    n: int

    @property
    def row_bytes(self) -> int:
        return math.prod(self.sample_shape)


def cache_key(description: dict[str, Any]) -> str:
    """A key (hex) of a JSON-able description of what a cache is made from."""
    text = json.dumps({"format": FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def open_cache(folder: Path) -> tuple[torch.Tensor, dict[str, Any]] | None:
    """The complete cache in ``folder`` as a memory-mapped uint8 tensor (with its
    :class:`CacheInfo` as the attribute ``gantk_cache``) and its metadata, or None when
    there is none or it does not hold what its metadata says."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        n, shape = int(meta["n"]), tuple(int(s) for s in meta["sample_shape"])
        size = (folder / SAMPLES).stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if meta.get("format") != FORMAT or n < 1 or not shape or size != n * math.prod(shape):
        return None
    arr = np.memmap(folder / SAMPLES, dtype=np.uint8, mode="c", shape=(n, *shape))  # copy-on-write: never written
    x = torch.from_numpy(arr)
    x.gantk_cache = CacheInfo(folder / SAMPLES, shape, n)
    return x, meta


def build_cache(folder: Path, n: int, sample_shape: tuple[int, ...],
                fill: Callable[[np.memmap], tuple[int, dict[str, Any]]]) -> None:
    """Build the cache ``folder``: ``fill(rows)`` writes samples into ``rows`` (an
    (n, *sample_shape) uint8 memory map) from the start and returns how many it wrote
    and the metadata to store; the file is cut to those rows and the folder published
    whole. Temporary folders that interrupted builds left beside it are removed first
    (those older than a day: a build in progress in another process is left alone)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    with atomic_folder(folder) as tmp:
        rows = np.memmap(tmp / SAMPLES, dtype=np.uint8, mode="w+", shape=(max(n, 1), *sample_shape))
        kept, meta = fill(rows)
        rows.flush()
        del rows
        os.truncate(tmp / SAMPLES, kept * math.prod(sample_shape))
        with open(tmp / SAMPLES, "rb+") as f:
            os.fsync(f.fileno())
        meta = {**meta, "format": FORMAT, "n": kept, "sample_shape": list(sample_shape)}
        (tmp / META).write_text(json.dumps(meta), encoding="utf-8")  # last: a cache without it is not one
        if folder.exists():  # a cache that no longer opens (a half-deleted or foreign folder)
            shutil.rmtree(folder, ignore_errors=True)


def _remove_stale(folder: Path) -> None:
    with contextlib.suppress(OSError):
        for p in folder.parent.glob(f".{folder.name}.*{TMP_SUFFIX}"):
            if time.time() - p.stat().st_mtime > 86400:
                shutil.rmtree(p, ignore_errors=True)


def read_all(info: CacheInfo) -> torch.Tensor:
    """The whole cache read into an ordinary (N, *sample_shape) uint8 tensor with plain
    reads (not through the memory map: mapped pages would count twice in the process's
    resident memory while both exist)."""
    out = torch.empty((info.n, *info.sample_shape), dtype=torch.uint8)
    view = memoryview(out.numpy()).cast("B")
    with open(info.path, "rb") as f:
        got = 0
        while got < len(view):
            k = f.readinto(view[got:])
            if not k:
                raise DataError(f"{info.path}: the cache file is shorter than its metadata says")
            got += k
    return out


def read_rows(info: CacheInfo, indices: list[int] | torch.Tensor, fd: int | None = None) -> np.ndarray:
    """The samples at ``indices`` as a (len, *sample_shape) uint8 array, read with
    ``os.pread`` from the cache file (``fd``: an open descriptor of it, else opened here)."""
    idx = [int(i) for i in indices]
    out = np.empty((len(idx), *info.sample_shape), dtype=np.uint8)
    flat = out.reshape(len(idx), -1)
    row = info.row_bytes
    own = fd is None
    if own:
        fd = os.open(info.path, os.O_RDONLY)
    try:
        for k, i in enumerate(idx):
            data = os.pread(fd, row, i * row)
            if len(data) != row:
                raise DataError(f"{info.path}: the cache file is shorter than its metadata says (row {i})")
            flat[k] = np.frombuffer(data, dtype=np.uint8)
    finally:
        if own:
            os.close(fd)
    return out
