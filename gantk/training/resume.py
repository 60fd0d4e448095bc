"""Resuming a run: which settings may change (the config's ``resume`` marks, see
:data:`gantk.config.RESUME_OVERRIDABLE`), where the run folder is, and what happens to
what the run wrote after the checkpoint it resumes from.

* A checkpoint file resumes only from inside its run folder
  (``RUN/checkpoints/step-*.safetensors`` beside ``RUN/config.json`` of the same run):
  nothing is ever written into a folder that is not that run's.
* Resuming from step s when the run has newer checkpoints starts a branch: the newer
  checkpoints, the pictures and the metrics and evaluation lines after step s are moved
  (never deleted) to ``RUN/branches/from-step-<s>-<time>/``, so that the run folder is
  again one history that ends at step s.
* ``metrics.jsonl`` and ``eval.jsonl`` are cut at the checkpoint's step, so after a
  kill -9 and a resume each is one increasing series.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt_mod
from ..config import RESUME_OVERRIDABLE, TrainConfig, flag_of
from ..errors import CheckpointError, ConfigError, GantkNote, UsageError
from ..fsutil import cut_jsonl
from ..plugins import require_components
from . import distributed
from .callbacks import Callback, TrainResult
from .runlock import RunLock
from .trainer import Trainer

BRANCHES = "branches"
#: the files of a run that hold one line per step
STEP_LOGS = ("metrics.jsonl", "eval.jsonl")


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


def _same_run(a: TrainConfig, b: TrainConfig) -> bool:
    """Whether two configs describe one run (they may differ where resume allows)."""
    da, db = json.loads(a.to_json()), json.loads(b.to_json())
    return all(da.get(k) == db.get(k) for k in set(da) | set(db) if k not in RESUME_OVERRIDABLE)


def run_folder(checkpoint: Path, saved: TrainConfig) -> Path:
    """The run folder of a checkpoint, checked: ``RUN/checkpoints/<file>`` with
    ``RUN/config.json`` describing the same run; :class:`CheckpointError` otherwise."""
    run = checkpoint.parent.parent
    cfg_path = run / "config.json"
    where = (f"{checkpoint} is not inside a gantk run folder (expected RUN/{ckpt_mod.CKPT_DIR}/step-*.safetensors "
             "beside RUN/config.json of the same run); copy it into its run, or train anew")
    if checkpoint.parent.name != ckpt_mod.CKPT_DIR or not cfg_path.is_file():
        raise CheckpointError(where)
    try:
        on_disk = TrainConfig.from_json(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ConfigError):
        raise CheckpointError(f"{where} ({cfg_path} is not a readable gantk config)") from None
    if not _same_run(on_disk, saved):
        raise CheckpointError(f"{where} ({cfg_path} describes another run)")
    return run


def start_branch(run: Path, step: int) -> Path | None:
    """Move what the run wrote after ``step`` aside (see the module docstring) and cut
    its step logs at ``step``. Returns the branch folder, or None when nothing newer
    than ``step`` was checkpointed (lines past it are then dropped: a killed process
    wrote them after its last checkpoint)."""
    newer = [p for s, p in ckpt_mod.list_checkpoints(run) if s > step]
    branch = None
    if newer:
        branch = run / BRANCHES / f"from-step-{step:07d}-{datetime.now():%Y%m%d-%H%M%S-%f}"
        (branch / ckpt_mod.CKPT_DIR).mkdir(parents=True)
        for p in newer:
            p.rename(branch / ckpt_mod.CKPT_DIR / p.name)
        images = run / "images"
        for p in sorted(images.glob("step-*.png")) if images.is_dir() else []:
            if p.stem[5:].isdigit() and int(p.stem[5:]) > step:
                (branch / "images").mkdir(exist_ok=True)
                p.rename(branch / "images" / p.name)
        shutil.copy2(run / "config.json", branch / "config.json")
    dropped = 0
    for name in STEP_LOGS:
        if (run / name).is_file():
            dropped += cut_jsonl(run / name, step, aside=branch / name if branch else None)
    if branch is not None:
        warnings.warn(f"resuming from step {step}, older than the run's newest checkpoint (step "
                      f"{int(newer[-1].stem[5:])}): what came after step {step} was moved to {branch}",
                      GantkNote, stacklevel=3)
    elif dropped:
        warnings.warn(f"dropped {dropped} log lines past step {step} (written after the last checkpoint by a "
                      "process that was stopped)", GantkNote, stacklevel=3)
    return branch


def resume(run: str | Path, overrides: dict[str, Any] | None = None, *,
           callbacks: list[Callback] | None = None) -> TrainResult:
    """Continue a run from its newest checkpoint, or from a checkpoint file inside it
    (``--steps`` counts the total). The run folder is locked while it trains."""
    path = ckpt_mod.resolve_checkpoint(run)
    ck = ckpt_mod.load_checkpoint(path)
    require_components(ck.meta.get("extra", {}).get("components"))
    run_dir = run_folder(path, ck.config)
    cfg = resume_config(ck.config, overrides or {})
    if cfg.steps <= ck.step:
        raise UsageError(f"the run is already at step {ck.step}; pass --steps larger than that to continue")
    lock = RunLock(run_dir) if distributed.get_rank() == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        if lock is not None:
            start_branch(run_dir, ck.step)
        return Trainer(cfg, callbacks=callbacks, resume=ck, run_dir=run_dir, lock=lock).train()
    finally:
        if lock is not None:
            lock.release()
