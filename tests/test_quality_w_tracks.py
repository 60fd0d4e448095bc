"""Smoke test of benchmarks/quality/w_tracks_quality.py at a tiny size (seconds)."""
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

import torch

from _helpers import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality" / "w_tracks_quality.py"
TINY = ["--steps", "6", "--every", "2", "--n", "40", "--width", "16", "--depth", "2", "--data-n", "512"]


def _load():
    return load_script(SCRIPT, "w_tracks_quality")


def test_w_tracks_quality_script_runs(tmp_path, capsys):
    torch.set_num_threads(1)
    mod = _load()
    mod.main([*TINY, "--out", str(tmp_path), "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "| wgan-gp | `critic_w` |" in out and "| gan | `js_est` |" in out

    assert (tmp_path / "w_tracks_quality.png").stat().st_size > 0
    res = json.loads((tmp_path / "w_tracks_quality.json").read_text())
    assert {"meta", "args", "seconds_total", "runs"} <= set(res)
    assert res["meta"]["torch"] == torch.__version__
    assert set(res["runs"]) == {"wgan-gp", "gan"}
    assert res["runs"]["wgan-gp"]["config"]["lipschitz"] == "gp"
    assert res["runs"]["gan"]["config"]["loss"] == "minimax"
    assert res["runs"]["gan"]["config"]["lipschitz"] == "none"

    for label, key in (("wgan-gp", "critic_w"), ("gan", "js_est")):
        run = res["runs"][label]
        recs = run["records"]
        assert [r["step"] for r in recs] == [2, 4, 6]
        for r in recs:
            assert {"w1", "w1_floor", "critic_w", key} <= set(r)
            assert math.isfinite(r["w1"]) and r["w1"] > 0 and r["w1_floor"] > 0
        c = run["correlation"]
        assert c["points"] == 3
        # three points: ρ is defined (no ties among floats from different networks)
        assert isinstance(c["spearman"], float) and -1.0 <= c["spearman"] <= 1.0

    for r in res["runs"]["gan"]["records"]:
        # E[log σ] ≤ 0 and E[log(1 − σ)] ≤ 0 for any logits: the estimate never exceeds
        # log 2. It has no lower bound (a D wrong on held-out data makes it negative).
        assert math.isfinite(r["js_est"]) and r["js_est"] <= math.log(2) + 1e-9
        assert r["e_log_d_real"] <= 0 and r["e_log_1m_d_fake"] <= 0
        assert r["js_est"] == pytest.approx(math.log(2) + 0.5 * (r["e_log_d_real"] + r["e_log_1m_d_fake"]))


def test_js_estimate_does_not_change_training(tmp_path):
    """The JS callback draws nothing from the trainer's streams and leaves the networks'
    modes as they were: a run with it trains exactly as one without."""
    torch.set_num_threads(1)
    mod = _load()
    from gantk.resolve import make_config
    from gantk.training import Trainer

    def run(callbacks, name):
        cfg = make_config(preset="gan", data="8gaussians", data_options={"n": 512},
                          model_options={"width": 16, "depth": 2}, steps=5, batch_size=32,
                          out=str(tmp_path), name=name, log_every=0, checkpoint_every=0,
                          image_every=0, device="cpu")
        tr = Trainer(cfg, callbacks=callbacks)
        tr.train()
        return tr

    js = mod.JSEstimate(every=1, n=30)
    a = run([js], "with")
    b = run([], "without")
    assert [r["step"] for r in js.records] == [1, 2, 3, 4, 5]
    assert a.G.training and a.D.training
    for ma, mb in ((a.G, b.G), (a.D, b.D)):
        for (ka, va), (kb, vb) in zip(ma.state_dict().items(), mb.state_dict().items()):
            assert ka == kb and torch.equal(va, vb), ka
