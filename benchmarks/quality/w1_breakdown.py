"""Where does a toy generator's excess W1 come from: the shape of its modes (offset from
the centre, too wide or too narrow, stragglers between them) or how it shares its mass
among them?

For each run (or checkpoint) on 8gaussians or 25gaussians, scored as ``gantk eval``
does (N generated points, W1 averaged over 5 generated sets against fresh real ones,
the floor as ``gantk eval`` has it), prints

* ``w1`` / ``w1_floor``: the generator's W1 over the floor (``gantk eval``'s number);
* ``w1_weights``: an ideal generator that draws perfect real modes (centre + σ noise)
  with the generator's true mode weights, scored the same way: the cost of the weights
  alone. The weights are measured on 40 000 samples (share of all samples nearest to
  each mode), not on the N scored: N = 2500 counts carry multinomial noise of their own
  (sd 5 % of a fair share per ring mode), which the ideal generator's draws would then
  count a second time (and so make the weights look like the cause);
* ``w1_reshaped``: every generated point replaced by its nearest centre + σ noise
  (its mode kept, its place within the mode redrawn): what is left when the shapes are
  perfect. ``w1`` above this is the cost of the shapes;
* ``offset``: the mean distance of a mode's samples' mean from its centre, in σ
  (averaged over modes); ``cov``: the eigenvalues of a mode's covariance in σ²
  (averaged; real modes: 1 and 1); ``weights``: each mode's share times the number of
  modes (1 = fair share).

    python benchmarks/quality/w1_breakdown.py RUN [RUN ...] [--n 2500] [--raw] [--json]

``--raw`` scores the generator's own weights when the run kept a weight average
(``--ema``; the default scores the average, as ``gantk eval`` does). ``--perfect DATA``
scores a perfect generator instead (fresh real samples), 8 times with eval seeds 0–7,
as ``gantk eval`` does and with a single set: how far W1 / floor moves by chance alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gantk.eval import metrics  # noqa: E402
from gantk.eval import DEFAULT_DRAWS, ToyProtocol, generate, latent_seed  # noqa: E402
from gantk.plugins import get_registry  # noqa: E402
from gantk.sampling import load_generator, weights_used  # noqa: E402

BIG = 40_000  # samples that measure the weights and the shapes


def breakdown(run: str | Path, n: int = 2500, seed: int = 0, draws: int = DEFAULT_DRAWS, raw: bool = False) -> dict:
    G, ck, _, latent = load_generator(run, torch.device("cpu"), raw=raw)
    data = ck.config.data
    dataset = get_registry("dataset").get(data)()
    if getattr(dataset, "modes", None) is None:
        raise SystemExit(f"{run}: data {data!r} has no modes (8gaussians and 25gaussians do)")
    proto = ToyProtocol(dataset, n, seed, draws=draws)
    fakes = [generate(G, latent, n, latent_seed(seed, k)) for k in range(draws)]
    score = proto.score(fakes)
    centres, sigma = dataset.modes
    C = torch.as_tensor(centres, dtype=torch.float64)
    k = len(C)
    big = generate(G, latent, BIG, 10_000 + seed).double()
    dist = torch.cdist(big, C)
    near, dmin = dist.argmin(1), dist.min(1).values
    weights = torch.bincount(near, minlength=k).double() / BIG

    def ideal(m: int, g: torch.Generator, pick: torch.Tensor) -> torch.Tensor:
        return C[pick] + sigma * torch.randn(m, 2, generator=g, dtype=torch.float64)

    sets = []
    for j in range(draws):
        g = torch.Generator().manual_seed(2000 + 100 * seed + j)
        sets.append(ideal(n, g, torch.multinomial(weights, n, replacement=True, generator=g)))
    w1_weights = proto.score(sets)["w1"]
    sets = []
    for j, f in enumerate(fakes):
        g = torch.Generator().manual_seed(3000 + 100 * seed + j)
        sets.append(ideal(n, g, torch.cdist(f.double(), C).argmin(1)))
    w1_reshaped = proto.score(sets)["w1"]
    offsets, eig = [], []
    for m in range(k):
        pts = big[(near == m) & (dmin < 5 * sigma)] - C[m]
        if len(pts) >= 10:
            offsets.append(float(pts.mean(0).norm()) / sigma)
            eig.append(torch.linalg.eigvalsh(torch.cov(pts.T)).div(sigma**2).tolist())
    return {"run": str(run), "data": data, "step": ck.step, "n": n, "draws": draws,
            "weights_used": weights_used(ck, raw),
            "w1": score["w1"], "w1_floor": score["w1_floor"], "w1_weights": w1_weights, "w1_reshaped": w1_reshaped,
            "hq_share": score["hq_share"], "straggler_share": float((dmin > 3 * sigma).double().mean()),
            "offset": sum(offsets) / max(len(offsets), 1),
            "cov": [sum(e[i] for e in eig) / max(len(eig), 1) for i in (0, 1)],
            "weights": [round(float(v) * k, 3) for v in weights]}


def perfect(data: str, n: int = 2500, repeats: int = 8, draws: int = DEFAULT_DRAWS) -> dict:
    """W1 / floor of a perfect generator (fresh real samples) as ``gantk eval`` scores it,
    ``repeats`` times with eval seeds 0, 1, ...: with one generated set against one real
    set (``ratios_1``), and averaged over ``draws`` sets (``ratios``, the default)."""
    ds = get_registry("dataset").get(data)()
    ratios, ratios_1 = [], []
    for r in range(repeats):
        proto = ToyProtocol(ds, n, r, draws=draws)
        fakes = [ds.generate(n, torch.Generator().manual_seed(5000 + 100 * r + k)) for k in range(draws)]
        ratios.append(proto.score(fakes)["w1_over_floor"])
        ratios_1.append(metrics.wasserstein1(fakes[0], proto.reals[0]) / proto.floor)
    return {"data": data, "n": n, "draws": draws, "w1_floor": proto.floor, "w1_floor_sd": proto.floor_sd,
            "w1_floor_draws": proto.floor_draws, "ratios": [round(v, 3) for v in ratios],
            "ratios_1": [round(v, 3) for v in ratios_1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--perfect", metavar="DATA", help="score fresh real samples of DATA instead of runs")
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--json", action="store_true", help="one JSON line per run")
    ap.add_argument("--raw", action="store_true", help="the generator's own weights, not the run's average")
    a = ap.parse_args(argv)
    if a.perfect:
        r = perfect(a.perfect, a.n)
        print(json.dumps(r) if a.json else
              f"{a.perfect}: a perfect generator scores W1 / floor {', '.join(f'{v:.2f}' for v in r['ratios'])} "
              f"(N = {a.n}, W1 over {r['draws']} draws; one draw: {', '.join(f'{v:.2f}' for v in r['ratios_1'])}); "
              f"floor {r['w1_floor']:.4f} ± {r['w1_floor_sd']:.4f} over {r['w1_floor_draws']} pairs")
        return 0
    if not a.runs:
        ap.error("give at least one run, or --perfect DATA")
    for run in a.runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = breakdown(run, a.n, raw=a.raw)
        if a.json:
            print(json.dumps(r))
        else:
            f = r["w1_floor"]
            print(f"{r['data']} step {r['step']} ({r['weights_used']} weights): W1 {r['w1'] / f:.2f}x floor; "
                  f"ideal modes at its weights {r['w1_weights'] / f:.2f}x; its modes reshaped {r['w1_reshaped'] / f:.2f}x; "
                  f"high quality {100 * r['hq_share']:.1f} %; mode offset {r['offset']:.2f} sigma, "
                  f"cov {r['cov'][0]:.2f} {r['cov'][1]:.2f} sigma^2; "
                  f"weights x{len(r['weights'])} {min(r['weights']):.2f}-{max(r['weights']):.2f}  ({run})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
