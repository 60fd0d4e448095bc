"""Where does a training iteration's time go? ``torch.profiler`` over whole generator
iterations (5 critic steps + 1 generator step) of gantk's Trainer (per ``--amp`` mode)
and of the WGAN-GP authors' loop on the same networks, the operators' own (self) CPU
time grouped as

* **matmuls**: ``mm``, ``addmm``, ``bmm``, ``linear``/oneDNN matmul kernels, convolutions;
* **optimizer**: the Adam update (fused or foreach kernels and their elementwise ops,
  counted under ``Optimizer.step``);
* **elementwise and reductions**: every other ATen kernel (ReLU and its backward,
  gradient accumulation, bias sums, casts, the penalty's norm);
* **autograd and Python**: the rest of the wall time (the autograd engine, dispatch,
  the step's Python), i.e. wall time minus the kernels' self time.

    python benchmarks/profile_step.py [--case toy-mlp] [--iterations 5] [--amp auto]

Writes benchmarks/results/profile-<case>-<device>.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import HERE, N_CRITIC, run_metadata
from common import iteration as whole_iteration
from torch.profiler import ProfilerActivity, profile

from gantk.benchmarking import STEP_CASES, ReferenceLoop, step_case_trainer

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::_convolution", "aten::mkldnn_convolution",
          "aten::convolution_backward", "aten::_mkldnn_matmul", "mkldnn::", "aten::cudnn_convolution")


def _optimizer_events(prof) -> set[int]:
    """Ids of the events that run inside an ``Optimizer.step`` range."""
    ranges = [(e.time_range.start, e.time_range.end) for e in prof.events() if e.name.startswith("Optimizer.step")]
    return {id(e) for e in prof.events() if any(a <= e.time_range.start and e.time_range.end <= b for a, b in ranges)}


def breakdown(fn, iterations: int) -> dict[str, float]:
    for _ in range(3):
        fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(iterations):
            fn()
        wall = time.perf_counter() - t0
    opt = _optimizer_events(prof)
    cats = {"matmuls": 0.0, "optimizer": 0.0, "elementwise and reductions": 0.0}
    for e in prof.events():
        if not e.name.startswith(("aten::", "mkldnn::")) or e.self_cpu_time_total <= 0:
            continue
        s = e.self_cpu_time_total / 1e6
        if id(e) in opt:
            cats["optimizer"] += s
        elif e.name.startswith(MATMUL):
            cats["matmuls"] += s
        else:
            cats["elementwise and reductions"] += s
    # the profiler's kernels run on torch's intra-op threads but are recorded on the
    # calling thread, so their self times add up to at most the wall time
    cats["autograd and Python"] = max(wall - sum(cats.values()), 0.0)
    return {"wall_s_per_iteration": wall / iterations, **{k: v / iterations for k, v in cats.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default="toy-mlp", choices=sorted(STEP_CASES))
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--amp", action="append", default=[], choices=["auto", "bf16", "fp16"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="gantk-prof-"))
    tr = step_case_trainer(args.case, tmp, args.device)
    fns = {"gantk": whole_iteration(tr.critic_step, tr.generator_step)}
    for amp in args.amp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = step_case_trainer(args.case, tmp, args.device, amp=amp)
        fns[f"gantk --amp {amp}" + (f" (= {t.cfg.amp})" if amp == "auto" else "")] = whole_iteration(t.critic_step,
                                                                                             t.generator_step)
    ref = ReferenceLoop.like(tr)
    fns["reference"] = whole_iteration(ref.critic_step, ref.generator_step)
    rows = {k: breakdown(f, args.iterations) for k, f in fns.items()}
    meta = run_metadata(args.device)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"profile-{args.case}-{args.device}.json").write_text(
        json.dumps({"meta": meta, "case": args.case, "iterations": args.iterations, "rows": rows}, indent=1))
    cats = [k for k in next(iter(rows.values())) if k != "wall_s_per_iteration"]
    print(f"{meta['device_name']}, {meta['torch_threads']} threads, {args.case}, ms per iteration (share)")
    print("| variant | iteration ms | " + " | ".join(cats) + " |")
    print("|---|---|" + "---|" * len(cats))
    for k, r in rows.items():
        w = r["wall_s_per_iteration"]
        print(f"| {k} | {1e3 * w:.1f} | " + " | ".join(f"{1e3 * r[c]:.1f} ({100 * r[c] / w:.0f} %)" for c in cats) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
