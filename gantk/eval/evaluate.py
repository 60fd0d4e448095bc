"""``gantk eval``: score a trained generator with the protocol its data names, or
compare two image sets directly (:func:`compare`).

A data set names its protocol (``Dataset.protocol``); data that names none is scored by
the first registered protocol that accepts its sample shape (2-D points: ``points``,
images: ``image``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..components import Protocol, ProtocolRequest
from ..data import load_samples, modality_of, resolve_dataset
from ..default_plugins.image_data import IMAGE_SUFFIXES
from ..errors import DataError, UnknownComponentError, UsageError
from ..plugins import get_registry
from ..sampling import class_labels, generate, load_generator, num_classes_of, weights_used
from ..training import resolve_device
from .digits import CLASSIFIER_EPOCHS
from .features import DEFAULT_BATCH, describe_extractor, extract_features, load_extractor, real_features
from .floors import DEFAULT_DRAWS, latent_seed
from .protocols import IMAGE_DEFAULT_N, feature_metrics, warn_small_n

#: generated samples when -n is not given (the image protocol: IMAGE_DEFAULT_N)
DEFAULT_N = 2500
MIN_N = 10


def choose_protocol(dataset: Any, data_shape: tuple[int, ...], label: str | None = None) -> type[Protocol]:
    """The protocol class for this data set (None: data no registered set can open):
    the one it names, else the first registered protocol that accepts the sample
    shape; :class:`DataError` if none. ``label`` names the data in that error."""
    reg = get_registry("protocol")
    named = getattr(dataset, "protocol", None)
    if named:
        return reg.get(named)
    for entry in reg:
        if entry.obj.accepts(tuple(data_shape)):
            return entry.obj
    raise DataError(
        f"no evaluation protocol for data {label or getattr(dataset, 'name', dataset)!r} with samples of shape "
        f"{tuple(data_shape)}: its data set names none and no registered protocol ({', '.join(reg.names())}) "
        "accepts that shape"
    )


def _source(data: str, data_options: dict[str, Any]) -> str:
    """The data's name for the real-feature cache: a registered name, or a path made
    absolute, with its options."""
    name = data if data in get_registry("dataset") or not os.path.exists(data) else str(Path(data).resolve())
    return f"{name} {json.dumps(data_options, sort_keys=True, default=str)}"


def make_protocol(
    data: str,
    data_options: dict[str, Any],
    data_shape: tuple[int, ...],
    n: int | None,
    seed: int = 0,
    *,
    data_seed: int = 0,
    real: torch.Tensor | None = None,
    real_labels: torch.Tensor | None = None,
    classifier_epochs: int = CLASSIFIER_EPOCHS,
    cache: str | Path | None = None,
    draws: int = 1,
    features: str | None = "auto",
    features_weights: str | os.PathLike | None = None,
    device: Any = "cpu",
    batch_size: int = DEFAULT_BATCH,
) -> Protocol:
    """The protocol for a run's data (its name, options and sample shape), prepared.
    ``real`` is the run's data when already loaded; otherwise a protocol that needs it
    loads it with ``data_seed``. ``n`` None: the protocol's ``default_n`` (else
    :data:`DEFAULT_N`); the prepared protocol's ``n`` attribute, where it has one, is
    the N it settled on. ``draws``: generated sets the toy protocol averages W1 over
    (other protocols score one set). ``features``: the feature extractor of the image
    protocol (``"auto"`` or None: Inception-v3) and of the digits protocol's added
    numbers (``"auto"``: Inception-v3 when its weights are found; None: none), with
    ``features_weights``, run on ``device``, ``batch_size`` images at a time."""
    if n is not None and n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    if draws < 1:
        raise UsageError(f"--draws must be at least 1, got {draws}")
    try:
        dataset = resolve_dataset(data, data_options)
    except (DataError, UnknownComponentError):  # a moved file, a plugin not loaded: by shape
        dataset = None
    cls = choose_protocol(dataset, data_shape, data)
    n_given = n is not None
    if n is None:
        n = getattr(cls, "default_n", DEFAULT_N)
    req = ProtocolRequest(dataset, tuple(data_shape), n, seed, draws=draws, real=real, cache=cache,
                          real_labels=real_labels, load_real=lambda: _samples_and_labels(data, data_options, data_seed),
                          options={"classifier_epochs": classifier_epochs, "features": features,
                                   "features_weights": None if features_weights is None else str(features_weights),
                                   "device": device, "batch_size": batch_size, "n_given": n_given,
                                   "source": _source(data, data_options)})
    return cls.from_request(req)


def _samples_and_labels(data: str, data_options: dict[str, Any], seed: int) -> tuple[torch.Tensor, Any]:
    ds, x = load_samples(data, data_options, seed)
    return x, getattr(ds, "labels", None)


def score_generator(proto: Protocol, generator: nn.Module, latent_dim: int, n: int, seed: int = 0,
                    device=None, num_classes: int = 0) -> dict[str, Any]:
    """Score ``generator`` with ``proto``: ``proto.draws`` sets of ``n`` samples, from
    latent seeds :func:`latent_seed` (``seed``, k) (the first from ``seed`` itself). A
    conditional generator (``num_classes`` K) draws the classes in turn, n/K each, and
    a protocol that ``uses_labels`` gets them."""
    labels = class_labels(n, num_classes)
    fakes = [generate(generator, latent_dim, n, latent_seed(seed, k), device, labels=labels)
             for k in range(proto.draws)]
    fake = fakes if proto.draws > 1 else fakes[0]
    return proto.score(fake, labels=labels) if labels is not None and proto.uses_labels else proto.score(fake)


def evaluate(
    run_or_checkpoint: str | Path,
    n: int | None = None,
    seed: int = 0,
    *,
    device: str = "cpu",
    classifier_epochs: int = CLASSIFIER_EPOCHS,
    cache: str | Path | None = None,
    draws: int = DEFAULT_DRAWS,
    raw: bool = False,
    features: str | None = "auto",
    features_weights: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, Any]:
    """Evaluate a checkpoint (or a run's newest checkpoint) with ``n`` generated samples
    from latents drawn with ``seed`` (on the toy sets, W1 is averaged over ``draws``
    such sets, the first one from ``seed``). ``n`` None: :data:`DEFAULT_N`, or for the
    image protocol :data:`IMAGE_DEFAULT_N` (all the real images when there are fewer).
    ``features``, ``features_weights``, ``batch_size``: see :func:`make_protocol`.
    Returns a JSON-ready dict: ``protocol``, ``data``,
    ``step``, ``checkpoint``, ``weights`` (``"ema"``: the run's weight average, the
    default when it kept one; ``"raw"``: the generator's own weights, or ``raw=True``),
    ``n``, ``seed``, ``seconds`` and the protocol's numbers
    (see :mod:`gantk.eval.protocols`). Raises :class:`~gantk.errors.GantkError` subclasses for
    missing runs and data without a protocol."""
    if n is not None and n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    G, ck, shape, latent = load_generator(run_or_checkpoint, dev, raw=raw)
    cfg = ck.config
    proto = make_protocol(cfg.data, cfg.data_options, shape, n, seed, data_seed=cfg.seed,
                          classifier_epochs=classifier_epochs, cache=cache, draws=draws, features=features,
                          features_weights=features_weights, device=dev, batch_size=batch_size)
    n = getattr(proto, "n", None) or n or DEFAULT_N
    res = score_generator(proto, G, latent, n, seed, dev, num_classes_of(ck))
    return {"protocol": proto.name, "data": cfg.data, "step": ck.step, "checkpoint": str(ck.path),
            "weights": weights_used(ck, raw), "n": n, "seed": seed, **res, "seconds": round(time.perf_counter() - t0, 3)}


def _folder_resolution(folder: Path) -> int:
    """The shorter side of the first image file in ``folder`` (recursively, in the
    order the image-folder data set reads them), to decode the folder at its own size."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                try:
                    with Image.open(Path(dirpath) / f) as im:
                        return max(4, min(4096, min(im.size)))
                except Exception:  # unreadable: the data set skips it, so look at the next
                    continue
    raise DataError(f"{folder}: holds no readable image file")


def load_images(spec: str | os.PathLike) -> tuple[torch.Tensor, str]:
    """Images (N, C, H, W) in [−1, 1] from a folder (decoded at the size of its first
    image, RGB), a tensor file (.safetensors / .npy / .npz; uint8 scaled to [−1, 1]) or
    a registered data set's name; and the label the real-feature cache keys them by."""
    spec = str(spec)
    path = Path(spec)
    opts: dict[str, Any] = {}
    if path.is_dir():
        opts = {"resolution": _folder_resolution(path), "channels": 3}
    x = load_samples(spec, opts)[1]
    if modality_of(tuple(x.shape[1:])) != "image":
        raise DataError(f"{spec}: samples of shape {tuple(x.shape[1:])} are not images (C, H, W) with C in 1..4")
    return x, _source(spec, opts)


def _subset(x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    if n >= len(x):
        return x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def compare(
    real: str | os.PathLike,
    fake: str | os.PathLike,
    *,
    n: int | None = None,
    seed: int = 0,
    features: str | None = None,
    features_weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH,
    cache: str | Path | None = None,
) -> dict[str, Any]:
    """FID, KID, precision / recall and density / coverage between two image sets,
    each a folder, a tensor file or a data set's name (:func:`load_images`): ``n`` of
    each (None: :data:`IMAGE_DEFAULT_N`, or all of a smaller set; a larger set is
    subsampled with ``seed``), on the features of ``features`` (None: Inception-v3).
    The real set's features are cached. Returns a JSON-ready dict like the image
    protocol's, with ``real`` and ``fake``."""
    if n is not None and n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    t0 = time.perf_counter()
    ext = load_extractor(features or "inception", features_weights, resolve_device(device))
    cap = n if n is not None else IMAGE_DEFAULT_N
    x_real, source = load_images(real)
    x_fake, _ = load_images(fake)
    if cap < len(x_real):
        source = f"{source}, {cap} drawn with seed {1000 + seed}"
    x_real, x_fake = _subset(x_real, cap, 1000 + seed), _subset(x_fake, cap, seed)
    real_feats = real_features(ext, x_real, source, batch_size=batch_size, cache=cache)
    fake_feats = extract_features(ext, x_fake, batch_size=batch_size)
    warn_small_n(len(real_feats), len(fake_feats), ext.feature_dim)
    res = {"protocol": "image", "real": str(real), "fake": str(fake), "seed": seed,
           **feature_metrics(real_feats, fake_feats, seed), **describe_extractor(ext)}
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


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
    "class_accuracy": "conditional runs: share of the samples drawn for class c the classifier labels c, mean over classes",
    "class_accuracy_min": "conditional runs: the worst class's accuracy",
    "class_accuracy_per_class": "conditional runs: the accuracy of each class 0..K-1",
    "fd_per_class": "conditional runs: FD of each class's samples vs the held-out digits of that class (about 54)",
    "fid_per_class": "conditional runs on labelled images: FID of each class's samples vs that class's real images",
    "precision": "generated samples inside the real data's k-NN balls (fidelity)",
    "recall": "real samples inside the generated k-NN balls (diversity)",
    "density": "k-NN ball memberships per generated sample / k (≈ 1 when alike)",
    "coverage": "real k-NN balls holding a generated sample (diversity)",
    "fid": "FID: Fréchet distance of Gaussians fitted to the features, generated vs real (lower is better)",
    "kid_subsets": "random subsets KID is averaged over",
    "kid_subset_size": "images per KID subset: min(1000, N)",
    "n_fake": "generated samples scored",
    "extractor": "the feature network",
    "weights_file": "the feature network's weights file",
    "weights_sha256": "sha256 of that file",
    "feature_dim": "features per image",
    "resize": "how images reach the feature network's input size",
    "inception": "Inception-feature numbers on digits (added when a weights file is found)",
    "seconds": "time taken",
}
