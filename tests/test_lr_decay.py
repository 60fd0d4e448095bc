"""The learning-rate schedule (``lr_decay``) and the toy sets' recommended settings."""
from __future__ import annotations

import json
import signal
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from safetensors.torch import load_file

from gantk.config import TrainConfig
from gantk.resolve import make_config
from gantk.errors import UsageError
from gantk.errors import TrainingInterrupted
from gantk.training import Callback, Trainer, resume
from gantk.training.rundir import new_run_dir as _new_run_dir


class LrLog(Callback):
    """The learning rates each iteration ran with (read after it, before the next is set)."""

    def __init__(self, stop_at: int | None = None):
        self.seen: list[tuple[float, float]] = []
        self.stop_at = stop_at

    def on_start(self, trainer):
        self.tr = trainer

    def on_step(self, step):
        self.seen.append((self.tr.opt_g.param_groups[0]["lr"], self.tr.opt_d.param_groups[0]["lr"]))
        if step == self.stop_at:
            self.tr._stop_signal = signal.SIGTERM  # as if the process were sent SIGTERM here


def _trainer(cfg, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg, **kw)


@pytest.mark.parametrize("decay,factors", [("linear", [1, 0.75, 0.5, 0.25]), ("none", [1, 1, 1, 1])])
def test_schedule_sets_both_optimizers(small_cfg, decay, factors):
    log = LrLog()
    tr = _trainer(small_cfg(steps=4, lr=0.01, lr_decay=decay, lr_floor=0), callbacks=[log])
    tr.train()
    assert log.seen == [pytest.approx((0.01 * f, 0.01 * f)) for f in factors]
    assert tr.lr_factor(4) == (0.0 if decay == "linear" else 1.0)
    logged = [json.loads(line) for line in tr.metrics_path.read_text().splitlines()]
    if decay == "linear":  # metrics.jsonl records the lr each logged step ran with
        assert [r["lr"] for r in logged] == pytest.approx([0.01 * f for f in factors])
    else:
        assert all("lr" not in r for r in logged)


def test_floor_holds_the_decay(small_cfg):
    log = LrLog()
    tr = _trainer(small_cfg(steps=5, lr=0.01, lr_decay="linear", lr_floor=0.5), callbacks=[log])
    tr.train()
    # 1 - step/5 until it reaches 0.5, then 0.5 to the end
    assert [g for g, _ in log.seen] == pytest.approx([0.01, 0.008, 0.006, 0.005, 0.005])
    assert tr.lr_factor(5) == 0.5
    with pytest.raises(UsageError, match=r"--lr-floor must lie in \[0, 1\), got 1.0"):
        small_cfg(lr_floor=1.0)


def test_decayed_run_stopped_and_resumed_equals_straight_run(small_cfg, tmp_path):
    straight = _trainer(small_cfg(steps=4, name="a", out=str(tmp_path), lr_decay="linear", lr_floor=0)).train()
    log = LrLog(stop_at=2)
    with pytest.raises(TrainingInterrupted):
        _trainer(small_cfg(steps=4, name="b", out=str(tmp_path), lr_decay="linear", lr_floor=0), callbacks=[log]).train()
    after = LrLog()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = resume(tmp_path / "b", callbacks=[after])
    lr = json.loads((straight.run_dir / "config.json").read_text())["lr"]
    assert [g for g, _ in log.seen + after.seen] == pytest.approx([lr, 0.75 * lr, 0.5 * lr, 0.25 * lr])
    a, b = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_toy_sets_recommend_linear_decay_and_their_networks_but_presets_keep_the_paper():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(data="25gaussians", loss="wasserstein", lipschitz="gp")
        # gp's lazy penalty buys a batch of 512 for 4500 steps (replacing every method's 6000)
        assert (cfg.lr_decay, cfg.steps, cfg.batch_size, cfg.lr, cfg.penalty_every) == (
            "linear", 4500, 512, 2e-3, 4)
        # the decay held at 0.3 lr, and the generator's weight average sampled
        assert (cfg.lr_floor, cfg.ema) == (0.3, 0.99)
        assert any(n.startswith("ema = 0.99 (recommended for 25gaussians with wgan-gp and gp") for n in cfg.notes)
        steps_notes = [n for n in cfg.notes if n.startswith("steps = ")]  # the narrowest scope, once
        assert steps_notes == ["steps = 4500 (recommended for 25gaussians with wgan-gp and gp; "
                               "--steps overrides, --preset uses the paper's)"]
        # applied although no model was named: a 3 x 256 critic and a 4 x 512 generator
        assert cfg.model_options == {"width": 256, "g_width": 512, "g_depth": 4}
        assert any("lr_decay = linear" in n for n in cfg.notes)
        assert any("model option g_depth = 4" in n for n in cfg.notes)
        assert any("penalty_every = 4 (recommended for 25gaussians with wgan-gp" in n for n in cfg.notes)
        mine = make_config(data="8gaussians", steps=300, lr_decay="none", penalty_every=1)
        assert (mine.lr_decay, mine.steps, mine.penalty_every) == ("none", 300, 1)  # the user wins
        # the networks are one choice: any model option given and none is recommended
        shaped = make_config(data="8gaussians", model_options={"width": 64})
        assert shaped.model_options == {"width": 64} and not any("model option" in n for n in shaped.notes)
        roll = make_config(data="swissroll")  # no modes to sharpen: the paper's networks, every-step penalty
        assert (roll.lr, roll.model_options, roll.lr_decay, roll.steps, roll.penalty_every) == (
            1e-3, {}, "linear", 2000, 1)
        paper = make_config("wgan-gp", data="25gaussians")
        assert (paper.lr_decay, paper.steps, paper.lr, paper.model_options, paper.penalty_every) == (
            "none", 1000, 1e-4, {}, 1)
        assert (paper.lr_floor, paper.ema, roll.lr_floor, roll.ema) == (0.0, 0.0, 0.0, 0.0)


def test_toy_optimizer_settings_tuned_for_wgan_gp_stay_with_it():
    from gantk.presets import PRESETS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lp = make_config(data="25gaussians", lipschitz="lp")  # lp runs under the wgan-gp preset
        assert (lp.lr, lp.betas, lp.lipschitz_options) == (2e-3, (0.5, 0.9), {"lambda": 0.1})
        for loss, lip, preset in (("wasserstein", "clip", "wgan"), ("minimax", "none", "gan"), ("hinge", "sn", "sngan")):
            cfg = make_config(data="8gaussians", loss=loss, lipschitz=lip)
            p = PRESETS[preset]
            assert cfg.preset == preset
            # the paper's optimizer, the data set's budget, schedule and generator
            assert (cfg.optimizer, cfg.lr, cfg.betas, cfg.n_critic) == (p["optimizer"], p["lr"], p["betas"], p["n_critic"])
            assert (cfg.steps, cfg.batch_size, cfg.lr_decay, cfg.penalty_every) == (6000, 256, "linear", 1)
            assert (cfg.lr_floor, cfg.ema) == (0.0, 0.0)
            assert cfg.model_options == {"width": 256, "g_width": 512, "g_depth": 4}
            assert not any("with wgan-gp" in n for n in cfg.notes)
        # the toy settings were tuned with gp and lp only: another enforcer under the
        # wgan-gp preset (a plugin's, here the no-op one) keeps the paper's optimizer, its
        # own options and its penalty on every step; only the data's budget applies
        other = make_config(data="8gaussians", loss="wasserstein", lipschitz="none")
        assert (other.preset, other.lr, other.betas, other.penalty_every, other.steps, other.batch_size) == (
            "wgan-gp", 1e-4, (0.0, 0.9), 1, 6000, 256)
        assert other.lipschitz_options == {}
        lp8 = make_config(data="8gaussians", lipschitz="lp")
        assert (lp8.penalty_every, lp8.steps, lp8.batch_size) == (4, 4500, 512)
        gp = make_config(data="8gaussians")
        assert any(n.startswith("lr = 0.002 (recommended for 8gaussians with wgan-gp") for n in gp.notes)


def test_bad_schedule_is_a_usage_error(small_cfg):
    with pytest.raises(UsageError, match="--lr-decay must be none or linear, got 'cosine'"):
        small_cfg(lr_decay="cosine")


def test_runs_saved_before_lr_decay_keep_a_constant_lr():
    d = json.loads(TrainConfig().to_json())
    del d["lr_decay"]
    assert TrainConfig.from_json(json.dumps(d)).lr_decay == "none"


def test_runs_started_together_get_their_own_folders(tmp_path):
    cfg = TrainConfig(out=str(tmp_path), name="same")
    with ThreadPoolExecutor(8) as pool:
        dirs = list(pool.map(lambda _: _new_run_dir(cfg), range(24)))
    assert len(set(dirs)) == 24 and all(d.is_dir() for d in dirs)
