"""How much faster does a whole ``gantk train`` run go under ``--amp bf16`` (what ``--amp
auto`` picks where the hardware has bfloat16 matrix units) than in float32 on this
machine? Two runs a user would start, each a fresh ``gantk train`` process per
precision, interleaved (the order alternates every round, so a slow spell of a shared
machine hits both precisions), the generator iterations per second read from each
run's metrics.jsonl (the median of its log intervals after the first, which holds the
start-up):

* ``readme``: the README's default run, ``gantk train --loss wasserstein --lipschitz gp``
  (25gaussians with the toy sets' tuned settings: 3 × 256 critic, 4 × 512 generator,
  batch 512, the penalty on every 4th critic step);
* ``wgan-gp``: ``gantk train --preset wgan-gp --data 8gaussians`` (the paper's 3 × 512
  networks, batch 256, the penalty on every critic step).

    python benchmarks/bench_amp_runs.py [--steps 300] [--rounds 2] [--amps off,bf16] [--device cpu]

Writes benchmarks/results/amp-runs-<device>.json with the run metadata (CPU model and
its ISA flags as torch reports them).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import HERE, run_metadata

RUNS = {
    "readme": ["--loss", "wasserstein", "--lipschitz", "gp"],
    "wgan-gp": ["--preset", "wgan-gp", "--data", "8gaussians"],
}


def one_run(which: str, amp: str, args, out: Path, name: str) -> float:
    cmd = [sys.executable, "-m", "gantk", "train", *RUNS[which], "--amp", amp, "--steps", str(args.steps),
           "--log-every", str(args.log_every), "--checkpoint-every", "0", "--image-every", "0",
           "--device", args.device, "--out", str(out), "--name", name]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "GANTK_LOAD_PLUGINS": "",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{which} --amp {amp}: {proc.stderr.strip().splitlines()[-1]}")
    lines = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return statistics.median(x["steps_per_s"] for x in lines[1:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="readme,wgan-gp")
    ap.add_argument("--amps", default="off,bf16")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    amps = args.amps.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="gantk-amp-runs-"))
    its: dict[str, dict[str, list[float]]] = {w: {a: [] for a in amps} for w in args.runs.split(",")}
    for r in range(args.rounds):
        for which in its:
            for amp in amps if r % 2 == 0 else amps[::-1]:
                v = one_run(which, amp, args, tmp, f"{which}-{amp}-{r}")
                its[which][amp].append(v)
                print(f"round {r}: {which} --amp {amp}: {v:.2f} it/s", file=sys.stderr)
    med = {w: {a: statistics.median(v) for a, v in d.items()} for w, d in its.items()}
    meta = run_metadata(args.device)
    result = {"meta": meta, "steps": args.steps, "rounds": args.rounds, "threads_per_run": args.threads or None,
              "it_per_s": its, "median_it_per_s": med}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"amp-runs-{args.device}.json").write_text(json.dumps(result, indent=1))
    threads = args.threads or "torch's default"
    print(f"{meta['device_name']}, ISA {meta.get('cpu_isa')}, {threads} threads per run, {args.steps} steps")
    print("| run | " + " | ".join(f"`--amp {a}` it/s" for a in amps) + " | " +
          " | ".join(f"{a} ×{amps[0]}" for a in amps[1:]) + " |")
    print("|---|" + "---|" * (2 * len(amps) - 1))
    for w, d in med.items():
        print(f"| {w} | " + " | ".join(f"{d[a]:.2f}" for a in amps) + " | "
              + " | ".join(f"{d[a] / d[amps[0]]:.2f}" for a in amps[1:]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
