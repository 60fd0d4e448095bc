"""Is gantk's training step slower or faster than the reference loop's, beyond this
machine's noise? An interleaved A/B of one critic step (or, with ``--iteration``, one
whole generator iteration: 5 critic steps and a generator step): gantk's default, gantk
with one backward of (loss + penalty) (the CUDA path, forced here), gantk with separate
real and fake forwards, gantk with the penalty's input gradient taken by autograd's
double backward (``GANTK_FORCE_REF=1``: what the closed form for MLP critics in
gantk/ops/piecewise.py saves), gantk under each ``--amp`` mode asked for, and the WGAN-GP
authors' loop (``gantk.benchmarking.ReferenceLoop``, float32, torch's default Adam),
same networks and batch. Each round times every variant twice, in alternating order,
so a slow spell of a shared VM hits them all; the medians and the per-round paired
ratios are reported, each paired ratio with a 95 % bootstrap interval over the rounds
(a claim such as "≥ 1.3× the reference" holds on this machine when the interval's lower
end is above 1.3).

    python benchmarks/bench_step_ab.py [--case dcgan-64] [--rounds 10] [--threads 2]
    python benchmarks/bench_step_ab.py --case toy-mlp --iteration --amp auto --rounds 20

``bench_step.py`` times each variant in one block, which on a noisy VM can put a
whole block in a slow spell; use this script when the difference is a few %.
Writes benchmarks/results/step-ab-<case>[-iteration]-<device>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import torch
from common import HERE, N_CRITIC, run_metadata  # noqa: F401  (common puts gantk on sys.path)
from common import iteration as whole_iteration

from gantk.benchmarking import STEP_CASES, ReferenceLoop, _sync, step_case_trainer


def variants(case_name: str, device: str, iteration: bool = False, amps: tuple[str, ...] = ()) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="gantk-ab-"))
    tr = step_case_trainer(case_name, tmp, device)
    trainers = {"gantk": tr}
    if not iteration:
        one = step_case_trainer(case_name, tmp, device)
        one._adversarial_first = False  # one backward of the sum, as on CUDA
        trainers["gantk-one-backward"] = one
        trainers["gantk-separate-forward"] = step_case_trainer(case_name, tmp, device, joint_forward=False)
    for amp in amps:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = step_case_trainer(case_name, tmp, device, amp=amp)
        trainers[f"gantk-amp-{amp}" + (f"={t.cfg.amp}" if amp == "auto" else "")] = t
    trainers["gantk-autograd-penalty"] = step_case_trainer(case_name, tmp, device)
    ref = ReferenceLoop.like(tr)
    if iteration:
        fns = {k: whole_iteration(t.critic_step, t.generator_step) for k, t in trainers.items()}
        fns["reference"] = whole_iteration(ref.critic_step, ref.generator_step)
    else:
        fns = {k: t.critic_step for k, t in trainers.items()}
        fns["reference"] = ref.critic_step
    fns["gantk-autograd-penalty"] = _forced_ref(fns["gantk-autograd-penalty"])
    return fns


def _forced_ref(fn):
    """``fn`` with GANTK_FORCE_REF=1: the penalty's input gradient by autograd's double
    backward instead of the closed form for MLP critics (and the norm head in PyTorch
    instead of the fused kernel, about 1 % of a CPU step)."""
    def run():
        with mock.patch.dict(os.environ, {"GANTK_FORCE_REF": "1"}):
            fn()
    return run


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


def paired_interval(ref: list[float], times: list[float], per_round: int = 2, level: float = 0.95,
                    draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """``(median, low, high)`` of the paired ratios ``ref[i] / times[i]``: the median and a
    percentile bootstrap interval at ``level``. Rounds (``per_round`` consecutive pairs,
    timed back to back) are resampled whole, since two timings in one round share its
    spell of the machine."""
    ratios = [r / t for r, t in zip(ref, times)]
    rounds = [ratios[i:i + per_round] for i in range(0, len(ratios), per_round)]
    rng = random.Random(seed)
    meds = sorted(statistics.median([x for rd in rng.choices(rounds, k=len(rounds)) for x in rd])
                  for _ in range(draws))
    tail = (1.0 - level) / 2
    return statistics.median(ratios), meds[int(tail * (draws - 1))], meds[int(round((1.0 - tail) * (draws - 1)))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="dcgan-64", choices=sorted(STEP_CASES))
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iteration", action="store_true",
                    help=f"time whole generator iterations ({N_CRITIC} critic steps + 1 generator step)")
    ap.add_argument("--amp", action="append", default=[], choices=["auto", "bf16", "fp16"],
                    help="also time gantk under this --amp mode (repeatable)")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    times = ab(variants(args.case, args.device, args.iteration, tuple(args.amp)), args.rounds, args.device)
    med = {k: statistics.median(v) for k, v in times.items()}
    vs_ref = {k: med["reference"] / v for k, v in med.items()}
    intervals = {k: paired_interval(times["reference"], v) for k, v in times.items()}
    paired = {k: iv[0] for k, iv in intervals.items()}
    unit = "iteration" if args.iteration else "critic step"
    result = {"meta": run_metadata(args.device), "case": args.case, "unit": unit, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "median_s": med, "speedup_vs_reference": vs_ref,
              "paired_speedup_vs_reference": paired,
              "paired_speedup_95_interval": {k: [iv[1], iv[2]] for k, iv in intervals.items()}, "times_s": times}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.case}-iteration" if args.iteration else args.case
    (out / f"step-ab-{tag}-{args.device}.json").write_text(json.dumps(result, indent=1))
    print(f"| {args.case} {unit} ({torch.get_num_threads()} threads, {args.rounds} rounds) | ms | "
          + ("it/s | " if args.iteration else "") + "×reference | paired ×reference (95 % interval) |")
    print("|---|---|" + ("---|" if args.iteration else "") + "---|---|")
    for k in times:
        its = f" {1 / med[k]:.2f} |" if args.iteration else ""
        _, lo, hi = intervals[k]
        print(f"| {k} | {1e3 * med[k]:.1f} |{its} {vs_ref[k]:.2f} | {paired[k]:.2f} ({lo:.2f}–{hi:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
