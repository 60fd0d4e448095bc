"""Conditional digits: the ``digits`` preset plus ``--conditional`` (class-conditional
batch norm in the DCGAN generator, a projection critic), trained with several seeds and
scored as ``gantk eval RUN -n 2500 --json`` scores it: the bundled classifier's class
accuracy (the share of samples generated for class c that it labels c, per class and
averaged over the 10 classes) beside FD on its features.

The issue's target: mean class accuracy ≥ 90 %, every class ≥ 80 %, on every seed; FD
no worse than the unconditional preset's (``--baseline`` trains that too, same seeds,
same machine).

Each (variant, seed) is one ``gantk train`` process (``--threads`` torch threads each),
``--jobs`` of them at a time; a run whose final checkpoint exists is not trained again,
so an interrupted table resumes and ``--score-only`` re-scores finished runs.

    python benchmarks/quality/conditional_digits.py --device cpu --jobs 3 --seeds 0,1,2 \\
        [--baseline] [--inception] [--steps 3000] [--runs /tmp/cond-digits] [--json benchmarks/quality/conditional_digits.json]

On a GPU machine: ``--device cuda --jobs 6 --threads 2``.
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
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

N_EVAL = 2500


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def train(job: dict) -> dict:
    run = Path(job["runs"]) / job["name"]
    final = run / "checkpoints" / f"step-{job['steps']:07d}.safetensors"
    t = None
    if not final.is_file():
        cmd = [sys.executable, "-m", "gantk", "train", "--preset", "digits", "--seed", str(job["seed"]),
               "--steps", str(job["steps"]), "--device", job["device"], "--threads", str(job["threads"]),
               "--out", job["runs"], "--name", job["name"], "--log-every", "250"]
        if job["conditional"]:
            cmd.append("--conditional")
        if run.exists():  # an interrupted run continues from its last checkpoint
            cmd = [sys.executable, "-m", "gantk", "train", "--resume", str(run), "--threads", str(job["threads"])]
        t0 = time.perf_counter()
        with open(Path(job["runs"]) / f"{job['name']}.log", "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
        t = time.perf_counter() - t0
        if rc != 0:
            return {**job, "error": f"gantk train exited {rc} (see {job['name']}.log)"}
    cmd = [sys.executable, "-m", "gantk", "eval", str(run), "-n", str(N_EVAL), "--seed", "0", "--json"]
    if not job["inception"]:  # the classifier's numbers only (Inception takes minutes per run on a CPU)
        cmd += ["--features", "digits"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if out.returncode != 0:
        return {**job, "error": f"gantk eval exited {out.returncode}: {out.stderr.strip()[-300:]}"}
    res = json.loads(out.stdout)
    keep = ("fd", "fd_floor", "kid", "classes_covered", "class_accuracy", "class_accuracy_min",
            "class_accuracy_per_class", "fd_per_class", "precision", "recall", "inception_fid")
    metrics = res.get("metrics", res)
    return {**job, "train_s": t, **{k: metrics.get(k) for k in keep if k in metrics}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="training processes at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--baseline", action="store_true", help="also train the unconditional digits preset")
    ap.add_argument("--runs", default="/tmp/gantk-conditional-digits")
    ap.add_argument("--score-only", action="store_true", help="score finished runs, train nothing")
    ap.add_argument("--inception", action="store_true", help="also Inception FID (needs its weights; slow on a CPU)")
    ap.add_argument("--json", default=None, help="write the rows and the run metadata here")
    a = ap.parse_args()
    Path(a.runs).mkdir(parents=True, exist_ok=True)
    jobs = []
    for variant in (("conditional", "unconditional") if a.baseline else ("conditional",)):
        for seed in (int(s) for s in a.seeds.split(",")):
            jobs.append({"variant": variant, "conditional": variant == "conditional", "seed": seed,
                         "steps": a.steps, "device": a.device, "threads": a.threads, "runs": a.runs,
                         "inception": a.inception,
                         "name": f"{variant}-seed{seed}"})
    if a.score_only:
        jobs = [j for j in jobs if (Path(a.runs) / j["name"] / "checkpoints").is_dir()]
    rows = []
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:  # each row is kept as it finishes
        for row in pool.map(train, jobs):
            rows.append(row)
            with open(Path(a.runs) / "rows.jsonl", "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
    print("| variant | seed | mean class accuracy | worst class | fd | kid | train s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r['seed']} | error: {r['error']} |")
            continue
        acc, worst = r.get("class_accuracy"), r.get("class_accuracy_min")
        ts = f"{r['train_s']:.0f}" if r.get("train_s") else "-"
        print(f"| {r['variant']} | {r['seed']} | {acc if acc is None else f'{acc:.3f}'} | "
              f"{worst if worst is None else f'{worst:.3f}'} | {r.get('fd', float('nan')):.3f} | "
              f"{r.get('kid', float('nan')):.4f} | {ts} |")
    if a.json:
        from benchmarks.common import run_metadata

        Path(a.json).write_text(json.dumps({"meta": run_metadata(a.device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
