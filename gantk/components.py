"""Base classes that plugins subclass: :class:`Loss`, :class:`LipschitzEnforcer`,
:class:`GANModel`, :class:`Dataset`, :class:`Augmentation` and the evaluation
:class:`Protocol`.

Each component class has

* ``name`` — the name users type (``--loss wasserstein``);
* ``description`` — one line for ``gantk plugins``;
* ``options`` — a dict of option names to default values. Users set them with
  ``--option KIND.KEY=VALUE`` (or a convenience flag such as ``--lambda``); the value is
  converted to the default's type. Unknown keys are refused with "did you mean".

An instance is created with ``Cls(**options)``; the validated options are in
``self.opts``.

The module is long because it is the whole contract plugins code against: each base
class keeps its documented attributes and defaults beside the methods that use them.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .errors import UsageError

__all__ = [
    "Component",
    "Loss",
    "LipschitzEnforcer",
    "PenaltyOutput",
    "GANModel",
    "Dataset",
    "Augmentation",
    "Protocol",
    "ProtocolRequest",
    "Callback",
    "Logger",
    "FeatureExtractor",
    "coerce_option",
]


def coerce_option(value: Any, default: Any, key: str) -> Any:
    """Convert ``value`` (often a string from the command line) to the type of ``default``.
    A float option takes finite numbers only (NaN or ±inf: :class:`UsageError`)."""
    if default is None:
        return value
    if isinstance(default, float) and not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # not a number (reported below), or an int beyond float's range
            number = None
        if number is not None and not abs(number) < float("inf"):  # NaN or ±inf
            raise UsageError(f"option {key}={value!r}: expected a finite number")
    if isinstance(value, type(default)) and isinstance(value, bool) == isinstance(default, bool):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(
            f"option {key}={value!r}: expected {type(default).__name__}"
        ) from None
    return value


class Component:
    """Common base: a name, a description and typed options with defaults."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[Mapping[str, Any]] = {}
    kind: ClassVar[str] = "component"
    #: the preset (a paper's optimizer settings, see ``gantk.PRESETS``) a run with this
    #: loss or enforcer uses when the user names none; None lets gantk infer it from the
    #: built-in loss and enforcer (else ``wgan-gp``, said in a note)
    preset: ClassVar[str | None] = None
    #: run settings (TrainConfig fields: optimizer, lr, betas, n_critic, ...) this loss or
    #: enforcer wants over its preset, applied where the user gave none and no preset was
    #: named on the command line
    settings: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **opts: Any):
        merged = dict(self.options)
        prefix = self.option_prefix()
        for key, value in opts.items():
            if key not in self.options:
                close = difflib.get_close_matches(key, list(self.options), n=1)
                hint = f"; did you mean {prefix}.{close[0]}?" if close else ""
                known = ", ".join(f"{prefix}.{k}" for k in sorted(self.options)) or "none"
                raise UsageError(
                    f"{self.kind} {self.name!r} has no option {prefix}.{key}{hint} (its options: {known})"
                )
            try:
                merged[key] = coerce_option(value, self.options[key], f"{prefix}.{key}")
            except UsageError as exc:
                raise UsageError(f"{self.kind} {self.name!r}: {exc}") from None
        self.opts: dict[str, Any] = merged

    @classmethod
    def option_prefix(cls) -> str:
        """The KIND of ``-O KIND.KEY=VALUE`` for this component (``lipschitz``, ``data``, ...)."""
        return {"lipschitz enforcer": "lipschitz", "dataset": "data"}.get(cls.kind, cls.kind)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{type(self).__name__}({args})"


class Loss(Component):
    """An adversarial loss.

    ``critic_loss(real_out, fake_out)`` returns the scalar the critic minimises;
    ``generator_loss(fake_out, real_out=None)`` the scalar the generator minimises.
    ``real_out`` and ``fake_out`` are the critic's raw outputs (logits / scores), shape
    (B,) or (B, 1). A loss whose generator term needs the critic's scores on real data
    too (relativistic losses) sets ``needs_real_scores = True``; the trainer then passes
    ``real_out`` (computed without gradient to the critic) to ``generator_loss``.
    """

    kind = "loss"
    needs_real_scores: ClassVar[bool] = False

    def critic_loss(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_out: torch.Tensor, real_out: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass
class PenaltyOutput:
    """What :meth:`LipschitzEnforcer.penalty` returns.

    ``value`` is a scalar tensor added to the critic loss before the (single) backward;
    ``stats`` holds floats-to-be (0-dim tensors or numbers) for logging, e.g.
    ``{"grad_norm": ..., "penalty": ...}``.
    """

    value: torch.Tensor
    stats: dict[str, Any] = field(default_factory=dict)


class LipschitzEnforcer(Component):
    """Keeps the critic (approximately) 1-Lipschitz.

    The trainer calls, in order:

    1. ``prepare_critic(critic)`` once, right after the critic is built and before the
       optimizer is created; returns the (possibly wrapped or modified) critic.
    2. ``penalty(critic, real, fake, generator=...)`` on every critic step; returns a
       :class:`PenaltyOutput` whose ``value`` is added to the critic loss, or ``None``
       for no penalty. It must not call ``backward`` itself: the trainer
       backpropagates loss + penalty (one backward of the sum on CUDA; on the CPU the
       loss's backward runs first, before ``penalty`` is called, then the penalty's).
    3. ``after_critic_step(critic)`` after each critic optimizer step (e.g. clipping).

    ``forbids_batchnorm`` — True when the method is wrong with BatchNorm in the critic
    (a per-sample gradient penalty); the trainer refuses such critics unless the user
    overrides. ``takes_inv_scale`` — True when ``penalty`` accepts ``inv_scale=`` (the
    critic it is given then returns S·D; divide its input gradient by S, e.g. by
    passing ``inv_scale`` to gantk's penalty op).
    """

    kind = "lipschitz enforcer"
    forbids_batchnorm: ClassVar[bool] = False
    #: True when ``penalty`` also takes ``inv_scale=`` (see docs/plugins.md): under
    #: ``--amp fp16`` the trainer then passes the loss-scaled critic and 1/S
    takes_inv_scale: ClassVar[bool] = False

    def prepare_critic(self, critic: nn.Module) -> nn.Module:
        return critic

    def penalty(
        self,
        critic: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> PenaltyOutput | None:
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        return None


class GANModel(Component):
    """A model family: builds a generator and a critic for a data shape.

    ``build_generator(data_shape, latent_dim)`` returns a module mapping (B, latent_dim)
    noise to (B, *data_shape) samples. ``build_critic(data_shape)`` returns a module
    mapping (B, *data_shape) to (B,) or (B, 1) scores. ``supports(data_shape)`` says
    whether the family can handle the shape (return a reason string when it cannot).

    Class-conditional models (``--conditional``) set ``conditional = True`` and accept a
    keyword ``num_classes`` (K ≥ 1) in both builders; with it the generator is called
    as ``G(z, y)`` and the critic as ``D(x, y)``, ``y`` a (B,) int64 tensor of class
    indices. gantk builds through :meth:`make_generator` and :meth:`make_critic`, which
    pass ``num_classes`` only to a conditional run, so an unconditional model needs no
    change.
    """

    kind = "model"
    #: True when the builders take ``num_classes`` and build class-conditional networks
    conditional: ClassVar[bool] = False
    #: latent size used when neither the user nor the dataset chooses one
    default_latent_dim: ClassVar[int] = 128
    #: True when the critic's score of a sample depends on the other samples of its
    #: batch (minibatch standard deviation, batch attention, ...): the trainer then scores
    #: real and fake in separate forwards, as it always does for BatchNorm critics
    critic_mixes_batch: ClassVar[bool] = False

    def supports(self, data_shape: tuple[int, ...]) -> str | None:
        return None

    def build_generator(self, data_shape: tuple[int, ...], latent_dim: int) -> nn.Module:
        raise NotImplementedError

    def build_critic(self, data_shape: tuple[int, ...]) -> nn.Module:
        raise NotImplementedError

    def make_generator(self, data_shape: tuple[int, ...], latent_dim: int, num_classes: int = 0) -> nn.Module:
        """The generator: unconditional for ``num_classes`` 0, else ``G(z, y)`` over
        ``num_classes`` classes (refused for a model that is not ``conditional``)."""
        if not num_classes:
            return self.build_generator(data_shape, latent_dim)
        self._check_conditional()
        return self.build_generator(data_shape, latent_dim, num_classes=num_classes)

    def make_critic(self, data_shape: tuple[int, ...], num_classes: int = 0) -> nn.Module:
        """The critic: unconditional for ``num_classes`` 0, else ``D(x, y)``."""
        if not num_classes:
            return self.build_critic(data_shape)
        self._check_conditional()
        return self.build_critic(data_shape, num_classes=num_classes)

    def _check_conditional(self) -> None:
        if not self.conditional:
            raise UsageError(f"model {self.name!r} has no class-conditional form (--conditional); "
                             "the built-in mlp, dcgan and resnet have one")


class Dataset(Component):
    """A source of training samples.

    ``load(seed)`` returns every sample as one tensor of shape (N, *sample_shape)
    (generated sets draw N samples with the seed). Image sets return float values in
    [-1, 1] or uint8 pixels (the samplers convert each batch) and set
    ``modality = "image"``; 2-D point sets use ``modality = "points"``. Data with classes
    set ``labels`` and ``class_names`` in ``load``.
    ``latent_dim`` (or None) suggests a latent size to the model.

    A dataset that reads files sets the ``path`` option and overrides ``can_open``.

    Labelled data: ``load`` also sets ``self.labels`` (a 1-D int64 tensor, one class
    index in 0..K−1 per sample) and ``self.class_names`` (a tuple of K names, or None:
    the names are then the indices). Both stay None for unlabelled data; a run with
    ``--conditional`` refuses such data.
    """

    kind = "dataset"
    modality: ClassVar[str] = "tensor"
    latent_dim: ClassVar[int | None] = None
    #: settings this data set recommends: {"KIND.KEY": value} for a component option
    #: (KIND one of model, loss, lipschitz; applied only if the chosen component has it)
    #: or {"FIELD": value} for a TrainConfig field (lr, betas, steps...). Applied by
    #: ``make_config`` to what the user did not set, and only when no preset was named
    #: (e.g. a longer run, or a deeper generator for 2-D sets)
    recommended: ClassVar[Mapping[str, Any]] = {}
    #: settings tuned on this data for one method: {preset: {key: value}} with keys as in
    #: ``recommended``, applied the same way but only to the components they were tuned
    #: with: the run's preset is that one and its loss and enforcer are the preset's own
    #: (a key "preset+enforcer" names the enforcer instead), so that, say, a learning
    #: rate tuned for WGAN-GP never reaches weight clipping or a plugin's penalty
    tuned: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: the registered evaluation protocol that scores runs on this data (``gantk eval``);
    #: None lets a protocol that accepts the sample shape take it (2-D points: W1)
    protocol: ClassVar[str | None] = None
    #: one int64 class index per sample (a 1-D tensor), set by ``load`` when the data
    #: have classes (image folders with one sub-folder per class); None otherwise
    labels: torch.Tensor | None = None
    #: the class names, in the order of the indices in ``labels``; None without labels
    class_names: tuple[str, ...] | None = None
    #: where a data set that preprocesses files keeps its cache (``--cache-dir``), set
    #: by gantk before ``load``; None: the user cache
    cache_dir: str | None = None

    @classmethod
    def can_open(cls, path: os.PathLike | str) -> bool:
        return False

    def load(self, seed: int = 0) -> torch.Tensor:
        raise NotImplementedError


class Augmentation(Component):
    """A random transformation of image batches, chosen with ``--augment NAME[,NAME]``
    and registered with the ``register_augmentations`` hook.

    ``stage`` says where the trainer applies it:

    * ``"data"``: to real batches only, as they are drawn (x-flip: a larger data set,
      which the generator then learns to produce);
    * ``"critic"``: to the real *and* the generated batch before every critic call, in
      the critic step and in the generator step (DiffAugment, Zhao et al. 2020), so it
      must be differentiable w.r.t. its input: the generator learns through it.

    ``apply(x, generator)`` transforms each sample with probability ``p`` (an instance
    attribute, from the ``p`` option or ``--augment-p``) and must return ``x`` itself
    when ``p`` is 0. ``observe(real_out, fake_out)`` is called after every critic step
    with the critic's scores of the augmented real and fake batch: an adaptive
    augmentation (ADA, Karras et al. 2020) adjusts ``p`` there; ``state()`` and
    ``load_state()`` carry what it adjusts through checkpoints.
    """

    kind = "augmentation"
    stage: ClassVar[str] = "critic"
    options = {"p": 1.0}
    #: the probability that each image is transformed (from the ``p`` option; an
    #: adaptive augmentation changes it in ``observe``)
    p: float = 1.0

    def __init__(self, **opts: Any):
        super().__init__(**opts)
        if not 0.0 <= self.opts["p"] <= 1.0:
            raise UsageError(f"augmentation {self.name!r}: p must lie in [0, 1], got {self.opts['p']}")
        self.p = float(self.opts["p"])

    def apply(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, real_out: torch.Tensor, fake_out: torch.Tensor) -> None:
        return None

    def state(self) -> dict[str, float]:
        return {"p": self.p}

    def load_state(self, state: Mapping[str, float]) -> None:
        if "p" in state:
            self.p = float(state["p"])


@dataclass
class ProtocolRequest:
    """What a :class:`Protocol` is prepared from: the run's data set (an instance, or
    None for data no registered set names), its sample shape, N, the seed, the
    generated sets to average over (``draws``), the run's samples when already loaded
    (``real``, else ``load_real()`` loads them), the cache folder and extra settings
    (``options``, e.g. ``classifier_epochs``)."""

    dataset: Any
    data_shape: tuple[int, ...]
    n: int
    seed: int = 0
    draws: int = 1
    real: torch.Tensor | None = None
    load_real: Any = None
    cache: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    #: one class index per real sample when the data is labelled (set with ``real``, or
    #: by ``load_real()`` returning ``(samples, labels)``), else None
    real_labels: torch.Tensor | None = None

    def real_samples(self) -> torch.Tensor:
        """The run's samples: ``real``, else loaded with ``load_real()`` (which may return
        the samples, or the samples and their labels)."""
        if self.real is None:
            loaded = self.load_real()
            self.real, self.real_labels = loaded if isinstance(loaded, tuple) else (loaded, self.real_labels)
        return self.real


class Protocol:
    """An evaluation protocol: prepared once per (data, N, seed) from a
    :class:`ProtocolRequest` (real samples, reference numbers), then :meth:`score` turns
    generated samples into a dict of numbers.

    A data set names its protocol (``Dataset.protocol``); a protocol that can score any
    data of some shape says so in :meth:`accepts` (used when the data set names none).
    Register protocols with the ``register_protocols`` hook."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: generated sets :meth:`score` takes (a list when more than one)
    draws: int = 1
    #: True when :meth:`score` takes ``labels=``: the classes a conditional run's
    #: samples were drawn for (a (N,) int64 tensor; the classes in turn, 0..K−1, 0, ...)
    uses_labels: ClassVar[bool] = False

    @classmethod
    def accepts(cls, data_shape: tuple[int, ...]) -> bool:
        """Whether this protocol scores data of this sample shape when the data set
        names no protocol of its own."""
        return False

    @classmethod
    def from_request(cls, req: ProtocolRequest) -> Protocol:
        raise NotImplementedError

    def score(self, fake: Any, labels: torch.Tensor | None = None) -> dict[str, Any]:
        """Numbers for the generated samples ``fake``; ``labels`` (conditional runs, and
        only for a protocol that sets ``uses_labels``) the class each was drawn for."""
        raise NotImplementedError


class Callback:
    """Receives progress from :class:`~gantk.training.Trainer` (on rank 0 only); the
    CLI's progress bar, ``--eval-every`` and loggers are callbacks. ``on_start`` gets the
    trainer (its ``run_dir``, ``cfg``, ``step``); ``on_log`` the step's averaged metrics
    (floats, already on the host: a callback adds no device sync to the step);
    ``on_checkpoint`` and ``on_image`` the files just written; ``on_eval`` each record of
    ``--eval-every`` (the numbers of eval.jsonl); ``on_end`` the
    :class:`~gantk.training.TrainResult`."""

    def on_start(self, trainer: Any) -> None: ...
    def on_step(self, step: int) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: Any) -> None: ...
    def on_image(self, step: int, path: Any) -> None: ...
    def on_eval(self, step: int, record: dict[str, Any]) -> None: ...
    def on_end(self, result: Any) -> None: ...


class Logger(Component, Callback):
    """A training logger, chosen with ``gantk train --logger NAME`` (repeatable; the
    run's ``metrics.jsonl`` is always written too) and registered with the
    ``register_loggers`` hook. It is a :class:`Callback` with a name and options
    (``-O logger.KEY=VALUE``, shared by the loggers of a run). Loggers run on rank 0
    only; one that writes to a slow service should hand the work to a thread of its own
    rather than block the training step."""

    kind = "logger"


class FeatureExtractor:
    """An image feature network for FID, KID and precision / recall (``gantk eval``,
    ``--features NAME``), registered with the ``register_feature_extractors`` hook.

    :meth:`load` builds it (reading a weights file the user has; an extractor never
    downloads), :meth:`prepare` turns images in [−1, 1] into the network's input (one
    stated resize, named by ``resize``), :meth:`features` maps a prepared batch to
    ``(B, feature_dim)`` features. ``weights_file`` and ``weights_sha256`` name what was
    loaded; they key the cached real-set features and are reported with every number."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: the side (pixels) of the square images the network takes
    input_size: ClassVar[int] = 299
    #: the value range the network takes; images in [-1, 1] are mapped onto it linearly
    input_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    #: channels the network takes (grayscale images are replicated to 3)
    channels: ClassVar[int] = 3
    #: length of one feature vector
    feature_dim: ClassVar[int] = 2048
    #: how images reach ``input_size``, as reported in the results
    resize: ClassVar[str] = "bilinear with antialias, align_corners=False, from [-1, 1] float32"
    #: the weights file that was loaded (None for weights built or trained here)
    weights_file: str | None = None
    #: sha256 of the weights (file bytes), or of the tensors for weights made here
    weights_sha256: str | None = None

    @classmethod
    def load(cls, weights: str | None = None, device: Any = "cpu") -> FeatureExtractor:
        """Build the extractor on ``device`` from the weights file ``weights`` (None:
        the extractor's own search). Raise :class:`gantk.DataError` with one line saying
        how to get the weights when there are none."""
        raise NotImplementedError

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` in [−1, 1], C in 1..4, → the network's input
        ``(B, channels, input_size, input_size)`` in ``input_range``: clamped to [−1, 1],
        resized as ``resize`` says when the side differs, one channel replicated to
        three (two channels: the first; four: the first three), then mapped linearly
        onto ``input_range``."""
        if images.dim() != 4 or not 1 <= images.shape[1] <= 4:
            raise UsageError(f"feature extractor {self.name!r} takes (B, C, H, W) images with C in 1..4, "
                             f"got shape {tuple(images.shape)}")
        x = images.float().clamp(-1.0, 1.0)
        if x.shape[1] in (2, 4):
            x = x[:, :1] if x.shape[1] == 2 else x[:, :3]
        s = self.input_size
        if tuple(x.shape[2:]) != (s, s):
            x = nn.functional.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] != self.channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.channels, -1, -1)
            else:
                x = x.mean(1, keepdim=True).expand(-1, self.channels, -1, -1)
        lo, hi = self.input_range
        return x * ((hi - lo) / 2.0) + (lo + hi) / 2.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """A prepared batch (:meth:`prepare`) → ``(B, feature_dim)`` float features."""
        raise NotImplementedError
