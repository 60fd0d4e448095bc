"""How fast is gantk's whole WGAN-GP training step compared with the same step written
the way the WGAN-GP reference code writes it (three backward calls per critic step)?

Same networks (deep copies), batch, dtype and seed; the critic step (critic on real and
fake, penalty, backward, optimizer step) and the generator step are timed separately,
and an iteration is 5 critic steps + 1 generator step. Also reported: the share of the
critic step spent in the penalty's elementwise work (interpolation + norm head).

With ``--levers`` (default: all of ``gantk.benchmarking.LEVERS``) each case is also timed
with the opt-in levers: the separate real and fake forwards (to show what the default
joint forward buys) and lazy regularization (``penalty_every`` 4, 8, 16); on CUDA also
bf16 autocast and channels-last (``--levers amp-bf16,...`` times them anywhere).

    python benchmarks/bench_step.py [--cases toy-mlp,dcgan-32,dcgan-64] [--device cpu|cuda] [--levers none]

Writes benchmarks/results/step-<device>.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import HERE, run_metadata  # noqa: F401  (common puts gantk on sys.path)

from gantk.benchmarking import GPU_LEVERS, LEVERS, STEP_CASES, bench_steps


def table(rows) -> str:
    out = ["| case | batch | gantk it/s | reference it/s | gantk ×ref | critic step ×ref | penalty elementwise share |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "missing" in r:
            out.append(f"| {r['case']} | {r['batch_size']} | missing: {r['missing']} | | | | |")
            continue
        out.append(f"| {r['case']} | {r['batch_size']} | {r['gantk_iter_per_s']:.2f} | {r['reference_iter_per_s']:.2f} "
                   f"| {r['speedup']:.2f} | {r['critic_speedup']:.2f} | {100 * r['penalty_share']:.1f}% |")
    return "\n".join(out)


def lever_table(rows) -> str:
    out = ["| case | lever | critic step ms | critic step ×ref | iteration ×ref |", "|---|---|---|---|---|"]
    for r in rows:
        if "missing" in r:
            continue
        crit = r["times"]["gantk_critic"]["median"]
        out.append(f"| {r['case']} | default (joint forward, penalty every step) | {1e3 * crit:.2f} "
                   f"| {r['critic_speedup']:.2f} | {r['speedup']:.2f} |")
        for label, lv in r.get("levers", {}).items():
            if "missing" in lv:
                out.append(f"| {r['case']} | {label} | n/a: {lv['missing']} | | |")
                continue
            out.append(f"| {r['case']} | {label} | {1e3 * lv['critic_s']:.2f} | {lv['critic_speedup']:.2f} "
                       f"| {lv['speedup']:.2f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default=",".join(STEP_CASES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--levers", default=None,
                    help="comma-separated names from LEVERS, or none [default: all; the GPU ones on CUDA only]")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.levers is None:
        args.levers = ",".join(k for k in LEVERS if args.device == "cuda" or k not in GPU_LEVERS)
    names = [k for k in args.levers.split(",") if k and k != "none"]
    unknown = [k for k in names if k not in LEVERS]
    if unknown:
        ap.error(f"unknown lever {unknown[0]!r}; choose from {', '.join(LEVERS)} or none")
    levers = {k: LEVERS[k] for k in names}
    rows = bench_steps(tuple(c for c in args.cases.split(",") if c), device=args.device, min_time=args.min_time,
                       levers=levers)
    result = {"meta": run_metadata(args.device), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"step-{args.device}.json").write_text(json.dumps(result, indent=2))
    print(f"{result['meta']['device_name']} ({args.device}), torch {torch.__version__}")
    print(table(rows))
    if levers:
        print()
        print(lever_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
