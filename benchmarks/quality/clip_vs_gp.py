"""Figure 1 of the WGAN-GP paper (Gulrajani et al. 2017, arXiv 1704.00028): weight
clipping against the gradient penalty in a deep critic, with gantk's own pieces.

Set-up (chosen here; the paper gives only "12-layer ReLU MLP without batch norm,
Swiss Roll"):

* **critic** — gantk's ``mlp`` critic with ``--depth`` linear layers in all
  (``depth − 1`` hidden ReLU layers of ``--width`` units, no batch norm; default 12 × 512
  as in the paper), torch's default initialisation, the same initial weights for every
  method.
* **what it is trained against** — only the critic is trained. "Real" is the
  ``swissroll`` data set (``--n`` = 100,000 points, ``load(seed)``); "fake" are as many
  samples of a *fixed*, randomly initialised gantk ``mlp`` generator (3 × 512, latent 2,
  never trained). Every method sees the same sequence of real / fake batches.
* **loss** — the Wasserstein critic loss E[D(fake)] − E[D(real)], plus for the penalty
  ``gantk.ops.gradient_penalty`` (λ = 10, k = 1, the paper's values).
* **optimisers** — weight clipping (``get_registry("lipschitz").get("clip")(c=…)`` and
  its ``after_critic_step``, for c ∈ {0.1, 0.01, 0.001}): RMSProp, lr 5e-5 (the WGAN
  paper). The clip is applied once before the first step as well, so the critic is
  inside [−c, c] from the start. Gradient penalty: Adam, lr 1e-4, β = (0, 0.9) (the
  WGAN-GP paper).

Measured after ``--steps`` critic steps, on ``--eval-batches`` fresh batches (the same
for every method):

(a) the norm of the gradient of the Wasserstein loss (the penalty term left out, for
    every method alike) with respect to each linear layer's weight matrix, layer 1 =
    the input layer; the mean of log10 over the batches. Also stored (and drawn): the
    same at initialisation (dotted) and the trained weights re-evaluated in float64
    (dashed) — the clipped critics' gradients are so small that float32 rounding of
    their nearly constant activations dominates the output-side layers.
(b) the histogram of all linear-layer weights (biases left out) for clip c = 0.01
    (or the middle c given) and for the penalty; the share of weights within 1 % of ±c,
    at initialisation (after the first clip) and after training.
(c) ‖∇ₓD(x̂)‖ at the interpolates x̂ = εx_real + (1 − ε)x_fake (``gradient_penalty``'s
    own ``norms``), which the penalty drives towards 1.

Writes ``clip_vs_gp.png``, ``clip_vs_gp.json`` (with the run metadata) and prints a
markdown table (copied into RESULTS.md).

    python benchmarks/quality/clip_vs_gp.py [--steps 300] [--depth 12] [--width 512]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import run_metadata  # noqa: E402  (also puts a checkout's gantk on the path)

from gantk.ops import gradient_penalty  # noqa: E402
from gantk.plugins import get_registry  # noqa: E402

NEAR_C = 0.01  # "at ±c" = within 1 % of c


def linears(critic: nn.Module) -> list[nn.Linear]:
    return [m for m in critic.modules() if isinstance(m, nn.Linear)]


def all_weights(critic: nn.Module) -> torch.Tensor:
    return torch.cat([lin.weight.detach().flatten() for lin in linears(critic)])


def share_at_c(w: torch.Tensor, c: float) -> float:
    return float(((w.abs() - c).abs() <= NEAR_C * c).float().mean())


class Batches:
    """The same reproducible stream of (real, fake) batches for every method."""

    def __init__(self, real: torch.Tensor, fake: torch.Tensor, batch: int, seed: int):
        self.real, self.fake, self.batch = real, fake, batch
        self.g = torch.Generator().manual_seed(seed)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(0, self.real.shape[0], (self.batch,), generator=self.g)
        j = torch.randint(0, self.fake.shape[0], (self.batch,), generator=self.g)
        return self.real[i], self.fake[j]


def w_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[D(fake)] − E[D(real)] (gantk's wasserstein loss), real and fake scored in one forward."""
    scores = critic(torch.cat([real, fake]))
    loss = get_registry("loss").get("wasserstein")()
    return loss.critic_loss(scores[: real.shape[0]], scores[real.shape[0]:])


def measure(critic: nn.Module, real_pool, fake_pool, args) -> dict:
    """Per-layer log10 gradient norms of the W loss, ‖∇ₓD(x̂)‖ and the W estimate on
    ``args.eval_batches`` fixed batches."""
    batches = Batches(real_pool, fake_pool, args.batch, args.seed + 2)
    g_eps = torch.Generator().manual_seed(args.seed + 3)
    weights = [lin.weight for lin in linears(critic)]
    log_norms, x_norms, w_est = [], [], []
    for _ in range(args.eval_batches):
        real, fake = batches()
        loss = w_loss(critic, real, fake)
        grads = torch.autograd.grad(loss, weights)
        log_norms.append([math.log10(max(float(g.norm()), 1e-300)) for g in grads])
        w_est.append(-float(loss.detach()))
        gp = gradient_penalty(critic, real, fake, generator=g_eps)
        x_norms.append(gp.norms.detach().double())
    xn = torch.cat(x_norms)
    return {
        "log10_grad_norm_per_layer": np.mean(log_norms, axis=0).tolist(),
        "grad_x_norm_mean": float(xn.mean()),
        "grad_x_norm_std": float(xn.std()),
        "grad_x_norm_median": float(xn.median()),
        # float32 underflow: a critic this flat can have ∇ₓD exactly 0 at some points
        "grad_x_zero_share": float((xn == 0).double().mean()),
        "grad_x_norms": xn.tolist(),
        "w_estimate": float(np.mean(w_est)),
    }


def train_one(method: str, c: float | None, init_state, real_pool, fake_pool, model, args) -> dict:
    critic = model.build_critic((2,))
    critic.load_state_dict(init_state)
    if method == "clip":
        enforcer = get_registry("lipschitz").get("clip")(c=c)
        enforcer.after_critic_step(critic)  # start inside [−c, c]
        opt = torch.optim.RMSprop(critic.parameters(), lr=args.lr_clip)
    else:
        enforcer = None
        opt = torch.optim.Adam(critic.parameters(), lr=args.lr_gp, betas=(0.0, 0.9))
    at_init = measure(critic, real_pool, fake_pool, args)
    w0 = all_weights(critic)
    batches = Batches(real_pool, fake_pool, args.batch, args.seed + 1)
    g_eps = torch.Generator().manual_seed(args.seed + 4)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        real, fake = batches()
        loss = w_loss(critic, real, fake)
        if enforcer is None:
            loss = loss + gradient_penalty(critic, real, fake, weight=args.lam, generator=g_eps).penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if enforcer is not None:
            enforcer.after_critic_step(critic)
    seconds = time.perf_counter() - t0
    out = measure(critic, real_pool, fake_pool, args)
    # the same weights and batches in float64: what float32 rounding adds to the tiny
    # gradients of the clipped critics
    f64 = measure(copy.deepcopy(critic).double(), real_pool.double(), fake_pool.double(), args)
    w = all_weights(critic)
    out.update(
        method=method, c=c, seconds=round(seconds, 2),
        log10_grad_norm_per_layer_init=at_init["log10_grad_norm_per_layer"],
        grad_x_norm_mean_init=at_init["grad_x_norm_mean"],
        log10_grad_norm_per_layer_f64=f64["log10_grad_norm_per_layer"],
        grad_x_norm_mean_f64=f64["grad_x_norm_mean"], w_estimate_f64=f64["w_estimate"],
        weight_std=float(w.std()), weight_absmax=float(w.abs().max()),
        weight_change_mean_abs=float((w - w0).abs().mean()),
        share_at_c=share_at_c(w, c) if c else None,
        share_at_c_init=share_at_c(w0, c) if c else None,
        weights=w, weights_init=w0,
    )
    return out


def label(r: dict) -> str:
    return f"clip c = {r['c']:g}" if r["method"] == "clip" else f"gp λ = {r['lam']:g}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="critic steps per method")
    ap.add_argument("--depth", type=int, default=12, help="linear layers in the critic")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--clips", type=float, nargs="+", default=[0.1, 0.01, 0.001], help="clipping values c")
    ap.add_argument("--lam", type=float, default=10.0, help="gradient penalty weight λ")
    ap.add_argument("--lr-clip", type=float, default=5e-5, help="RMSProp lr under clipping")
    ap.add_argument("--lr-gp", type=float, default=1e-4, help="Adam lr under the penalty")
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--n", type=int, default=100_000, help="points in the real and in the fake pool")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    if args.depth < 2:
        ap.error("--depth must be >= 2")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    reg = get_registry
    real_pool = reg("dataset").get("swissroll")(n=args.n).load(args.seed)
    gen = reg("model").get("mlp")()  # the fixed, untrained generator: 3 × 512, latent 2
    torch.manual_seed(args.seed + 10)
    G = gen.build_generator((2,), 2)
    with torch.no_grad():
        z = torch.randn(real_pool.shape[0], 2, generator=torch.Generator().manual_seed(args.seed + 11))
        fake_pool = G(z)
    model = reg("model").get("mlp")(width=args.width, depth=args.depth - 1)
    torch.manual_seed(args.seed + 20)
    init_state = {k: v.clone() for k, v in model.build_critic((2,)).state_dict().items()}

    t0 = time.perf_counter()
    runs = []
    for c in args.clips:
        runs.append(train_one("clip", c, init_state, real_pool, fake_pool, model, args))
    runs.append(train_one("gp", None, init_state, real_pool, fake_pool, model, args))
    for r in runs:
        r["lam"] = args.lam
        r["label"] = label(r)
    total = time.perf_counter() - t0

    c_hist = args.clips[len(args.clips) // 2]  # 0.01 with the defaults
    hist_clip = next(r for r in runs if r["c"] == c_hist)
    hist_gp = runs[-1]

    result = {
        "meta": run_metadata("cpu"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds_total": round(total, 1),
        "data": "swissroll", "fake": "fixed random gantk mlp generator (3 x 512, latent 2)",
        "runs": [{k: v for k, v in r.items() if k not in ("weights", "weights_init")} for r in runs],
        "histograms": {},  # of the trained linear-layer weights, 80 bins over their range
    }
    for r in runs:
        counts, edges = np.histogram(r["weights"].numpy(), bins=80)
        result["histograms"][r["label"]] = {"counts": counts.tolist(), "edges": edges.tolist()}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 4.8))
    gs = fig.add_gridspec(2, 3, width_ratios=(1.15, 1, 1))
    ax = fig.add_subplot(gs[:, 0])
    layers = np.arange(1, args.depth + 1)
    for i, r in enumerate(runs):
        ax.plot(layers, 10 ** np.array(r["log10_grad_norm_per_layer"]), "o-", color=f"C{i}", ms=4, label=r["label"])
        ax.plot(layers, 10 ** np.array(r["log10_grad_norm_per_layer_f64"]), "--", color=f"C{i}", lw=1)
        ax.plot(layers, 10 ** np.array(r["log10_grad_norm_per_layer_init"]), ":", color=f"C{i}", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("critic layer (1 = input)")
    ax.set_ylabel("‖∂L/∂W‖, L = E[D(fake)] − E[D(real)]  (log scale)")
    lo, hi = (np.log10(v) for v in ax.get_ylim())
    ax.set_ylim(top=10 ** (hi + 0.45 * (hi - lo)))  # room for the legend
    ax.set_title(f"(a) gradient norm per layer, {args.depth} × {args.width} ReLU critic\n"
                 f"after {args.steps} critic steps", fontsize=10)
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="gray", ls="--", lw=1, label="same, evaluated in float64"),
                Line2D([], [], color="gray", ls=":", lw=1, label="at initialisation")]
    ax.legend(handles=handles, fontsize=8, ncol=2, loc="upper left")

    for row, r in enumerate((hist_clip, hist_gp)):
        axh = fig.add_subplot(gs[row, 1])
        w = r["weights"].numpy()
        counts, edges, _ = axh.hist(w, bins=80, color=f"C{runs.index(r)}", label="trained")
        axh.hist(r["weights_init"].numpy(), bins=edges, histtype="step", color="k", lw=0.8,
                 label="initial" + (" (clipped)" if r["c"] else ""))
        axh.set_yscale("log")
        axh.xaxis.set_major_locator(plt.MaxNLocator(7))
        axh.legend(fontsize=7, loc="upper right")
        txt = r["label"]
        if r["c"]:
            txt += f": {100 * r['share_at_c']:.0f} % of weights at ±c"
        if r["c"]:
            axh.text(0.5, 0.6, txt, transform=axh.transAxes, ha="center", va="center", fontsize=8)
        else:
            axh.text(0.02, 0.95, txt, transform=axh.transAxes, va="top", fontsize=8)
        axh.set_ylabel("weights")
        if row == 0:
            axh.set_title("(b) critic weights after training (log counts)", fontsize=10)
        else:
            axh.set_xlabel("weight value")

    axc = fig.add_subplot(gs[:, 2])
    for i, r in enumerate(runs):
        xn = np.asarray(r["grad_x_norms"])
        xn = xn[xn > 0]
        if xn.size:
            axc.boxplot([np.log10(xn)], positions=[i + 1], whis=(5, 95), showfliers=False, widths=0.5)
        if r["grad_x_zero_share"] > 0:
            axc.annotate(f"{100 * r['grad_x_zero_share']:.0f} % exactly 0\n(float32\nunderflow)", (i + 1, 0.75),
                         xycoords=("data", "axes fraction"), ha="center", va="center", fontsize=7)
    axc.set_xlim(0.4, len(runs) + 0.6)
    axc.set_xticks(range(1, len(runs) + 1),
                   [f"{r['label'].replace(' = ', '=')}\nmean {r['grad_x_norm_mean']:.2g}" for r in runs], fontsize=8)
    axc.axhline(0.0, color="k", ls="--", lw=1)
    axc.set_ylabel("log10 ‖∇ₓD(x̂)‖  (box: quartiles, whiskers: 5–95 % of the non-zero)")
    axc.set_title("(c) input-gradient norm at interpolates x̂\n(dashed: 1, the gp target)", fontsize=10)
    fig.tight_layout()
    png = args.out / "clip_vs_gp.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    (args.out / "clip_vs_gp.json").write_text(json.dumps(result, indent=1))

    print(f"{len(runs)} critics × {args.steps} steps, {args.depth} × {args.width}, batch {args.batch}: "
          f"{total:.0f} s; wrote {png}")
    print()
    cols = ["method", "log10 ‖∂L/∂W‖, layer 1", f"log10 ‖∂L/∂W‖, layer {args.depth}",
            f"same in float64: layer 1 / {args.depth}",
            "weights at ±c: init → trained", "‖∇D(x̂)‖ mean", "‖∇D(x̂)‖ std"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in runs:
        ln = r["log10_grad_norm_per_layer"]
        at_c = f"{100 * r['share_at_c_init']:.1f} % → {100 * r['share_at_c']:.1f} %" if r["c"] else "–"
        l64 = r["log10_grad_norm_per_layer_f64"]
        row = [r["label"], f"{ln[0]:.1f}", f"{ln[-1]:.1f}", f"{l64[0]:.1f} / {l64[-1]:.1f}", at_c,
               f"{r['grad_x_norm_mean']:.3g}", f"{r['grad_x_norm_std']:.3g}"]
        print("| " + " | ".join(row) + " |")
    return result


if __name__ == "__main__":
    main()
