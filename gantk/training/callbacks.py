"""What a :class:`~gantk.training.Trainer` reports to: callbacks (the base class lives
with the other plugin base classes, :class:`gantk.components.Callback`) and the result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..components import Callback

__all__ = ["Callback", "TrainResult"]


@dataclass
class TrainResult:
    """Where a finished (or resumed) run stands: its folder, step, newest checkpoint and
    picture, the last logged metrics and the seconds it took."""

    run_dir: Path
    step: int
    checkpoint: Path
    image: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
