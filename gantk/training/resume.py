"""Resuming a run: which settings may change (the config's ``resume`` marks, see
:data:`gantk.config.RESUME_OVERRIDABLE`) and continuing from the newest checkpoint."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt_mod
from ..config import RESUME_OVERRIDABLE, TrainConfig, flag_of
from ..errors import ConfigError, UsageError
from .callbacks import Callback, TrainResult
from .trainer import Trainer


def resume_config(saved: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config with the overrides that are safe on resume; others are refused."""
    given = {k: v for k, v in overrides.items() if v is not None}
    refused = [k for k, v in given.items() if k not in RESUME_OVERRIDABLE and getattr(saved, k, None) != v]
    if refused:
        raise ConfigError(
            f"cannot change {', '.join(flag_of(k) if hasattr(saved, k) else k for k in refused)} when resuming "
            f"(it would make a different run); only {', '.join(flag_of(k) for k in RESUME_OVERRIDABLE)} may change"
        )
    cfg = replace(saved, **given)
    cfg.validate()
    return cfg


def resume(run: str | Path, overrides: dict[str, Any] | None = None, *,
           callbacks: list[Callback] | None = None) -> TrainResult:
    """Continue a run from its newest checkpoint (``--steps`` counts the total)."""
    path = ckpt_mod.resolve_checkpoint(run)
    ck = ckpt_mod.load_checkpoint(path)
    cfg = resume_config(ck.config, overrides or {})
    if cfg.steps <= ck.step:
        raise UsageError(f"the run is already at step {ck.step}; pass --steps larger than that to continue")
    run_dir = path.parent.parent
    return Trainer(cfg, callbacks=callbacks, resume=ck, run_dir=run_dir).train()
