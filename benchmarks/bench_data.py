"""Image collections in memory and streamed: peak memory of training, the streaming
loader against the critic step, and the cache build against Pillow, side by side in one
run. Needs a generated folder (benchmarks/make_image_folder.py; 50,000 RGB PNGs at
64×64 for the figures in RESULTS.md).

1. **Cache build**: decoding the folder into the uint8 cache at 64 px (images/s), next
   to Pillow's own rate: the same decode + resize of ``--pillow-sample`` files in one
   thread, times the threads the build uses (the most the build could reach).
2. **Peak memory of training** (dcgan at 64 px, batch 64, ``--steps`` steps, one
   process): the resident memory of the training process and of its whole process tree
   (DataLoader workers included; pages shared between them are counted in each), polled
   every 50 ms, for
   * ``main``: the code of ``--baseline`` (a checkout of gantk before compact storage:
     the folder decoded into float32), when given;
   * ``in memory``: this checkout, the uint8 set held in memory (the default budget);
   * ``streamed``: this checkout with ``--data-memory 256MB``.
   The cache is built before (its build is item 1), so these are training figures.
3. **Loader throughput**: the streaming loader's batches of 64 at 64 px per second
   (DataLoader workers, pread from the cache, uint8 → float on the device), next to the
   dcgan-32 critic step (batch 64) it feeds; reported as the ratio and the data time as
   a share of a step.

    python benchmarks/make_image_folder.py /tmp/gantk-shapes-50k --n 50000 --size 64
    python benchmarks/bench_data.py /tmp/gantk-shapes-50k --baseline /work/main --device cpu --steps 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import run_metadata  # noqa: E402  (also puts a checkout's gantk on the path)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gantk  # noqa: E402
from gantk.data import StreamingBatchSampler, load_samples  # noqa: E402

CHECKOUT = HERE.parent


def _rss_tree(pid: int) -> tuple[int, int]:
    """(RSS of pid, RSS of pid and all its descendants), bytes, from /proc."""
    def rss(p: int) -> int:
        try:
            with open(f"/proc/{p}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def children(p: int) -> list[int]:
        kids = []
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids += [int(c) for c in f.read().split()]
        except OSError:
            pass
        return kids

    own, total, todo = rss(pid), 0, [pid]
    while todo:
        p = todo.pop()
        total += rss(p)
        todo += children(p)
    return own, total


def peak_memory(cmd: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run cmd in cwd (outside any checkout: ``python -m`` puts the working folder first
    on the path), polling its memory; the peaks and how it ended."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_own = peak_tree = 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        own, tree = _rss_tree(proc.pid)
        peak_own, peak_tree = max(peak_own, own), max(peak_tree, tree)
        time.sleep(0.05)
    reader.join(5)
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mb": round(peak_own / 1e6), "peak_rss_tree_mb": round(peak_tree / 1e6),
            "tail": "".join(out)[-600:] if proc.returncode else ""}


def train_cmd(folder: str, out: str, steps: int, device: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "gantk", "train", "--data", folder, "--resolution", "64", "--model", "dcgan",
            "--batch-size", "64", "--steps", str(steps), "--device", device, "--out", out, "--log-every", "0",
            "--checkpoint-every", "0", "--image-every", "0", *extra]


def cache_build(folder: str, cache: str, pillow_sample: int) -> dict:
    from gantk.default_plugins.image_data import _Source  # the decoder the cache uses

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds, x = load_samples(folder, {"resolution": 64}, keep_uint8=True, cache_dir=cache)
    wall = time.perf_counter() - t0
    meta = json.loads((x.gantk_cache.path.parent / "meta.json").read_text())
    src = _Source(Path(folder))
    idx = np.linspace(0, len(src.names) - 1, pillow_sample).astype(int)
    t1 = time.perf_counter()
    for i in idx:
        src.read(int(i), 64, 3)
    one_thread = pillow_sample / (time.perf_counter() - t1)
    threads = min(8, os.cpu_count() or 1)
    return {"images": int(x.shape[0]), "cache_mb": round(x.numel() / 1e6), "build_seconds": meta["build_seconds"],
            "wall_seconds_with_listing": round(wall, 1),
            "build_images_per_s": round(meta["files"] / meta["build_seconds"]),
            "pillow_one_thread_images_per_s": round(one_thread), "build_threads": threads,
            "pillow_ceiling_images_per_s": round(one_thread * min(threads, os.cpu_count() or 1)),
            "cache": str(x.gantk_cache.path.parent)}


def loader_vs_step(cache: str, folder: str, device: str, batches: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, x = load_samples(folder, {"resolution": 64}, keep_uint8=True, cache_dir=cache)
    s = StreamingBatchSampler(x, 64, 0, device=device)
    for _ in range(10):  # workers started, prefetch queue filled
        s.next()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
        s.next()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    per_batch = (time.perf_counter() - t0) / batches
    cpu_per_batch = (time.process_time() - c0) / batches  # in the training process (the worker's is apart)
    s.close()
    # the dcgan-32 critic step it feeds: uint8 images from a tensor file, batch 64
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", np.random.default_rng(0).integers(0, 256, (512, 3, 32, 32), dtype=np.uint8))
        cfg = gantk.make_config(data=f"{tmp}/x.npy", model="dcgan", batch_size=64, device=device, out=tmp,
                                steps=1, image_every=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = gantk.Trainer(cfg)
        times = []
        for i in range(25):
            t = time.perf_counter()
            tr.critic_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 5:
                times.append(time.perf_counter() - t)
        tr._lock.release()
    step = float(np.median(times))
    return {"loader_batch_ms": round(per_batch * 1e3, 2), "loader_batches_per_s": round(1 / per_batch, 1),
            "loader_cpu_ms_per_batch_in_trainer": round(cpu_per_batch * 1e3, 2),
            "workers": s.workers, "critic_step_ms": round(step * 1e3, 1),
            "loader_over_step": round(step / per_batch, 1), "data_share_of_step_pct": round(100 * per_batch / step, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--baseline", help="a checkout of gantk to compare with (its code decodes into float32)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--pillow-sample", type=int, default=2000)
    ap.add_argument("--work", default=None, help="folder for the cache and runs (default: a temporary one)")
    ap.add_argument("--runs", default="main,in memory,streamed", help="which peak-memory runs")
    ap.add_argument("--no-loader", action="store_true", help="skip the loader throughput")
    ap.add_argument("--json", default=str(HERE / "results" / "bench_data.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gantk-bench-data-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    wanted = [r.strip() for r in args.runs.split(",")]
    cache = str(work / "cache")
    res: dict = {"meta": run_metadata(args.device), "args": vars(args)}
    res["cache_build"] = cache_build(args.folder, cache, args.pillow_sample)
    print(json.dumps(res["cache_build"]), flush=True)
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    runs = {"in memory": ["--cache-dir", cache], "streamed": ["--cache-dir", cache, "--data-memory", "256MB"]}
    res["peak_memory"] = {}
    if args.baseline and "main" in wanted:
        res["peak_memory"]["main"] = peak_memory(
            train_cmd(args.folder, str(work / "runs-main"), args.steps, args.device, []),
            {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}, work)
        print("main", json.dumps(res["peak_memory"]["main"]), flush=True)
    for name, extra in runs.items():
        if name in wanted:
            res["peak_memory"][name] = peak_memory(
                train_cmd(args.folder, str(work / f"runs-{name.replace(' ', '-')}"), args.steps, args.device, extra),
                env, work)
            print(name, json.dumps(res["peak_memory"][name]), flush=True)
    if not args.no_loader:
        res["loader"] = loader_vs_step(cache, args.folder, args.device, args.batches)
        print(json.dumps(res["loader"]), flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
