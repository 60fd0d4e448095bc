"""Write ``gantk/default_plugins/w1_floors.json``: the real-vs-real W1 floors of the built-in toy sets
at the published N = 2500, each averaged over many pairs (``gantk eval`` uses them
instead of computing 16 pairs on first use).

Why: at N = 2500 a single real-vs-real pair on the toy mixtures varies by about a third
of the mean (the mode counts of a sample fluctuate and mass must travel between modes),
so a floor over 16 pairs is known to about ±8 %, an error every W1 / floor ratio
shares. 100 pairs bring it to about ±3 %. The pairs are the ones every floor uses
(pair k: seeds FLOOR_SEED + 2k and + 2k + 1), so the first 16 are the cached floor's.

    python benchmarks/quality/w1_floors.py [--pairs 100] [--data 8gaussians,...]

The pairs already in the file are kept and only the missing ones computed (about 2 s
per pair on one CPU core).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv=None) -> int:
    from gantk import eval as ev
    from gantk.default_plugins.datasets import W1_FLOORS
    from gantk.fsutil import atomic_path
    from gantk.plugins import get_registry

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="8gaussians,25gaussians,swissroll")
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--out", default=W1_FLOORS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        table = json.loads(open(args.out).read())
    except (OSError, ValueError):
        table = {"floors": []}
    for name in [d for d in args.data.split(",") if d]:
        ds = get_registry("dataset").get(name)()
        opts = ev.options_key(ds)
        t0 = time.perf_counter()
        # the pairs already in the table are kept (pair k is always the same)
        old = next((r["values"] for r in table["floors"] if r["data"] == name and r["n"] == args.n
                    and r.get("options") == opts and r.get("version") == ev.FLOOR_VERSION), [])
        vals = [float(v) for v in old[: args.pairs]]
        vals += ev.floor_pairs(ds, args.n, range(len(vals), args.pairs))
        rec = {"data": name, "n": args.n, "options": opts, "version": ev.FLOOR_VERSION, "pairs": len(vals),
               "mean": float(np.mean(vals)), "sd": float(np.std(vals, ddof=1)), "values": vals}
        table["floors"] = [r for r in table["floors"] if not (r["data"] == name and r["n"] == args.n)] + [rec]
        first16 = float(np.mean(vals[: ev.FLOOR_DRAWS]))
        print(f"{name}: floor {rec['mean']:.5f} ± {rec['sd'] / np.sqrt(len(vals)):.5f} (SE) over {len(vals)} pairs; "
              f"the first {ev.FLOOR_DRAWS}: {first16:.5f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    table["note"] = ("real-vs-real W1 floors at N (benchmarks/quality/w1_floors.py); values[k] is pair k, "
                     "seeds FLOOR_SEED + 2k and + 2k + 1")
    with atomic_path(args.out) as tmp:  # gantk reads this file: never half-written
        tmp.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
