"""`gantk eval`, gantk.eval's protocols and the --eval-every training callback."""
import json
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gantk import eval as ev
from gantk.default_plugins.datasets import W1_FLOORS, EightGaussians
from gantk.eval import digits as digits_mod
from gantk.cli import app
from gantk.errors import DataError, UsageError

runner = CliRunner()

TINY = ["--data", "8gaussians", "-O", "data.n=512", "-O", "model.width=16", "--steps", "3",
        "--batch-size", "32", "--device", "cpu"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    res = run("train", *TINY, "--eval-every", 2, "--log-every", 1, "--out", out, "--name", "r")
    assert res.exit_code == 0, res.output
    return out / "r"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private classifier cache (and no stray one in ~/.cache)."""
    monkeypatch.setenv("GANTK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "eval"


# ----------------------------------------------------------------- CLI


def test_eval_prints_a_table(toy_run):
    res = run("eval", toy_run, "-n", 300)
    assert res.exit_code == 0, res.output
    for word in ("8gaussians", "toy protocol", "w1", "w1_floor", "modes_covered", "hq_share", "/ 8"):
        assert word in res.stdout


def test_eval_json_parses(toy_run):
    res = run("eval", toy_run, "-n", 300, "--seed", 1, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["protocol"] == "toy" and d["data"] == "8gaussians" and d["step"] == 3
    assert d["n"] == 300 and d["seed"] == 1 and d["n_modes"] == 8
    # three steps of training: the generator is still a blob near the origin
    assert d["w1"] > 5 * d["w1_floor"] > 0
    assert 0 <= d["hq_share"] <= 1 and 0.95 < d["hq_share_real"] <= 1


def test_eval_missing_run_is_one_line_exit_1(tmp_path):
    res = run("eval", tmp_path / "nope")
    assert res.exit_code == 1
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not found" in lines[0]
    assert "Traceback" not in res.output


def test_eval_bad_n_is_a_usage_error(toy_run):
    res = run("eval", toy_run, "-n", 1)
    assert res.exit_code == 2 and "-n" in res.output


def test_eval_every_writes_eval_jsonl(toy_run):
    recs = [json.loads(x) for x in (toy_run / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 3]  # every 2 steps, and the last step
    for r in recs:
        assert r["protocol"] == "toy" and r["n"] == ev.CALLBACK_N
        assert r["w1"] > r["w1_floor"] > 0 and "critic_w" in r
        assert r["w_estimate_step"] == r["step"]  # logged every step: W estimate of that step
    metrics = {json.loads(x)["step"]: json.loads(x) for x in (toy_run / "metrics.jsonl").read_text().splitlines()}
    assert recs[0]["w_estimate"] == metrics[2]["w_estimate"]


def test_eval_every_must_be_positive(tmp_path):
    res = run("train", *TINY, "--eval-every", 0, "--out", tmp_path)
    assert res.exit_code == 2 and "--eval-every" in res.output


# ----------------------------------------------------------------- library


def test_evaluate_is_deterministic(toy_run):
    a = ev.evaluate(toy_run, n=200, seed=3)
    b = ev.evaluate(toy_run, n=200, seed=3)
    c = ev.evaluate(toy_run, n=200, seed=4)
    a.pop("seconds"), b.pop("seconds"), c.pop("seconds")
    assert a == b and a["w1"] != c["w1"]


def test_eval_callback_does_not_change_training(small_cfg):
    from gantk.training import Trainer

    cfg_a, cfg_b = small_cfg(steps=4, name="a"), small_cfg(steps=4, name="b")
    cb = ev.EvalCallback(every=2, n=100)
    ta, tb = Trainer(cfg_a, callbacks=[cb]), Trainer(cfg_b)
    ta.train(), tb.train()
    for (name, pa), pb in zip(ta.G.state_dict().items(), tb.G.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=name)
    for pa, pb in zip(ta.D.state_dict().values(), tb.D.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert [r["step"] for r in cb.records] == [2, 4]
    assert (ta.run_dir / "eval.jsonl").exists() and not (tb.run_dir / "eval.jsonl").exists()


def test_eval_callback_evaluates_off_log_steps(small_cfg):
    from gantk.training import Trainer

    cb = ev.EvalCallback(every=1, n=50)
    Trainer(small_cfg(steps=3, log_every=2), callbacks=[cb]).train()
    recs = cb.records
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert "w_estimate" not in recs[0] and recs[1]["w_estimate_step"] == 2 and recs[2]["w_estimate_step"] == 3


def test_swissroll_has_w1_and_floor_only():
    from gantk.plugins import get_registry

    get_registry("dataset")  # loads the plugins
    p = ev.make_protocol("swissroll", {}, (2,), 100)
    r = p.score(torch.zeros(100, 2))
    assert set(r) == {"w1", "w1_floor", "w1_over_floor", "w1_floor_sd", "w1_floor_draws"}
    assert r["w1"] > r["w1_floor"] and r["w1_over_floor"] == pytest.approx(r["w1"] / r["w1_floor"])
    assert r["w1_floor_draws"] == ev.FLOOR_DRAWS and r["w1_floor_sd"] > 0


def test_other_2d_data_gets_w1_and_other_data_no_protocol(tmp_path):
    data = torch.randn(300, 2)
    p = ev.make_protocol(str(tmp_path / "pts.npy"), {}, (2,), 100, real=data)
    assert p.name == "points"
    r = p.score(data[:100].clone())
    assert set(r) == {"w1", "n_real"} and r["n_real"] == 100
    np.save(tmp_path / "pts.npy", data.numpy())  # loaded from the file when not given
    assert ev.make_protocol(str(tmp_path / "pts.npy"), {}, (2,), 100).score(data[:100])["w1"] >= 0
    with pytest.raises(DataError, match="no evaluation protocol.*shape \\(3,\\)"):
        ev.make_protocol(str(tmp_path / "x.npy"), {}, (3,), 100)
    with pytest.raises(UsageError, match="at least"):
        ev.make_protocol("8gaussians", {}, (2,), 2)


def test_nonfinite_samples_are_refused():
    from gantk.plugins import get_registry

    get_registry("dataset")
    p = ev.make_protocol("8gaussians", {}, (2,), 20)
    with pytest.raises(DataError, match="NaN"):
        p.score(torch.full((20, 2), float("nan")))


def _toy(name="25gaussians"):
    from gantk.plugins import get_registry

    return get_registry("dataset").get(name)()


def test_floor_is_the_mean_over_real_pairs_and_cached(tmp_path, monkeypatch):
    from gantk.eval import metrics

    ds = _toy()
    mean, sd = ev.toy_w1_floor(ds, 60, 3, cache=tmp_path)

    def pair(k):
        return [ds.generate(60, torch.Generator().manual_seed(ev.FLOOR_SEED + 2 * k + j)) for j in (0, 1)]

    vals = [metrics.wasserstein1(*pair(k)) for k in range(3)]
    assert mean == pytest.approx(np.mean(vals)) and sd == pytest.approx(np.std(vals, ddof=1))
    assert len(set(vals)) == 3  # three different pairs
    (f,) = tmp_path.glob("w1-floor-*25gaussians-n60-d3-*.json")
    assert json.loads(f.read_text())["values"] == pytest.approx(vals)

    def boom(*a, **k):
        raise AssertionError("recomputed a cached floor")

    monkeypatch.setattr(metrics, "wasserstein1", boom)
    assert ev.toy_w1_floor(ds, 60, 3, cache=tmp_path) == (mean, sd)
    f.write_text("{not json")  # a broken cache file is recomputed, not trusted
    monkeypatch.undo()
    assert ev.toy_w1_floor(ds, 60, 3, cache=tmp_path) == pytest.approx((mean, sd))
    assert json.loads(f.read_text())["mean"] == pytest.approx(mean)


def test_ratio_standard_error():
    # a ratio known exactly (no spread) has no error; the relative errors add in quadrature
    assert ev.ratio_se(2.0, 0.0, 4, 1.0, 0.0, 16) == 0
    assert ev.ratio_se(2.0, 0.4, 4, 1.0, 0.0, 16) == pytest.approx(2.0 * 0.2 / 2)
    assert ev.ratio_se(2.0, 0.4, 4, 1.0, 0.4, 16) == pytest.approx(2.0 * np.hypot(0.1, 0.1))


def test_shipped_floors_are_the_pairs_this_code_computes(tmp_path):
    table = json.loads(pathlib.Path(W1_FLOORS).read_text())
    assert {r["data"] for r in table["floors"]} >= {"8gaussians", "25gaussians"}
    for rec in table["floors"]:
        ds = _toy(rec["data"])
        assert rec["options"] == ev.options_key(ds) and rec["version"] == ev.FLOOR_VERSION
        # the first and the last pair, recomputed: same data, same seeds, same W1
        ks = [0, len(rec["values"]) - 1]
        assert ev.floor_pairs(ds, rec["n"], ks) == pytest.approx([rec["values"][k] for k in ks], rel=1e-9)
        mean, sd, pairs = ev.shipped_floor(ds, rec["n"])
        assert pairs == len(rec["values"]) >= 100
        assert (mean, sd) == pytest.approx((np.mean(rec["values"]), np.std(rec["values"], ddof=1)))
        # its first 16 pairs are the floor gantk computes (and caches) elsewhere
        assert ev.toy_w1_floor(ds, 40, 2, cache=tmp_path) != mean  # another N: computed
        assert ev.shipped_floor(ds, rec["n"] + 1) is None


def test_toy_protocol_uses_the_shipped_floor_only_where_it_applies(tmp_path):
    rec = next(r for r in json.loads(pathlib.Path(W1_FLOORS).read_text())["floors"] if r["data"] == "8gaussians")
    ds = _toy("8gaussians")
    p = ev.ToyProtocol(ds, rec["n"], seed=0, cache=tmp_path)
    assert (p.floor, p.floor_draws) == (pytest.approx(np.mean(rec["values"])), len(rec["values"]))
    assert not list(tmp_path.iterdir())  # nothing computed, nothing cached
    named = ev.ToyProtocol(ds, rec["n"], seed=0, floor_draws=2, cache=tmp_path)  # pairs named: computed
    assert named.floor_draws == 2 and named.floor == pytest.approx(np.mean(rec["values"][:2]))

    class Elsewhere(type(ds)):  # a plugin's class of the same name draws its own samples
        pass

    assert ev.shipped_floor(Elsewhere(), rec["n"]) is None


def test_toy_protocol_averages_w1_over_draws(tmp_path):
    from gantk.eval import metrics

    ds = _toy("8gaussians")
    p = ev.ToyProtocol(ds, 80, seed=2, draws=3, floor_draws=2, cache=tmp_path)
    assert len(p.reals) == 3 and p.real is p.reals[0]
    assert not torch.equal(p.reals[0], p.reals[1])
    fakes = [torch.randn(80, 2) * 0.5 for _ in range(3)]
    r = p.score(fakes)
    w = [metrics.wasserstein1(f, x) for f, x in zip(fakes, p.reals)]
    assert r["w1"] == pytest.approx(np.mean(w)) and r["w1_sd"] == pytest.approx(np.std(w, ddof=1))
    assert r["w1_draws"] == 3 and r["w1_floor_draws"] == 2
    # the ratio's standard error from both standard errors of the mean
    rel = np.std(w, ddof=1) ** 2 / 3 / np.mean(w) ** 2 + p.floor_sd**2 / 2 / p.floor**2
    assert r["w1_over_floor_se"] == pytest.approx(r["w1_over_floor"] * np.sqrt(rel))
    assert r["hq_share"] == metrics.mode_stats(fakes[0], *EightGaussians.modes)["hq_share"]
    assert p.score([x.clone() for x in p.reals])["w1"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="3 generated"):
        p.score(fakes[0])
    with pytest.raises(UsageError, match="draws"):
        ev.ToyProtocol(ds, 80, seed=0, draws=0, cache=tmp_path)


def test_evaluate_draws(toy_run, tmp_path):
    from gantk.eval import metrics
    from gantk.sampling import load_generator

    one = ev.evaluate(toy_run, n=150, seed=1, draws=1, cache=tmp_path)
    three = ev.evaluate(toy_run, n=150, seed=1, draws=3, cache=tmp_path)
    assert "w1_draws" not in one and three["w1_draws"] == 3
    assert "w1_over_floor_se" not in one and three["w1_over_floor_se"] > 0  # one draw has no spread
    # draw 0 is the single-draw evaluation: same latents, same real sample, same modes
    assert (three["modes_covered"], three["hq_share"]) == (one["modes_covered"], one["hq_share"])
    assert three["w1_floor"] == one["w1_floor"]
    G, _, _, latent = load_generator(toy_run, torch.device("cpu"))
    p = ev.ToyProtocol(_toy("8gaussians"), 150, 1, draws=3, cache=tmp_path)
    w = [metrics.wasserstein1(ev.generate(G, latent, 150, ev.latent_seed(1, k)), p.reals[k]) for k in range(3)]
    assert w[0] == pytest.approx(one["w1"]) and three["w1"] == pytest.approx(np.mean(w))


def test_eval_cli_draws(toy_run):
    import inspect

    from gantk import cli

    res = run("eval", toy_run, "-n", 100, "--draws", 2, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["w1_draws"] == 2 and d["w1_over_floor"] == pytest.approx(d["w1"] / d["w1_floor"], rel=1e-5)
    bad = run("eval", toy_run, "--draws", 0)
    assert bad.exit_code == 2 and "--draws" in bad.output
    assert inspect.signature(cli.eval_).parameters["draws"].default == ev.DEFAULT_DRAWS


# ----------------------------------------------------------------- digits


def test_to_digit_inputs_area_averages():
    x = torch.arange(16 * 16, dtype=torch.float32).reshape(1, 1, 16, 16) / 256
    y = ev.to_digit_inputs(x)
    assert y.shape == (1, 1, 8, 8)
    assert y[0, 0, 0, 0] == pytest.approx(float(x[0, 0, :2, :2].mean()))
    assert ev.to_digit_inputs(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 8, 8)
    with pytest.raises(DataError, match="8, 16 or 32"):
        ev.to_digit_inputs(torch.zeros(2, 3, 16, 16))


def test_digits_protocol_with_a_tiny_classifier(cache):
    p = ev.DigitsProtocol(200, 0, size=16, epochs=1)
    assert (cache / f"{ev.CLASSIFIER_VERSION}-e1.safetensors").exists()
    x_train, y_train, _, _ = ev.digits_split()
    real16 = F.interpolate(x_train, size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)
    good = p.score(real16[:300])
    noise = p.score(torch.rand(300, 1, 16, 16) * 2 - 1)
    ones = p.score(real16[y_train == 1][:100])
    assert sum(good["class_histogram"]) == 300 and good["n_real"] == 540
    assert good["fd"] < noise["fd"] and good["kid"] < noise["kid"]
    assert good["precision"] > noise["precision"] and good["coverage"] > noise["coverage"]
    assert good["classes_covered"] > ones["classes_covered"]
    assert ones["recall"] < good["recall"]
    assert 0 < p.accuracy <= 1 and good["fd_floor"] < good["fd"] + 1e-9


def test_digits_classifier_is_cached(cache):
    net, acc = ev.digits_classifier(1)
    digits_mod._CLASSIFIERS.clear()
    net2, acc2 = ev.digits_classifier(1)  # from the file this time
    assert acc2 == acc
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        torch.testing.assert_close(a, b)
    # a corrupt cache file is replaced, not fatal
    digits_mod._CLASSIFIERS.clear()
    path = cache / f"{ev.CLASSIFIER_VERSION}-e1.safetensors"
    path.write_bytes(b"garbage")
    assert ev.digits_classifier(1)[1] == acc
    assert path.stat().st_size > 1000


def test_digits_run_end_to_end(tmp_path, cache):
    """A digits run trained one step, evaluated during training and from its checkpoint."""
    from gantk.resolve import make_config
    from gantk.training import Trainer

    cfg = make_config(None, data="digits", data_options={"size": 16}, model="dcgan", model_options={"width": 8},
                      steps=1, batch_size=16, n_critic=1, out=str(tmp_path / "runs"), name="d",
                      log_every=1, checkpoint_every=0, image_every=0, device="cpu")
    cb = ev.EvalCallback(every=1, n=60, classifier_epochs=1)
    res = Trainer(cfg, callbacks=[cb]).train()
    rec = json.loads((res.run_dir / "eval.jsonl").read_text())
    assert rec["protocol"] == "digits" and sum(rec["class_histogram"]) == 60 and "critic_w" in rec
    d = ev.evaluate(res.run_dir, n=60, classifier_epochs=1)
    assert d["protocol"] == "digits" and d["data"] == "digits" and d["step"] == 1
    for key in ("fd", "kid", "kid_std", "classes_covered", "precision", "recall", "density", "coverage",
                "classifier_accuracy"):
        assert key in d
    assert len(d["class_histogram"]) == 10 and sum(d["class_histogram"]) == 60


@pytest.mark.slow
def test_default_digits_classifier_is_accurate(cache):
    p = ev.DigitsProtocol(540, 0, size=16)
    assert p.accuracy > 0.95
    x_train, _, _, _ = ev.digits_split()
    real16 = F.interpolate(x_train, size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)
    r = p.score(real16)
    assert r["classes_covered"] == 10 and r["fd"] == pytest.approx(r["fd_floor"])
    assert min(r["precision"], r["recall"], r["coverage"]) > 0.9
