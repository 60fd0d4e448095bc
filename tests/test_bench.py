"""The benchmark helpers run and report sane figures (no timing assertions)."""
import math
import random

import pytest

from gantk.benchmarking import ReferenceLoop, bench_penalty_quick, bench_steps, timeit


def test_timer_reports_median_and_spread():
    t = timeit(lambda: sum(range(100)), min_time=0.01, min_repeat=5)
    assert t["n"] >= 5 and t["min"] <= t["median"] and t["iqr"] >= 0


def test_step_and_penalty_benchmarks_run(tmp_path):
    rows = bench_steps(("toy-mlp",), min_time=0.01, workdir=tmp_path, model_options={"width": 16})
    (r,) = rows
    assert r["gantk_iter_per_s"] > 0 and r["reference_iter_per_s"] > 0 and math.isfinite(r["speedup"])
    assert 0 < r["penalty_share"]
    pen = bench_penalty_quick(shapes=((8, 2),), min_time=0.01)
    assert pen[0]["user"] > 0 and pen[0]["ref"] > 0


def test_reference_loop_trains_like_the_trainer(small_cfg):
    """The reference loop is a faithful WGAN-GP: its critic separates real from fake."""
    import copy

    import torch

    from gantk.training import Trainer

    tr = Trainer(small_cfg())
    loop = ReferenceLoop(copy.deepcopy(tr.G), copy.deepcopy(tr.D), tr.c.data, tr.c.latent_dim, 64, 1e-3, (0.0, 0.9), 10.0)
    for _ in range(30):
        loop.critic_step()
    real = tr.c.data[:256]
    with torch.no_grad():
        fake = loop.G(torch.randn(256, tr.c.latent_dim))
        assert loop.D(real).mean() > loop.D(fake).mean()


def test_levers_are_timed_with_their_settings(tmp_path, monkeypatch):
    """Each lever runs a Trainer built with its overrides, averaged over k critic steps."""
    from gantk import training as train_mod

    built = []
    real_init = train_mod.Trainer.__init__

    def spy(self, cfg, **kw):
        built.append((cfg.penalty_every, cfg.joint_forward))
        real_init(self, cfg, **kw)

    monkeypatch.setattr(train_mod.Trainer, "__init__", spy)
    levers = {"sep": {"joint_forward": False}, "lazy": {"penalty_every": 4}}
    (r,) = bench_steps(("toy-mlp",), min_time=0.01, workdir=tmp_path, model_options={"width": 16}, levers=levers)
    assert built == [(1, True), (1, False), (4, True)]
    assert set(r["levers"]) == {"sep", "lazy"}
    for lv in r["levers"].values():
        assert lv["critic_s"] > 0 and math.isfinite(lv["speedup"]) and lv["iter_per_s"] > 0


def test_a_lever_the_case_cannot_take_is_a_note(tmp_path):
    levers = {"channels-last": {"channels_last": True}}
    (r,) = bench_steps(("toy-mlp",), min_time=0.01, workdir=tmp_path, model_options={"width": 16}, levers=levers)
    assert "--channels-last needs image data" in r["levers"]["channels-last"]["missing"]


def test_interleaved_step_ab_times_every_variant(tmp_path, capsys, monkeypatch):
    import json
    import os

    monkeypatch.delenv("GANTK_FORCE_REF", raising=False)
    script = _step_ab_script(monkeypatch)
    assert script.main(["--case", "toy-mlp", "--rounds", "1", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "step-ab-toy-mlp-cpu.json").read_text())
    assert set(res["times_s"]) == {"gantk", "gantk-one-backward", "gantk-separate-forward",
                                   "gantk-autograd-penalty", "reference"}
    assert "GANTK_FORCE_REF" not in os.environ  # the autograd variant sets it only around its own calls
    assert all(len(v) == 2 and min(v) > 0 for v in res["times_s"].values())
    assert res["speedup_vs_reference"]["reference"] == 1.0
    assert "| gantk-one-backward |" in capsys.readouterr().out
    lo, hi = res["paired_speedup_95_interval"]["gantk"]
    assert lo <= res["paired_speedup_vs_reference"]["gantk"] <= hi


def _step_ab_script(monkeypatch):
    from pathlib import Path

    from _helpers import load_script

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))  # the script imports benchmarks/common.py
    return load_script(bench / "bench_step_ab.py", "bench_step_ab")


def test_paired_interval_brackets_the_ratio_and_narrows_with_rounds(monkeypatch):
    script = _step_ab_script(monkeypatch)
    # a variant exactly 1.5x as fast in every pair: no spread at all
    ref = [0.3, 0.33, 0.29, 0.4]
    assert script.paired_interval(ref, [r / 1.5 for r in ref]) == pytest.approx((1.5, 1.5, 1.5))
    # noisy pairs around 1.25: the interval holds the median, contains 1.25, and shrinks
    rng = random.Random(3)

    def pairs(n):
        ref = [rng.uniform(0.2, 0.3) for _ in range(n)]
        return ref, [r / (1.25 * rng.lognormvariate(0, 0.08)) for r in ref]

    med, lo, hi = script.paired_interval(*pairs(20))
    assert lo < med < hi and lo < 1.25 < hi
    med2, lo2, hi2 = script.paired_interval(*pairs(400))
    assert lo2 < 1.25 < hi2 and (hi2 - lo2) < (hi - lo) / 2


def test_paired_interval_resamples_whole_rounds(monkeypatch):
    script = _step_ab_script(monkeypatch)
    # a slow spell hits a round's two pairs together (here: the same ratio); resampling
    # single pairs would count them as independent and give a narrower interval
    rng = random.Random(5)
    ref, t = [], []
    for _ in range(30):
        ratio = 1.25 * rng.lognormvariate(0, 0.1)
        ref += [1.0, 1.0]
        t += [1.0 / ratio, 1.0 / ratio]
    _, lo, hi = script.paired_interval(ref, t, per_round=2)
    _, lo1, hi1 = script.paired_interval(ref, t, per_round=1)
    assert (hi - lo) > 1.2 * (hi1 - lo1)
