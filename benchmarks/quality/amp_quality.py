"""Does bf16 autocast (``--amp bf16``, what ``--amp auto`` picks on hardware with bfloat16
matrix units) train as well as float32? The runs that decide whether ``auto`` may be
the default: the README's default run on the two toy mixtures (``gantk train --loss
wasserstein --lipschitz gp --data D``: the toy sets' tuned WGAN-GP settings) and the
``digits`` preset, each seed in each precision, then scored as a user would:
``gantk eval RUN --draws 40 --json`` (the mixtures: modes covered, high-quality share
and W1 / floor against the toy targets) and ``gantk eval RUN --json --features digits``
(digits: the classifier FD and the classes covered, without Inception's features).

Every run is one ``gantk train`` process (``--threads`` torch threads each), ``--jobs``
of them at a time, on ``--device``; rows are appended to ``--results`` (JSONL) as they
finish and rows already there are skipped, so an interrupted measurement resumes. The
table (mean and per-seed values per data set and precision, and whether every seed
meets the targets) is printed and written beside the rows.

    python benchmarks/quality/amp_quality.py --device cuda --jobs 12
    python benchmarks/quality/amp_quality.py --device cpu --jobs 2 --threads 1
    python benchmarks/quality/amp_quality.py --steps 20 --seeds 0 --data 8gaussians --digits-steps 10  # smoke
    python benchmarks/quality/amp_quality.py --data 25gaussians --amps bf16-emulated,bf16-emulated-fp32-ends

The ``bf16-emulated`` modes compute bf16 autocast's numbers in float32
(``bf16_emulation.py``; MLP models only), so a CPU without bf16 units can measure
what bf16 does to quality at float32 speed.

Targets (benchmarks/quality/RESULTS.md): on every seed every mode covered, a
high-quality share ≥ 95 % (25gaussians) / ≥ 97 % (8gaussians) and W1 ≤ 1.25× the
real-vs-real floor; digits: FD ≤ 1.0 and every class covered.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent))

from common import run_metadata  # noqa: E402

MIXTURES = ("8gaussians", "25gaussians")
HQ_TARGET = {"8gaussians": 0.97, "25gaussians": 0.95}
MODES = {"8gaussians": 8, "25gaussians": 25}
W1_TARGET = 1.25
FD_TARGET = 1.0


#: ``--amps`` modes that emulate bf16 autocast in float32 (bf16_emulation.py), for a CPU
#: without bf16 units: every Linear in bf16, all but the data-facing two, every Linear
#: in bf16 for 80 % of the steps and float32 for the rest, or all but the penalty's pass
EMULATED = {"bf16-emulated": "all", "bf16-emulated-fp32-ends": "fp32-ends",
            "bf16-emulated-fp32-final": "fp32-final", "bf16-emulated-fp32-penalty": "fp32-penalty"}


def _cli(amp: str = "off") -> list[str]:
    if amp in EMULATED:
        return [sys.executable, str(HERE / "bf16_emulation.py"), EMULATED[amp]]
    return [sys.executable, "-m", "gantk"]


def _env() -> dict[str, str]:
    # the checkout's gantk wins over an installed one; no third-party plugins
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "GANTK_LOAD_PLUGINS": ""}


def train_args(job: dict, args) -> list[str]:
    amp = "off" if job["amp"] in EMULATED else job["amp"]
    common = ["--seed", str(job["seed"]), "--amp", amp, "--device", args.device, "--threads",
              str(args.threads), "--out", str(args.runs), "--name", job["name"], "--checkpoint-every", "0",
              "--image-every", "0", "--log-every", "100"]
    if job["data"] == "digits":
        steps = ["--steps", str(args.digits_steps)] if args.digits_steps else []
        return ["train", "--preset", "digits", *steps, *common]
    steps = ["--steps", str(args.steps)] if args.steps else []
    return ["train", "--loss", "wasserstein", "--lipschitz", "gp", "--data", job["data"], *steps, *common]


def run_job(job: dict, args) -> dict:
    run = Path(args.runs) / job["name"]
    t0 = time.perf_counter()
    tr = subprocess.run(_cli(job["amp"]) + train_args(job, args), capture_output=True, text=True, env=_env())
    seconds = time.perf_counter() - t0
    if tr.returncode != 0:
        return {**job, "error": "train: " + (tr.stderr.strip().splitlines() or ["?"])[-1]}
    ev_args = ["eval", str(run), "--json", "--device", args.device]
    if job["data"] != "digits":
        ev_args += ["--draws", str(args.draws)]
    else:  # the classifier's FD is the target; Inception's features would only add time
        ev_args += ["--features", "digits"]
    ev = subprocess.run(_cli() + ev_args, capture_output=True, text=True, env=_env())
    if ev.returncode != 0:
        return {**job, "error": "eval: " + (ev.stderr.strip().splitlines() or ["?"])[-1]}
    score = json.loads(ev.stdout)
    cfg = json.loads((run / "config.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [m["steps_per_s"] for m in metrics[1:]] or [m["steps_per_s"] for m in metrics]
    keep = ("w1_over_floor", "w1_over_floor_se", "modes_covered", "hq_share", "fd", "fd_floor", "kid",
            "classes_covered", "precision", "recall")
    return {**job, "steps": cfg["steps"], "amp_run": cfg["amp"], "seconds": round(seconds, 1),
            "steps_per_s": round(statistics.median(speeds), 2) if speeds else None,
            **{k: score[k] for k in keep if k in score}}


def passes(row: dict) -> bool:
    if row["data"] == "digits":
        return row["fd"] <= FD_TARGET and row.get("classes_covered") == 10
    return (row["modes_covered"] == MODES[row["data"]] and row["hq_share"] >= HQ_TARGET[row["data"]]
            and row["w1_over_floor"] <= W1_TARGET)


def _cell(vals: list[float], fmt: str) -> str:
    if not vals:
        return "-"
    mean = statistics.mean(vals)
    per = ", ".join(format(v, fmt) for v in vals)
    return f"{format(mean, fmt)} ({per})"


def table(rows: list[dict], datas: list[str], amps: list[str]) -> str:
    out = ["| data | amp | seeds | modes | high quality | W1 / floor | FD | classes | it/s | all targets met |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for data in datas:
        for amp in amps:
            rs = sorted((r for r in rows if r["data"] == data and r["amp"] == amp and "error" not in r),
                        key=lambda r: r["seed"])
            if not rs:
                continue
            get = lambda k: [r[k] for r in rs if k in r]  # noqa: E731
            ok = all(passes(r) for r in rs)
            out.append(f"| {data} | {amp} | {len(rs)} | {_cell(get('modes_covered'), 'g')} | "
                       f"{_cell([100 * v for v in get('hq_share')], '.1f')} | {_cell(get('w1_over_floor'), '.2f')} | "
                       f"{_cell(get('fd'), '.3f')} | {_cell(get('classes_covered'), 'g')} | "
                       f"{_cell(get('steps_per_s'), '.1f')} | {'yes' if ok else 'no'} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="training processes at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--data", default=",".join(MIXTURES) + ",digits")
    ap.add_argument("--amps", default="off,bf16", help="the --amp modes to compare (off = float32)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=0, help="mixtures: --steps (0: the toy sets' default)")
    ap.add_argument("--digits-steps", type=int, default=0, help="digits: --steps (0: the preset's 3000)")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--runs", default="/tmp/gantk-amp-quality")
    ap.add_argument("--results", default=str(HERE / "amp_quality.jsonl"))
    args = ap.parse_args(argv)
    datas, amps = args.data.split(","), args.amps.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    results = Path(args.results)
    done = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []

    def key(r):
        return (r["data"], r["amp"], r["seed"], r["device"], r.get("steps_asked", 0))

    have = {key(r) for r in done if "error" not in r}
    jobs = []
    for data in datas:
        for seed in seeds:
            for amp in amps:
                asked = args.digits_steps if data == "digits" else args.steps
                job = {"data": data, "amp": amp, "seed": seed, "device": args.device, "steps_asked": asked,
                       "name": f"{data}-{amp}-s{seed}-{args.device.replace(':', '')}-{int(time.time())}"}
                if key(job) not in have:
                    jobs.append(job)
    print(f"{len(jobs)} runs to do ({len(have)} already in {results.name}), {args.jobs} at a time", file=sys.stderr)
    meta = run_metadata(args.device)
    rows = [r for r in done if r["device"] == args.device]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_job, job, args) for job in jobs]
        for fut in as_completed(futures):
            row = {**fut.result(), "commit": meta["git_commit"], "device_name": meta["device_name"]}
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['data']} {row['amp']} seed {row['seed']}: "
                  + (row["error"] if "error" in row else f"{'meets' if passes(row) else 'misses'} the targets"),
                  file=sys.stderr)
            rows.append(row)
    rows = [r for r in rows if r.get("steps_asked", 0) == (args.digits_steps if r["data"] == "digits" else args.steps)]
    text = table(rows, datas, amps)
    print(text)
    results.with_suffix(".md").write_text(f"device: {meta['device_name']}, torch {meta['torch']}, commit "
                                          f"{meta['git_commit'][:7]}\n\n" + text)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
