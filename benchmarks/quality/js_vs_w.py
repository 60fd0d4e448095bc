"""The WGAN paper's Example 1 (Arjovsky et al. 2017, "learning parallel lines"),
computed numerically.

Z ~ U[0, 1]; P₀ is the law of (0, Z), P_θ the law of (θ, Z): two parallel vertical
segments a distance |θ| apart. In closed form

    W1(P₀, P_θ) = |θ|,        JS(P₀, P_θ) = log 2 if θ ≠ 0, else 0.

W1 is continuous in θ and its gradient always points towards θ = 0; JS jumps at θ = 0
and is flat everywhere else, so a generator trained on it gets no signal.

Computed here:

* **W1 from samples** — the exact W1 between N points of each distribution
  (independent Z's; :func:`gantk.eval.metrics.wasserstein1`, an optimal assignment). It
  follows |θ| up to the finite-sample floor (the value at θ = 0).
* **JS after smoothing** — the two segments are singular (no density), so JS is only
  reachable through a smoothed version: both laws convolved with N(0, s²) along x (the
  "instance noise" of Arjovsky & Bottou 2017). The Z coordinate is shared and drops
  out, leaving JS(N(0, s²), N(θ, s²)), integrated numerically on a fine grid. For every
  θ ≠ 0 it tends to log 2 as s → 0; its slope vanishes once |θ| ≫ s.

Writes ``js_vs_w.png`` (distances and their slopes against θ), ``js_vs_w.json`` and
prints a markdown table (copied into RESULTS.md).

    python benchmarks/quality/js_vs_w.py [--n 1000] [--points 41]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import run_metadata  # noqa: E402  (also puts a checkout's gantk on the path)

from gantk.eval.metrics import wasserstein1  # noqa: E402

SMOOTHING = (0.1, 0.03, 0.01, 0.001)
LOG2 = math.log(2)


def js_smoothed(theta: float, s: float, grid: int = 40_001) -> float:
    """JS(N(0, s²), N(θ, s²)) in nats by the trapezoidal rule on ±12 s around both
    means."""
    lo, hi = min(0.0, theta) - 12 * s, max(0.0, theta) + 12 * s
    x = np.linspace(lo, hi, grid)
    p = np.exp(-0.5 * (x / s) ** 2) / (s * math.sqrt(2 * math.pi))
    q = np.exp(-0.5 * ((x - theta) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kp = np.where(p > 0, p * np.log(p / m), 0.0)
        kq = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.clip(0.5 * np.trapezoid(kp, x) + 0.5 * np.trapezoid(kq, x), 0.0, LOG2))


def w1_samples(theta: float, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    a = np.column_stack([np.zeros(n), rng.uniform(size=n)])
    b = np.column_stack([np.full(n, theta), rng.uniform(size=n)])
    return wasserstein1(a, b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="points per distribution for W1")
    ap.add_argument("--points", type=int, default=41, help="θ values in [-1, 1]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    thetas = np.linspace(-1.0, 1.0, args.points)
    thetas = np.unique(np.concatenate([thetas, [-0.01, 0.0, 0.01]]))  # see the jump up close
    t0 = time.perf_counter()
    w1 = [w1_samples(float(t), args.n, args.seed) for t in thetas]
    t_w1 = time.perf_counter() - t0
    js = {s: [js_smoothed(float(t), s) if t != 0 else 0.0 for t in thetas] for s in SMOOTHING}
    js_limit = [0.0 if t == 0 else LOG2 for t in thetas]

    # slopes by central differences on a fine θ grid (for the right panel)
    fine = np.linspace(-1.0, 1.0, 801)
    fine = fine[np.abs(fine) > 1e-9]
    eps = 1e-4
    slope_js = {s: [abs(js_smoothed(t + eps, s) - js_smoothed(t - eps, s)) / (2 * eps) for t in fine]
                for s in SMOOTHING}

    result = {
        "meta": run_metadata("cpu"),
        "n": args.n, "seed": args.seed, "seconds_w1": round(t_w1, 2),
        "theta": thetas.tolist(), "w1_samples": w1, "w1_exact": np.abs(thetas).tolist(),
        "js_limit": js_limit, "js_smoothed": {str(s): v for s, v in js.items()},
    }
    (args.out / "js_vs_w.json").write_text(json.dumps(result, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    ax.plot(thetas, np.abs(thetas), color="C0", lw=2, label="W1 = |θ| (closed form)")
    ax.plot(thetas, w1, "o", color="C0", ms=4, label=f"W1 from {args.n} + {args.n} samples (exact assignment)")
    ax.step(thetas, js_limit, where="mid", color="C3", lw=2, label="JS = log 2 · [θ ≠ 0] (closed form)")
    for i, s in enumerate(SMOOTHING):
        ax.plot(thetas, js[s], "--", color=plt.cm.Reds(0.35 + 0.15 * i), lw=1.3, label=f"JS, smoothed s = {s}")
    ax.set_xlabel("θ (distance between the lines)")
    ax.set_ylabel("distance (nats for JS)")
    ax.set_title("WGAN Example 1: parallel lines (0, Z) and (θ, Z)")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    ax.set_ylim(-0.05, 1.45)

    ax2.plot(fine, np.ones_like(fine), color="C0", lw=2, label="|dW1/dθ| = 1")
    for i, s in enumerate(SMOOTHING):
        ax2.plot(fine, np.maximum(slope_js[s], 1e-12), color=plt.cm.Reds(0.35 + 0.15 * i), lw=1.3,
                 label=f"|dJS/dθ|, s = {s}")
    ax2.set_yscale("log")
    ax2.set_ylim(1e-10, 1e3)
    ax2.set_xlabel("θ")
    ax2.set_title("slope: the training signal a generator would get")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png = args.out / "js_vs_w.png"
    fig.savefig(png, dpi=110)

    print(f"W1 from samples: {t_w1:.1f} s for {len(thetas)} θ values at N = {args.n}; wrote {png}")
    print()
    cols = ["θ", "W1 = \\|θ\\|", f"W1, samples (N = {args.n})", "JS (closed form)"] + [f"JS, s = {s}" for s in SMOOTHING]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for t in (0.0, 0.01, 0.05, 0.1, 0.5, 1.0):
        i = int(np.argmin(np.abs(thetas - t)))
        if abs(thetas[i] - t) > 1e-9:
            continue
        row = [f"{t:g}", f"{abs(t):.3f}", f"{w1[i]:.3f}", f"{js_limit[i]:.4f}"] + [f"{js[s][i]:.4f}" for s in SMOOTHING]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
