"""The built-in evaluation protocols, registered through the ``register_protocols``
hook like a plugin's (this module is one of gantk's built-in plugins):

* ``toy`` — the toy sets (they name it): exact W1 to fresh real samples, the
  real-vs-real floor at the same N, and for the Gaussian mixtures the modes covered and
  the share of high-quality samples (the mode centres come from the data set);
* ``digits`` — FD and KID on the bundled classifier's features, the class histogram,
  precision / recall / density / coverage;
* ``points`` — any other 2-D point data: W1 to the data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..components import Protocol, ProtocolRequest
from ..errors import DataError, UsageError
from ..markers import hookimpl
from . import metrics
from .digits import CLASSIFIER_EPOCHS, digits_classifier, digits_split, features, round_trip, to_digit_inputs
from .floors import FLOOR_DRAWS, latent_seed, ratio_se, shipped_floor, toy_w1_floor

PRDC_K = 5


def check_finite(fake: torch.Tensor) -> None:
    """Refuse NaN or infinite generated samples (:class:`DataError`)."""
    if not torch.isfinite(fake).all():
        raise DataError("the generator produced NaN or infinite samples; nothing to evaluate")


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
    description = "W1 against the floor, modes and high-quality share for the toy sets"

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
        self.modes = getattr(dataset, "modes", None)  # (centres, σ): the data set owns them
        self.hq_real = None
        if self.modes is not None:
            self.hq_real = metrics.mode_stats(self.real, *self.modes)["hq_share"]

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> ToyProtocol:
        if not hasattr(req.dataset, "generate"):
            raise DataError(f"the toy protocol needs a data set that draws fresh samples (generate); "
                            f"{getattr(req.dataset, 'name', req.dataset)!r} has none")
        return cls(req.dataset, req.n, req.seed, draws=req.draws, cache=req.cache)

    def score(self, fake):
        fakes = list(fake) if isinstance(fake, (list, tuple)) else [fake]
        if len(fakes) != self.draws:
            raise ValueError(f"this protocol scores {self.draws} generated set(s), got {len(fakes)}")
        for f in fakes:
            check_finite(f)
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
    description = "W1 to the data, for any 2-D point data"

    @classmethod
    def accepts(cls, data_shape):
        return tuple(data_shape) == (2,)

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> PointsProtocol:
        return cls(req.real_samples(), req.n, req.seed)

    def __init__(self, data: torch.Tensor, n: int, seed: int):
        g = torch.Generator().manual_seed(1000 + seed)
        idx = torch.randperm(len(data), generator=g)[:n]
        self.real = data.detach().float().cpu()[idx].reshape(len(idx), -1)

    def score(self, fake):
        check_finite(fake)
        fake = fake.reshape(len(fake), -1)[: len(self.real)]
        return {"w1": metrics.wasserstein1(fake, self.real), "n_real": len(self.real)}


class DigitsProtocol(Protocol):
    """Classifier-feature metrics for digits: FD and KID (generated vs held-out real),
    the generated class histogram, precision/recall/density/coverage (k = 5, on the
    first min(N, 540) generated digits, so both sets have the same size). ``fd_floor``
    and ``kid_floor`` compare the real training split (1,257 digits) with the held-out
    split: they are small, not zero, and measured at other sample sizes than ``fd``."""

    name = "digits"
    description = "classifier-feature FD, KID, classes and PRDC for scikit-learn's digits"

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> DigitsProtocol:
        shape = tuple(req.data_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise DataError(f"the digits protocol needs (1, S, S) images; this run's samples have shape {shape}")
        if shape[1] != shape[2] or shape[1] % 8:
            raise DataError(f"the digits protocol needs square images of side 8, 16 or 32; "
                            f"this run's samples have shape {shape}")
        return cls(req.n, req.seed, size=shape[1], cache=req.cache,
                   epochs=req.options.get("classifier_epochs", CLASSIFIER_EPOCHS))

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
        train_feats, _ = features(self.net, x_train)
        # One constant for every feature vector: the root mean square of the training
        # split's features, so that the cubic kernel's xᵀy / D is of order 1 as with the
        # Inception features KID was made for (raw ReLU features here are ~10 times
        # larger and their cubes swamp the estimate). PRDC does not change; FD scales by
        # 1 / scale².
        self.scale = float(np.sqrt((train_feats ** 2).mean()))
        train_feats /= self.scale
        self.real_feats = features(self.net, x_test)[0] / self.scale
        self.fd_floor = metrics.frechet_distance(train_feats, self.real_feats)
        self.kid_floor = metrics.kernel_inception_distance(train_feats, self.real_feats, seed=seed)[0]

    def score(self, fake):
        check_finite(fake)
        feats, classes = features(self.net, to_digit_inputs(fake))
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


@hookimpl
def register_protocols(register):
    for cls in (ToyProtocol, PointsProtocol, DigitsProtocol):
        register(cls)
