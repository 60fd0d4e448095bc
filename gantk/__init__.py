"""gantk — a plugin-based toolkit for training Wasserstein GANs on PyTorch.

Public API:

* ``hookimpl`` — the marker for plugin hook implementations (see ``gantk.hookspecs``);
* base classes for plugins: :class:`Loss`, :class:`LipschitzEnforcer` (returning a
  :class:`PenaltyOutput`), :class:`GANModel`, :class:`Dataset`, :class:`Protocol`;
* the penalty op: :func:`gradient_penalty`, :func:`gradient_penalty_at`,
  :func:`gradient_norm_penalty`, :func:`interpolate`;
* factories: :func:`create_model`, :func:`create_loss`, :func:`create_lipschitz`,
  :func:`create_dataset`;
* training and sampling: :class:`TrainConfig`, :func:`make_config`, :func:`train`,
  :func:`sample`.
"""
from __future__ import annotations

from .components import Dataset, GANModel, LipschitzEnforcer, Loss, PenaltyOutput, Protocol
from .config import TrainConfig
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DuplicateComponentError,
    ExtensionError,
    GantkError,
    GantkNote,
    GantkWarning,
    OutputError,
    PluginError,
    TrainingError,
    UnknownComponentError,
    UsageError,
)
from .hookimpl import hookimpl
from .ops import (
    GradientPenalty,
    gradient_norm_penalty,
    gradient_penalty,
    gradient_penalty_at,
    interpolate,
)
from .plugins import get_registry
from .presets import PRESETS
from .resolve import make_config
from .sample import sample
from .training import Trainer, resume, train
from .version import __version__


def _create(kind: str, name: str, options: dict | None):
    return get_registry(kind).get(name)(**(options or {}))


def create_model(name: str, **options) -> GANModel:
    """Instantiate a registered model family by name."""
    return _create("model", name, options)


def create_loss(name: str, **options) -> Loss:
    """Instantiate a registered loss by name."""
    return _create("loss", name, options)


def create_lipschitz(name: str, **options) -> LipschitzEnforcer:
    """Instantiate a registered Lipschitz enforcer by name."""
    return _create("lipschitz", name, options)


def create_dataset(name: str, **options) -> Dataset:
    """Instantiate a registered dataset by name."""
    return _create("dataset", name, options)


__all__ = [
    "__version__",
    "hookimpl",
    "Loss",
    "LipschitzEnforcer",
    "PenaltyOutput",
    "GANModel",
    "Dataset",
    "Protocol",
    "GradientPenalty",
    "gradient_penalty",
    "gradient_penalty_at",
    "gradient_norm_penalty",
    "interpolate",
    "create_model",
    "create_loss",
    "create_lipschitz",
    "create_dataset",
    "TrainConfig",
    "PRESETS",
    "make_config",
    "train",
    "Trainer",
    "resume",
    "sample",
    "GantkError",
    "UsageError",
    "UnknownComponentError",
    "DuplicateComponentError",
    "PluginError",
    "DataError",
    "CheckpointError",
    "ConfigError",
    "OutputError",
    "ExtensionError",
    "TrainingError",
    "GantkWarning",
    "GantkNote",
]
