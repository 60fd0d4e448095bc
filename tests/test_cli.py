"""The CLI end to end, and the catalogue of bad inputs: each gives exit code 2 (usage)
or 1 (other failures), a one-line message naming the problem, no traceback and no
partial output."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import gantk
from gantk.cli import app

runner = CliRunner()

SMALL = ["--data", "8gaussians", "-O", "data.n=512", "-O", "model.width=32", "-O", "model.depth=2",
         "--batch-size", "64", "--n-critic", "2", "--device", "cpu"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    res = run("train", *SMALL, "--steps", "6", "--log-every", "2", "--checkpoint-every", "3",
              "--image-every", "3", "--out", out, "--name", "r")
    assert res.exit_code == 0, res.output
    return out / "r"


def test_train_writes_run_folder(trained_run):
    assert (trained_run / "config.json").exists()
    ckpts = sorted((trained_run / "checkpoints").glob("step-*.safetensors"))
    assert [p.name for p in ckpts] == ["step-0000003.safetensors", "step-0000006.safetensors"]
    lines = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6]
    for key in ("critic_loss", "generator_loss", "w_estimate", "grad_norm", "penalty"):
        assert key in lines[-1]
    pngs = sorted((trained_run / "images").glob("*.png"))
    assert [p.name for p in pngs] == ["step-0000003.png", "step-0000006.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["loss"] == "wasserstein" and cfg["lipschitz"] == "gp" and cfg["preset"] == "wgan-gp"
    # no preset named: the toy set's recommended settings (see test_toy_data_recommends...)
    assert cfg["lr"] == 2e-3 and cfg["betas"] == [0.5, 0.9] and cfg["penalty_every"] == 4
    # the networks the user shaped with -O: no model option recommended beside them
    assert cfg["model_options"] == {"width": 32, "depth": 2}


def test_sample_safetensors_is_deterministic(trained_run, tmp_path):
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        res = run("sample", trained_run, "-n", 300, "-o", path, "--seed", seed)
        assert res.exit_code == 0, res.output
    ta, tb, tc = load_file(a), load_file(b), load_file(c)
    assert ta["samples"].shape == (300, 2) and ta["latents"].shape == (300, 2)
    assert torch.equal(ta["samples"], tb["samples"])
    assert not torch.equal(ta["samples"], tc["samples"])
    from safetensors import safe_open

    with safe_open(str(a), "pt") as f:
        meta = f.metadata()
    assert meta["step"] == "6" and meta["seed"] == "1" and meta["checkpoint"].endswith("step-0000006.safetensors")


def test_sample_png_and_checkpoint_file(trained_run, tmp_path):
    ck = trained_run / "checkpoints" / "step-0000003.safetensors"
    res = run("sample", ck, "-n", 200, "-o", tmp_path / "s.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert "from step 3" in res.stdout


def test_presets_set_paper_defaults(tmp_path):
    from gantk.resolve import make_config

    c = make_config("wgan")
    assert (c.loss, c.lipschitz, c.optimizer, c.lr, c.n_critic) == ("wasserstein", "clip", "rmsprop", 5e-5, 5)
    c = make_config("sngan")
    assert (c.loss, c.lipschitz, c.betas) == ("hinge", "sn", (0.0, 0.9))
    c = make_config("gan")
    assert (c.loss, c.n_critic, c.betas, c.lr) == ("minimax", 1, (0.5, 0.999), 2e-4)
    # inferred from the components; explicit flags override
    assert make_config(loss="hinge", lipschitz="sn").preset == "sngan"
    assert make_config(lipschitz="clip").optimizer == "rmsprop"
    assert make_config("wgan-gp", lr=3e-4).lr == 3e-4


def test_adam_with_clipping_warns(tmp_path):
    res = run("train", *SMALL, "--lipschitz", "clip", "--optimizer", "adam", "--steps", "1", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    assert "RMSProp" in res.output and "warning" in res.output


def test_lambda_option_reaches_the_enforcer(tmp_path):
    res = run("train", *SMALL, "--lambda", "3.5", "-O", "lipschitz.k=0.5", "--steps", "1", "--out", tmp_path, "--name", "x")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "x" / "config.json").read_text())
    assert cfg["lipschitz_options"] == {"lambda": 3.5, "k": 0.5}


def test_toy_data_recommends_the_toy_code_lambda(tmp_path):
    res = run("train", *SMALL, "--steps", "1", "--out", tmp_path, "--name", "t")
    assert res.exit_code == 0, res.output
    assert "note:" in res.output and "lambda = 0.1" in res.output
    cfg = json.loads((tmp_path / "t" / "config.json").read_text())
    assert cfg["lipschitz_options"] == {"lambda": 0.1}
    res = run("train", *SMALL, "--steps", "1", "--lambda", "10", "--out", tmp_path, "--name", "u")
    assert "lambda = 0.1" not in res.output
    assert json.loads((tmp_path / "u" / "config.json").read_text())["lipschitz_options"] == {"lambda": 10.0}
    assert "lr = 0.002" in res.output
    # naming the preset gives the paper's settings, untouched
    res = run("train", *SMALL, "--steps", "1", "--preset", "wgan-gp", "--out", tmp_path, "--name", "p")
    assert res.exit_code == 0, res.output
    assert "note:" not in res.output
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert (cfg["lr"], cfg["betas"], cfg["lipschitz_options"]) == (1e-4, [0.0, 0.9], {})
    # enforcers without the option are left alone
    res = run("train", *SMALL, "--steps", "1", "--preset", "sngan", "--out", tmp_path, "--name", "v")
    assert json.loads((tmp_path / "v" / "config.json").read_text())["lipschitz_options"] == {}


def test_resume_continues(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "r"
    shutil.copytree(trained_run, run_dir)
    res = run("train", "--resume", run_dir, "--steps", "8")
    assert res.exit_code == 0, res.output
    assert (run_dir / "checkpoints" / "step-0000008.safetensors").exists()
    res = run("train", "--resume", run_dir, "--steps", "9", "--lr", "0.1")
    assert res.exit_code == 2 and "cannot change --lr" in res.output


def test_resume_equals_straight_run(tmp_path, small_cfg):
    from gantk.training import Trainer, resume

    # constant lr: a linear decay is laid out over --steps, which differs between the two
    # (tests/test_lr_decay.py resumes a decayed run that was stopped part-way)
    straight = Trainer(small_cfg(steps=4, name="a", out=str(tmp_path), lr_decay="none")).train()
    half = Trainer(small_cfg(steps=2, name="b", out=str(tmp_path), lr_decay="none")).train()
    resumed = resume(half.run_dir, {"steps": 4})
    a = load_file(straight.checkpoint)
    b = load_file(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------- bad inputs
from _helpers import BNModel, registered_models  # noqa: E402
from _helpers import assert_clean_error as _assert_clean_error  # noqa: E402


@pytest.mark.parametrize("args,needles", [
    (["--loss", "wasersetin"], ["unknown loss 'wasersetin'", "did you mean 'wasserstein'"]),
    (["--lipschitz", "gpp"], ["unknown lipschitz enforcer 'gpp'", "did you mean 'gp'"]),
    (["--lipschitz", "r1"], ["unknown lipschitz enforcer 'r1'", "plugin"]),
    (["--model", "mlpp"], ["unknown model 'mlpp'", "did you mean 'mlp'"]),
    (["--preset", "wgangp"], ["unknown preset 'wgangp'", "did you mean 'wgan-gp'"]),
    (["--lr-decay", "cosine"], ["--lr-decay must be none or linear, got 'cosine'"]),
    (["--data", "8gausians"], ["unknown dataset '8gausians'", "did you mean '8gaussians'"]),
    (["--lr", "0"], ["--lr must be > 0"]),
    (["--lr", "-1e-4"], ["--lr must be > 0"]),
    (["--n-critic", "0"], ["--n-critic must be >= 1"]),
    (["--steps", "0"], ["--steps must be >= 1"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1"]),
    (["-O", "lipschitz.lamda=1"], ["lipschitz enforcer 'gp' has no option lipschitz.lamda", "did you mean lipschitz.lambda?"]),
    (["-O", "lipschitz.lambda=abc"], ["lambda", "expected float"]),
    (["-O", "nonsense"], ["KIND.KEY=VALUE"]),
    (["--optimizer", "adamw"], ["unknown optimizer 'adamw'"]),
    (["--betas", "0.9"], ["two numbers"]),
    (["--threads", "0"], ["--threads", "must be >= 1"]),
])
def test_bad_usage(tmp_path, args, needles):
    out = tmp_path / "runs"
    res = run("train", "--steps", "1", "--out", out, *args)
    _assert_clean_error(res, 2, *needles)
    assert not out.exists() or not any(out.iterdir()), "partial output left behind"


def test_batch_larger_than_data(tmp_path):
    res = run("train", "--data", "8gaussians", "-O", "data.n=100", "--batch-size", "256", "--out", tmp_path / "o")
    _assert_clean_error(res, 2, "--batch-size 256 is larger than the data (100 samples)")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("kind", ["missing", "empty_npz", "strings", "garbage", "empty_safetensors", "dir"])
def test_bad_data_files(tmp_path, kind):
    p = {
        "missing": tmp_path / "nope.npy",
        "empty_npz": tmp_path / "e.npz",
        "strings": tmp_path / "s.npy",
        "garbage": tmp_path / "g.safetensors",
        "empty_safetensors": tmp_path / "z.safetensors",
        "dir": tmp_path / "folder.npy",
    }[kind]
    if kind == "empty_npz":
        np.savez(p)
    elif kind == "strings":
        np.save(p, np.array(["a", "b"]))
    elif kind == "garbage":
        p.write_bytes(b"\x00\x01garbage" * 10)
    elif kind == "empty_safetensors":
        save_file({}, str(p))
    elif kind == "dir":
        p.mkdir()
    out = tmp_path / "runs"
    res = run("train", "--data", p, "--out", out, "--steps", "1")
    _assert_clean_error(res, 1, str(p.name))
    assert not out.exists() or not any(out.iterdir())


def test_tensor_file_data_trains(tmp_path):
    x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    np.save(tmp_path / "pts.npy", x)
    save_file({"samples": torch.from_numpy(x)}, str(tmp_path / "pts.safetensors"))
    np.savez(tmp_path / "pts.npz", other=x[:, :1], samples=x)
    for f, extra in (("pts.npy", []), ("pts.safetensors", []), ("pts.npz", ["-O", "data.key=samples"])):
        res = run("train", "--data", tmp_path / f, *extra, "-O", "model.width=16", "--batch-size", "32",
                  "--steps", "2", "--out", tmp_path / "runs", "--device", "cpu")
        assert res.exit_code == 0, (f, res.output)


@pytest.mark.parametrize("kind", ["missing", "truncated", "foreign", "garbage", "empty_run"])
def test_bad_checkpoints(trained_run, tmp_path, kind):
    good = trained_run / "checkpoints" / "step-0000006.safetensors"
    p = tmp_path / "c.safetensors"
    if kind == "missing":
        p = tmp_path / "missing.safetensors"
        needle = "not found"
    elif kind == "truncated":
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        needle = "c.safetensors"
    elif kind == "foreign":
        save_file({"w": torch.zeros(3)}, str(p))
        needle = "not a gantk checkpoint"
    elif kind == "garbage":
        p.write_bytes(os.urandom(4096))
        needle = "not a gantk checkpoint"
    else:
        p = tmp_path / "emptyrun"
        p.mkdir()
        needle = "no checkpoint in"
    out = tmp_path / "out.safetensors"
    res = run("sample", p, "-n", 10, "-o", out)
    _assert_clean_error(res, 1, needle)
    assert not out.exists()
    res = run("train", "--resume", p, "--steps", "100")
    _assert_clean_error(res, 1, needle)


def test_unwritable_outputs(trained_run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("train", *SMALL, "--steps", "1", "--out", blocker / "runs")
    _assert_clean_error(res, 1, "cannot write")
    res = run("sample", trained_run, "-n", 5, "-o", tmp_path / "no" / "such" / "dir" / "s.safetensors")
    _assert_clean_error(res, 1, "does not exist")
    res = run("sample", trained_run, "-n", 5, "-o", tmp_path / "s.txt")
    _assert_clean_error(res, 2, "must end in .safetensors, .png, .npz")


def test_batchnorm_critic_refused_under_gp(tmp_path):
    with registered_models(BNModel, name="test-bn"):
        base = ["train", "--model", "bn-mlp", "--data", "8gaussians", "-O", "data.n=256", "--batch-size", "32",
                "--steps", "1", "--out", tmp_path / "o"]
        for enf in ("gp", "lp"):
            res = run(*base, "--lipschitz", enf)
            _assert_clean_error(res, 2, "BatchNorm", "--allow-batchnorm")
        assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
        res = run(*base, "--lipschitz", "gp", "--allow-batchnorm")
        assert res.exit_code == 0, res.output
        res = run(*base, "--lipschitz", "sn", "--loss", "hinge")
        assert res.exit_code == 0, res.output


def test_debug_variable_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTK_DEBUG", "1")
    res = run("train", "--lr", "0", "--out", tmp_path)
    assert res.exit_code != 0
    assert isinstance(res.exception, gantk.UsageError)


def test_option_merges_into_preset_options_and_presets_stay_intact():
    from gantk.presets import PRESETS
    from gantk.resolve import make_config

    before = repr(PRESETS)
    c = make_config("digits", model_options={"critic_norm": "none"})
    assert c.model_options["critic_norm"] == "none" and c.model_options["width"] == PRESETS["digits"]["model_options"]["width"]
    c.model_options["width"] = 999
    assert repr(PRESETS) == before
