"""Shared benchmark helpers: a timer and the metadata of a run.

The timer warms up, then repeats the call until a time budget (or repeat cap) is
spent, synchronising the GPU inside the timed region, and reports the median and the
interquartile range. Benchmarks are not tests: nothing here asserts a timing.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], Any],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    min_repeat: int = 5,
    max_repeat: int = 200,
    min_time: float = 0.5,
) -> dict[str, float]:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``min_repeat`` timed calls
    and more until ``min_time`` seconds or ``max_repeat`` calls. Each call is timed on
    its own with the device synchronised before it and inside the timed region after
    it. Returns seconds: median, q1, q3, iqr (q3 − q1), min, and the count n."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeat or (len(times) < max_repeat and time.perf_counter() - start < min_time):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1 = q3 = statistics.median(times)
    return {
        "median": statistics.median(times),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": min(times),
        "n": len(times),
    }


def memory_bandwidth(device: torch.device | str = "cpu", mbytes: int = 256) -> dict[str, float]:
    """Copy bandwidth: ``dst.copy_(src)`` of ``mbytes`` MiB moves 2×mbytes (one read,
    one write). Returns bytes/s (median) and the timing."""
    n = mbytes * 2**20 // 4
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), device=device, warmup=2, min_repeat=5, min_time=1.0)
    return {"bytes_per_s": 2 * n * 4 / t["median"], "bytes_moved": 2 * n * 4, "time": t}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except Exception:  # no git: metadata only
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_metadata(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where and with what a benchmark ran: commit, versions, device, CPU."""
    dev = torch.device(device)
    status = _git("status", "--porcelain")
    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD") or "none (no commit yet)",
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": dev.type,
        # other work on the machine skews CPU timings: recorded, not corrected for
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        meta["device_name"] = props.name
        meta["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        meta["sm_count"] = props.multi_processor_count
    else:
        meta["device_name"] = meta["cpu"]
    return meta
