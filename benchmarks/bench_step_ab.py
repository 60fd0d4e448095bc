"""Is gantk's critic step slower or faster than the reference loop's, beyond this machine's
noise? An interleaved A/B of one critic step: gantk's default, gantk with one backward
of (loss + penalty) (the CUDA path, forced here), gantk with separate real and fake
forwards, and the WGAN-GP authors' loop (``gantk.benchmarking.ReferenceLoop``), same
networks and batch. Each round times every variant twice, in alternating order, so a
slow spell of a shared VM hits them all; the medians and the per-round paired ratios
are reported.

    python benchmarks/bench_step_ab.py [--case dcgan-64] [--rounds 10] [--threads 2]

``bench_step.py`` times each variant in one block, which on a noisy VM can put a
whole block in a slow spell; use this script when the difference is a few %.
Writes benchmarks/results/step-ab-<case>-<device>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import HERE, run_metadata  # noqa: F401  (common puts gantk on sys.path)

from gantk.benchmarking import STEP_CASES, ReferenceLoop, _sync, step_case_trainer


def variants(case_name: str, device: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="gantk-ab-"))
    tr = step_case_trainer(case_name, tmp, device)
    one = step_case_trainer(case_name, tmp, device)
    one._adversarial_first = False  # one backward of the sum, as on CUDA
    sep = step_case_trainer(case_name, tmp, device, joint_forward=False)
    ref = ReferenceLoop.like(tr)
    return {"gantk": tr.critic_step, "gantk-one-backward": one.critic_step,
            "gantk-separate-forward": sep.critic_step, "reference": ref.critic_step}


def ab(fns: dict, rounds: int, device: str) -> dict[str, list[float]]:
    for f in fns.values():  # warm up
        f()
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            for _ in range(2):
                _sync(device)
                t0 = time.perf_counter()
                fns[k]()
                _sync(device)
                times[k].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="dcgan-64", choices=sorted(STEP_CASES))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    times = ab(variants(args.case, args.device), args.rounds, args.device)
    med = {k: statistics.median(v) for k, v in times.items()}
    vs_ref = {k: med["reference"] / v for k, v in med.items()}
    paired = {k: statistics.median(r / t for r, t in zip(times["reference"], v)) for k, v in times.items()}
    result = {"meta": run_metadata(args.device), "case": args.case, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "median_s": med, "speedup_vs_reference": vs_ref,
              "paired_speedup_vs_reference": paired, "times_s": times}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"step-ab-{args.case}-{args.device}.json").write_text(json.dumps(result, indent=1))
    print(f"| {args.case} critic step ({torch.get_num_threads()} threads, {args.rounds} rounds) | ms | ×reference | paired ×reference |")
    print("|---|---|---|---|")
    for k in times:
        print(f"| {k} | {1e3 * med[k]:.1f} | {vs_ref[k]:.2f} | {paired[k]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
