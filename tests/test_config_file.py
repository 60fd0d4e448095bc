"""`gantk train --config FILE` and `--print-config`: settings from a TOML file or a run's
config.json, flags over them, every value shown with where it came from, and a run
reproduced from its config.json alone."""
import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from gantk.cli import app

runner = CliRunner()
TINY = ["--data", "8gaussians", "-O", "data.n=128", "-O", "model.width=16", "-O", "model.depth=2", "--steps", "3",
        "--batch-size", "16", "--n-critic", "2", "--device", "cpu", "--log-every", "1", "--image-every", "0"]


@pytest.fixture(autouse=True)
def _reference(monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")


def test_a_run_is_reproduced_from_its_config_json(tmp_path):
    res = runner.invoke(app, ["train", *TINY, "--out", str(tmp_path), "--name", "a"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", "--config", str(tmp_path / "a" / "config.json"), "--name", "b"])
    assert res.exit_code == 0, res.output
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000003.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000003.safetensors"))
    weights = [k for k in a if k.startswith(("generator.", "critic."))]
    assert weights and all(torch.equal(a[k], b[k]) for k in weights)
    cfg_a = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg_b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert {k: v for k, v in cfg_a.items() if k != "name"} == {k: v for k, v in cfg_b.items() if k != "name"}


def test_print_config_shows_every_value_and_its_source_and_creates_nothing(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('lr = 3e-4\nsteps = 50\n[lipschitz_options]\nlambda = 5.0\n')
    res = runner.invoke(app, ["train", "--config", str(cfg), "--steps", "60", "--out", str(tmp_path / "runs"),
                              "--print-config"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): (line.split("│")[2].strip(), line.split("│")[3].strip())
            for line in res.output.splitlines() if line.startswith("│")}
    assert rows["steps"] == ("60", "flag")
    assert rows["lr"] == ("0.0003", f"file {cfg}")
    assert rows["lipschitz.lambda"] == ("5.0", f"file {cfg}")
    assert rows["loss"] == ('"wasserstein"', "preset wgan-gp")
    assert rows["batch_size"] == ("512", "data set 25gaussians")
    assert rows["keep"] == ("3", "default")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text,needle", [
    ("lr = ", "not valid TOML"),
    ("lrr = 1e-4", "did you mean 'lr'"),
    ("steps = 0", "steps must"),
    ('steps = "ten"', "steps"),
])
def test_bad_config_files_are_one_line(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text + "\n")
    res = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "runs").exists()
