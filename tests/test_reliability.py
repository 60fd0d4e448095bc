"""Stopping, divergence and rotation: no finished work is lost."""
import os
import signal
import subprocess
import sys
import time

import torch
from typer.testing import CliRunner

import gantk
from gantk import hookimpl
from gantk.checkpoint import list_checkpoints, load_checkpoint
from gantk.cli import app
from gantk.plugins import register_plugin, unregister_plugin

runner = CliRunner()


class NaNAfter(gantk.Loss):
    """Wasserstein loss that turns NaN from the 4th critic call on."""

    name = "nan-after"
    calls = 0

    def critic_loss(self, real_out, fake_out):
        type(self).calls += 1
        loss = fake_out.mean() - real_out.mean()
        return loss * float("nan") if type(self).calls > 6 else loss

    def generator_loss(self, fake_out, real_out=None):
        return -fake_out.mean()


class NaNPlugin:
    @hookimpl
    def register_losses(register):
        register(NaNAfter)


def test_divergence_stops_with_message_and_keeps_good_checkpoint(tmp_path):
    name = register_plugin(NaNPlugin, name="test-nan")
    NaNAfter.calls = 0
    try:
        res = runner.invoke(app, [
            "train", "--loss", "nan-after", "--lipschitz", "none", "--data", "8gaussians", "-O", "data.n=256",
            "-O", "model.width=16", "--batch-size", "16", "--n-critic", "2", "--steps", "50", "--log-every", "1",
            "--checkpoint-every", "2", "--out", str(tmp_path), "--name", "r", "--device", "cpu"])
    finally:
        unregister_plugin(name)
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    err = [l for l in res.output.splitlines() if l.startswith("error:")]
    assert len(err) == 1
    assert "diverged at step 4" in err[0] and "critic_loss" in err[0] and "step-0000002" in err[0]
    ckpts = list_checkpoints(tmp_path / "r")
    assert [s for s, _ in ckpts] == [2]
    ck = load_checkpoint(ckpts[-1][1])
    assert all(torch.isfinite(t).all() for t in ck.tensors.values() if t.is_floating_point())


def test_keep_rotates_old_checkpoints(small_cfg):
    from gantk.training import Trainer

    res = Trainer(small_cfg(steps=6, checkpoint_every=1, keep=2)).train()
    assert [s for s, _ in list_checkpoints(res.run_dir)] == [5, 6]


def test_sigterm_writes_checkpoint_and_says_how_to_resume(tmp_path):
    env = {**os.environ, "GANTK_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gantk", "train", "--data", "8gaussians", "-O", "data.n=256", "-O", "model.width=16",
         "--batch-size", "16", "--n-critic", "1", "--steps", "1000000", "--log-every", "1", "--checkpoint-every", "0",
         "--image-every", "0", "--out", str(tmp_path), "--name", "r", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    assert metrics.exists(), "training never started"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "gantk train --resume" in err and "Traceback" not in err
    ckpts = list_checkpoints(tmp_path / "r")
    assert ckpts, err
    load_checkpoint(ckpts[-1][1])
