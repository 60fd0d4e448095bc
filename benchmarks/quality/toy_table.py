"""Toy quality table: {8gaussians, 25gaussians, swissroll} × {gan, wgan, wgan-gp, lp,
sngan} × seeds, each trained with the settings ``gantk train`` uses by default for that
loss and enforcer on that data (the preset inferred from --loss/--lipschitz plus the
toy-set recommendations, exactly as the CLI builds them), then scored as ``gantk eval``
does with N = 2500: exact W1 / real-vs-real floor, modes covered and the high-quality
share (VEEGAN/PacGAN protocol; the Gaussian mixtures only).

Also the lazy-penalty question of issue 4: ``--methods wgan-gp,gp-every-4,gp-every-8,
gp-every-16`` trains WGAN-GP with the penalty on every k-th critic step (weighted k).

Runs go to a scratch folder (``--runs``); results are appended, one JSON line per run,
to ``--results`` (default ``toy_table.jsonl`` here), and runs already there are skipped,
so an interrupted table resumes. Prints a markdown table (mean ± sd over seeds and the
per-seed values), and writes it with the run metadata to ``--json``.

    python benchmarks/quality/toy_table.py [--data 8gaussians,25gaussians,swissroll]
        [--methods gan,wgan,wgan-gp,lp,sngan] [--seeds 0,1,2] [--workers 2] [--steps N]
        [--lr-decay none|linear] [--lr LR] [--g-depth K] [--ema DECAY] [--lr-floor F] [--no-run] [--also OTHER.jsonl]

A results row counts for a table only when it ran with the settings that table asks
for (steps, lr schedule, lr and generator depth: the defaults of the day unless the
flags say otherwise), so rows from older defaults stay in the file and can still be
tabulated with the flags that name them.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from gantk.eval import DEFAULT_DRAWS, FLOOR_DRAWS  # noqa: E402

#: method → the CLI flags it stands for (as make_config keywords)
METHODS = {
    "gan": {"loss": "minimax", "lipschitz": "none"},
    "wgan": {"loss": "wasserstein", "lipschitz": "clip"},
    "wgan-gp": {"loss": "wasserstein", "lipschitz": "gp"},
    "lp": {"loss": "wasserstein", "lipschitz": "lp"},
    "sngan": {"loss": "hinge", "lipschitz": "sn"},
    "gp-every-4": {"loss": "wasserstein", "lipschitz": "gp", "penalty_every": 4},
    "gp-every-8": {"loss": "wasserstein", "lipschitz": "gp", "penalty_every": 8},
    "gp-every-16": {"loss": "wasserstein", "lipschitz": "gp", "penalty_every": 16},
}
N_EVAL = 2500


def run_one(job: dict) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_one(job)
    finally:
        torch.set_num_threads(threads)


def _run_one(job: dict) -> dict:
    from gantk.resolve import make_config
    from gantk.training import Trainer

    kw = dict(_flags(job), data=job["data"], seed=job["seed"], out=job["runs"],
              name=f"{job['data']}-{job['method']}-s{job['seed']}-{int(time.time())}",
              checkpoint_every=0, image_every=0, log_every=100, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(**kw)
        t0 = time.perf_counter()
        tr = Trainer(cfg)
        res = tr.train()
    seconds = time.perf_counter() - t0
    n = job.get("n", N_EVAL)
    draws = job.get("draws", DEFAULT_DRAWS)
    # as gantk eval: the weight average when the run kept one (--ema), and then the raw
    # generator's numbers beside it
    score = _score(tr.sample_generator, tr.c.latent_dim, job["data"], n, draws)
    if tr.G_ema is not None:
        raw = _score(tr.G, tr.c.latent_dim, job["data"], n, draws)
        score["raw"] = {k: raw[k] for k in ("w1_ratio", "modes_covered", "hq_share") if k in raw}
    return {**{k: job[k] for k in ("data", "method", "seed")}, "steps": cfg.steps, "seconds": round(seconds, 1),
            "n_eval": n, "config": json.loads(cfg.to_json()), "run": str(res.run_dir), **score}


def _score(G, latent_dim: int, data: str, n: int, draws: int) -> dict:
    """Score a generator as ``gantk eval --draws DRAWS -n N`` does (eval seed 0)."""
    from gantk.eval import ToyProtocol, score_generator
    from gantk.plugins import get_registry

    proto = ToyProtocol(get_registry("dataset").get(data)(), n, 0, draws=draws)
    score = score_generator(proto, G, latent_dim, n, 0)
    return {**score, "w1_ratio": score["w1_over_floor"]}  # the name older rows use


def rescore(row: dict, draws: int) -> dict | None:
    """``row`` scored again with the current protocol from its run's last checkpoint
    (None when the run folder is gone); training numbers (seconds, config) are kept."""
    import torch

    from gantk.sampling import load_generator

    if not Path(row["run"]).is_dir():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        G, ck, _, latent = load_generator(row["run"], torch.device("cpu"))
    if ck.step != row["steps"]:
        return None
    keep = {k: row[k] for k in ("data", "method", "seed", "steps", "seconds", "n_eval", "config", "run")}
    return {**keep, **_score(G, latent, row["data"], row["n_eval"], draws), "rescored": True}


def _overrides(job: dict) -> dict:
    out = {k: job[k] for k in ("steps", "lr_decay", "lr", "penalty_every", "batch_size") if job.get(k)}
    for k in ("ema", "lr_floor"):  # 0 (off) is a value here
        if job.get(k) is not None:
            out[k] = job[k]
    if job.get("g_depth") is not None:
        out["model_options"] = {"g_depth": job["g_depth"]}
    return out


def _flags(job: dict) -> dict:
    """The make_config keywords of a job: the flags, then the method's own (a method's
    penalty_every, as in gp-every-k, wins over --penalty-every)."""
    return {**_overrides(job), **METHODS[job["method"]]}


def current_floor_pairs(data: str, n: int) -> int:
    """Real-vs-real pairs the floor ``gantk eval`` uses now for ``data`` at N = ``n``:
    the shipped floor's (gantk/default_plugins/w1_floors.json) where there is one, else FLOOR_DRAWS."""
    from gantk.eval import shipped_floor
    from gantk.plugins import get_registry

    shipped = shipped_floor(get_registry("dataset").get(data)(), n)
    return shipped[2] if shipped else FLOOR_DRAWS


def eval_of(row: dict) -> tuple:
    """How a row was scored: (generated draws W1 is averaged over, real pairs its floor
    is averaged over). Rows from before averaging were scored with one of each."""
    return (int(row.get("w1_draws", 1)), int(row.get("w1_floor_draws", 1)))


def settings_of(config: dict) -> tuple:
    """The settings that tell rows of different defaults apart: (steps, lr_decay, lr,
    generator depth (0 = the critic's), critic width, generator width (0 = the
    critic's), penalty_every, batch size, weight-average decay, lr floor). Rows from
    before a field existed get its old value (constant lr, the 3 × 512 networks, the
    penalty on every step, no average, a decay down to 0)."""
    mo = config.get("model_options", {})
    return (config["steps"], config.get("lr_decay", "none"), float(config["lr"]), int(mo.get("g_depth", 0)),
            int(mo.get("width", 512)), int(mo.get("g_width", 0)), int(config.get("penalty_every", 1)),
            int(config.get("batch_size", 256)), float(config.get("ema", 0.0)), float(config.get("lr_floor", 0.0)))


def expected_settings(job: dict) -> tuple:
    """:func:`settings_of` the config ``gantk train`` would use for this job (the toy
    sets recommend their own), so a results row can be matched to the current defaults."""
    from gantk.resolve import make_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(**_flags(job), data=job["data"])
    return settings_of(json.loads(cfg.to_json()))


def _fmt(vals, fmt):
    if not vals:
        return "–"
    m = statistics.fmean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt.format(m)} ± {fmt.format(sd)} ({', '.join(fmt.format(v) for v in vals)})"


def table(rows: list[dict], datas, methods) -> str:
    out = ["| data | method | seeds | W1 / floor | modes | high quality % | train s |",
           "|---|---|---|---|---|---|---|"]
    for d in datas:
        for m in methods:
            rs = sorted((r for r in rows if r["data"] == d and r["method"] == m), key=lambda r: r["seed"])
            if not rs:
                continue
            modes = [r["modes_covered"] for r in rs if "modes_covered" in r]
            hq = [100 * r["hq_share"] for r in rs if "hq_share" in r]
            n_modes = rs[0].get("n_modes")
            out.append(f"| {d} | {m} | {len(rs)} | {_fmt([r['w1_ratio'] for r in rs], '{:.2f}')} "
                       f"| {_fmt(modes, '{:.1f}') + f' of {n_modes}' if modes else '–'} | {_fmt(hq, '{:.1f}')} "
                       f"| {statistics.fmean(r['seconds'] for r in rs):.0f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="8gaussians,25gaussians,swissroll")
    ap.add_argument("--methods", default="gan,wgan,wgan-gp,lp,sngan")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=None, help="generator steps (default: gantk's default)")
    ap.add_argument("--lr-decay", default=None, choices=["none", "linear"],
                    help="learning-rate schedule (default: gantk's default for the data)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: gantk's default)")
    ap.add_argument("--g-depth", type=int, default=None,
                    help="mlp generator depth, 0 = the critic's (default: gantk's default for the data)")
    ap.add_argument("--penalty-every", type=int, default=None,
                    help="penalty on every k-th critic step (default: gantk's default for the data and method)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="samples per batch (default: gantk's default for the data and method)")
    ap.add_argument("--ema", type=float, default=None,
                    help="generator weight average decay, 0 = off (default: gantk's default for the data and method)")
    ap.add_argument("--lr-floor", type=float, default=None,
                    help="the linear decay held at this fraction of lr (default: gantk's default)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--n", type=int, default=N_EVAL, help="samples scored (and real samples for the floor)")
    ap.add_argument("--draws", type=int, default=None,
                    help=f"generated sets W1 is averaged over (default {DEFAULT_DRAWS}, as gantk eval)")
    ap.add_argument("--floor-draws", type=int, default=None,
                    help=f"real pairs of the floor (default: the shipped floor's where gantk has one for "
                         f"the data at --n, else {FLOOR_DRAWS}; {FLOOR_DRAWS} tabulates rows scored before the "
                         "shipped floors, 1 rows scored before averaging, with --draws 1)")
    ap.add_argument("--rescore", action="store_true",
                    help="score rows with these settings but another scoring again from their runs' "
                         "checkpoints (appended as new rows) instead of training them")
    ap.add_argument("--no-run", action="store_true", help="only tabulate what --results (and --also) hold")
    ap.add_argument("--also", default="", help="more results files to read (comma-separated), never written")
    ap.add_argument("--runs", default="/tmp/gantk-toy-table")
    ap.add_argument("--results", default=str(HERE / "toy_table.jsonl"))
    ap.add_argument("--json", required=True,
                    help="the table file to write, named by what it holds (e.g. toy_table_methods.json)")
    args = ap.parse_args(argv)
    datas = [d for d in args.data.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results = Path(args.results)
    done = []
    for path in [results, *(Path(p) for p in args.also.split(",") if p)]:
        if path.exists():
            done += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    draws = args.draws or DEFAULT_DRAWS
    current = {d: current_floor_pairs(d, args.n) for d in datas}  # what scoring now uses
    scoring = {d: (draws, args.floor_draws or current[d]) for d in datas}
    key = lambda r: (r["data"], r["method"], r["seed"], settings_of(r["config"]), r.get("n_eval", N_EVAL),  # noqa: E731
                     eval_of(r))
    given = {"steps": args.steps, "lr_decay": args.lr_decay, "lr": args.lr, "g_depth": args.g_depth,
             "penalty_every": args.penalty_every, "batch_size": args.batch_size, "ema": args.ema,
             "lr_floor": args.lr_floor}
    want = {(d, m): expected_settings({"data": d, "method": m, **given}) for d in datas for m in methods}
    have = {key(r) for r in done}
    jobs = [{"data": d, "method": m, "seed": s, **given, "runs": args.runs, "n": args.n, "draws": draws}
            for s in seeds for d in datas for m in methods if (d, m, s, want[d, m], args.n, scoring[d]) not in have]
    print(f"{len(jobs)} runs to do, {len(have)} already in {results}", flush=True)
    if args.rescore and any(scoring[d][1] != current[d] for d in datas):
        ap.error(f"--rescore scores with the current floor ({', '.join(f'{d}: {current[d]}' for d in datas)} pairs)")

    def record(rec):
        with results.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        done.append(rec)
        print(f"{rec['data']:12s} {rec['method']:12s} seed {rec['seed']}: W1/floor {rec['w1_ratio']:.2f} "
              f"modes {rec.get('modes_covered', '-')} hq {rec.get('hq_share', float('nan')):.3f} "
              f"({rec['seconds']:.0f} s)" + (f"; raw weights W1/floor {rec['raw']['w1_ratio']:.2f} "
                                             f"hq {rec['raw'].get('hq_share', float('nan')):.3f}"
                                             if "raw" in rec else ""), flush=True)

    if args.rescore:  # instead of training: score earlier runs of the same settings again
        todo = {(j["data"], j["method"], j["seed"]) for j in jobs}
        for r in reversed(list(done)):  # newest first: the run folder most likely still there
            k = (r["data"], r["method"], r["seed"])
            if k in todo and settings_of(r["config"]) == want[k[:2]] and r.get("n_eval", N_EVAL) == args.n:
                new = rescore(r, draws)
                if new is not None:
                    todo.discard(k)
                    record(new)
    if args.no_run or args.rescore:
        jobs = []

    if jobs and args.workers <= 1:  # in this process, one after another
        for job in jobs:
            record(run_one(job))
    elif jobs:  # one fresh process per run, each on one thread
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.workers, maxtasksperchild=1) as pool:
            for rec in pool.imap_unordered(run_one, jobs):
                record(rec)
    rows, seen = [], set()
    for r in done:  # the first result of each run (two runners may have appended the same one)
        if (r["data"] in datas and r["method"] in methods and r["seed"] in seeds
                and key(r)[3] == want[r["data"], r["method"]] and r.get("n_eval", N_EVAL) == args.n
                and eval_of(r) == scoring[r["data"]] and key(r) not in seen):
            seen.add(key(r))
            rows.append(r)
    text = table(rows, datas, methods)
    print(text)
    from gantk.benchmarking import run_metadata

    Path(args.json).write_text(json.dumps({"meta": run_metadata("cpu"), "n_eval": args.n, "rows": rows,
                                           "table": text}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
