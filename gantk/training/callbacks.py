"""What a :class:`~gantk.training.Trainer` reports to: callbacks and the result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


class Callback:
    """Receives progress from :class:`~gantk.training.Trainer`; the CLI's progress bar
    and ``--eval-every`` are callbacks. Called on rank 0 only."""

    def on_start(self, trainer: Any) -> None: ...
    def on_step(self, step: int) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_image(self, step: int, path: Path) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...
