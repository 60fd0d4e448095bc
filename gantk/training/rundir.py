"""The run folder a new training writes into."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..config import TrainConfig
from ..fsutil import check_writable_dir


def new_run_dir(cfg: TrainConfig) -> Path:
    """Create ``<out>/<name>`` (default name DATA-LOSS-ENFORCER-TIME); runs started in the same
    second each get their own folder (``-2``, ``-3``, ...)."""
    out = check_writable_dir(cfg.out)
    stem = cfg.name or f"{Path(cfg.data).stem}-{cfg.loss}-{cfg.lipschitz}-{datetime.now():%Y%m%d-%H%M%S}"
    i = 1
    while True:  # mkdir, not exists(): runs started in the same second each get their own
        run = out / (stem if i == 1 else f"{stem}-{i}")
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            i += 1
