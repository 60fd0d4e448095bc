"""The generator's weight average (``--ema``)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of a generator's weights, updated after every
    generator step: ``avg ← d·avg + (1 − d)·weights`` with d = min(decay, (1 + t) /
    (10 + t)) at the t-th update, so early averages do not hold on to the random
    initial weights. Buffers (BatchNorm's running statistics) are copied, not averaged.
    Every rank holds the same weights, hence the same average. ``module`` is the
    averaged generator (eval mode, no gradients): sampled, evaluated and pictured in
    the generator's place."""

    def __init__(self, generator: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(generator).requires_grad_(False).eval()

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, p in zip(self.module.parameters(), generator.parameters()):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.module.buffers(), generator.buffers()):
            avg.copy_(b)
