"""DiffAugment on small data (Zhao et al. 2020, arXiv 2006.10738), with gantk's pieces:
WGAN-GP on 10 % of scikit-learn's digits (``-O data.subset=180``: 180 digits, 18 per
class, from the split the digits protocol does not hold out), at 16 px with the
``digits`` preset (dcgan width 32, batch 32, Adam 2e-4, β = (0.5, 0.9), n_critic 5,
3,000 steps), with and without ``--augment color,translation,cutout``, one run per
seed and arm. Each run is scored by ``gantk eval`` (the digits protocol: classifier
FD and KID against the 540 held-out digits, class histogram, precision/recall).

The runs are independent processes (``--jobs`` at a time, each with ``--threads``
torch threads); every finished run appends one line to ``--out``/results.jsonl, so an
interrupted experiment keeps what finished and a rerun skips it. At the end a markdown
table is printed (FD per seed, both arms, and the change).

    python benchmarks/quality/diffaugment_digits.py --device cpu --jobs 2 --seeds 0,1,2
    python benchmarks/quality/diffaugment_digits.py --device cuda --jobs 6 --threads 2   # an H200 machine
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import run_metadata  # noqa: E402  (also puts a checkout's gantk on the path)

ARMS = {"plain": "", "diffaugment": "color,translation,cutout"}


def gantk_cmd() -> list[str]:
    return [sys.executable, "-m", "gantk"]


def one_run(arm: str, seed: int, args: argparse.Namespace) -> dict:
    name = f"{arm}-seed{seed}"
    out = Path(args.out)
    cmd = gantk_cmd() + ["train", "--preset", "digits", "-O", f"data.subset={args.subset}", "--seed", str(seed),
                         "--device", args.device, "--threads", str(args.threads), "--out", str(out / "runs"),
                         "--name", name, "--log-every", "500"]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if ARMS[arm]:
        cmd += ["--augment", ARMS[arm]]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    train_s = time.perf_counter() - t0
    if rc != 0:
        return {"arm": arm, "seed": seed, "error": f"train exited {rc}, see {log}"}
    ev = subprocess.run(gantk_cmd() + ["eval", str(out / "runs" / name), "--json", "--device", args.device,
                                       "--features", "digits"],
                        capture_output=True, text=True, env=env)
    if ev.returncode != 0:
        return {"arm": arm, "seed": seed, "error": f"eval exited {ev.returncode}: {ev.stderr.strip()[-300:]}"}
    scores = json.loads(ev.stdout)
    return {"arm": arm, "seed": seed, "augment": ARMS[arm], "train_seconds": round(train_s, 1), "eval": scores}


def fd_of(rec: dict) -> float | None:
    ev = rec.get("eval", {})
    for key in ("fd", "classifier_fd"):
        if isinstance(ev.get(key), (int, float)):
            return float(ev[key])
    inner = ev.get("metrics") or ev.get("scores") or {}
    return float(inner["fd"]) if isinstance(inner.get("fd"), (int, float)) else None


def table(records: list[dict], seeds: list[int]) -> str:
    by = {(r["arm"], r["seed"]): r for r in records if "eval" in r}
    lines = ["| seed | FD plain | FD DiffAugment | change |", "|---|---|---|---|"]
    for s in seeds:
        a, b = by.get(("plain", s)), by.get(("diffaugment", s))
        fa, fb = (fd_of(a) if a else None), (fd_of(b) if b else None)
        change = f"{(fb - fa) / fa * 100:+.0f} %" if fa and fb is not None else "-"
        lines.append(f"| {s} | {fa if fa is not None else 'not run'} | {fb if fb is not None else 'not run'} "
                     f"| {change} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--subset", type=int, default=180)
    ap.add_argument("--steps", type=int, default=0, help="0: the digits preset's 3,000")
    ap.add_argument("--out", default=str(HERE / "results" / "diffaugment_digits"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = []
    if results.exists():
        done = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    have = {(r["arm"], r["seed"]) for r in done if "eval" in r}
    todo = [(arm, s) for s in seeds for arm in ARMS if (arm, s) not in have]
    (out / "meta.json").write_text(json.dumps({**run_metadata(), "args": vars(args)}, indent=2, default=str))
    print(f"{len(todo)} runs to do ({len(have)} already done), {args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for rec in pool.map(lambda job: one_run(*job, args), todo):
            with open(results, "a") as f:
                f.write(json.dumps(rec) + "\n")
            done.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "eval"}), "FD", fd_of(rec), flush=True)
    print(table(done, seeds))


if __name__ == "__main__":
    main()
