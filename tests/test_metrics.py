"""The pure metric functions of gantk.eval.metrics on cases with known answers."""
import math

import numpy as np
import pytest
import torch

from gantk.eval import metrics
from gantk.default_plugins.datasets import EightGaussians, TwentyFiveGaussians


def _sample(cls, n, seed):
    return cls().generate(n, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------- W1


def test_w1_identical_sets_is_zero():
    x = np.random.default_rng(0).normal(size=(50, 2))
    assert metrics.wasserstein1(x, x) == 0.0
    assert metrics.wasserstein1(x, x[::-1].copy()) == pytest.approx(0.0, abs=1e-12)  # order does not matter


def test_w1_of_a_shifted_set_is_the_shift():
    x = np.random.default_rng(1).normal(size=(60, 2))
    shift = np.array([0.3, -0.4])  # |shift| = 0.5
    assert metrics.wasserstein1(x, x + shift) == pytest.approx(0.5, abs=1e-12)
    # a torch tensor works as well
    assert metrics.wasserstein1(torch.from_numpy(x), torch.from_numpy(x + shift)) == pytest.approx(0.5, abs=1e-12)


def test_w1_tiny_known_case_and_1d_sorting():
    # two points each: the optimal pairing is (0 ↔ 0.5, 1 ↔ 3): (0.5 + 2) / 2
    assert metrics.wasserstein1([[0.0], [1.0]], [[3.0], [0.5]]) == pytest.approx(1.25)
    # in 1-D the optimal plan pairs sorted samples
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40), rng.exponential(size=40)
    expected = np.abs(np.sort(a) - np.sort(b)).mean()
    assert metrics.wasserstein1(a[:, None], b[:, None]) == pytest.approx(expected, rel=1e-12)


def test_w1_refuses_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        metrics.wasserstein1(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.wasserstein1(np.full((3, 2), np.nan), np.zeros((3, 2)))


@pytest.mark.parametrize("case", ["alike", "far", "ties"])
def test_w1_solvers_agree(case):
    """POT's network simplex and scipy's assignment find the same optimum, on sets that
    are alike, far apart (the slow case for scipy) and full of exact ties."""
    pytest.importorskip("ot")
    rng = np.random.default_rng(3)
    real = _sample(TwentyFiveGaussians, 300, 0).double().numpy()
    fake = {"alike": _sample(TwentyFiveGaussians, 300, 1).double().numpy(),
            "far": rng.normal(size=(300, 2)) * 0.01 + 3.0,
            "ties": np.repeat(rng.normal(size=(30, 2)), 10, axis=0)}[case]
    pot = metrics.wasserstein1(fake, real, solver="pot")
    assert pot == pytest.approx(metrics.wasserstein1(fake, real, solver="scipy"), rel=1e-12, abs=1e-15)
    assert metrics.wasserstein1(fake, real) == pot  # auto takes POT when it is there
    assert metrics.wasserstein1(real, real, solver="pot") == 0.0


def test_w1_without_pot_uses_scipy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ot", None)  # import ot now raises ImportError
    x = np.random.default_rng(1).normal(size=(60, 2))
    shift = np.array([0.3, -0.4])
    assert metrics.wasserstein1(x, x + shift) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="needs POT"):
        metrics.wasserstein1(x, x, solver="pot")
    with pytest.raises(ValueError, match="solver must be one of"):
        metrics.wasserstein1(x, x, solver="sinkhorn")


def test_floor_is_below_w1_of_a_collapsed_generator():
    n = 400
    floor = metrics.wasserstein1_floor(lambda m, s: _sample(EightGaussians, m, s), n, seed=0)
    real = _sample(EightGaussians, n, 10)
    collapsed = torch.zeros(n, 2) + torch.tensor(EightGaussians.modes[0][0], dtype=torch.float32)
    w_collapsed = metrics.wasserstein1(collapsed, real)
    assert 0 < floor < 0.2 < w_collapsed  # one mode of eight: most mass travels ~1.4 to 2.8
    assert floor < w_collapsed / 5


# ----------------------------------------------------------------- modes


def test_toy_mode_centres_match_the_datasets():
    for cls, name in ((EightGaussians, "8gaussians"), (TwentyFiveGaussians, "25gaussians")):
        x = _sample(cls, 20_000, 0).double().numpy()
        centres, sigma = cls.modes
        nearest = np.linalg.norm(x[:, None] - centres[None], axis=2).argmin(1)
        for k, c in enumerate(centres):
            pts = x[nearest == k]
            np.testing.assert_allclose(pts.mean(0), c, atol=4 * sigma / math.sqrt(len(pts)) + 1e-4)
            assert pts.std(0) == pytest.approx([sigma, sigma], rel=0.1)


def test_all_modes_covered_by_real_samples():
    st = metrics.mode_stats(_sample(TwentyFiveGaussians, 2500, 3), *TwentyFiveGaussians.modes)
    assert st["modes_covered"] == 25 and st["n_modes"] == 25
    assert 0.97 < st["hq_share"] <= 1.0  # 1 − exp(−4.5) ≈ 0.989 of a 2-D Gaussian lies within 3σ
    assert sum(st["mode_counts"]) == round(st["hq_share"] * 2500)


def test_a_single_mode_covers_one():
    centres, sigma = TwentyFiveGaussians.modes
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigma + torch.tensor(centres[7])
    st = metrics.mode_stats(x, centres, sigma)
    assert st["modes_covered"] == 1 and st["mode_counts"][7] > 0
    assert st["hq_share"] > 0.95


def test_noise_far_away_is_never_high_quality():
    centres, sigma = EightGaussians.modes
    far = np.random.default_rng(0).normal(size=(300, 2)) * 0.1 + 10.0
    st = metrics.mode_stats(far, centres, sigma)
    assert st["hq_share"] == 0.0 and st["modes_covered"] == 0
    # points between the modes (the ring's centre) are not high quality either
    st = metrics.mode_stats(np.zeros((10, 2)), centres, sigma)
    assert st["hq_share"] == 0.0


# ----------------------------------------------------------------- Fréchet distance


def test_fd_of_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(500, 8))
    assert metrics.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fd_closed_form_for_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    # equal covariances: only the means count
    cov = np.diag([1.0, 2.0, 3.0])
    assert metrics.frechet_distance_from_stats(mu1, cov, mu2, cov) == pytest.approx(5.0)
    # diagonal covariances: ‖Δμ‖² + Σ (√a − √b)²
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert metrics.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)
    # non-commuting covariances: against the textbook formula with scipy's sqrtm
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(4), m2 @ m2.T + 0.1 * np.eye(4)
    ref = np.trace(s1 + s2 - 2 * np.real(sqrtm(s1 @ s2)))
    assert metrics.frechet_distance_from_stats(np.zeros(4), s1, np.zeros(4), s2) == pytest.approx(ref, rel=1e-8)


def test_fd_from_samples_of_two_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20_000, 2))
    b = rng.normal(size=(20_000, 2)) + np.array([3.0, 4.0])
    assert metrics.frechet_distance(a, b) == pytest.approx(25.0, rel=0.01)


# ----------------------------------------------------------------- KID


def test_kid_near_zero_for_one_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    same, same_std = metrics.kernel_inception_distance(a, b, subsets=20, subset_size=300)
    shifted, _ = metrics.kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=300)
    assert abs(same) < 0.05 and same_std >= 0
    assert shifted > 1.0 > 20 * abs(same)


def test_mmd_unbiased_leaves_out_the_diagonal():
    x = np.array([[1.0], [2.0]])
    # k(x, y) = (xy + 1)^3 with D = 1. A set against itself: each within-set mean keeps
    # only the off-diagonal pair (1, 2); the cross mean keeps all four pairs.
    k = lambda u, v: (u * v + 1) ** 3  # noqa: E731
    within = k(1, 2)
    cross = (k(1, 1) + k(1, 2) + k(2, 1) + k(2, 2)) / 4
    assert metrics.mmd2_unbiased(x, x) == pytest.approx(2 * within - 2 * cross)


# ----------------------------------------------------------------- PRDC


def test_prdc_identical_sets():
    f = np.random.default_rng(0).normal(size=(200, 4))
    r = metrics.prdc(f, f.copy(), k=5)
    assert r["precision"] == r["recall"] == r["coverage"] == 1.0
    # every real ball holds its own point and its 5 neighbours: density = (k + 1) / k
    assert r["density"] == pytest.approx(6 / 5)


def test_prdc_disjoint_sets():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 100.0
    r = metrics.prdc(real, fake, k=5)
    assert r == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_collapsed_fakes_are_precise_but_not_diverse():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 2))
    fake = rng.normal(size=(300, 2)) * 0.05  # all near the real data's centre
    r = metrics.prdc(real, fake, k=5)
    assert r["precision"] > 0.9 and r["coverage"] < 0.2 and r["recall"] < 0.2


def test_prdc_needs_more_than_k_samples():
    with pytest.raises(ValueError, match="k=5"):
        metrics.prdc(np.zeros((5, 2)), np.zeros((10, 2)))
