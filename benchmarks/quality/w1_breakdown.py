"""Where does a toy generator's excess W1 come from: the shape of its modes (stragglers
between them, modes too wide or too narrow) or how it shares its mass among them?

For each run (or checkpoint) on 8gaussians or 25gaussians, scored as ``gantk eval``
does (N generated points from latent seed 0 against N fresh real points), prints

* ``w1``: the exact W1 of the generator, and ``w1_floor``, real against real;
* ``w1_weights``: the exact W1 of an ideal generator that draws perfect real modes
  (centre + σ noise) but with the generator's mode weights — the share of its
  high-quality samples on each mode (mean over 5 draws). What this leaves above the
  floor is the cost of the weights alone; what ``w1`` adds on top is the cost of the
  shapes;
* ``weights``: each mode's share times the number of modes (1 = fair share).

    python benchmarks/quality/w1_breakdown.py RUN [RUN ...] [--n 2500] [--json]

``--perfect DATA`` scores a perfect generator instead (fresh real samples), 8 times with
eval seeds 0–7, as ``gantk eval`` does (W1 averaged over 5 generated sets, the floor
over 16 real pairs) and with a single set: how far W1 / floor moves by chance alone.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gantk import metrics  # noqa: E402
from gantk.evaluate import DEFAULT_DRAWS, ToyProtocol, generate  # noqa: E402
from gantk.plugins import get_registry  # noqa: E402
from gantk.sample import load_generator  # noqa: E402


def breakdown(run: str | Path, n: int = 2500, seed: int = 0, draws: int = 5) -> dict:
    G, ck, _, latent = load_generator(run, torch.device("cpu"))
    data = ck.config.data
    if data not in metrics.TOY_MODES:
        raise SystemExit(f"{run}: data {data!r} has no modes (8gaussians and 25gaussians do)")
    proto = ToyProtocol(get_registry("dataset").get(data)(), n, seed)
    fake = generate(G, latent, n, seed)
    score = proto.score(fake)
    centres, sigma = metrics.TOY_MODES[data]
    counts = torch.tensor(metrics.mode_stats(fake, centres, sigma)["mode_counts"], dtype=torch.float64)
    k = len(counts)
    if counts.sum() == 0:  # no sample near any mode: no weights to speak of
        return {"run": str(run), "data": data, "step": ck.step, "n": n, "w1": score["w1"],
                "w1_floor": score["w1_floor"], "w1_weights": None, "hq_share": 0.0, "weights": [0.0] * k}
    weights = counts / counts.sum()
    w1_weights = []
    for draw in range(draws):  # a W1 between samples is noisy at this N: average a few draws
        g = torch.Generator().manual_seed(2000 + 100 * seed + draw)
        pick = torch.multinomial(weights, n, replacement=True, generator=g)
        ideal = torch.as_tensor(centres, dtype=torch.float64)[pick] + sigma * torch.randn(
            n, 2, generator=g, dtype=torch.float64)
        w1_weights.append(metrics.wasserstein1(ideal, proto.real))
    w1_weights = sum(w1_weights) / draws
    return {"run": str(run), "data": data, "step": ck.step, "n": n, "w1": score["w1"], "w1_floor": score["w1_floor"],
            "w1_weights": w1_weights, "hq_share": score["hq_share"],
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
            r = breakdown(run, a.n)
        if a.json:
            print(json.dumps(r))
        else:
            f = r["w1_floor"]
            if r["w1_weights"] is None:
                print(f"{r['data']} step {r['step']}: W1 {r['w1'] / f:.2f}x floor; no high-quality samples  ({run})")
                continue
            print(f"{r['data']} step {r['step']}: W1 {r['w1'] / f:.2f}x floor; ideal modes at its weights "
                  f"{r['w1_weights'] / f:.2f}x; high quality {100 * r['hq_share']:.1f} %; "
                  f"mode weights x{len(r['weights'])} from {min(r['weights']):.2f} to {max(r['weights']):.2f}  ({run})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
