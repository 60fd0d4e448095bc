"""Loader of the fused gradient-penalty kernels (``csrc/``). It is longer than most
modules because building, caching, locking, loading and the ops' Python-side
registration are one lifecycle that shares its state.

The C++ (CPU) and, when torch has CUDA and ``CUDA_HOME`` is found, CUDA sources are
compiled with ninja through :func:`torch.utils.cpp_extension.load` into a cache folder
``$GANTK_EXT_DIR/<key>`` (default ``~/.cache/gantk/ext/<key>``, honouring
``XDG_CACHE_HOME``). ``<key>`` hashes the sources, the build flags, the torch, CUDA and
Python versions, so a change of any of them builds afresh beside the old build and two
versions never share a folder. Concurrent first uses are safe: torch's ``FileBaton``
lock file in that folder lets one process build while the others wait, and a finished
build is marked by ``gantk_ext.json`` (written atomically) so later processes load the
library directly.

Build policy for ``impl="auto"``: the CPU build takes about 20 s on a 2-core machine
(measured 18–21 s for the two C++ files with g++ 12 and torch 2.13), well under a
minute, so "auto" builds on first use, once per cache folder, and logs one line while
it does; every later process loads the cached library in milliseconds. ``GANTK_EXT_AUTOBUILD=0`` makes "auto" use an already-built extension only;
then ``gantk ext build`` (:func:`build`) builds it. ``GANTK_FORCE_REF=1`` forces the
pure-PyTorch reference everywhere (:func:`gantk.ops.common.force_ref`).

Failure handling: the "tried" flag is set before trying; a failed build or load is
remembered with its reason and not retried by later calls in the process (only an
explicit :func:`build` tries again). "auto" then falls back to the reference with one
warning per device naming the reason; "ext" raises it.

Custom operators (schemas in ``csrc/gp_ops.cpp``)::

    gantk::interpolate(Tensor real, Tensor fake, Tensor eps) -> Tensor
    gantk::norm_penalty(Tensor g, float target, bool one_sided, float weight,
                        float norm_eps, Tensor? inv_scale) -> (Tensor, Tensor)
    gantk::norm_penalty_backward(Tensor grad_penalty, Tensor g, Tensor norms, float target,
                                 bool one_sided, float weight, Tensor? inv_scale) -> Tensor

CPU and CUDA kernels are registered in C++; autograd and fake (meta) kernels here, so
autograd, ``torch.compile`` and ``torch.library.opcheck`` see them.

``torch.utils.cpp_extension`` is imported inside the functions that build or locate
the compiler, not at the top: it costs about 1.5 s (it loads setuptools), and a
process that uses a cached build, or the reference, never needs it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ExtensionError
from .common import acc_dtype, force_ref

__all__ = ["available", "ready", "warn_fallback", "status", "build", "build_dir", "compiler"]

log = logging.getLogger(__name__)

_NAME = "gantk_ext"
_CPU_SOURCES = ("gp_ops.cpp", "gp_cpu.cpp")
_CUDA_SOURCES = ("gp_cuda.cu",)
_HEADERS = ("gp_cpu.h", "gp_cpu_loops.h", "gp_cuda.h")
# at::parallel_for runs on torch's OpenMP threads only in code compiled with OpenMP
# (ATen/ParallelOpenMP.h is guarded by _OPENMP); without the flag every CPU kernel runs
# on one thread. torch's Linux wheels load their own libgomp.so.1, and the -lgomp this
# adds resolves to that same soname at load time: one OpenMP runtime in the process.
_OPENMP = ("-fopenmp",) if sys.platform.startswith("linux") else ()
_CFLAGS = ("-O3", *_OPENMP)
_CUDA_CFLAGS = ("-O3",)


def _ldflags() -> list[str]:
    """Link flags: OpenMP, and on Linux the shared libstdc++ named explicitly.

    A C++ exception (every TORCH_CHECK failure) thrown in the extension is caught in
    libtorch; both must use the process's one shared C++ runtime. A toolchain that links
    libstdc++ statically by default (seen: a g++ wrapper on a GPU machine, where every
    bad-input error crashed the process with SIGSEGV) gives the extension a private
    copy. Naming the shared library ahead of the compiler's own -lstdc++ makes the
    linker resolve the runtime there, whatever the default."""
    flags = list(_OPENMP)
    if sys.platform.startswith("linux"):
        lib = _shared_libstdcxx()
        if lib:
            flags.append(lib)
    return flags


@functools.lru_cache(maxsize=None)
def _shared_libstdcxx() -> str | None:
    """Absolute path of the compiler's libstdc++.so.6 (None when it cannot say)."""
    try:
        from torch.utils.cpp_extension import get_cxx_compiler

        out = subprocess.run([get_cxx_compiler(), "-print-file-name=libstdc++.so.6"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # no compiler: the build reports that itself
        return None
    return out if out and os.path.isabs(out) and os.path.exists(out) else None


_MARKER = "gantk_ext.json"
_STALE_LOCK_S = 30 * 60  # a lock file older than this is left over from a killed build
_APPROX_BUILD = "about 20 s on 2 cores"


class _State:
    """What this process knows about the extension (one instance, guarded by _lock)."""

    def __init__(self) -> None:
        self.tried_load = False   # looked for an already-built library
        self.tried_build = False  # ran the compiler (never repeated unless build() asks)
        self.ok = False
        self.with_cuda = False
        self.cuda_reason = ""     # why CUDA kernels are missing, when they are
        self.error = ""           # one line: why the extension is unavailable
        self.error_detail = ""    # the full message (compiler output included)
        self.build_dir: Path | None = None
        self.library: str | None = None
        self.build_seconds: float | None = None


_state = _State()
_lock = threading.Lock()
_registered = False
_warned: set[str] = set()


# ------------------------------------------------------------------ environment
def _env_flag(name: str, default: bool) -> bool:
    v = os.environ.get(name, "").strip().lower()
    if not v:
        return default
    return v not in ("0", "false", "no", "off")


def _autobuild() -> bool:
    return _env_flag("GANTK_EXT_AUTOBUILD", True)


def _csrc_dir() -> Path | None:
    """The C++/CUDA sources: a source checkout's ``csrc/``, else the copy an installed
    wheel put in ``<prefix>/share/gantk/csrc``."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "csrc"]
    for base in (sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)):
        if base:
            candidates.append(Path(base) / "share" / "gantk" / "csrc")
    for c in candidates:
        if all((c / f).is_file() for f in _CPU_SOURCES + _HEADERS):
            return c
    return None


def _cuda_wanted() -> tuple[bool, str]:
    """Whether to compile the CUDA sources, and if not, why."""
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return False, f"this torch build ({torch.__version__}) has no CUDA"
        return False, "torch.cuda.is_available() is False"
    if getattr(torch.version, "hip", None):
        return False, "ROCm builds are not supported by the CUDA kernels"
    from torch.utils.cpp_extension import CUDA_HOME

    if not CUDA_HOME:
        return False, "CUDA_HOME not found (set CUDA_HOME to the CUDA toolkit to build the CUDA kernels)"
    return True, ""


def compiler() -> dict[str, Any]:
    """The C++ compiler torch's builder will use: its name, path (None when missing)
    and ``--version`` first line."""
    from torch.utils.cpp_extension import get_cxx_compiler

    name = get_cxx_compiler()
    path = shutil.which(name)
    version = None
    if path:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
            version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None
        except Exception as e:  # a broken compiler is reported, not raised
            version = f"unknown ({type(e).__name__}: {e})"
    return {"name": name, "path": path, "version": version}


def _cache_root() -> Path:
    env = os.environ.get("GANTK_EXT_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gantk" / "ext"


def _key(src: Path, with_cuda: bool) -> str:
    h = hashlib.sha256()
    # every source and header in the folder, so that a new header cannot be forgotten
    for f in sorted(p for p in src.iterdir() if p.suffix in (".cpp", ".h", ".cu", ".cuh")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for part in (
        torch.__version__, str(torch.version.cuda), str(with_cuda), " ".join(_CFLAGS), " ".join(_ldflags()),
        " ".join(_CUDA_CFLAGS), sys.implementation.cache_tag or "", sysconfig.get_platform(),
        platform.machine(), os.environ.get("CXX", ""), os.environ.get("TORCH_CUDA_ARCH_LIST", ""),
    ):
        h.update(part.encode() + b"\0")
    return ("cuda-" if with_cuda else "cpu-") + h.hexdigest()[:16]


def build_dir(with_cuda: bool | None = None) -> Path | None:
    """The cache folder for this source tree and environment (None without sources)."""
    src = _csrc_dir()
    if src is None:
        return None
    if with_cuda is None:
        with_cuda = _cuda_wanted()[0]
    return _cache_root() / _key(src, with_cuda)


# ------------------------------------------------------------------ building / loading
def _read_marker(bdir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((bdir / _MARKER).read_text())
    except (OSError, ValueError):
        return None
    lib = bdir / str(info.get("library", ""))
    return info if lib.is_file() else None


def _write_marker(bdir: Path, info: dict[str, Any]) -> None:
    tmp = bdir / f".{_MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, bdir / _MARKER)


def _clear_stale_lock(bdir: Path) -> None:
    lock = bdir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return
    if age > _STALE_LOCK_S:
        log.warning("gantk: removing the build lock %s left %.0f min ago by a build that never finished", lock, age / 60)
        try:
            lock.unlink()
        except OSError:
            pass


def _compile(src: Path, bdir: Path, with_cuda: bool, verbose: bool) -> str:
    from torch.utils.cpp_extension import load

    sources = [str(src / f) for f in _CPU_SOURCES + (_CUDA_SOURCES if with_cuda else ())]
    defs = ["-DGANTK_WITH_CUDA"] if with_cuda else []
    bdir.mkdir(parents=True, exist_ok=True)
    _clear_stale_lock(bdir)
    t0 = time.perf_counter()
    lib = load(
        name=_NAME,
        sources=sources,
        extra_cflags=[*_CFLAGS, *defs],
        extra_cuda_cflags=[*_CUDA_CFLAGS, *defs] if with_cuda else None,
        extra_include_paths=[str(src)],
        extra_ldflags=_ldflags(),
        build_directory=str(bdir),
        with_cuda=with_cuda,
        is_python_module=False,
        verbose=verbose,
    )
    seconds = time.perf_counter() - t0
    _state.build_seconds = seconds
    _write_marker(bdir, {
        "library": Path(lib).name, "seconds": round(seconds, 2), "with_cuda": with_cuda,
        "torch": torch.__version__, "cuda": torch.version.cuda, "sources": str(src),
    })
    return str(lib)


def _short(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return f"{type(e).__name__}: {first}"[:300]


def _check_toolchain() -> None:
    """A C++ compiler and ninja are there to build with (FileNotFoundError saying what
    is missing otherwise)."""
    comp = compiler()
    if comp["path"] is None:
        raise FileNotFoundError(
            f"no C++ compiler found (looked for {comp['name']!r}; install one or set CXX)"
        )
    from torch.utils.cpp_extension import is_ninja_available

    if not is_ninja_available():
        raise FileNotFoundError("ninja is not installed (pip install ninja)")


def _library(src: Path, bdir: Path, cuda: bool, build: bool, verbose: bool, errors: list[str]) -> str | None:
    """The library of one candidate build: a finished build in ``bdir`` loaded, else
    (when ``build``) compiled there. None when only a CUDA build failed to compile: its
    reason is appended to ``errors`` and the CPU-only candidate comes next."""
    info = _read_marker(bdir)
    if info is not None:
        lib = str(bdir / info["library"])
        torch.ops.load_library(lib)
        _state.build_seconds = info.get("seconds")
        return lib
    if not build:
        raise FileNotFoundError(
            f"not built yet (GANTK_EXT_AUTOBUILD=0); build it with `gantk ext build` ({_APPROX_BUILD})"
        )
    _check_toolchain()
    log.warning("gantk: building the fused gradient-penalty kernels into %s (once, %s)",
                bdir, _APPROX_BUILD + (" plus CUDA" if cuda else ""))
    try:
        return _compile(src, bdir, cuda, verbose)
    except Exception as e:
        if cuda:  # keep the CPU kernels when only the CUDA part fails
            errors.append(_short(e))
            _state.error_detail = str(e)
            return None
        raise


def _record_loaded(lib: str, cuda: bool, reason: str, errors: list[str]) -> None:
    """Record in ``_state`` that ``lib`` is loaded (with CUDA kernels or, with the reason,
    without), and register the ops' Python side."""
    _state.library = lib
    _state.with_cuda = cuda
    if cuda:
        _state.cuda_reason = ""
    elif errors:
        _state.cuda_reason = f"the CUDA build failed: {errors[0]}"
    else:
        _state.cuda_reason = reason
    _register_python()
    _state.ok = True
    _state.error = ""


def _try(build: bool, verbose: bool = False) -> None:
    """Load the extension (building it when ``build``), recording the outcome in
    ``_state``. Caller holds ``_lock``."""
    if _state.ok:
        return
    if build:
        _state.tried_build = True
    _state.tried_load = True
    try:
        src = _csrc_dir()
        if src is None:
            raise FileNotFoundError("the C++ sources (csrc/) are not part of this installation")
        with_cuda, cuda_reason = _cuda_wanted()
        candidates = [(True, "")] if with_cuda else []
        candidates.append((False, cuda_reason))
        errors: list[str] = []
        for cuda, reason in candidates:
            bdir = _cache_root() / _key(src, cuda)
            _state.build_dir = bdir
            lib = _library(src, bdir, cuda, build, verbose, errors)
            if lib is None:
                continue
            _record_loaded(lib, cuda, reason, errors)
            return
    except Exception as e:  # recorded, reported by available()/status(); never retried per call
        _state.ok = False
        _state.error = _short(e)
        _state.error_detail = str(e)


def _ensure(build: bool) -> None:
    if _state.ok or (_state.tried_build or (_state.tried_load and not build)):
        return
    with _lock:
        if _state.ok or _state.tried_build or (_state.tried_load and not build):
            return
        _try(build)


# ------------------------------------------------------------------ python-side registrations
def _batch_major(t: torch.Tensor) -> int:
    """Mirror of ``batch_major_layout`` in csrc/gp_ops.cpp (keep the two in step): 0
    contiguous, 1 channels_last, 2 channels_last_3d, -1 anything else."""
    if t.is_contiguous():
        return 0
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return 1
    if t.dim() == 5 and t.is_contiguous(memory_format=torch.channels_last_3d):
        return 2
    return -1


def _register_python() -> None:
    """Fake kernels for the C++ operators (once per process); their autograd kernels
    are C++ (csrc/gp_ops.cpp)."""
    global _registered
    if _registered:
        return
    lib = torch.library

    def interpolate_fake(real, fake, eps):
        layout = _batch_major(real)
        if layout >= 0 and layout == _batch_major(fake):
            return torch.empty_like(real)
        return real.new_empty(real.shape)

    def norm_penalty_fake(g, target, one_sided, weight, norm_eps, inv_scale):
        acc = acc_dtype(g.dtype)
        return g.new_empty((), dtype=acc), g.new_empty((g.shape[0],), dtype=acc)

    def norm_penalty_backward_fake(grad_penalty, g, norms, target, one_sided, weight, inv_scale):
        return torch.empty_like(g) if _batch_major(g) >= 0 else g.new_empty(g.shape)

    lib.register_fake("gantk::interpolate")(interpolate_fake)
    lib.register_fake("gantk::norm_penalty")(norm_penalty_fake)
    lib.register_fake("gantk::norm_penalty_backward")(norm_penalty_backward_fake)
    _registered = True


# ------------------------------------------------------------------ public
def ready(device_type: str) -> bool:
    """Fast per-call check: the extension is loaded with kernels for ``device_type``
    ("cpu" or "cuda"). False says nothing about why: ask :func:`available`."""
    return _state.ok and (device_type == "cpu" or (device_type == "cuda" and _state.with_cuda))


def available(device: torch.device | str) -> tuple[bool, str]:
    """``(True, "")`` when the fused kernels can run on ``device``, else ``(False,
    reason)``. Builds the extension on first use unless ``GANTK_EXT_AUTOBUILD=0``."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        return False, f"there are no fused kernels for {dev.type} tensors"
    _ensure(build=_autobuild())
    if not _state.ok:
        return False, _state.error or "the extension could not be loaded"
    if dev.type == "cuda" and not _state.with_cuda:
        return False, f"the extension was built without CUDA: {_state.cuda_reason}"
    return True, ""


def warn_fallback(device: torch.device | str, reason: str) -> None:
    """Warn, once per device type, that the reference is used instead, and why."""
    key = torch.device(device).type
    if key in _warned:
        return
    _warned.add(key)
    hint = "; `gantk ext build` shows the compiler output" if key in ("cpu", "cuda") else ""
    warnings.warn(
        f"gantk: using the reference gradient penalty on {key}: {reason}{hint} "
        "(GANTK_FORCE_REF=1 silences this)",
        RuntimeWarning,
        stacklevel=3,
    )


def status() -> dict[str, Any]:
    """What backend each device gets and why, with the build environment. Loads or
    builds nothing."""
    src = _csrc_dir()
    with_cuda, cuda_reason = _cuda_wanted()
    bdir = _state.build_dir or (_cache_root() / _key(src, with_cuda) if src else None)
    marker = _read_marker(bdir) if bdir else None
    comp = compiler()
    from torch.utils.cpp_extension import CUDA_HOME

    force = force_ref()
    backends: dict[str, dict[str, str]] = {}
    for dev in ("cpu", "cuda"):
        if dev == "cuda" and not torch.cuda.is_available():
            backends[dev] = {"backend": "none", "reason": cuda_reason}
            continue
        if force:
            backends[dev] = {"backend": "ref", "reason": "GANTK_FORCE_REF is set"}
        elif _state.ok:
            if dev == "cuda" and not _state.with_cuda:
                backends[dev] = {"backend": "ref", "reason": f"built without CUDA: {_state.cuda_reason}"}
            else:
                backends[dev] = {"backend": "ext", "reason": "loaded"}
        elif _state.tried_load and (_state.tried_build or not _autobuild()):
            backends[dev] = {"backend": "ref", "reason": _state.error}
        elif src is None:
            backends[dev] = {"backend": "ref", "reason": "the C++ sources (csrc/) are not installed"}
        elif marker is not None:
            backends[dev] = {"backend": "ext", "reason": "built; loads on first use"}
        elif not _autobuild():
            backends[dev] = {"backend": "ref", "reason": "not built (GANTK_EXT_AUTOBUILD=0); run `gantk ext build`"}
        elif comp["path"] is None:
            backends[dev] = {"backend": "ref", "reason": f"no C++ compiler ({comp['name']!r}) found"}
        else:
            backends[dev] = {"backend": "ext", "reason": f"builds on first use ({_APPROX_BUILD})"}
    return {
        "backends": backends,
        "loaded": _state.ok,
        "with_cuda": _state.with_cuda if _state.ok else with_cuda,
        "built": marker is not None,
        "build_dir": str(bdir) if bdir else None,
        "library": _state.library or (str(bdir / marker["library"]) if marker and bdir else None),
        "build_seconds": _state.build_seconds if _state.build_seconds is not None else (marker or {}).get("seconds"),
        "sources": str(src) if src else None,
        "compiler": comp,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_home": CUDA_HOME,
        "cuda_available": torch.cuda.is_available(),
        "autobuild": _autobuild(),
        "force_ref": force,
        "error": _state.error or None,
        "error_detail": _state.error_detail or None,
    }


def build(verbose: bool = True, force: bool = False) -> dict[str, Any]:
    """Build (or load) the extension now, with the compiler's output on the console
    when ``verbose``; tries again even after an earlier failure in this process.
    ``force`` deletes an earlier build of this version first (e.g. after a compiler
    upgrade; the cache key does not include the compiler's version). Returns
    :func:`status`; raises :class:`gantk.errors.ExtensionError` on failure."""
    with _lock:
        if force:
            if _state.ok:
                raise ExtensionError("the extension is already loaded in this process; rebuild from a fresh one")
            for cuda in {False, _cuda_wanted()[0]}:
                bdir = build_dir(cuda)
                if bdir is not None and bdir.is_dir():
                    for f in bdir.iterdir():
                        if f.name == _MARKER or f.suffix in (".o", ".so", ".pyd", ".dll"):
                            f.unlink(missing_ok=True)
        if not _state.ok:
            _state.error = _state.error_detail = ""
            _try(build=True, verbose=verbose)
    info = status()
    if not _state.ok:
        raise ExtensionError(f"building the gantk extension failed: {_state.error_detail or _state.error}")
    return info
