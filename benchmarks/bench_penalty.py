"""Is the fused gradient penalty faster than what users write, and how close to the
memory-bandwidth floor is each way of computing it?

One step = interpolation x̂ = ε·real + (1−ε)·fake, the norm-penalty forward on a
gradient-shaped tensor g (a leaf standing in for ∇ₓD(x̂)), and its backward ∂pen/∂g.
The critic is left out: it costs the same on every path. Variants, side by side:

  (a) user     eps*real + (1-eps)*fake; g.view(B,-1).norm(2, dim=1); ((n-1)**2).mean();
               autograd backward — WGAN-GP as usually written
  (b) ref      gantk.ops with impl="ref" (pure PyTorch, hand-written backward)
  (c) compile  torch.compile of (a)'s interpolation and penalty head (inductor);
               noted as missing when compilation fails
  (d) ext      gantk.ops with impl="ext" (the fused C++/CUDA kernels)

Floor: a step must read real and fake and write x̂ (3), read g (1), read g and write
∂/∂g (2): 6·B·N·elem_size bytes, divided by the copy bandwidth measured in the same run.

    python benchmarks/bench_penalty.py [--quick] [--device cpu|cuda|all] [--graph]

Writes benchmarks/results/penalty-<device>.json and prints a markdown table.

On a GPU the eager timings are bound by the host (Python, autograd and kernel launches
cost more than the kernels at every shape listed). ``--graph`` (CUDA only) captures each
variant's whole step, autograd call included, in a CUDA graph and times its replays:
the device time of each variant's kernels, which is what the bandwidth floor is about.
It writes penalty-cuda-graph.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
try:
    import gantk.ops.penalty as P
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parent))
    import gantk.ops.penalty as P

from common import memory_bandwidth, run_metadata, timeit  # noqa: E402

from gantk.benchmarking import user_step  # noqa: E402

SHAPES = [(256, 2), (64, 1, 28, 28), (64, 3, 32, 32), (64, 3, 64, 64), (64, 3, 128, 128), (32, 3, 256, 256)]
QUICK_SHAPES = [(256, 2), (64, 3, 32, 32), (64, 3, 128, 128)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
VARIANTS = ["a_user", "b_ref", "c_compile", "d_ext"]
LABELS = {"a_user": "(a) user", "b_ref": "(b) ref", "c_compile": "(c) compile", "d_ext": "(d) ext"}


def make_variants(real, fake, g, compiled):
    def a():
        x_hat, pen = user_step(real, fake, g)
        (dg,) = torch.autograd.grad(pen, g)
        return x_hat, dg

    def gantk_step(impl):
        def step():
            x_hat, _ = P.interpolate(real, fake, impl=impl)
            pen, _ = P.gradient_norm_penalty(g, impl=impl)
            (dg,) = torch.autograd.grad(pen, g)
            return x_hat, dg

        return step

    def c():
        x_hat, pen = compiled(real, fake, g)
        (dg,) = torch.autograd.grad(pen, g)
        return x_hat, dg

    return {"a_user": a, "b_ref": gantk_step("ref"), "c_compile": c, "d_ext": gantk_step("ext")}


def graphed(fn):
    """``fn`` captured in a CUDA graph (after warm-up calls on a side stream, as
    torch.cuda.graph requires); returns the replay callable and the graph."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay, graph


def bench_device(device: str, shapes, dtypes, min_time: float, skip: set[str], graph: bool = False) -> dict:
    meta = run_metadata(device)
    bw = memory_bandwidth(device, mbytes=256 if device == "cpu" else 1024)
    print(f"# {device}: {meta['device_name']}; copy bandwidth {bw['bytes_per_s'] / 1e9:.1f} GB/s", flush=True)
    compiled = None
    compile_note = None
    if "c_compile" not in skip:
        try:
            from torch import _dynamo  # (not `import torch._dynamo`: that would make torch local here)

            _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 64)
            compiled = torch.compile(user_step, dynamic=False)
        except Exception as e:  # a missing baseline is a note, never a crash
            compile_note = f"torch.compile unavailable: {type(e).__name__}: {e}"
    rows = []
    for dname, dtype in dtypes.items():
        for shape in shapes:
            gen = torch.Generator(device=device).manual_seed(0)
            real = torch.randn(shape, generator=gen, device=device, dtype=dtype)
            fake = torch.randn(shape, generator=gen, device=device, dtype=dtype)
            g = (torch.randn(shape, generator=gen, device=device, dtype=dtype) * 0.05).requires_grad_(True)
            b = shape[0]
            n = real.numel() // b
            nbytes = 6 * b * n * real.element_size()
            floor_s = nbytes / bw["bytes_per_s"]
            fns = make_variants(real, fake, g, compiled)
            results = {}
            for v in VARIANTS:
                row = {"device": device, "dtype": dname, "shape": list(shape), "variant": v,
                       "bytes": nbytes, "floor_s": floor_s}
                if v in skip:
                    row["missing"] = "skipped (--skip)"
                elif v == "c_compile" and compiled is None:
                    row["missing"] = compile_note or "torch.compile unavailable"
                else:
                    try:
                        fn, keep = fns[v], None
                        if graph:
                            fn, keep = graphed(fn)
                        t = timeit(fn, device=device, min_time=min_time,
                                   warmup=3 if v != "c_compile" else 2)
                        del keep
                        row.update(t)
                        results[v] = t["median"]
                    except Exception as e:  # note it and go on
                        row["missing"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
                        if v == "c_compile":
                            traceback.print_exc(limit=1)
                rows.append(row)
            base = results.get("a_user")
            for row in rows[-len(VARIANTS):]:
                if "median" in row:
                    row["speedup_vs_a"] = base / row["median"] if base else None
                    row["floor_fraction"] = floor_s / row["median"]
            line = "  ".join(
                f"{LABELS[v]} {results[v] * 1e3:8.3f} ms" if v in results else f"{LABELS[v]}   missing"
                for v in VARIANTS
            )
            print(f"{dname:8s} {str(tuple(shape)):18s} floor {floor_s * 1e3:7.3f} ms  {line}", flush=True)
    return {"meta": meta, "bandwidth": bw, "compile_note": compile_note, "rows": rows,
            "timing": "cuda-graph replay" if graph else "eager"}


def table(result: dict) -> str:
    """Markdown: per case, each variant's median (IQR), speedup vs (a), % of floor."""
    bw = result["bandwidth"]["bytes_per_s"]
    out = [
        f"Device: {result['meta']['device_name']} ({result['meta']['device']}, "
        f"{result.get('timing', 'eager')} timing); "
        f"copy bandwidth {bw / 1e9:.1f} GB/s; floor = 6·B·N·elem_size bytes / bandwidth.",
        "",
        "| dtype | shape (B, …) | bytes moved | floor ms | " + " | ".join(LABELS[v] + " ms (IQR)" for v in VARIANTS)
        + " | " + " | ".join(LABELS[v] + " ×(a)" for v in VARIANTS[1:]) + " | (d) % of floor |",
        "|" + "---|" * (4 + 2 * len(VARIANTS)),
    ]
    rows = result["rows"]
    for i in range(0, len(rows), len(VARIANTS)):
        group = {r["variant"]: r for r in rows[i:i + len(VARIANTS)]}
        r0 = rows[i]
        cells = [r0["dtype"], "×".join(map(str, r0["shape"])), f"{r0['bytes'] / 1e6:.2f} MB", f"{r0['floor_s'] * 1e3:.3f}"]
        for v in VARIANTS:
            r = group[v]
            cells.append(f"{r['median'] * 1e3:.3f} (±{r['iqr'] * 1e3 / 2:.3f})" if "median" in r else "missing")
        for v in VARIANTS[1:]:
            r = group[v]
            cells.append(f"{r['speedup_vs_a']:.2f}" if r.get("speedup_vs_a") else "–")
        d = group["d_ext"]
        cells.append(f"{100 * d['floor_fraction']:.0f}%" if "floor_fraction" in d else "–")
        out.append("| " + " | ".join(cells) + " |")
    notes = sorted({r["missing"] for r in rows if "missing" in r})
    if notes:
        out += ["", "Missing: " + "; ".join(notes)]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="three shapes, shorter timing")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--skip", default="", help="comma-separated variants to leave out (e.g. c_compile)")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for penalty-<device>.json")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds of repeats per cell (default 1.0, 0.3 with --quick)")
    ap.add_argument("--cpu-isa", type=int, default=-1, choices=[-1, 0, 1, 2],
                    help="cap the fused op's CPU loops at this instruction set (0 baseline, 1 AVX2, "
                         "2 AVX-512; default -1: the best the CPU has), for A/B runs")
    ap.add_argument("--graph", action="store_true",
                    help="CUDA only: time CUDA-graph replays of each variant (device time, no host overhead)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)

    from gantk.ops import _ext

    ok, reason = _ext.available("cpu")
    if not ok:
        print(f"note: the extension is unavailable ({reason}); (d) will be missing", file=sys.stderr)
    cpu_isa = torch.ops.gantk._cpu_set_isa(args.cpu_isa) if ok else None
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if args.graph and args.device != "cuda":
        ap.error("--graph needs --device cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            print("no CUDA device", file=sys.stderr)
            return 1
        devices.remove("cuda")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for device in devices:
        result = bench_device(device, shapes, DTYPES, min_time=args.min_time or (0.3 if args.quick else 1.0), skip=skip,
                              graph=args.graph)
        result["quick"] = args.quick
        result["cpu_isa"] = cpu_isa  # 0 baseline, 1 AVX2, 2 AVX-512 (the fused op's CPU loops)
        result["ext_status"] = {k: v for k, v in _ext.status().items() if k != "error_detail"}
        path = out_dir / f"penalty-{device}{'-graph' if args.graph else ''}.json"
        path.write_text(json.dumps(result, indent=1))
        print()
        print(table(result))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
