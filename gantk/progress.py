"""The rich progress display of ``gantk train`` (a :class:`gantk.training.Callback`)."""
from __future__ import annotations


from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .training import Callback, TrainResult


def format_metrics(m: dict[str, float]) -> str:
    parts = []
    if "critic_loss" in m:
        parts.append(f"D {m['critic_loss']:+.4f}")
    if "generator_loss" in m:
        parts.append(f"G {m['generator_loss']:+.4f}")
    if "w_estimate" in m:
        parts.append(f"W {m['w_estimate']:.4f}")
    if "grad_norm" in m:
        parts.append(f"|∇D| {m['grad_norm']:.3f}")
    if "penalty" in m:
        parts.append(f"pen {m['penalty']:.4f}")
    if "steps_per_s" in m:
        parts.append(f"{m['steps_per_s']:.1f} it/s")
    return "  ".join(parts)


class RichProgress(Callback):
    """A progress bar on stderr with step, critic loss, W estimate, ‖∇D‖ and penalty."""

    def __init__(self, console: Console, start_step: int = 0):
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
            console=console, transient=False,
        )
        self.task = None

    def on_start(self, trainer) -> None:
        self.progress.start()
        self._started = True
        self.task = self.progress.add_task("train", total=trainer.cfg.steps, completed=trainer.step, metrics="")
        self.console.print(f"run folder: {trainer.run_dir}", highlight=False)

    def on_step(self, step: int) -> None:
        self.progress.update(self.task, completed=step)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self.progress.update(self.task, metrics=format_metrics(metrics))
        if not self.console.is_terminal:
            self.console.print(f"step {step}: {format_metrics(metrics)}", highlight=False)

    def on_end(self, result: TrainResult) -> None:
        self.stop()

    def stop(self) -> None:
        if getattr(self, "_started", False):
            self.progress.stop()
            self._started = False
