"""benchmarks/quality/clip_vs_gp.py (WGAN-GP paper, Figure 1) runs at a tiny size,
writes its figure and JSON, and shows the effects a tiny run reliably shows."""
import json
import math
from pathlib import Path

import torch

from _helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality" / "clip_vs_gp.py"
TINY = ["--steps", "5", "--depth", "4", "--width", "32", "--batch", "16", "--eval-batches", "2", "--n", "2000",
        "--seed", "0"]


def _load():
    return load_script(SCRIPT, "gantk_bench_clip_vs_gp")


def _strip_timings(runs):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]


def test_clip_vs_gp_tiny(tmp_path, capsys):
    threads = torch.get_num_threads()
    mod = _load()
    try:
        mod.main(TINY + ["--out", str(tmp_path / "a")])
        mod.main(TINY + ["--out", str(tmp_path / "b")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "| method |" in out and "| gp λ = 10 |" in out

    a = tmp_path / "a"
    assert (a / "clip_vs_gp.png").stat().st_size > 0
    res = json.loads((a / "clip_vs_gp.json").read_text())
    assert {"meta", "args", "seconds_total", "runs", "histograms"} <= set(res)
    assert res["meta"]["device"] == "cpu" and res["args"]["depth"] == 4
    runs = {r["label"]: r for r in res["runs"]}
    assert set(runs) == {"clip c = 0.1", "clip c = 0.01", "clip c = 0.001", "gp λ = 10"}
    assert set(res["histograms"]) == set(runs)
    for r in runs.values():
        for key in ("log10_grad_norm_per_layer", "log10_grad_norm_per_layer_init", "log10_grad_norm_per_layer_f64"):
            assert len(r[key]) == 4 and all(math.isfinite(x) for x in r[key])
        assert len(r["grad_x_norms"]) == 2 * 16
        assert r["grad_x_norm_mean"] >= 0 and r["grad_x_norm_std"] >= 0

    clip01, clip001, gp = runs["clip c = 0.01"], runs["clip c = 0.001"], runs["gp λ = 10"]
    # clamping puts most weights of a c = 0.01 critic at ±c
    assert clip01["share_at_c"] > 0.5 and clip01["share_at_c_init"] > 0.5
    assert gp["share_at_c"] is None
    # the penalty's critic is far closer to ‖∇D(x̂)‖ = 1 than the c = 0.001 one, whose
    # gradients have all but vanished
    assert abs(gp["grad_x_norm_mean"] - 1) < abs(clip001["grad_x_norm_mean"] - 1)
    assert clip001["grad_x_norm_mean"] < 1e-6 < gp["grad_x_norm_mean"]
    assert max(clip001["log10_grad_norm_per_layer"]) < min(gp["log10_grad_norm_per_layer"])

    # seeded: a second run gives the same numbers
    res_b = json.loads((tmp_path / "b" / "clip_vs_gp.json").read_text())
    assert _strip_timings(res_b["runs"]) == _strip_timings(res["runs"])
    assert res_b["histograms"] == res["histograms"]
