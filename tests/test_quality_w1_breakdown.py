"""benchmarks/quality/w1_breakdown.py on a tiny run: the ideal-modes W1 is computed at
the generator's own mode weights."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("scipy")

from gantk.training import Trainer

from _helpers import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quality" / "w1_breakdown.py"


def _load():
    return load_script(SCRIPT, "w1_breakdown")


def test_breakdown_reports_weights_and_both_w1(small_cfg, capsys):
    res = Trainer(small_cfg(steps=60, checkpoint_every=60, lr_decay="none")).train()
    mod = _load()
    assert mod.main([str(res.run_dir), "--n", "200", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["data"] == "8gaussians" and r["step"] == 60 and r["n"] == 200
    assert len(r["weights"]) == 8 and r["w1"] > 0 and r["w1_floor"] > 0
    if r["w1_weights"] is None:  # nothing near a mode yet
        assert r["hq_share"] == 0 and r["weights"] == [0.0] * 8
    else:  # shares times the number of modes sum to that number
        assert r["w1_weights"] > 0 and sum(r["weights"]) == pytest.approx(8, abs=0.01)
    assert mod.main([str(res.run_dir), "--n", "200"]) == 0
    assert "x floor;" in capsys.readouterr().out


def test_perfect_generator_scores_near_the_floor(capsys):
    mod = _load()
    assert mod.main(["--perfect", "8gaussians", "--n", "200", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["ratios"]) == len(r["ratios_1"]) == 8 and r["draws"] == 5
    assert all(0.2 < v < 5 for v in r["ratios"] + r["ratios_1"])
    # averaged over draws against a floor averaged over pairs: near 1, and steadier
    assert 0.8 < np.mean(r["ratios"]) < 1.25
    assert np.std(r["ratios"]) < np.std(r["ratios_1"])
    with pytest.raises(SystemExit):
        mod.main([])
