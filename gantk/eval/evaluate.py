"""``gantk eval``: score a trained generator with the protocol its data names.

A data set names its protocol (``Dataset.protocol``); data that names none is scored by
the first registered protocol that accepts its sample shape (2-D points: ``points``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..components import Protocol, ProtocolRequest
from ..data import load_samples, resolve_dataset
from ..errors import DataError, UnknownComponentError, UsageError
from ..plugins import get_registry
from ..sample import generate, load_generator, weights_used
from ..training import resolve_device
from .digits import CLASSIFIER_EPOCHS
from .floors import DEFAULT_DRAWS, latent_seed

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
    """The protocol for a run's data (its name, options and sample shape), prepared.
    ``real`` is the run's data when already loaded; otherwise a protocol that needs it
    loads it with ``data_seed``. ``draws``: generated sets the toy protocol averages W1
    over (other protocols score one set)."""
    if n < MIN_N:
        raise UsageError(f"-n must be at least {MIN_N}, got {n}")
    if draws < 1:
        raise UsageError(f"--draws must be at least 1, got {draws}")
    try:
        dataset = resolve_dataset(data, data_options)
    except (DataError, UnknownComponentError):  # a moved file, a plugin not loaded: by shape
        dataset = None
    cls = choose_protocol(dataset, data_shape, data)
    req = ProtocolRequest(dataset, tuple(data_shape), n, seed, draws=draws, real=real, cache=cache,
                          load_real=lambda: load_samples(data, data_options, data_seed)[1],
                          options={"classifier_epochs": classifier_epochs})
    return cls.from_request(req)


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
    (see :mod:`gantk.eval.protocols`). Raises :class:`~gantk.errors.GantkError` subclasses for
    missing runs and data without a protocol."""
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
