"""One toy run with quality tracked along the way: the experiment behind the toy sets'
recommended learning-rate schedule (linear decay over 2000 steps).

Trains WGAN-GP on a toy set with gantk's toy defaults, changed by the flags, and every
``--every`` generator steps scores the generator (and two exponential moving averages of
its weights, decay 0.99 and 0.999) with the VEEGAN/PacGAN protocol at N = 2500. Prints
one JSON line per evaluation: ``"raw"``, ``"ema0.99"``, ``"ema0.999"`` each hold
[W1 / floor, modes covered, high-quality share].

    python benchmarks/quality/lr_schedule_sweep.py --data 25gaussians --steps 2500 \\
        --lr-decay linear --seed 0 > run.jsonl

Many of these ran side by side on one GPU for the sweep in RESULTS.md
(``lr_schedule_sweep_h100.jsonl``; that sweep set the lr inside a callback with the same
formula, 1 − step/steps, before ``--lr-decay`` existed in gantk).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gantk.resolve import make_config  # noqa: E402
from gantk.eval import ToyProtocol, generate, latent_seed  # noqa: E402
from gantk.plugins import get_registry  # noqa: E402
from gantk.training import Callback, Trainer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="25gaussians", choices=["8gaussians", "25gaussians", "swissroll"])
    ap.add_argument("--steps", type=int, default=None, help="generator steps (default: the toy default)")
    ap.add_argument("--lr-decay", default=None, choices=["none", "linear"])
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=None, help="MLP width (default 512)")
    ap.add_argument("--latent", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None, help="MLP depth (default 3)")
    ap.add_argument("--g-depth", type=int, default=None, help="MLP generator depth (default: the toy default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="any other config field, e.g. n_critic=10 or lipschitz_options={\"lambda\":1}")
    ap.add_argument("--every", type=int, default=500, help="evaluate every this many generator steps")
    ap.add_argument("--no-ema", action="store_true", help="score the generator only (faster)")
    ap.add_argument("--ema", default="0.99,0.999", help="decays of the tracked weight averages")
    ap.add_argument("--lr-floor", type=float, default=0.0,
                    help="probe: a linear decay that stops at this fraction of lr")
    ap.add_argument("--draws", type=int, default=1, help="generated sets per score (gantk eval: 5)")
    ap.add_argument("--save", help="save the final generator and its averages (state dicts) here")
    ap.add_argument("--tag", default="")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="/tmp/gantk-lr-sweep")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)  # many of these run side by side
    given = {"steps": a.steps, "lr_decay": a.lr_decay, "lr": a.lr, "latent_dim": a.latent,
             "batch_size": a.batch_size}
    kw = dict(data=a.data, loss="wasserstein", lipschitz="gp", seed=a.seed, out=a.out, device=a.device,
              log_every=0, checkpoint_every=0, image_every=0,
              **{k: v for k, v in given.items() if v is not None})
    for item in a.set:
        key, _, value = item.partition("=")
        kw[key] = json.loads(value)
    mopts = {k: v for k, v in (("width", a.width), ("depth", a.depth), ("g_depth", a.g_depth)) if v is not None}
    if mopts:
        kw["model_options"] = mopts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(**kw)
    proto = ToyProtocol(get_registry("dataset").get(a.data)(), 2500, 0, draws=a.draws)

    class Track(Callback):
        def on_start(self, tr):
            self.tr, self.t0 = tr, time.time()
            if a.lr_floor:
                decay = tr.lr_factor
                tr.lr_factor = lambda step=None: max(a.lr_floor, decay(step))
            self.emas = {} if a.no_ema else {float(d): copy.deepcopy(tr.G) for d in a.ema.split(",")}

        def on_step(self, step):
            with torch.no_grad():
                for d, ema in self.emas.items():  # with the trainer's warm-up (Trainer.update_average)
                    dt = min(d, step / (9 + step))
                    for pe, p in zip(ema.parameters(), self.tr.G.parameters()):
                        pe.lerp_(p, 1 - dt)
            if step % a.every == 0 or step == cfg.steps:
                rec = {"tag": a.tag, "data": a.data, "seed": a.seed, "step": step,
                       "t": round(time.time() - self.t0, 1)}
                for name, g in [("raw", self.tr.G)] + [(f"ema{d}", e) for d, e in self.emas.items()]:
                    s = proto.score([generate(g, self.tr.c.latent_dim, 2500, latent_seed(0, k))
                                     for k in range(a.draws)])
                    rec[name] = [round(s["w1"] / s["w1_floor"], 2), s.get("modes_covered"),
                                 round(s.get("hq_share") or 0, 3)]
                print(json.dumps(rec), flush=True)
            if a.save and step == cfg.steps:
                torch.save({name: g.state_dict() for name, g in
                            [("raw", self.tr.G)] + [(f"ema{d}", e) for d, e in self.emas.items()]}, a.save)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(cfg, callbacks=[Track()]).train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
