"""Sample-quality metrics, as pure functions of point sets or feature vectors.

* :func:`wasserstein1` — the exact Wasserstein-1 distance between two equal-size point
  sets (an optimal assignment on the Euclidean cost matrix; POT's network simplex when
  installed, scipy's assignment solver otherwise).
* :func:`mode_stats` — modes covered and the share of high-quality samples on the
  Gaussian-mixture toy sets (the VEEGAN / PacGAN protocol), given the mode centres and σ
  (the toy data sets own them: ``EightGaussians.modes``).
* :func:`frechet_distance` — the Fréchet distance between Gaussians fitted to two sets of
  feature vectors (FID's formula, Heusel et al. 2017), with scipy's matrix square root.
* :func:`kernel_inception_distance` — KID: the unbiased MMD² with the cubic polynomial
  kernel, averaged over random subsets (Bińkowski et al. 2018).
* :func:`precision_recall` — improved precision and recall from k-nearest-neighbour
  balls (Kynkäänniemi et al. 2019, k = 3); :func:`density_coverage` (Naeem et al. 2020,
  k = 5); :func:`prdc` all four at one k.

Every function takes numpy arrays or torch tensors of shape (N, D), computes in float64
on the CPU and returns plain Python numbers, so results go straight into JSON. The module
is longer than most because the metric families share its input checks, and the k-NN
metrics share the blocked distance code that keeps N = 10,000 in 2048-d features within
memory.
"""
from __future__ import annotations

import contextlib
import warnings
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
    "precision_recall",
    "density_coverage",
    "prdc",
    "FID_EPS",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "PR_K",
    "DC_K",
]

#: added to both covariances' diagonals when the square root of their product is not finite
FID_EPS = 1e-6
#: largest imaginary part on the diagonal of (Σ₁Σ₂)^½ treated as round-off
FID_MAX_IMAG = 1e-3
#: KID's subsets and their size (Bińkowski et al. 2018): 100 subsets of min(1000, N)
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
#: the neighbourhood sizes of the papers: precision/recall k = 3, density/coverage k = 5
PR_K = 3
DC_K = 5


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


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    """Tr (Σ₁Σ₂)^½ with :func:`scipy.linalg.sqrtm` (the matrix square root FID is
    defined with). Two guards: when the square root is not finite (a singular product,
    e.g. fewer samples than dimensions), ``eps`` is added to both diagonals and it is
    taken again; an imaginary part on its diagonal larger than :data:`FID_MAX_IMAG` is an
    error, a smaller one is round-off and dropped."""
    from scipy import linalg  # optional: the "eval" extra

    with warnings.catch_warnings():  # a singular product is expected at N <= D: handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(root).all():
            offset = np.eye(len(s1)) * eps
            root = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        imag = float(np.abs(np.diagonal(root).imag).max())
        if imag > FID_MAX_IMAG:
            raise ValueError(f"the square root of the covariance product has imaginary parts up to {imag:.3g} "
                             "on its diagonal: the statistics are not those of real features")
        root = root.real
    return float(np.trace(root))


def frechet_distance_from_stats(mu1: Any, cov1: Any, mu2: Any, cov2: Any, *, method: str = "sqrtm",
                                eps: float = FID_EPS) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½): the squared Wasserstein-2 distance between
    N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64.

    ``method="sqrtm"`` (default, as FID is reported): Tr (Σ₁Σ₂)^½ from
    :func:`scipy.linalg.sqrtm` with its guards (:func:`_trace_sqrt_product`).
    ``method="eigh"``: Σ √λᵢ over the eigenvalues of the symmetric PSD matrix
    Σ₁^½ Σ₂ Σ₁^½ (the same eigenvalues as Σ₁Σ₂), which has no complex round-off; the two
    agree to round-off on well-conditioned statistics. A result below 0 (round-off) is
    returned as 0."""
    if method not in ("sqrtm", "eigh"):
        raise ValueError(f"method must be 'sqrtm' or 'eigh', got {method!r}")
    m1, m2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(f"mismatched statistics: means {m1.shape}, {m2.shape}; covariances {s1.shape}, {s2.shape}")
    if method == "sqrtm":
        tr_sqrt = _trace_sqrt_product(s1, s2, eps)
    else:
        r1 = _sqrt_psd(s1)
        eig = np.linalg.eigvalsh(r1 @ s2 @ r1)
        tr_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = m1 - m2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def feature_stats(f: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of an (N, D) set of feature vectors."""
    a = _as_2d(f, "features")
    if len(a) < 2:
        raise ValueError("feature statistics need at least 2 vectors")
    return a.mean(0), np.cov(a, rowvar=False)


def frechet_distance(f1: Any, f2: Any, *, method: str = "sqrtm") -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance, float64) to
    two sets of feature vectors, (N₁, D) and (N₂, D) — FID on Inception features.
    Biased upwards at small N (and the covariances are rank-deficient when N ≤ D), so
    compare values computed at the same sample sizes."""
    a, b = _as_2d(f1, "f1"), _as_2d(f2, "f2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} and {b.shape[1]}")
    if min(len(a), len(b)) < 2:
        raise ValueError("frechet_distance needs at least 2 vectors per set")
    return frechet_distance_from_stats(*feature_stats(a), *feature_stats(b), method=method)


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
    f1: Any, f2: Any, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, degree: int = 3,
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


#: rows × columns of one block of the distance matrices (float64: 128 MiB)
_BLOCK = 1 << 24
#: relative width of the band of squared distances recomputed exactly
_BAND = 1e-11


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances between paired rows of ``a`` and ``b``, from their differences."""
    return np.sqrt(((a - b) ** 2).sum(-1))


def _sq_dist_block(a: np.ndarray, na: np.ndarray, b: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances of a block of rows by the Gram form (one matrix product)."""
    return np.maximum(na[:, None] + nb[None, :] - 2.0 * (a @ b.T), 0.0)


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each point to its k-th nearest neighbour in the same set (the
    point itself excluded: the k-th smallest distance of its row after its own 0).

    Block by block with the Gram form; the few smallest candidates of each row are then
    measured exactly from their differences, so the radius is the exact distance to a
    neighbour (comparisons with :func:`_in_balls` have no round-off ties)."""
    n = len(x)
    nx = np.einsum("ij,ij->i", x, x)
    m = min(n, k + 9)  # candidates measured exactly
    out = np.empty(n)
    rows = max(1, min(_BLOCK // max(n, 1), 256))
    for s in range(0, n, rows):
        d2 = _sq_dist_block(x[s:s + rows], nx[s:s + rows], x, nx)
        d2[np.arange(len(d2)), np.arange(s, s + len(d2))] = 0.0  # the point itself
        cand = np.argpartition(d2, m - 1, axis=1)[:, :m]
        exact = _exact(x[s:s + rows, None, :], x[cand])
        exact[cand == np.arange(s, s + len(d2))[:, None]] = 0.0
        out[s:s + rows] = np.sort(exact, axis=1)[:, k]
    return out


def _in_balls(x: np.ndarray, y: np.ndarray, r_x: np.ndarray | None, r_y: np.ndarray | None,
              visit) -> None:
    """Walk the (N, M) matrix of distances between ``x`` and ``y`` block by block and call
    ``visit(rows, in_x_ball, in_y_ball)``: ``in_x_ball[i, j]`` is ‖xᵢ − yⱼ‖ ≤ r_x[i] (closed
    balls around the x points), ``in_y_ball[i, j]`` is ‖xᵢ − yⱼ‖ ≤ r_y[j] (None where
    the radii are None). Entries whose Gram-form distance lies within round-off of the
    radius are decided by the exact distance."""
    nx, ny = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    rows = max(1, _BLOCK // max(len(y), 1))
    for s in range(0, len(x), rows):
        xb, nxb = x[s:s + rows], nx[s:s + rows]
        d2 = _sq_dist_block(xb, nxb, y, ny)
        tol = _BAND * (nxb[:, None] + ny[None, :] + 1e-300)
        found = []
        for r2 in (None if r_x is None else r_x[s:s + rows, None] ** 2, None if r_y is None else r_y[None, :] ** 2):
            if r2 is None:
                found.append(None)
                continue
            inside = d2 <= r2
            i, j = np.nonzero(np.abs(d2 - r2) <= tol)
            if len(i):
                r = np.sqrt(np.broadcast_to(r2, d2.shape)[i, j])
                inside[i, j] = _exact(xb[i], y[j]) <= r
            found.append(inside)
        visit(slice(s, s + len(xb)), found[0], found[1])


def _check_pair(real: Any, fake: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_2d(real, "real"), _as_2d(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} and {y.shape[1]}")
    if k < 1 or len(x) <= k or len(y) <= k:
        raise ValueError(f"k={k} needs more than {k} real and {k} fake samples (got {len(x)}, {len(y)})")
    return x, y


def precision_recall(real: Any, fake: Any, k: int = PR_K) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): each set's manifold is
    the union of closed balls B(x, r_k(x)) around its samples, r_k(x) the distance to the
    k-th nearest neighbour in the same set (k = 3 in the paper).

    * precision — share of fake samples inside the real manifold (fidelity);
    * recall — share of real samples inside the fake manifold (diversity)."""
    x, y = _check_pair(real, fake, k)
    fake_in = np.zeros(len(y), bool)
    real_in = np.zeros(len(x), bool)

    def visit(rows, in_real_ball, in_fake_ball):
        fake_in[:] |= in_real_ball.any(axis=0)
        real_in[rows] = in_fake_ball.any(axis=1)

    _in_balls(x, y, _kth_neighbour_radius(x, k), _kth_neighbour_radius(y, k), visit)
    return {"precision": float(fake_in.mean()), "recall": float(real_in.mean())}


def density_coverage(real: Any, fake: Any, k: int = DC_K) -> dict[str, float]:
    """Density and coverage (Naeem et al. 2020), from the real samples' k-NN balls only
    (k = 5 in the paper):

    * density — fake samples' real-ball memberships, summed and divided by k·M (about 1
      when fake ≈ real; may exceed 1);
    * coverage — share of real balls that hold at least one fake sample."""
    x, y = _check_pair(real, fake, k)
    count = [0]
    covered = np.zeros(len(x), bool)

    def visit(rows, in_real_ball, _):
        count[0] += int(in_real_ball.sum())
        covered[rows] = in_real_ball.any(axis=1)

    _in_balls(x, y, _kth_neighbour_radius(x, k), None, visit)
    return {"density": float(count[0] / (k * len(y))), "coverage": float(covered.mean())}


def prdc(real: Any, fake: Any, k: int = DC_K) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with one k for all
    four (:func:`precision_recall` and :func:`density_coverage`; the papers' own k are
    3 for precision/recall and 5 for density/coverage)."""
    _check_pair(real, fake, k)
    return {**precision_recall(real, fake, k), **density_coverage(real, fake, k)}
