"""`gantk train --logger tensorboard`: the event files hold what metrics.jsonl and
eval.jsonl hold (read back with TensorBoard's own reader), the pictures and the config."""
import json
import os

import pytest
from typer.testing import CliRunner

from gantk.cli import app
from gantk.fsutil import read_jsonl

pytest.importorskip("tensorboard") if not os.environ.get("CI") else None
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def test_event_files_match_metrics_and_eval_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")
    res = CliRunner().invoke(app, [
        "train", "--data", "8gaussians", "-O", "data.n=256", "-O", "model.width=16", "--steps", "4",
        "--batch-size", "16", "--log-every", "2", "--image-every", "4", "--eval-every", "4", "--logger",
        "tensorboard", "--out", str(tmp_path), "--name", "r", "--device", "cpu", "--preset", "wgan-gp"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "r"
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    metrics = read_jsonl(run / "metrics.jsonl")
    for key, tag in (("critic_loss", "loss/critic"), ("w_estimate", "critic/w_estimate"),
                     ("grad_norm", "critic/grad_norm"), ("penalty", "critic/penalty")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [m["step"] for m in metrics]
        assert [e.value for e in events] == pytest.approx([m[key] for m in metrics], rel=1e-5, abs=1e-7)
    evals = read_jsonl(run / "eval.jsonl")
    assert [e.step for e in acc.Scalars("eval/w1")] == [r["step"] for r in evals]
    assert acc.Scalars("eval/w1")[0].value == pytest.approx(evals[0]["w1"], rel=1e-5)
    assert "samples" in tags["images"] and "optim/lr" in tags["scalars"]
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n"))["steps"] == 4


def test_a_missing_tensorboard_is_one_line(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    res = CliRunner().invoke(app, ["train", "--data", "8gaussians", "-O", "data.n=64", "--steps", "1",
                                   "--batch-size", "16", "--logger", "tensorboard", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "pip install 'gantk[tensorboard]'" in res.output
    assert not any(tmp_path.iterdir())  # the failed start left nothing



def _sync_count(small_cfg, name, loggers):
    """Host syncs of a 12-step CUDA run (torch's sync debug mode warns at each one),
    trained in-process (the CLI routes warnings to its own printer)."""
    import warnings

    import torch

    from gantk.training import Trainer
    cfg = small_cfg(device="cuda", steps=12, log_every=3, name=name, batch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, callbacks=loggers)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return sum("synchroniz" in str(w.message) for w in seen)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_the_logger_adds_no_host_sync_on_cuda(small_cfg):
    """The logger gets the numbers metrics.jsonl already brought to the host: the same
    training run synchronises with the GPU exactly as often with it as without it."""
    from gantk.plugins import get_registry
    _sync_count(small_cfg, "warmup", [])  # kernels load once
    without = _sync_count(small_cfg, "plain", [])
    with_tb = _sync_count(small_cfg, "tb", [get_registry("logger").get("tensorboard")()])
    assert without > 0  # the check can see a sync: metrics.jsonl's own, every --log-every
    assert with_tb == without
