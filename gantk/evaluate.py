"""``gantk eval``: sample-quality numbers for a trained generator, with the protocol
chosen by the run's data.

* ``8gaussians`` / ``25gaussians`` — exact W1 to fresh real samples, the real-vs-real
  floor at the same N, modes covered and the share of high-quality samples;
  ``swissroll`` — W1 and its floor.
* ``digits`` — a small CNN classifier trained here on scikit-learn's digits (training
  split; cached in ``~/.cache/gantk/eval``): Fréchet distance and KID on its penultimate
  features (generated vs held-out real digits), the class histogram of the generated
  digits, and precision / recall / density / coverage on the same features.
* other 2-D point data — W1 to the data; anything else has no protocol (an error).

:func:`evaluate` works on a checkpoint; :class:`EvalCallback` evaluates the generator
of a running :class:`~gantk.train.Trainer` every K steps (``gantk train --eval-every K``)
and appends the numbers to ``eval.jsonl`` in the run folder.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .errors import DataError, UsageError
from .fsutil import append_line, atomic_path
from .train import Callback

TOY_SETS = ("8gaussians", "25gaussians", "swissroll")
DEFAULT_N = 2500
CALLBACK_N = 1000
MIN_N = 10

#: Bump when the classifier's architecture, data split or training changes: it keys the
#: cached weights, so old caches are never used with new code.
CLASSIFIER_VERSION = "digits-cnn-1"
CLASSIFIER_EPOCHS = 40
HELDOUT_SHARE = 0.3
PRDC_K = 5
#: W1 floors: real-vs-real pairs averaged (cached per data set and N; bump the version
#: when the sampling of the pairs changes), and the generated draws ``gantk eval``
#: averages W1 over by default
FLOOR_DRAWS = 16
FLOOR_SEED = 2_000_000
FLOOR_VERSION = 1
#: Floors of the built-in toy sets at the published N, averaged over more pairs than a
#: first ``gantk eval`` could afford to compute (``benchmarks/quality/w1_floors.py``
#: writes it; the tests recompute some of its pairs)
SHIPPED_FLOORS = Path(__file__).with_name("w1_floors.json")
DEFAULT_DRAWS = 5
DRAW_STRIDE = 100_003


# ------------------------------------------------------------------ digits classifier


class DigitsNet(nn.Module):
    """A small CNN for 8×8 digits in [−1, 1]: two 3×3 convolutions, 2×2 max-pooling,
    a 64-unit hidden layer (the features used for FD, KID and PRDC) and 10 logits."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4 * 4, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, 8, 8) → (features (N, 64), logits (N, 10))."""
        f = self.body(x)
        return f, self.head(f)


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits as (N, 1, 8, 8) in [−1, 1] (pixels / 8 − 1, as the
    ``digits`` data set), split once with a fixed seed and stratified by class into
    training (70 %) and held-out (30 %, 540 images): ``(x_train, y_train, x_test, y_test)``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("the digits protocol needs scikit-learn: pip install 'gantk[eval]'") from None
    d = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=HELDOUT_SHARE,
                                           random_state=0, stratify=d.target)
    x = torch.from_numpy(d.data).float().reshape(-1, 1, 8, 8).div(8.0).sub(1.0)
    y = torch.from_numpy(d.target).long()
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def cache_dir() -> Path:
    """``$GANTK_CACHE_DIR/eval``, else ``$XDG_CACHE_HOME/gantk/eval``, else
    ``~/.cache/gantk/eval``."""
    if os.environ.get("GANTK_CACHE_DIR"):
        return Path(os.environ["GANTK_CACHE_DIR"]) / "eval"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "gantk" / "eval"


def _train_classifier(epochs: int) -> DigitsNet:
    x, y, _, _ = digits_split()
    threads = torch.get_num_threads()
    # A net this small trains several times faster on one thread (less so on idle
    # machines, much more on busy ones). A private RNG stream: training the classifier
    # inside a run (EvalCallback) must not change the run's random numbers.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            return _fit(x, y, epochs)
    finally:
        torch.set_num_threads(threads)


def _fit(x: torch.Tensor, y: torch.Tensor, epochs: int) -> DigitsNet:
    torch.manual_seed(0)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            # like the data the GANs see: digits upscaled to 8, 16 or 32 pixels, then
            # area-averaged back to 8 × 8 as generated samples are
            xb = round_trip(x[b], (8, 16, 32)[int(torch.randint(0, 3, (1,), generator=g))])
            # one-pixel random shifts: generated digits are rarely perfectly centred
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            xb = torch.roll(F.pad(xb, (1, 1, 1, 1), value=-1.0), (dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]
            loss = F.cross_entropy(net(xb)[1], y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def _accuracy(net: DigitsNet) -> float:
    _, _, xt, yt = digits_split()
    return float((net(xt)[1].argmax(1) == yt).float().mean())


_CLASSIFIERS: dict[tuple[str, int], tuple[DigitsNet, float]] = {}


def digits_classifier(epochs: int = CLASSIFIER_EPOCHS, *, cache: str | Path | None = None) -> tuple[DigitsNet, float]:
    """The digits classifier and its held-out accuracy: from memory, else from the cache
    folder (``cache`` or :func:`cache_dir`), else trained now (about 10 s on a CPU)
    and cached. The file name holds :data:`CLASSIFIER_VERSION` and ``epochs``."""
    if epochs < 1:
        raise UsageError(f"classifier epochs must be >= 1, got {epochs}")
    folder = Path(cache) if cache is not None else cache_dir()
    key = (str(folder.resolve()), epochs)
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    path = folder / f"{CLASSIFIER_VERSION}-e{epochs}.safetensors"
    net = None
    if path.is_file():
        from safetensors.torch import load_file

        try:
            cand = DigitsNet()
            cand.load_state_dict(load_file(str(path)))
            net = cand.eval()
        except Exception:  # a corrupt or foreign cache file: train afresh and overwrite it
            net = None
    if net is None:
        net = _train_classifier(epochs)
        try:
            from safetensors.torch import save

            data = save({k: v.contiguous() for k, v in net.state_dict().items()},
                        metadata={"version": CLASSIFIER_VERSION, "epochs": str(epochs)})
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except Exception as exc:  # an unwritable cache only costs time next run
            import warnings

            from .train import GantkWarning

            warnings.warn(f"could not cache the digits classifier in {folder}: {exc}", GantkWarning, stacklevel=2)
    result = (net, _accuracy(net))
    _CLASSIFIERS[key] = result
    return result


def round_trip(x: torch.Tensor, size: int) -> torch.Tensor:
    """8 × 8 digits as the ``digits`` data set serves them at ``size`` (bilinear
    upscaling, clamped to [−1, 1]), brought back to 8 × 8 by :func:`to_digit_inputs`: the
    real counterpart of a generated digit of that size. Identity for size 8."""
    if size == 8:
        return x
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return to_digit_inputs(up)


def to_digit_inputs(images: torch.Tensor) -> torch.Tensor:
    """Generated digits (N, 1, S, S), S a multiple of 8 (8, 16 or 32), → (N, 1, 8, 8) in
    [−1, 1] by area averaging: the classifier's input."""
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] or images.shape[2] % 8:
        raise DataError(f"the digits protocol needs grayscale square images of side 8, 16 or 32; "
                        f"got samples of shape {tuple(images.shape[1:])}")
    x = images.float().cpu().clamp(-1, 1)
    s = x.shape[2] // 8
    return F.avg_pool2d(x, s) if s > 1 else x


@torch.no_grad()
def _features(net: DigitsNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    fs, ls = [], []
    for chunk in x.split(1024):
        f, logits = net(chunk)
        fs.append(f)
        ls.append(logits)
    return torch.cat(fs).double().numpy(), torch.cat(ls).argmax(1).numpy()


# ------------------------------------------------------------------ protocols


class Protocol:
    """Prepared once per (data, N, seed): the real samples and reference numbers; then
    :meth:`score` turns N generated samples into a dict of numbers."""

    name = ""
    #: generated sets :meth:`score` takes (a list when more than one)
    draws = 1

    def score(self, fake: torch.Tensor) -> dict[str, Any]:
        raise NotImplementedError


def _check_finite(fake: torch.Tensor) -> None:
    if not torch.isfinite(fake).all():
        raise DataError("the generator produced NaN or infinite samples; nothing to evaluate")


def latent_seed(seed: int, draw: int) -> int:
    """The latent seed of generated draw ``draw`` (draw 0 uses ``seed`` itself)."""
    return seed + DRAW_STRIDE * draw


def options_key(dataset) -> str:
    """The data set's options as the floors (cached and shipped) are keyed by."""
    return json.dumps(getattr(dataset, "opts", {}), sort_keys=True, default=str)


def shipped_floor(dataset, n: int) -> tuple[float, float, int] | None:
    """(mean, sd, pairs) of the floor shipped for this data set (with these options) at
    N = ``n``, or None. Only the built-in sets' own classes are trusted with it: a
    plugin's data set of the same name draws other samples."""
    from .default_plugins import datasets as builtin

    if type(dataset).__module__ != builtin.__name__:
        return None
    try:
        table = json.loads(SHIPPED_FLOORS.read_text())
    except (OSError, ValueError):
        return None
    for rec in table.get("floors", []):
        if (rec.get("version") == FLOOR_VERSION and rec.get("data") == dataset.name and rec.get("n") == n
                and rec.get("options") == options_key(dataset)):
            vals = [float(v) for v in rec["values"]]
            return float(np.mean(vals)), float(np.std(vals, ddof=1)), len(vals)
    return None


def floor_pairs(dataset, n: int, pairs: range | list[int]) -> list[float]:
    """W1 of the real-vs-real pairs numbered ``pairs`` (pair k: seeds FLOOR_SEED + 2k
    and + 2k + 1), the pairs every floor of this data set at N averages."""

    def sample(m: int, s: int) -> torch.Tensor:
        return dataset.generate(m, torch.Generator().manual_seed(s))

    return [metrics.wasserstein1_floor(sample, n, FLOOR_SEED + 2 * k) for k in pairs]


def toy_w1_floor(dataset, n: int, draws: int = FLOOR_DRAWS, *, cache: str | Path | None = None
                 ) -> tuple[float, float]:
    """The real-vs-real W1 floor at N = ``n`` for a toy set: the mean (and the standard
    deviation) of W1 between two independent real samples over ``draws`` pairs.

    It is what a perfect generator scores on average. One pair is a noisy yardstick: at
    N = 2500 on 25gaussians, single pairs range over about ±25 % of the mean (the
    samples' mode counts fluctuate, and mass must then travel between modes), so a
    ratio to one pair mostly measures the pair. The floor depends only on the data and
    N, so it is computed once and cached (``cache``, default :func:`cache_dir`)."""
    opts = options_key(dataset)
    key = f"{dataset.name}-n{n}-d{draws}-{hashlib.sha1(opts.encode()).hexdigest()[:8]}"
    path = Path(cache) if cache is not None else cache_dir()
    path = path / f"w1-floor-{FLOOR_VERSION}-{key}.json"
    try:
        rec = json.loads(path.read_text())
        return float(rec["mean"]), float(rec["sd"])
    except (OSError, ValueError, KeyError, TypeError):
        pass

    vals = floor_pairs(dataset, n, range(draws))
    mean, sd = float(np.mean(vals)), float(np.std(vals, ddof=1)) if draws > 1 else 0.0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"data": dataset.name, "n": n, "draws": draws, "mean": mean, "sd": sd,
                                       "values": vals}))
    except OSError:  # a read-only cache costs time, never the result
        pass
    return mean, sd


def ratio_se(w1: float, w1_sd: float, draws: int, floor: float, floor_sd: float, floor_draws: int) -> float:
    """Standard error of W1 / floor, both means of independent draws (first-order
    propagation of the two standard errors of the mean).

    At N = 2500 it is large: single draws on the toy mixtures spread over about a third
    of the floor (the mode counts of a sample fluctuate, and mass must then travel
    between modes), so a ratio over 5 draws is known to about ±0.1."""
    ratio = w1 / floor
    return float(math.sqrt(w1_sd**2 / draws + (ratio * floor_sd) ** 2 / floor_draws) / floor)


class ToyProtocol(Protocol):
    """W1 (exact) to fresh samples of the toy distribution and the real-vs-real floor;
    for the Gaussian mixtures also modes covered and the high-quality share.

    ``draws`` > 1 averages W1 over that many generated sets (latent seeds from
    :func:`latent_seed`), each against its own fresh real sample, and :meth:`score`
    then takes a list of that many sets. The floor is the shipped one
    (:func:`shipped_floor`) where there is one for the data set at N and
    ``floor_draws`` is None, else the mean over ``floor_draws`` (default
    :data:`FLOOR_DRAWS`) real-vs-real pairs (:func:`toy_w1_floor`). Modes and the
    high-quality share come from the first set (the published protocol at N)."""

    name = "toy"

    def __init__(self, dataset, n: int, seed: int, *, draws: int = 1, floor_draws: int | None = None,
                 cache: str | Path | None = None):
        if draws < 1 or (floor_draws is not None and floor_draws < 1):
            raise UsageError(f"draws must be >= 1, got {min(draws, floor_draws or 1)}")
        self.data_name = dataset.name
        self.draws = draws

        def draw(m: int, s: int) -> torch.Tensor:
            return dataset.generate(m, torch.Generator().manual_seed(s))

        # real seeds differ from the latent seed's stream
        self.reals = [draw(n, 1000 + latent_seed(seed, k)) for k in range(draws)]
        self.real = self.reals[0]
        shipped = shipped_floor(dataset, n) if floor_draws is None else None
        if shipped is not None:
            self.floor, self.floor_sd, self.floor_draws = shipped
        else:
            self.floor_draws = floor_draws or FLOOR_DRAWS
            self.floor, self.floor_sd = toy_w1_floor(dataset, n, self.floor_draws, cache=cache)
        self.modes = metrics.TOY_MODES.get(self.data_name)
        self.hq_real = None
        if self.modes is not None:
            self.hq_real = metrics.mode_stats(self.real, *self.modes)["hq_share"]

    def score(self, fake):
        fakes = list(fake) if isinstance(fake, (list, tuple)) else [fake]
        if len(fakes) != self.draws:
            raise ValueError(f"this protocol scores {self.draws} generated set(s), got {len(fakes)}")
        for f in fakes:
            _check_finite(f)
        fakes = [f.reshape(len(f), -1)[: len(self.real)] for f in fakes]
        w1s = [metrics.wasserstein1(f, r) for f, r in zip(fakes, self.reals)]
        out: dict[str, Any] = {"w1": float(np.mean(w1s)), "w1_floor": self.floor,
                               "w1_over_floor": float(np.mean(w1s)) / self.floor}
        if self.draws > 1:
            out.update(w1_sd=float(np.std(w1s, ddof=1)), w1_draws=self.draws)
        out.update(w1_floor_sd=self.floor_sd, w1_floor_draws=self.floor_draws)
        if self.draws > 1 and self.floor_draws > 1:
            out["w1_over_floor_se"] = ratio_se(out["w1"], out["w1_sd"], self.draws,
                                               self.floor, self.floor_sd, self.floor_draws)
        if self.modes is not None:
            st = metrics.mode_stats(fakes[0], *self.modes)
            out.update(modes_covered=st["modes_covered"], n_modes=st["n_modes"], hq_share=st["hq_share"],
                       hq_share_real=self.hq_real)
        return out


class PointsProtocol(Protocol):
    """Other 2-D point data: exact W1 between N generated points and N points of the
    data (all of it when it has fewer than N points)."""

    name = "points"

    def __init__(self, data: torch.Tensor, n: int, seed: int):
        g = torch.Generator().manual_seed(1000 + seed)
        idx = torch.randperm(len(data), generator=g)[:n]
        self.real = data.detach().float().cpu()[idx].reshape(len(idx), -1)

    def score(self, fake):
        _check_finite(fake)
        fake = fake.reshape(len(fake), -1)[: len(self.real)]
        return {"w1": metrics.wasserstein1(fake, self.real), "n_real": len(self.real)}


class DigitsProtocol(Protocol):
    """Classifier-feature metrics for digits: FD and KID (generated vs held-out real),
    the generated class histogram, precision/recall/density/coverage (k = 5, on the
    first min(N, 540) generated digits, so both sets have the same size). ``fd_floor``
    and ``kid_floor`` compare the real training split (1,257 digits) with the held-out
    split: they are small, not zero, and measured at other sample sizes than ``fd``."""

    name = "digits"

    def __init__(self, n: int, seed: int, *, size: int = 8, epochs: int = CLASSIFIER_EPOCHS,
                 cache: str | Path | None = None):
        self.seed = seed
        self.net, _ = digits_classifier(epochs, cache=cache)
        x_train, _, x_test, y_test = digits_split()
        # the real digits as the run saw them (upscaled to its size), then area-averaged
        # to 8 × 8 like the generated ones: a perfect generator matches them exactly
        x_train, x_test = round_trip(x_train, size), round_trip(x_test, size)
        with torch.no_grad():
            self.accuracy = float((self.net(x_test)[1].argmax(1) == y_test).float().mean())
        train_feats, _ = _features(self.net, x_train)
        # One constant for every feature vector: the root mean square of the training
        # split's features, so that the cubic kernel's xᵀy / D is of order 1 as with the
        # Inception features KID was made for (raw ReLU features here are ~10 times
        # larger and their cubes swamp the estimate). PRDC does not change; FD scales by
        # 1 / scale².
        self.scale = float(np.sqrt((train_feats ** 2).mean()))
        train_feats /= self.scale
        self.real_feats = _features(self.net, x_test)[0] / self.scale
        self.fd_floor = metrics.frechet_distance(train_feats, self.real_feats)
        self.kid_floor = metrics.kernel_inception_distance(train_feats, self.real_feats, seed=seed)[0]

    def score(self, fake):
        _check_finite(fake)
        feats, classes = _features(self.net, to_digit_inputs(fake))
        feats /= self.scale
        hist = np.bincount(classes, minlength=10)
        kid, kid_std = metrics.kernel_inception_distance(feats, self.real_feats, seed=self.seed)
        m = min(len(feats), len(self.real_feats))
        out: dict[str, Any] = {
            "classifier_accuracy": self.accuracy,
            "fd": metrics.frechet_distance(feats, self.real_feats),
            "fd_floor": self.fd_floor,
            "kid": kid,
            "kid_std": kid_std,
            "kid_floor": self.kid_floor,
            "classes_covered": int((hist > 0).sum()),
            "class_histogram": [int(v) for v in hist],
            "n_real": len(self.real_feats),
        }
        if m > PRDC_K:
            out.update(metrics.prdc(self.real_feats[:m], feats[:m], k=PRDC_K))
        return out


def make_protocol(
    data: str,
    data_options: dict[str, Any],
    data_shape: tuple[int, ...],
    n: int,
    seed: int = 0,
    *,
    data_seed: int = 0,
    real: torch.Tensor | None = None,
    classifier_epochs: int = CLASSIFIER_EPOCHS,
    cache: str | Path | None = None,
    draws: int = 1,
) -> Protocol:
    """The protocol for a run's data (its name, options and sample shape). ``real`` is
    the run's data when already loaded (2-D point files); otherwise it is loaded with
    ``data_seed``. ``draws``: generated sets the toy protocol averages W1 over (other
    protocols score one set)."""
    from .plugins import get_registry

    if n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    if draws < 1:
        raise UsageError(f"--draws must be at least 1, got {draws}")
    shape = tuple(data_shape)
    reg = get_registry("dataset")
    if data in TOY_SETS and data in reg:
        ds = reg.get(data)(**data_options)
        if hasattr(ds, "generate"):
            return ToyProtocol(ds, n, seed, draws=draws, cache=cache)
    if data == "digits":
        if len(shape) != 3 or shape[0] != 1:
            raise DataError(f"the digits protocol needs (1, S, S) images; this run's samples have shape {shape}")
        if shape[1] != shape[2] or shape[1] % 8:
            raise DataError(f"the digits protocol needs square images of side 8, 16 or 32; "
                            f"this run's samples have shape {shape}")
        return DigitsProtocol(n, seed, size=shape[1], epochs=classifier_epochs, cache=cache)
    if shape == (2,):
        if real is None:
            from .data import load_samples

            _, real = load_samples(data, data_options, data_seed)
        return PointsProtocol(real, n, seed)
    raise DataError(
        f"no evaluation protocol for data {data!r} with samples of shape {shape}: gantk eval knows "
        f"{', '.join(TOY_SETS)}, digits, and other 2-D point data"
    )


@torch.no_grad()
def generate(generator: nn.Module, latent_dim: int, n: int, seed: int, device=None,
             batch_size: int = 1024) -> torch.Tensor:
    """``n`` samples from latents z ~ N(0, I) drawn with ``seed`` (on the CPU, so the
    same seed gives the same latents on every device), in eval mode; the module's mode
    is restored afterwards."""
    device = device if device is not None else next(iter(generator.parameters()), torch.empty(0)).device
    z = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))
    was = generator.training
    generator.eval()
    try:
        xs = [generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
    finally:
        generator.train(was)
    return torch.cat(xs)


def score_generator(proto: Protocol, generator: nn.Module, latent_dim: int, n: int, seed: int = 0,
                    device=None) -> dict[str, Any]:
    """Score ``generator`` with ``proto``: ``proto.draws`` sets of ``n`` samples, from
    latent seeds :func:`latent_seed` (``seed``, k) (the first from ``seed`` itself)."""
    fakes = [generate(generator, latent_dim, n, latent_seed(seed, k), device) for k in range(proto.draws)]
    return proto.score(fakes if proto.draws > 1 else fakes[0])


def evaluate(
    run_or_checkpoint: str | Path,
    n: int = DEFAULT_N,
    seed: int = 0,
    *,
    device: str = "cpu",
    classifier_epochs: int = CLASSIFIER_EPOCHS,
    cache: str | Path | None = None,
    draws: int = DEFAULT_DRAWS,
    raw: bool = False,
) -> dict[str, Any]:
    """Evaluate a checkpoint (or a run's newest checkpoint) with ``n`` generated samples
    from latents drawn with ``seed`` (on the toy sets, W1 is averaged over ``draws``
    such sets, the first one from ``seed``). Returns a JSON-ready dict: ``protocol``, ``data``,
    ``step``, ``checkpoint``, ``weights`` (``"ema"``: the run's weight average, the
    default when it kept one; ``"raw"``: the generator's own weights, or ``raw=True``),
    ``n``, ``seed``, ``seconds`` and the protocol's numbers
    (see the module docstring). Raises :class:`~gantk.errors.GantkError` subclasses for
    missing runs and data without a protocol."""
    from .sample import load_generator, weights_used
    from .train import resolve_device

    if n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    G, ck, shape, latent = load_generator(run_or_checkpoint, dev, raw=raw)
    cfg = ck.config
    proto = make_protocol(cfg.data, cfg.data_options, shape, n, seed, data_seed=cfg.seed,
                          classifier_epochs=classifier_epochs, cache=cache, draws=draws)
    res = score_generator(proto, G, latent, n, seed, dev)
    return {"protocol": proto.name, "data": cfg.data, "step": ck.step, "checkpoint": str(ck.path),
            "weights": weights_used(ck, raw), "n": n, "seed": seed, **res, "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------ during training


class EvalCallback(Callback):
    """Evaluates the trainer's current generator in-process every ``every`` steps (and
    at the last step) with ``n`` samples, and appends one JSON line to
    ``<run>/eval.jsonl``: ``step``, the protocol's numbers, ``critic_w`` — the critic's
    estimate E[D(real)] − E[D(fake)] on the same fake samples and as many real training
    samples (by Kantorovich–Rubinstein duality at most W1, up to sampling error, while
    the critic is 1-Lipschitz) — and the training
    ``w_estimate`` of metrics.jsonl logged at that step (or the latest before it) with
    its ``w_estimate_step``.

    It draws no numbers from the trainer's random streams, and runs both networks in
    eval mode (no BatchNorm statistics or spectral-norm power iterations are updated),
    so a run with evaluation trains exactly as one without."""

    def __init__(self, every: int, n: int = CALLBACK_N, seed: int = 0, *,
                 classifier_epochs: int = CLASSIFIER_EPOCHS, cache: str | Path | None = None):
        if every < 1:
            raise UsageError(f"--eval-every must be >= 1, got {every}")
        self.every, self.n, self.seed = every, n, seed
        self.classifier_epochs, self.cache = classifier_epochs, cache
        self.trainer = None
        self.protocol: Protocol | None = None
        self.path: Path | None = None
        self.records: list[dict[str, Any]] = []
        self._last_w: tuple[int, float] | None = None
        self._done_step: int | None = None
        self._pending: int | None = None

    def on_start(self, trainer) -> None:
        self.trainer = trainer
        c, cfg = trainer.c, trainer.cfg
        self.path = Path(trainer.run_dir) / "eval.jsonl"
        self.protocol = make_protocol(cfg.data, cfg.data_options, c.data_shape, self.n, self.seed,
                                      data_seed=cfg.seed, real=c.data, classifier_epochs=self.classifier_epochs,
                                      cache=self.cache)
        idx = torch.randperm(len(c.data), generator=torch.Generator().manual_seed(self.seed))[: self.n]
        self._critic_real = c.data[idx.to(c.data.device)]

    def _log_due(self, step: int) -> bool:
        cfg = self.trainer.cfg
        return bool(cfg.log_every and step % cfg.log_every == 0) or step >= cfg.steps

    def on_step(self, step: int) -> None:
        if self.trainer is None:
            return
        if self._pending is not None:  # a deferred evaluation whose log never came
            self._pending = None
            self.evaluate_now(step)
        if step % self.every == 0 or step >= self.trainer.cfg.steps:
            if self._log_due(step):
                self._pending = step  # wait for this step's W estimate (on_log)
            else:
                self.evaluate_now(step)

    def on_log(self, step: int, metrics_: dict[str, float]) -> None:
        if "w_estimate" in metrics_:
            self._last_w = (step, float(metrics_["w_estimate"]))
        self._flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._flush()

    def on_end(self, result) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending is not None and self.trainer is not None:
            self._pending = None
            self.evaluate_now(self.trainer.step)

    @torch.no_grad()
    def _critic_w(self, fake: torch.Tensor) -> float:
        D = self.trainer.D
        was = D.training
        D.eval()
        try:
            dev = self._critic_real.device
            real_scores = torch.cat([D(x).float().reshape(-1) for x in self._critic_real.split(1024)])
            fake_scores = torch.cat([D(x.to(dev)).float().reshape(-1) for x in fake.split(1024)])
        finally:
            D.train(was)
        return float(real_scores.mean() - fake_scores.mean())

    def evaluate_now(self, step: int) -> dict[str, Any]:
        """Evaluate now and append the record (once per step)."""
        if self._done_step == step and self.records:
            return self.records[-1]
        t0 = time.perf_counter()
        tr = self.trainer
        fake = generate(tr.sample_generator, tr.c.latent_dim, self.n, self.seed, tr.device)
        rec: dict[str, Any] = {"step": step, "protocol": self.protocol.name, "n": self.n}
        if torch.isfinite(fake).all():
            rec.update(self.protocol.score(fake))
            rec["critic_w"] = self._critic_w(fake)
        else:  # recorded, not raised: the trainer's own divergence check stops the run
            rec["error"] = "the generator produced NaN or infinite samples"
        if self._last_w is not None:
            rec["w_estimate"], rec["w_estimate_step"] = self._last_w[1], self._last_w[0]
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        append_line(self.path, json.dumps(_rounded(rec)))
        self.records.append(rec)
        self._done_step = step
        return rec


def _rounded(rec: dict[str, Any], digits: int = 6) -> dict[str, Any]:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in rec.items()}


#: One line per number, for the ``gantk eval`` table.
METRIC_NOTES: dict[str, str] = {
    "w1": "exact Wasserstein-1, generated vs real (lower is better; mean over draws)",
    "w1_sd": "standard deviation of W1 over the generated draws",
    "w1_draws": "generated sets of N W1 is averaged over (each against fresh real samples)",
    "w1_floor": "W1 of two real samples of the same N (what a perfect generator scores; mean over pairs)",
    "w1_over_floor": "W1 / floor (1 is a perfect generator on average)",
    "w1_over_floor_se": "standard error of W1 / floor (from both spreads; more --draws shrink it)",
    "w1_floor_sd": "standard deviation of the floor over its real-vs-real pairs",
    "w1_floor_draws": "real-vs-real pairs the floor is averaged over (shipped or cached)",
    "modes_covered": "modes with at least one high-quality sample nearest to them",
    "hq_share": "share of samples within 3σ of their nearest mode",
    "hq_share_real": "the same share for real samples (≈ 0.989)",
    "n_real": "real samples compared against",
    "classifier_accuracy": "the feature classifier's accuracy on held-out digits at this size",
    "fd": "Fréchet distance on classifier features, generated vs held-out (lower is better)",
    "fd_floor": "FD of real training-split vs held-out digits",
    "kid": "KID (unbiased MMD², cubic kernel), generated vs held-out",
    "kid_std": "KID's standard deviation over subsets",
    "kid_floor": "KID of real training-split vs held-out digits",
    "classes_covered": "digit classes among the generated samples (of 10)",
    "class_histogram": "generated samples per class 0..9",
    "precision": "generated samples inside the real data's k-NN balls (fidelity)",
    "recall": "real samples inside the generated k-NN balls (diversity)",
    "density": "k-NN ball memberships per generated sample / k (≈ 1 when alike)",
    "coverage": "real k-NN balls holding a generated sample (diversity)",
    "seconds": "time taken",
}
