"""Metric accumulation between log lines: per-step figures summed on the device (no
host sync in the step), averaged over the ranks and checked for divergence when a
line is written."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import TrainingError
from . import distributed

#: the figures a training step reports (the penalty's exist only on penalty steps)
METRIC_KEYS = ("critic_loss", "generator_loss", "w_estimate", "grad_norm", "penalty")


class MetricAccumulator:
    """Sums of the step metrics since the last log line, kept as device tensors."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = {k: torch.zeros((), device=self.device) for k in METRIC_KEYS}
        self.counts = dict.fromkeys(METRIC_KEYS, 0)
        self.steps = 0

    def add(self, generator_loss: torch.Tensor, critic: dict[str, torch.Tensor]) -> None:
        """One generator step's figures: its loss and the critic's (last) figures."""
        self.steps += 1
        self.sums["generator_loss"] += generator_loss.float()
        self.counts["generator_loss"] += 1
        for k, v in critic.items():
            if k in self.sums:
                self.sums[k] += v
                self.counts[k] += 1

    def means(self, ctx: distributed.Context, step: int, last_checkpoint: Path | None) -> dict[str, float]:
        """The global means of the figures seen since the last reset (one host sync);
        :class:`TrainingError` when one is not finite (the run diverged)."""
        n = torch.tensor([max(self.counts[k], 1) for k in METRIC_KEYS], device=self.device)
        mean = torch.stack([self.sums[k] for k in METRIC_KEYS]).div(n)
        vals = distributed.all_reduce_mean_(mean, ctx).tolist()  # global means
        out = {k: v for k, v in zip(METRIC_KEYS, vals) if self.counts[k]}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(
                f"training diverged at step {step}: {bad[0]} is {out[bad[0]]}; "
                f"last good checkpoint: {last_checkpoint or 'none (nothing was saved)'}"
            )
        return out
