"""The built-in evaluation protocols, registered through the ``register_protocols``
hook like a plugin's (this module is one of gantk's built-in plugins):

* ``toy`` — the toy sets (they name it): exact W1 to fresh real samples, the
  real-vs-real floor at the same N, and for the Gaussian mixtures the modes covered and
  the share of high-quality samples (the mode centres come from the data set);
* ``digits`` — FD and KID on the bundled classifier's features, the class histogram,
  precision / recall / density / coverage; with Inception weights at hand also FID,
  KID and precision / recall on Inception features (``inception_*``);
* ``image`` — any image data, (C, H, W) with C in 1..4: FID, KID, precision / recall
  (k = 3) and density / coverage (k = 5) on a feature extractor's features (Inception-v3
  by default, :mod:`.features`);
* ``points`` — any other 2-D point data: W1 to the data.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..components import FeatureExtractor, Protocol, ProtocolRequest
from ..data import modality_of
from ..errors import DataError, GantkWarning, UsageError
from ..markers import hookimpl
from . import metrics
from .digits import CLASSIFIER_EPOCHS, digits_classifier, digits_split, round_trip, to_digit_inputs
from .digits import features as classifier_features
from .features import DEFAULT_BATCH, describe_extractor, extract_features, load_extractor, real_features
from .floors import FLOOR_DRAWS, latent_seed, ratio_se, shipped_floor, toy_w1_floor

PRDC_K = 5
#: the image protocol's N when none is given: 10,000 generated and real images (all the
#: real ones when there are fewer)
IMAGE_DEFAULT_N = 10_000


def warn_small_n(n_real: int, n_fake: int, dim: int, what: str = "FID") -> None:
    """A :class:`GantkWarning` when either set has fewer samples than the features have
    dimensions: the covariance estimates are then rank-deficient."""
    if min(n_real, n_fake) < dim:
        warnings.warn(f"{what} with {n_real} real and {n_fake} generated samples on {dim}-d features: fewer samples "
                      "than dimensions, so the covariances are rank-deficient and FID is biased upwards; "
                      "compare only numbers measured at the same N", GantkWarning, stacklevel=3)


def fid_per_class(real: np.ndarray, real_classes: np.ndarray, fake: np.ndarray,
                  fake_classes: np.ndarray) -> list[float | None]:
    """FID of each class c: the samples drawn for c against the real images of class c
    (fewer of each than the whole set, so biased upwards against the overall FID:
    compare classes and runs at the same N). None where either side has under two."""
    k = int(max(real_classes.max(initial=-1), fake_classes.max(initial=-1))) + 1
    out: list[float | None] = []
    for c in range(k):
        a, b = real[real_classes == c], fake[fake_classes == c]
        out.append(metrics.frechet_distance(a, b) if len(a) > 1 and len(b) > 1 else None)
    return out


def feature_metrics(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """FID (float64 statistics, scipy's matrix square root), KID (100 subsets of
    min(1000, N)), precision / recall (k = 3) and density / coverage (k = 5) of two
    feature sets, with the N of each set."""
    n_r, n_f = len(real), len(fake)
    kid, kid_std = metrics.kernel_inception_distance(real, fake, seed=seed)
    out: dict[str, Any] = {"fid": metrics.frechet_distance(real, fake), "kid": kid, "kid_std": kid_std,
                           "kid_subsets": metrics.KID_SUBSETS,
                           "kid_subset_size": min(metrics.KID_SUBSET_SIZE, n_r, n_f)}
    if min(n_r, n_f) > metrics.PR_K:
        out.update(metrics.precision_recall(real, fake, metrics.PR_K))
    if min(n_r, n_f) > metrics.DC_K:
        out.update(metrics.density_coverage(real, fake, metrics.DC_K))
    out.update(n_real=n_r, n_fake=n_f)
    return out


def _extractor_from(req: ProtocolRequest, default: str = "inception") -> FeatureExtractor:
    name = req.options.get("features")
    name = default if name in (None, "auto") else name
    return load_extractor(name, req.options.get("features_weights"), req.options.get("device", "cpu"))


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


def class_accuracy(predicted: np.ndarray, labels: torch.Tensor) -> dict[str, Any]:
    """How well a conditional generator draws the class asked for: per class c, the
    share of the samples drawn for c that the classifier labels c
    (``class_accuracy_per_class``, one value per class index, None for a class with no
    samples), their mean over the classes (``class_accuracy``) and the worst class
    (``class_accuracy_min``)."""
    y = labels.cpu().numpy()
    per = []
    for c in range(int(y.max()) + 1 if len(y) else 0):
        drawn = y == c
        per.append(float((predicted[drawn] == c).mean()) if drawn.any() else None)
    have = [a for a in per if a is not None]
    return {"class_accuracy": float(np.mean(have)) if have else None,
            "class_accuracy_min": min(have) if have else None, "class_accuracy_per_class": per}


class DigitsProtocol(Protocol):
    """Classifier-feature metrics for digits: FD and KID (generated vs held-out real),
    the generated class histogram, precision/recall/density/coverage (k = 5, on the
    first min(N, 540) generated digits, so both sets have the same size). ``fd_floor``
    and ``kid_floor`` compare the real training split (1,257 digits) with the held-out
    split: they are small, not zero, and measured at other sample sizes than ``fd``.

    ``features`` adds the numbers of :func:`feature_metrics` on a feature extractor
    (keys prefixed with its name, ``inception_fid``, ...): the first min(N, 540)
    held-out digits at the run's size against the generated ones. ``"auto"`` adds
    Inception's when its weights are found and otherwise says why not in the field
    ``inception`` ("skipped: ..."); a name requires that extractor; None adds nothing.

    A conditional run's samples come with the digit each was drawn for: ``score`` then
    adds :func:`class_accuracy` (the classifier's verdict per class) and
    ``fd_per_class`` (each class's samples against the held-out digits of that class)."""

    name = "digits"
    description = "classifier-feature FD, KID, classes and PRDC for scikit-learn's digits"
    uses_labels = True

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> DigitsProtocol:
        shape = tuple(req.data_shape)
        if len(shape) != 3 or shape[0] != 1:
            raise DataError(f"the digits protocol needs (1, S, S) images; this run's samples have shape {shape}")
        if shape[1] != shape[2] or shape[1] % 8:
            raise DataError(f"the digits protocol needs square images of side 8, 16 or 32; "
                            f"this run's samples have shape {shape}")
        o = req.options
        return cls(req.n, req.seed, size=shape[1], cache=req.cache,
                   epochs=o.get("classifier_epochs", CLASSIFIER_EPOCHS), features=o.get("features"),
                   features_weights=o.get("features_weights"), device=o.get("device", "cpu"),
                   batch_size=o.get("batch_size", DEFAULT_BATCH))

    def __init__(self, n: int, seed: int, *, size: int = 8, epochs: int = CLASSIFIER_EPOCHS,
                 cache: str | Path | None = None, features: str | None = None,
                 features_weights: str | None = None, device: Any = "cpu", batch_size: int = DEFAULT_BATCH):
        self.seed = seed
        self.batch_size = batch_size
        self.extractor: FeatureExtractor | None = None
        self.skipped: str | None = None
        if features is not None and features != "digits":
            name = "inception" if features == "auto" else features
            try:
                self.extractor = load_extractor(name, features_weights, device)
            except DataError as exc:
                if features != "auto":
                    raise
                self.skipped = f"skipped: {exc}"
        self.net, _ = digits_classifier(epochs, cache=cache)
        x_train, _, x_test, y_test = digits_split()
        # the real digits as the run saw them (upscaled to its size), then area-averaged
        # to 8 × 8 like the generated ones: a perfect generator matches them exactly
        x_train, x_test = round_trip(x_train, size), round_trip(x_test, size)
        with torch.no_grad():
            self.accuracy = float((self.net(x_test)[1].argmax(1) == y_test).float().mean())
        train_feats, _ = classifier_features(self.net, x_train)
        # One constant for every feature vector: the root mean square of the training
        # split's features, so that the cubic kernel's xᵀy / D is of order 1 as with the
        # Inception features KID was made for (raw ReLU features here are ~10 times
        # larger and their cubes swamp the estimate). PRDC does not change; FD scales by
        # 1 / scale².
        self.scale = float(np.sqrt((train_feats ** 2).mean()))
        train_feats /= self.scale
        self.real_feats = classifier_features(self.net, x_test)[0] / self.scale
        self.real_classes = y_test.cpu().numpy()  # the held-out digits' own labels (per-class FD)
        self.fd_floor = metrics.frechet_distance(train_feats, self.real_feats)
        self.kid_floor = metrics.kernel_inception_distance(train_feats, self.real_feats, seed=seed)[0]
        if self.extractor is not None:
            _, _, x_held, y_held = digits_split()
            held = x_held[: min(n, len(x_held))]
            self.ext_real_classes = y_held[: len(held)].cpu().numpy()
            if size != 8:  # the held-out digits as the run saw them (the digits data set's upscaling)
                held = F.interpolate(held, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
            self.ext_real = real_features(self.extractor, held, f"digits held-out split, size {size}",
                                          batch_size=batch_size, cache=cache)

    def _fd_per_class(self, feats: np.ndarray, y: np.ndarray) -> list[float | None]:
        """FD of the samples drawn for class c against the held-out digits of class c
        (about 54 each, so biased upwards against ``fd``; compare classes and runs at
        the same N). None for a class with fewer than two samples on either side."""
        out: list[float | None] = []
        for c in range(10):
            a, b = feats[y == c], self.real_feats[self.real_classes == c]
            out.append(metrics.frechet_distance(a, b) if len(a) > 1 and len(b) > 1 else None)
        return out

    def score(self, fake, labels=None):
        check_finite(fake)
        feats, classes = classifier_features(self.net, to_digit_inputs(fake))
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
        if labels is not None:
            out.update(class_accuracy(classes, labels))
            out["fd_per_class"] = self._fd_per_class(feats, labels.cpu().numpy())
        if self.skipped is not None:
            out["inception"] = self.skipped
        if self.extractor is not None:
            ext = self.extractor
            fake_feats = extract_features(ext, fake, batch_size=self.batch_size)
            warn_small_n(len(self.ext_real), len(fake_feats), ext.feature_dim, f"{ext.name} FID")
            extra = {**feature_metrics(self.ext_real, fake_feats, self.seed), **describe_extractor(ext)}
            extra.pop("extractor")
            out.update({f"{ext.name}_{k}": v for k, v in extra.items()})
            if labels is not None:
                out[f"{ext.name}_fid_per_class"] = fid_per_class(self.ext_real, self.ext_real_classes, fake_feats,
                                                                 labels.cpu().numpy())
        return out


class ImageProtocol(Protocol):
    """Any image data, (C, H, W) with C in 1..4 and sides of 4 or more: FID, KID,
    precision / recall and density / coverage (:func:`feature_metrics`) between N
    generated images and N real ones (all of them when the data has fewer; a random
    subset drawn with the seed otherwise), on a feature extractor's features (option
    ``features``: Inception-v3 unless named; its weights from ``features_weights`` or its
    own search). The real set's features are cached (:func:`real_features`). The
    results name the extractor, its weights file and sha256, N of each set and the
    resize."""

    name = "image"
    description = "FID, KID, precision/recall, density/coverage on Inception-v3 features for any image data"
    default_n = IMAGE_DEFAULT_N
    uses_labels = True

    @classmethod
    def accepts(cls, data_shape):
        return modality_of(tuple(data_shape)) == "image"

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> ImageProtocol:
        if modality_of(tuple(req.data_shape)) != "image":
            raise DataError(f"the image protocol needs (C, H, W) images with C in 1..4; this run's samples have "
                            f"shape {tuple(req.data_shape)}")
        ext = _extractor_from(req)
        o = req.options
        real = req.real_samples()
        proto = cls(real, req.n, req.seed, extractor=ext, source=o.get("source", "data"),
                    cache=req.cache, batch_size=o.get("batch_size", DEFAULT_BATCH), real_labels=req.real_labels)
        if not o.get("n_given", True):
            proto.n = len(proto.real_feats)
        return proto

    def __init__(self, real: torch.Tensor, n: int, seed: int, *, extractor: FeatureExtractor, source: str,
                 cache: str | Path | None = None, batch_size: int = DEFAULT_BATCH,
                 real_labels: torch.Tensor | None = None):
        if n < 2:
            raise UsageError(f"the image protocol needs N >= 2, got {n}")
        self.extractor, self.seed, self.batch_size, self.n = extractor, seed, batch_size, n
        real = real.detach().float().cpu()
        labels = None if real_labels is None else real_labels.detach().cpu().numpy()
        if n < len(real):
            idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(1000 + seed))[:n].sort().values
            real, source = real[idx], f"{source}, {n} drawn with seed {seed}"
            labels = None if labels is None else labels[idx.numpy()]
        self.real_feats = real_features(extractor, real, source, batch_size=batch_size, cache=cache)
        #: the class of each real feature vector (labelled data), for the per-class FID
        self.real_classes = labels

    def score(self, fake, labels=None):
        """FID, KID, PRDC of the generated set against the real one; for a conditional
        run's samples (``labels``: the class each was drawn for) and labelled real data
        also ``fid_per_class``: each class's samples against that class's real images."""
        check_finite(fake)
        ext = self.extractor
        fake_feats = extract_features(ext, fake, batch_size=self.batch_size)
        warn_small_n(len(self.real_feats), len(fake_feats), ext.feature_dim)
        out = {**feature_metrics(self.real_feats, fake_feats, self.seed), **describe_extractor(ext)}
        if labels is not None and self.real_classes is not None:
            out["fid_per_class"] = fid_per_class(self.real_feats, self.real_classes, fake_feats,
                                                 labels.detach().cpu().numpy())
        return out


@hookimpl
def register_protocols(register):
    for cls in (ToyProtocol, PointsProtocol, DigitsProtocol, ImageProtocol):
        register(cls)
