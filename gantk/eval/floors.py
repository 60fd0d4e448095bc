"""The real-vs-real W1 floor of the toy sets: what a perfect generator scores at N.

One pair of real samples is a noisy yardstick, so a floor is the mean over many pairs:
shipped with the built-in sets at the published N (``w1_floors.json`` beside them,
written by ``benchmarks/quality/w1_floors.py``), else computed over
:data:`FLOOR_DRAWS` pairs and cached."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..fsutil import atomic_path, user_cache_dir
from . import metrics

#: real-vs-real pairs a computed floor averages (cached per data set and N; bump the
#: version when the sampling of the pairs changes)
FLOOR_DRAWS = 16
FLOOR_SEED = 2_000_000
FLOOR_VERSION = 1
#: generated draws ``gantk eval`` averages W1 over by default, and the stride between
#: their latent seeds
DEFAULT_DRAWS = 5
DRAW_STRIDE = 100_003


def latent_seed(seed: int, draw: int) -> int:
    """The latent seed of generated draw ``draw`` (draw 0 uses ``seed`` itself)."""
    return seed + DRAW_STRIDE * draw


def options_key(dataset) -> str:
    """The data set's options as the floors (cached and shipped) are keyed by."""
    return json.dumps(getattr(dataset, "opts", {}), sort_keys=True, default=str)


def shipped_floor(dataset, n: int) -> tuple[float, float, int] | None:
    """(mean, sd, pairs) of the floor shipped for this data set (with these options) at
    N = ``n``, or None. The floors file is the one the data set's class declares in its
    own body (``w1_floors``): a subclass, or a plugin's data set of the same name, may
    draw other samples and never gets it."""
    path = type(dataset).__dict__.get("w1_floors")
    if not path:
        return None
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    for rec in table.get("floors", []):
        if (rec.get("version") == FLOOR_VERSION and rec.get("data") == dataset.name and rec.get("n") == n
                and rec.get("options") == options_key(dataset)):
            vals = [float(v) for v in rec["values"]]
            return float(np.mean(vals)), float(np.std(vals, ddof=1)), len(vals)
    return None


def floor_pairs(dataset, n: int, pairs: range | list[int]) -> list[float]:
    """W1 of the real-vs-real pairs numbered ``pairs`` (pair k: seeds FLOOR_SEED + 2k
    and + 2k + 1), the pairs every floor of this data set at N averages."""

    def sample(m: int, s: int) -> torch.Tensor:
        return dataset.generate(m, torch.Generator().manual_seed(s))

    return [metrics.wasserstein1_floor(sample, n, FLOOR_SEED + 2 * k) for k in pairs]


def toy_w1_floor(dataset, n: int, draws: int = FLOOR_DRAWS, *, cache: str | Path | None = None
                 ) -> tuple[float, float]:
    """The real-vs-real W1 floor at N = ``n`` for a toy set: the mean (and the standard
    deviation) of W1 between two independent real samples over ``draws`` pairs.

    It is what a perfect generator scores on average. One pair is a noisy yardstick: at
    N = 2500 on 25gaussians, single pairs range over about ±25 % of the mean (the
    samples' mode counts fluctuate, and mass must then travel between modes), so a
    ratio to one pair mostly measures the pair. The floor depends only on the data and
    N, so it is computed once and cached (``cache``, default the user cache's ``eval``
    folder)."""
    opts = options_key(dataset)
    key = f"{dataset.name}-n{n}-d{draws}-{hashlib.sha1(opts.encode()).hexdigest()[:8]}"
    path = Path(cache) if cache is not None else user_cache_dir("eval")
    path = path / f"w1-floor-{FLOOR_VERSION}-{key}.json"
    try:
        rec = json.loads(path.read_text())
        return float(rec["mean"]), float(rec["sd"])
    except (OSError, ValueError, KeyError, TypeError):
        pass

    vals = floor_pairs(dataset, n, range(draws))
    mean, sd = float(np.mean(vals)), float(np.std(vals, ddof=1)) if draws > 1 else 0.0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"data": dataset.name, "n": n, "draws": draws, "mean": mean, "sd": sd,
                                       "values": vals}))
    except OSError:  # a read-only cache costs time, never the result
        pass
    return mean, sd


def ratio_se(w1: float, w1_sd: float, draws: int, floor: float, floor_sd: float, floor_draws: int) -> float:
    """Standard error of W1 / floor, both means of independent draws (first-order
    propagation of the two standard errors of the mean).

    At N = 2500 it is large: single draws on the toy mixtures spread over about a third
    of the floor (the mode counts of a sample fluctuate, and mass must then travel
    between modes), so a ratio over 5 draws is known to about ±0.1."""
    ratio = w1 / floor
    return float(math.sqrt(w1_sd**2 / draws + (ratio * floor_sd) ** 2 / floor_draws) / floor)
