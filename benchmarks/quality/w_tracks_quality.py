"""Does the critic's estimate follow sample quality? Two real gantk training runs on
``8gaussians`` (the WGAN paper's Figures 3 and 4 argument, Arjovsky et al. 2017).

1. **WGAN-GP** (``loss="wasserstein", lipschitz="gp"``; the toy sets' defaults gantk
   applies: λ = 0.1, Adam 1e-3, β = (0.5, 0.9), n_critic 5) with
   :class:`gantk.eval.EvalCallback` attached: every K steps it records the exact W1
   of N generated points to N fresh real points (``w1``), the real-vs-real floor
   (``w1_floor``) and the critic's own estimate ``critic_w`` = E[D(real)] − E[D(fake)].
   The paper's claim (Fig. 3): the critic's estimate falls as the samples improve.
   Measured by Spearman's rank correlation of ``critic_w`` with ``w1``.

2. **Standard GAN** (``preset="gan"``: minimax BCE loss on logits, no constraint,
   Adam 2e-4, β = (0.5, 0.999), n_critic 1) with the same EvalCallback for exact W1
   and :class:`JSEstimate` below for the discriminator's Jensen–Shannon estimate

       JS_est = log 2 + ½ (E_real[log σ(D(x))] + E_fake[log(1 − σ(D(G(z))))]),

   on held-out real samples (drawn fresh from the data set's generator with a seed of
   their own) and fresh fakes (new latents at every evaluation). With the optimal
   discriminator this is JS(P_r, P_g); for any other it is a lower bound of it (the
   variational bound of Goodfellow et al. 2014, Nowozin et al. 2016), up to sampling
   error. Both expectations are ≤ 0, so JS_est ≤ log 2 always, for any D and any
   samples; it has no lower bound (a discriminator wrong on held-out data gives
   JS_est < 0). The paper's argument (Fig. 4): the JS estimate does not track quality.

Both runs use the MLP of the toy sets, by default at width 256 (gantk's default is 512;
halved for time) and depth 3, seed 0, batch 256, and the same number of generator steps.

Writes ``w_tracks_quality.png`` (two panels: each run's estimate and exact W1 against
step, twin axes), ``w_tracks_quality.json`` (records, correlations, configs, run
metadata) and prints a markdown table (copied into RESULTS.md).

    python benchmarks/quality/w_tracks_quality.py [--steps 2000] [--every 50] [--n 1000] [--width 256]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from common import run_metadata  # also puts a checkout's gantk on the path

from gantk.resolve import make_config
from gantk.eval import EvalCallback, generate
from gantk.plugins import get_registry
from gantk.training import Callback, Trainer

LOG2 = math.log(2)
DATA = "8gaussians"
#: seed offsets of JSEstimate's own samples: distinct from the training data (cfg.seed),
#: EvalCallback's real samples (1000 + seed, 1001 + seed) and its latents (seed)
REAL_SEED = 2000
FAKE_SEED = 3_000_000


class JSEstimate(Callback):
    """Every ``every`` steps (and at the last), the discriminator's JS estimate on ``n``
    held-out real samples and ``n`` fresh fakes; kept in :attr:`records`.

    D outputs logits (gantk's minimax loss is softplus(−r) + softplus(f), i.e.
    −log σ(r) − log(1 − σ(f))), so log σ(r) = −softplus(−r) and log(1 − σ(f)) =
    −softplus(f), both computed stably. Both networks run in eval mode under no_grad and
    their modes are restored; the real samples come from a private ``torch.Generator``
    and the latents from :func:`gantk.eval.generate` (its own seeded generator), so
    the trainer's random streams are untouched: a run trains exactly as without it."""

    def __init__(self, every: int, n: int, seed: int = 0):
        self.every, self.n, self.seed = every, n, seed
        self.trainer = None
        self.records: list[dict[str, Any]] = []

    def on_start(self, trainer) -> None:
        self.trainer = trainer
        cfg = trainer.cfg
        ds = get_registry("dataset").get(cfg.data)(**cfg.data_options)
        g = torch.Generator().manual_seed(REAL_SEED + self.seed)
        self.real = ds.generate(self.n, g).to(trainer.device)

    def on_step(self, step: int) -> None:
        if self.trainer is None:
            return
        if step % self.every == 0 or step >= self.trainer.cfg.steps:
            self.records.append({"step": step, **self.estimate(step)})

    @torch.no_grad()
    def estimate(self, step: int) -> dict[str, Any]:
        tr = self.trainer
        # new latents at every evaluation (seeded by the step), never the trainer's stream
        fake = generate(tr.G, tr.c.latent_dim, self.n, FAKE_SEED + 1000 * self.seed + step, tr.device)
        if not torch.isfinite(fake).all():
            return {"js_est": None, "error": "the generator produced NaN or infinite samples"}
        D = tr.D
        was = D.training
        D.eval()
        try:
            r = torch.cat([D(x).double().reshape(-1) for x in self.real.split(1024)])
            f = torch.cat([D(x.to(tr.device)).double().reshape(-1) for x in fake.split(1024)])
        finally:
            D.train(was)
        log_d_real = -F.softplus(-r).mean()      # E_real[log σ(D(x))]
        log_1m_d_fake = -F.softplus(f).mean()    # E_fake[log(1 − σ(D(G(z))))]
        return {
            "js_est": float(LOG2 + 0.5 * (log_d_real + log_1m_d_fake)),
            "e_log_d_real": float(log_d_real),
            "e_log_1m_d_fake": float(log_1m_d_fake),
            "d_real": float(torch.sigmoid(r).mean()),  # mean σ(D) on real / fake
            "d_fake": float(torch.sigmoid(f).mean()),
        }


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's ρ of two paired sequences; None with fewer than 3 points or a
    constant sequence (undefined)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    rho = float(spearmanr(a, b).statistic)
    return rho if math.isfinite(rho) else None


def paired(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float], list[float]]:
    """Steps, ``key`` values and ``w1`` values of the records that have both (finite)."""
    rows = [(r["step"], r[key], r["w1"]) for r in records
            if isinstance(r.get(key), (int, float)) and isinstance(r.get("w1"), (int, float))
            and math.isfinite(r[key]) and math.isfinite(r["w1"])]
    return [s for s, _, _ in rows], [v for _, v, _ in rows], [w for _, _, w in rows]


def correlations(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """ρ(key, w1) over all evaluation points and over the second half of the run (after
    the first fast fall of W1, which alone can make ρ large)."""
    steps, est, w1 = paired(records, key)
    half = [i for i, s in enumerate(steps) if s > steps[-1] / 2] if steps else []
    return {
        "points": len(steps),
        "spearman": spearman(est, w1),
        "points_second_half": len(half),
        "spearman_second_half": spearman([est[i] for i in half], [w1[i] for i in half]),
    }


def train_run(label: str, cfg, args) -> dict[str, Any]:
    """Train one run with EvalCallback (and JSEstimate for the GAN); the merged records."""
    cfg.name = label
    ev = EvalCallback(every=args.every, n=args.n, seed=args.seed)
    callbacks: list[Callback] = [ev]
    js = None
    if cfg.loss == "minimax":
        js = JSEstimate(every=args.every, n=args.n, seed=args.seed)
        callbacks.append(js)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the toy sets' recommendation notes
        result = Trainer(cfg, callbacks=callbacks).train()
    seconds = time.perf_counter() - t0
    recs = [dict(r) for r in ev.records]
    if js is not None:
        by_step = {r["step"]: r for r in js.records}
        for r in recs:
            r.update({k: v for k, v in by_step.get(r["step"], {}).items() if k != "step"})
    print(f"{label}: {result.step} steps, {len(recs)} evaluations, {seconds:.0f} s "
          f"(evaluation {sum(r.get('seconds', 0) for r in ev.records):.0f} s)", flush=True)
    return {"config": json.loads(cfg.to_json()), "seconds": round(seconds, 1), "records": recs,
            "run_dir": str(result.run_dir)}


def plot(runs: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    panels = (("wgan-gp", "critic_w", "WGAN-GP critic: E[D(real)] − E[D(fake)]", "C0"),
              ("gan", "js_est", "GAN discriminator: JS estimate (nats)", "C3"))
    for ax, (label, key, name, color) in zip(axes, panels):
        run = runs[label]
        steps, est, w1 = paired(run["records"], key)
        ax.plot(steps, est, "o-", color=color, ms=3, lw=1.3, label=name)
        ax.set_xlabel("generator step")
        ax.set_ylabel(name, color=color)
        ax.tick_params(axis="y", colors=color)
        if key == "js_est":
            ax.axhline(LOG2, color=color, ls=":", lw=1, label="log 2 (disjoint supports, optimal D)")
            ax.axhline(0.0, color="0.5", ls=":", lw=0.8)
        ax2 = ax.twinx()
        ax2.plot(steps, w1, "s-", color="k", ms=3, lw=1.1, label="exact W1 to real data")
        floor = run["records"][-1].get("w1_floor")
        if floor is not None:
            ax2.axhline(floor, color="k", ls="--", lw=0.8, label=f"W1 floor (real vs real) {floor:.3f}")
        ax2.set_ylabel(f"exact W1 (N = {run['records'][-1].get('n', 0)})")
        ax2.set_ylim(bottom=0)
        c = run["correlation"]
        rho = "–" if c["spearman"] is None else f"{c['spearman']:+.2f}"
        ax.set_title(f"{label} on {DATA}: Spearman ρ({key}, W1) = {rho}")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt(v: Any, spec: str = ".3f") -> str:
    return "–" if v is None else format(v, spec)


def table(runs: dict[str, Any]) -> str:
    cols = ["run", "estimate", "points", "Spearman ρ(estimate, W1)", "ρ, second half",
            "first → final estimate", "first → final W1", "W1 floor", "final modes", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for label, key in (("wgan-gp", "critic_w"), ("gan", "js_est")):
        run = runs[label]
        c = run["correlation"]
        _, est, w1 = paired(run["records"], key)
        last = run["records"][-1]
        modes = f"{last['modes_covered']} / {last['n_modes']}" if "modes_covered" in last else "–"
        lines.append("| " + " | ".join([
            label, f"`{key}`", str(c["points"]), fmt(c["spearman"], "+.3f"),
            f"{fmt(c['spearman_second_half'], '+.3f')} ({c['points_second_half']} pts)",
            f"{fmt(est[0] if est else None)} → {fmt(est[-1] if est else None)}",
            f"{fmt(w1[0] if w1 else None)} → {fmt(w1[-1] if w1 else None)}",
            fmt(last.get("w1_floor")), modes, f"{run['seconds']:.0f}",
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="generator steps per run")
    ap.add_argument("--every", type=int, default=50, help="evaluate every K generator steps")
    ap.add_argument("--n", type=int, default=1000, help="samples per evaluation (exact W1 is O(N³))")
    ap.add_argument("--width", type=int, default=256, help="MLP width (gantk's default 512)")
    ap.add_argument("--depth", type=int, default=3, help="MLP hidden layers")
    ap.add_argument("--data-n", type=int, default=100_000, help="training set size")
    ap.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--runs", type=Path, default=None,
                    help="keep the run folders here (default: a temporary folder, deleted)")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for the PNG and JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    common = {"data": DATA, "data_options": {"n": args.data_n},
              "model_options": {"width": args.width, "depth": args.depth}, "steps": args.steps,
              "seed": args.seed, "device": "cpu", "checkpoint_every": 0, "image_every": 0,
              "log_every": args.every}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = args.runs or Path(tmp)
        configs = {
            # no preset named: the toy sets' recommendations apply (λ 0.1, lr 1e-3, β (0.5, 0.9))
            "wgan-gp": make_config(loss="wasserstein", lipschitz="gp", out=str(runs_dir), **common),
            "gan": make_config(preset="gan", out=str(runs_dir), **common),
        }
        runs = {label: train_run(label, cfg, args) for label, cfg in configs.items()}
    total = time.perf_counter() - t0
    for label, key in (("wgan-gp", "critic_w"), ("gan", "js_est")):
        runs[label]["estimate"] = key
        runs[label]["correlation"] = correlations(runs[label]["records"], key)
        if args.runs is None:
            runs[label].pop("run_dir")
    # the GAN's logit gap E[D(real)] − E[D(fake)] (what EvalCallback calls critic_w) as well
    runs["gan"]["correlation_logit_gap"] = correlations(runs["gan"]["records"], "critic_w")

    result = {"meta": run_metadata("cpu"), "args": {k: str(v) if isinstance(v, Path) else v
                                                     for k, v in vars(args).items()},
              "seconds_total": round(total, 1), "runs": runs}
    (args.out / "w_tracks_quality.json").write_text(json.dumps(result, indent=2))
    png = args.out / "w_tracks_quality.png"
    plot(runs, png)
    print(f"total {total:.0f} s; wrote {png}")
    print()
    print(table(runs))
    return result


if __name__ == "__main__":
    main()
