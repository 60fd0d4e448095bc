"""Sample-quality metrics, as pure functions of point sets or feature vectors.

* :func:`wasserstein1` — the exact Wasserstein-1 distance between two equal-size point
  sets (an optimal assignment on the Euclidean cost matrix; POT's network simplex when
  installed, scipy's assignment solver otherwise).
* :func:`mode_stats` — modes covered and the share of high-quality samples on the
  Gaussian-mixture toy sets (the VEEGAN / PacGAN protocol), given the mode centres and σ
  (the toy data sets own them: ``EightGaussians.modes``).
* :func:`frechet_distance` — the Fréchet distance between Gaussians fitted to two sets of
  feature vectors (FID's formula, Heusel et al. 2017).
* :func:`kernel_inception_distance` — KID: the unbiased MMD² with the cubic polynomial
  kernel, averaged over random subsets (Bińkowski et al. 2018).
* :func:`prdc` — precision, recall, density and coverage from k-nearest-neighbour balls
  (Naeem et al. 2020).

Every function takes numpy arrays or torch tensors of shape (N, D), computes in float64
on the CPU and returns plain Python numbers, so results go straight into JSON.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "wasserstein1",
    "wasserstein1_floor",
    "mode_stats",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kernel_inception_distance",
    "mmd2_unbiased",
    "prdc",
]


def _as_2d(x: Any, name: str) -> np.ndarray:
    """(N, ...) array or tensor → float64 (N, D) numpy array; refuses NaN and inf."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().to("cpu").double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim < 2 or a.shape[0] < 1:
        raise ValueError(f"{name}: expected an (N, D) array with N >= 1, got shape {a.shape}")
    a = a.reshape(a.shape[0], -1)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _one_blas_thread():
    """Limit BLAS to one thread where threadpoolctl is installed (scikit-learn brings
    it): the matrices here are small, and on a busy machine a multi-threaded BLAS runs
    them ~20 times slower than one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return cdist(a, b, metric="euclidean")


# ----------------------------------------------------------------- Wasserstein-1


W1_SOLVERS = ("auto", "pot", "scipy")


def wasserstein1(x: Any, y: Any, solver: str = "auto") -> float:
    """Exact Wasserstein-1 distance between the empirical distributions of two point
    sets of the same size N (each point has mass 1/N).

    With equal masses an optimal transport plan is a permutation (Birkhoff–von Neumann),
    so W1 = min over assignments σ of (1/N) Σᵢ ‖xᵢ − y_σ(i)‖ on the N × N Euclidean cost
    matrix, solved exactly by one of two solvers (``solver``):

    * ``"pot"``: POT's network simplex (``ot.emd``), when POT is installed (the ``eval``
      extra): a few seconds at N = 2500 whatever the sets;
    * ``"scipy"``: :func:`scipy.optimize.linear_sum_assignment`, O(N³) in the worst
      case: a few seconds at N = 2500 when the sets are alike, tens of seconds when they
      are far apart (many near-equal costs).

    ``"auto"`` takes POT when it is importable and scipy otherwise. Both return the same
    optimum (to rounding); a simplex run that stops short of optimal falls back to scipy."""
    if solver not in W1_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(W1_SOLVERS)}, got {solver!r}")
    a, b = _as_2d(x, "x"), _as_2d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"wasserstein1 needs two point sets of the same shape, got {a.shape} and {b.shape}")
    cost = _pairwise(a, b)
    if solver != "scipy":
        value = _w1_network_simplex(cost, required=solver == "pot")
        if value is not None:
            return value
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _w1_network_simplex(cost: np.ndarray, required: bool) -> float | None:
    """W1 from POT's exact solver; None when POT is missing (and not ``required``) or
    the solver did not reach the optimum."""
    try:
        import ot
    except ImportError:
        if required:
            raise ValueError("solver 'pot' needs POT: pip install pot (or gantk[eval])") from None
        return None
    n = len(cost)
    mass = np.full(n, 1.0 / n)
    plan, log = ot.emd(mass, mass, cost, numItermax=max(100_000, 100 * n * n), log=True)
    if log.get("result_code") != 1:  # stopped early or infeasible: not the optimum
        return None
    # the optimal vertex is a permutation: read it off the plan and average the costs it
    # picks, as the scipy path does, so that equal assignments give the same bits
    cols = np.asarray(plan).argmax(axis=1)
    if len(np.unique(cols)) == n:
        return float(cost[np.arange(n), cols].mean())
    return float(log["cost"])


def wasserstein1_floor(sample: Callable[[int, int], Any], n: int, seed: int = 0) -> float:
    """W1 between two independent samples of size ``n`` from the same distribution:
    what a perfect generator would score at this N (the estimator's bias, which shrinks
    slowly with N). ``sample(n, seed)`` returns an (n, D) sample; the two samples use
    ``seed`` and ``seed + 1``."""
    return wasserstein1(sample(n, seed), sample(n, seed + 1))


def mode_stats(samples: Any, centres: Any, sigma: float, threshold: float = 3.0) -> dict[str, Any]:
    """Mode coverage on a Gaussian mixture (VEEGAN, Srivastava et al. 2017; PacGAN,
    Lin et al. 2018): a sample is *high quality* when it lies within ``threshold``·σ of
    its nearest mode centre, and a mode is *covered* when at least one high-quality
    sample is nearest to it.

    Returns ``modes_covered``, ``n_modes``, ``hq_share`` (share of high-quality samples,
    0..1) and ``mode_counts`` (high-quality samples per mode). For reference, a sample
    of an isotropic 2-D Gaussian lies within 3σ of its centre with probability
    1 − exp(−4.5) ≈ 0.989."""
    pts = _as_2d(samples, "samples")
    c = _as_2d(centres, "centres")
    if pts.shape[1] != c.shape[1]:
        raise ValueError(f"samples have dimension {pts.shape[1]}, mode centres {c.shape[1]}")
    d = _pairwise(pts, c)
    nearest = d.argmin(axis=1)
    hq = d[np.arange(len(pts)), nearest] <= threshold * sigma
    counts = np.bincount(nearest[hq], minlength=len(c))
    return {
        "modes_covered": int((counts > 0).sum()),
        "n_modes": int(len(c)),
        "hq_share": float(hq.mean()),
        "mode_counts": [int(v) for v in counts],
    }


# ----------------------------------------------------------------- Fréchet distance


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (tiny negative
    eigenvalues from round-off are clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_from_stats(mu1: Any, cov1: Any, mu2: Any, cov2: Any) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½): the squared Wasserstein-2 distance between
    N(μ₁, Σ₁) and N(μ₂, Σ₂).

    Tr (Σ₁Σ₂)^½ is computed as Σ √λᵢ over the eigenvalues of the symmetric PSD matrix
    Σ₁^½ Σ₂ Σ₁^½ (which has the same eigenvalues as Σ₁Σ₂), avoiding the complex
    round-off of a general matrix square root."""
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(f"mismatched statistics: means {m1.shape}, {m2.shape}; covariances {s1.shape}, {s2.shape}")
    r1 = _sqrt_psd(s1)
    eig = np.linalg.eigvalsh(r1 @ s2 @ r1)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = m1 - m2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance(f1: Any, f2: Any) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two
    sets of feature vectors, (N₁, D) and (N₂, D). Biased upwards at small N, so compare
    values computed at the same sample sizes."""
    a, b = _as_2d(f1, "f1"), _as_2d(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs at least 2 vectors per set")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# ----------------------------------------------------------------- KID


def _poly_kernel(a: np.ndarray, b: np.ndarray, degree: int, coef0: float) -> np.ndarray:
    return (a @ b.T / a.shape[1] + coef0) ** degree


def mmd2_unbiased(a: Any, b: Any, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased estimate of MMD² between two samples with the polynomial kernel
    k(x, y) = (xᵀy / D + coef0)^degree: the within-set means leave out i = j."""
    x, y = _as_2d(a, "a"), _as_2d(b, "b")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("the unbiased MMD needs at least 2 vectors per set")
    kxx = _poly_kernel(x, x, degree, coef0)
    kyy = _poly_kernel(y, y, degree, coef0)
    kxy = _poly_kernel(x, y, degree, coef0)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    f1: Any, f2: Any, *, subsets: int = 50, subset_size: int = 1000, degree: int = 3,
    coef0: float = 1.0, seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): the unbiased MMD² (:func:`mmd2_unbiased`, cubic
    polynomial kernel) averaged over ``subsets`` random subsets of
    ``min(subset_size, N₁, N₂)`` vectors drawn without replacement from each set.
    Returns ``(mean, standard deviation over subsets)``. Unbiased: about 0 (and may be
    slightly negative) for two samples of one distribution."""
    a, b = _as_2d(f1, "f1"), _as_2d(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    vals = []
    with _one_blas_thread():
        for _ in range(max(1, subsets)):
            ia = rng.choice(len(a), size, replace=False)
            ib = rng.choice(len(b), size, replace=False)
            vals.append(mmd2_unbiased(a[ia], b[ib], degree, coef0))
    v = np.asarray(vals)
    return float(v.mean()), float(v.std())


# ----------------------------------------------------------------- PRDC


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (the
    point itself excluded)."""
    d = _pairwise(x, x)
    return np.partition(d, k, axis=1)[:, k]  # column 0 of a sorted row is the point itself


def prdc(real: Any, fake: Any, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-NN balls:
    B(x, r_k(x)), where r_k(x) is the distance from x to its k-th nearest neighbour in its
    own set (closed balls).

    * precision — share of fake samples inside at least one real ball;
    * recall — share of real samples inside at least one fake ball;
    * density — fake samples' real-ball memberships, summed and divided by k·M (about 1
      when fake ≈ real; may exceed 1);
    * coverage — share of real balls that hold at least one fake sample.
    """
    x, y = _as_2d(real, "real"), _as_2d(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    if k < 1 or len(x) <= k or len(y) <= k:
        raise ValueError(f"prdc with k={k} needs more than {k} real and {k} fake samples (got {len(x)}, {len(y)})")
    r_real = _kth_neighbour_radius(x, k)
    r_fake = _kth_neighbour_radius(y, k)
    d = _pairwise(x, y)  # (N real, M fake)
    in_real_ball = d <= r_real[:, None]
    in_fake_ball = d <= r_fake[None, :]
    return {
        "precision": float(in_real_ball.any(axis=0).mean()),
        "recall": float(in_fake_ball.any(axis=1).mean()),
        "density": float(in_real_ball.sum() / (k * len(y))),
        "coverage": float(in_real_ball.any(axis=1).mean()),
    }
