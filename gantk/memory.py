"""How much memory this process can still get, and refusing work that would not fit
before anything large is allocated (a leaf: it imports nothing of gantk but errors).

* :func:`available_bytes`: what the machine can give now (``MemAvailable``), lowered
  by a cgroup (v2) memory limit and by the process's address-space limit
  (``ulimit -v``) where either is set.
* :func:`check_fits`: raise an error that says "needs about X GB, the machine has Y GB
  available" when a request is larger than that.
* :func:`meta_module` / :func:`module_bytes`: build a network on the meta device
  (shapes and dtypes, no storage) to know its size before building it for real.

Example::

    nbytes = module_bytes(lambda: model.build_generator(shape, latent))
    check_fits(nbytes, "the generator", CheckpointError)
    generator = model.build_generator(shape, latent)
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Callable

import torch
from torch import nn

from .errors import GantkError

try:  # Unix only: the address-space limit (ulimit -v)
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

GB = 1e9
_CGROUP = "/sys/fs/cgroup"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_headroom() -> int | None:
    limit, used = _read_int(f"{_CGROUP}/memory.max"), _read_int(f"{_CGROUP}/memory.current")
    return max(0, limit - used) if limit is not None and used is not None else None


def _address_space_headroom() -> int | None:
    if resource is None:
        return None
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return max(0, soft - size)


def available_bytes() -> int:
    """Bytes this process can still allocate: the machine's available memory
    (``MemAvailable`` in /proc/meminfo, else free pages from ``os.sysconf``), lowered by
    the cgroup's memory limit and the address-space limit when set; 0 when unknown."""
    known = [b for b in (_meminfo_available(), _cgroup_headroom(), _address_space_headroom()) if b is not None]
    return min(known) if known else 0


def format_gb(nbytes: float) -> str:
    """``1.5e9`` → ``"1.5"``, ``8e15`` → ``"8,000,000"``: two significant digits, no exponent."""
    gb = nbytes / GB
    if gb >= 100:
        return f"{gb:,.0f}"
    return f"{gb:.2g}" if gb >= 0.01 else f"{gb:.6f}".rstrip("0").rstrip(".")


def check_fits(nbytes: int, what: str, error: type[GantkError] = GantkError, *,
               available: int | None = None) -> None:
    """Raise ``error`` ("WHAT needs about X GB, the machine has Y GB available") when
    ``nbytes`` is more than :func:`available_bytes` (or ``available``). Nothing is
    refused when the available memory cannot be known."""
    avail = available_bytes() if available is None else available
    if avail > 0 and nbytes > avail:
        raise error(f"{what} needs about {format_gb(nbytes)} GB, the machine has {format_gb(avail)} GB available")


def meta_module(build: Callable[[], nn.Module]) -> nn.Module | None:
    """``build()`` run on the meta device: the module with its parameters' and buffers'
    shapes and dtypes but no storage (nothing large is allocated), or None when the
    build cannot run there (it raised, or returned no module). The global RNG state is
    left as it was."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            module = build()
    except Exception:  # a build that needs real tensors, or options it refuses: the caller builds for real
        return None
    return module if isinstance(module, nn.Module) else None


def tensor_bytes(module: nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers (0 for None or lazy parameters)."""
    if module is None:
        return 0
    total = 0
    for t in itertools.chain(module.parameters(), module.buffers()):
        if not isinstance(t, nn.parameter.UninitializedTensorMixin):
            total += t.numel() * t.element_size()
    return total


def module_bytes(build: Callable[[], nn.Module]) -> int:
    """Bytes of the parameters and buffers of the module ``build()`` makes, found by
    building it on the meta device; 0 when the build cannot run there."""
    return tensor_bytes(meta_module(build))
