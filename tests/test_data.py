import math

import numpy as np
import pytest
import torch

import gantk
from gantk.data import BatchSampler, load_samples, modality_of, resolve_dataset
from gantk.errors import DataError, UnknownComponentError


def _nearest(points, centres):
    d = torch.cdist(points.double(), centres.double())
    return d.min(dim=1)


def test_8gaussians_matches_wgan_gp_toy_code():
    x = gantk.create_dataset("8gaussians", n=20000).load(seed=0)
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    r = 1 / math.sqrt(2)
    centres = 2 * torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]]) / 1.414
    dist, idx = _nearest(x, centres)
    assert torch.bincount(idx, minlength=8).min() > 2000  # every mode is used
    # per-axis σ = 0.02 / 1.414
    resid = x.double() - centres[idx].double()
    assert resid.std(0).numpy() == pytest.approx([0.02 / 1.414] * 2, rel=0.05)


def test_25gaussians_matches_wgan_gp_toy_code():
    x = gantk.create_dataset("25gaussians", n=50000).load(seed=1)
    grid = torch.arange(-2, 3) * 2.0
    centres = torch.cartesian_prod(grid, grid) / 2.828
    dist, idx = _nearest(x, centres)
    assert torch.bincount(idx, minlength=25).min() > 1500
    resid = x.double() - centres[idx].double()
    assert resid.std(0).numpy() == pytest.approx([0.05 / 2.828] * 2, rel=0.05)


def test_swissroll_matches_sklearn():
    sk = pytest.importorskip("sklearn.datasets")
    ours = gantk.create_dataset("swissroll", n=20000).load(seed=0).double()
    theirs, _ = sk.make_swiss_roll(n_samples=20000, noise=0.25, random_state=0)
    theirs = torch.from_numpy(theirs[:, [0, 2]] / 7.5)
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        torch.testing.assert_close(ours.quantile(q, dim=0), theirs.quantile(q, dim=0), atol=0.03, rtol=0)
    torch.testing.assert_close(ours.norm(dim=1).mean(), theirs.norm(dim=1).mean(), atol=0.01, rtol=0)


def test_seeded_and_distinct():
    a = gantk.create_dataset("25gaussians", n=100).load(seed=3)
    b = gantk.create_dataset("25gaussians", n=100).load(seed=3)
    c = gantk.create_dataset("25gaussians", n=100).load(seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tensor_files_of_any_shape(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 3, 4)).astype(np.float64)
    np.save(tmp_path / "a.npy", x)
    ds = resolve_dataset(str(tmp_path / "a.npy"))
    t = ds.load()
    assert t.shape == (10, 3, 4) and t.dtype == torch.float32
    img = np.random.default_rng(0).integers(0, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "i.npz", images=img)
    t = resolve_dataset(str(tmp_path / "i.npz")).load()
    assert t.dtype == torch.uint8 and torch.equal(t, torch.from_numpy(img))  # kept as pixels
    _, f = load_samples(str(tmp_path / "i.npz"))  # as float, for whoever asks
    assert f.min() >= -1 and f.max() <= 1
    torch.testing.assert_close(f, torch.from_numpy(img).float() / 127.5 - 1)
    assert modality_of(tuple(t.shape[1:])) == "image"
    assert modality_of((2,)) == "points"


def test_npy_with_objects_is_refused_without_pickle(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot read"):
        resolve_dataset(str(tmp_path / "o.npy")).load()


def test_nan_data_refused(tmp_path):
    np.save(tmp_path / "n.npy", np.array([[0.0, np.nan]] * 4))
    with pytest.raises(DataError, match="NaN"):
        resolve_dataset(str(tmp_path / "n.npy")).load()


def test_unknown_name_suggests():
    with pytest.raises(UnknownComponentError, match="did you mean '25gaussians'"):
        resolve_dataset("25gaussian")


def test_batch_sampler_covers_each_epoch():
    data = torch.arange(10.0)[:, None]
    s = BatchSampler(data, 5, torch.Generator().manual_seed(0))
    seen = torch.cat([s.next(), s.next()]).flatten().sort().values
    assert torch.equal(seen, torch.arange(10.0))
    with pytest.raises(DataError):
        BatchSampler(data, 11, torch.Generator())
