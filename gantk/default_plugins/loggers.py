"""Built-in training loggers (``gantk train --logger NAME``): ``tensorboard``.

The run's ``metrics.jsonl`` is always written by the trainer; loggers add other sinks.
They receive floats already on the host (no device sync is added to the step), and
TensorBoard's writer queues events for its own thread, so a slow disk never blocks the
training step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..components import Logger
from ..errors import UsageError
from ..markers import hookimpl

#: metrics.jsonl keys and where TensorBoard shows them
_TAGS = {"critic_loss": "loss/critic", "generator_loss": "loss/generator", "w_estimate": "critic/w_estimate",
         "grad_norm": "critic/grad_norm", "penalty": "critic/penalty", "steps_per_s": "speed/steps_per_s"}


def _summary_writer(logdir: Path):
    try:  # optional: the "tensorboard" extra
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("--logger tensorboard needs the tensorboard package: pip install 'gantk[tensorboard]'") from None
    return SummaryWriter(log_dir=str(logdir), flush_secs=10)


class TensorBoardLogger(Logger):
    """Scalars (losses, the W estimate, ‖∇D(x̂)‖, the penalty, lr, steps/s and every
    ``--eval-every`` number), the training pictures and the run's config (as text and
    as hparams) in TensorBoard event files, by default in ``RUN/tensorboard``."""

    name = "tensorboard"
    description = "TensorBoard event files: scalars, pictures, eval numbers and the config (RUN/tensorboard)"
    options = {"logdir": ""}

    def on_start(self, trainer: Any) -> None:
        self.dir = Path(self.opts["logdir"]) if self.opts["logdir"] else Path(trainer.run_dir) / "tensorboard"
        self.writer = _summary_writer(self.dir)
        self.cfg = json.loads(trainer.cfg.to_json())
        self.optimizer = trainer.opt_g
        self.writer.add_text("config", "```\n" + json.dumps(self.cfg, indent=2) + "\n```", trainer.step)
        self.last: dict[str, float] = {}

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(_TAGS.get(key, f"train/{key}"), value, step)
        self.writer.add_scalar("optim/lr", self.optimizer.param_groups[0]["lr"], step)
        self.last = dict(metrics)

    def on_eval(self, step: int, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"eval/{key}", value, step)

    def on_image(self, step: int, path: Any) -> None:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        self.writer.add_image("samples", arr, step, dataformats="HWC")

    def on_end(self, result: Any) -> None:
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else json.dumps(v))
                   for k, v in self.cfg.items() if v is not None}
        final = {f"hparam/{k}": v for k, v in self.last.items()}
        self.writer.add_hparams(hparams, final, run_name=".")
        self.writer.close()


@hookimpl
def register_loggers(register):
    register(TensorBoardLogger)
