"""gantk — a plugin-based toolkit for training Wasserstein GANs on PyTorch.

Public API:

* ``hookimpl`` — the marker for plugin hook implementations (see ``gantk.hookspecs``);
* base classes for plugins: :class:`Loss`, :class:`LipschitzEnforcer` (returning a
  :class:`PenaltyOutput`), :class:`GANModel`, :class:`Dataset`, :class:`Protocol`, :class:`Logger` (a
  :class:`Callback`);
* the penalty op: :func:`gradient_penalty`, :func:`gradient_penalty_at`,
  :func:`gradient_norm_penalty`, :func:`interpolate`, and for penalties of other shapes
  :func:`input_gradient` and :func:`gradient_norms`;
* factories: :func:`create_model`, :func:`create_loss`, :func:`create_lipschitz`,
  :func:`create_dataset`, :func:`create_augmentation`;
* training and sampling: :class:`TrainConfig`, :func:`make_config`, :func:`train`,
  :func:`sample`.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# The public names load on first use (PEP 562), not with the package: the ``gantk``
# console script imports this package before anything else, and keeping it light lets
# the CLI's entry point (gantk/entry.py) catch a Ctrl-C while torch is still loading.
_PUBLIC = {
    "hookimpl": "gantk.markers",
    **dict.fromkeys(("Augmentation", "Callback", "Dataset", "FeatureExtractor", "GANModel", "LipschitzEnforcer", "Logger", "Loss",
                     "PenaltyOutput", "Protocol"), "gantk.components"),
    "TrainConfig": "gantk.config",
    **dict.fromkeys(("CheckpointError", "ConfigError", "DataError", "DuplicateComponentError", "ExtensionError",
                     "GantkError", "GantkNote", "GantkWarning", "OutputError", "PluginError", "TrainingError",
                     "UnknownComponentError", "UsageError"), "gantk.errors"),
    **dict.fromkeys(("GradientPenalty", "gradient_norm_penalty", "gradient_norms", "gradient_penalty",
                     "gradient_penalty_at", "input_gradient", "interpolate"), "gantk.ops"),
    **dict.fromkeys(("create_model", "create_loss", "create_lipschitz", "create_dataset", "create_augmentation"),
                    "gantk.plugins"),
    "PRESETS": "gantk.presets",
    "make_config": "gantk.resolve",
    "sample": "gantk.sampling",
    **dict.fromkeys(("Trainer", "resume", "train"), "gantk.training"),
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gantk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # for type checkers and editors: the same names, eagerly
    from .components import (  # noqa: F401
        Augmentation,
        Callback,
        Dataset,
        GANModel,
        LipschitzEnforcer,
        Logger,
        Loss,
        PenaltyOutput,
        Protocol,
    )
    from .config import TrainConfig  # noqa: F401
    from .markers import hookimpl  # noqa: F401
    from .ops import (  # noqa: F401
        GradientPenalty,
        gradient_norm_penalty,
        gradient_norms,
        gradient_penalty,
        gradient_penalty_at,
        input_gradient,
        interpolate,
    )
    from .plugins import create_augmentation, create_dataset, create_lipschitz, create_loss, create_model  # noqa: F401
    from .presets import PRESETS  # noqa: F401
    from .resolve import make_config  # noqa: F401
    from .sampling import sample  # noqa: F401
    from .training import Trainer, resume, train  # noqa: F401


__all__ = [
    "__version__",
    "hookimpl",
    "Loss",
    "LipschitzEnforcer",
    "PenaltyOutput",
    "GANModel",
    "Dataset",
    "Augmentation",
    "Protocol",
    "FeatureExtractor",
    "Callback",
    "Logger",
    "GradientPenalty",
    "gradient_penalty",
    "gradient_penalty_at",
    "input_gradient",
    "gradient_norms",
    "gradient_norm_penalty",
    "interpolate",
    "create_model",
    "create_loss",
    "create_lipschitz",
    "create_dataset",
    "create_augmentation",
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
