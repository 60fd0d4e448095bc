"""The generator's weight average (``--ema``): the update rule, checkpoints, resume, and
sampling / evaluation / pictures using the average unless ``--raw`` asks otherwise."""
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from gantk.cli import app
from gantk.training import Callback, Trainer, resume

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


class Snapshots(Callback):
    """The generator's parameters after every generator step."""

    def on_start(self, trainer):
        self.tr, self.after = trainer, []

    def on_step(self, step):
        self.after.append([p.detach().clone() for p in self.tr.G.parameters()])


def test_average_follows_the_update_rule(small_cfg):
    decay = 0.6
    tr = Trainer(small_cfg(steps=5, ema=decay))
    avg = [p.detach().clone() for p in tr.G.parameters()]  # starts at the initial weights
    snaps = Snapshots()
    tr.callbacks.append(snaps)
    tr.train()
    for t, params in enumerate(snaps.after):
        d = min(decay, (1 + t) / (10 + t))  # warm-up: 0.1, 0.18, 0.25, ... then the decay
        avg = [d * a + (1 - d) * p for a, p in zip(avg, params)]
    for a, p_avg, p_raw in zip(avg, tr.G_ema.parameters(), tr.G.parameters()):
        torch.testing.assert_close(p_avg, a)
        assert not p_avg.requires_grad
    # the average lags the weights: it is not a copy of them
    assert any(not torch.equal(a, p) for a, p in zip(tr.G_ema.parameters(), tr.G.parameters()))
    assert tr.sample_generator is tr.G_ema


def test_off_by_default_outside_the_tuned_toy_settings(small_cfg):
    tr = Trainer(small_cfg(steps=1, preset="wgan-gp"))
    assert tr.cfg.ema == 0 and tr.G_ema is None and tr.sample_generator is tr.G
    res = tr.train()
    assert not any(k.startswith("generator_ema.") for k in load_file(res.checkpoint))


def test_checkpoint_holds_the_average_and_loaders_use_it(small_cfg, tmp_path):
    from gantk.eval import evaluate
    from gantk.sampling import load_generator

    tr = Trainer(small_cfg(steps=4, ema=0.5))
    res = tr.train()
    t = load_file(res.checkpoint)
    for k, v in tr.G_ema.state_dict().items():
        assert torch.equal(t[f"generator_ema.{k}"], v)
    for k, v in tr.G.state_dict().items():
        assert torch.equal(t[f"generator.{k}"], v)
    z = torch.randn(16, tr.c.latent_dim)
    G, *_ = load_generator(res.run_dir)
    G_raw, *_ = load_generator(res.run_dir, raw=True)
    with torch.no_grad():
        assert torch.equal(G(z), tr.G_ema(z))
        assert torch.equal(G_raw(z), tr.G.eval()(z))
        assert not torch.equal(G(z), G_raw(z))
    a = evaluate(res.run_dir, n=300, draws=1, cache=tmp_path / "c")
    b = evaluate(res.run_dir, n=300, draws=1, cache=tmp_path / "c", raw=True)
    assert (a["weights"], b["weights"]) == ("ema", "raw")
    assert a["w1"] != b["w1"]


def test_resume_continues_the_average(tmp_path, small_cfg):
    straight = Trainer(small_cfg(steps=4, name="a", out=str(tmp_path), lr_decay="none", ema=0.7)).train()
    half = Trainer(small_cfg(steps=2, name="b", out=str(tmp_path), lr_decay="none", ema=0.7)).train()
    resumed = resume(half.run_dir, {"steps": 4})
    a, b = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    assert a.keys() == b.keys() and any(k.startswith("generator_ema.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cli_sample_and_eval_choose_the_weights(tmp_path):
    out = tmp_path / "runs"
    res = run("train", "--data", "8gaussians", "-O", "data.n=512", "-O", "model.width=16", "--steps", 3,
              "--batch-size", 32, "--device", "cpu", "--ema", 0.9, "--out", out, "--name", "r")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "r" / "config.json").read_text())["ema"] == 0.9
    s_avg = run("sample", out / "r", "-n", 8, "-o", tmp_path / "a.safetensors")
    s_raw = run("sample", out / "r", "-n", 8, "-o", tmp_path / "b.safetensors", "--raw")
    assert s_avg.exit_code == 0 and s_raw.exit_code == 0, s_avg.output + s_raw.output
    assert "(weight average)" in s_avg.stdout and "(weight average)" not in s_raw.stdout
    xa, xb = load_file(tmp_path / "a.safetensors"), load_file(tmp_path / "b.safetensors")
    assert torch.equal(xa["latents"], xb["latents"]) and not torch.equal(xa["samples"], xb["samples"])
    e = run("eval", out / "r", "-n", 300, "--draws", 1, "--raw", "--json")
    assert e.exit_code == 0, e.output
    assert json.loads(e.stdout)["weights"] == "raw"
    table = run("eval", out / "r", "-n", 300, "--draws", 1)
    assert "weight average" in table.stdout


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_bad_decay_is_one_line(tmp_path, value):
    from _helpers import assert_clean_error

    res = run("train", "--steps", 1, "--ema", value, "--out", tmp_path / "o")
    assert_clean_error(res, 2, "--ema must lie in [0, 1)")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
