"""The rich progress display of ``gantk train`` (a :class:`gantk.training.Callback`)."""
from __future__ import annotations


from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .training import Callback, TrainResult


def _num(v: float, digits: int = 4, signed: bool = False) -> str:
    """Fixed point for ordinary values, scientific where fixed point would hide them
    (a penalty of 3e-6 is not 0.0000)."""
    sign = "+" if signed else ""
    if v != 0 and (abs(v) < 10 ** -(digits - 1) or abs(v) >= 1e6):
        return f"{v:{sign}.{max(digits - 2, 1)}e}"
    return f"{v:{sign}.{digits}f}"


def format_metrics(m: dict[str, float]) -> str:
    parts = []
    if "critic_loss" in m:
        parts.append(f"D {_num(m['critic_loss'], signed=True)}")
    if "generator_loss" in m:
        parts.append(f"G {_num(m['generator_loss'], signed=True)}")
    if "w_estimate" in m:
        parts.append(f"W {_num(m['w_estimate'])}")
    if "grad_norm" in m:
        parts.append(f"|∇D| {_num(m['grad_norm'], 3)}")
    if "penalty" in m:
        parts.append(f"pen {_num(m['penalty'])}")
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
