"""Class labels in a conditional run (``--conditional``): the critic with its label
held fixed, as the Lipschitz enforcers see it, and the labels the generator step draws.

The gradient penalty of a conditional critic D(x, y) is taken with respect to the
image alone: y is a class index, not a point of a space the critic should be
Lipschitz in. The trainer generates the critic step's fakes with the real batch's
labels, so real sample i, fake i and every interpolate between them share label y_i,
and hands the enforcer :class:`FixedLabelCritic` (D with those labels bound), a
module of one argument like an unconditional critic: the existing enforcers and
``gantk.gradient_penalty`` work unchanged, and the norm is over the image's
dimensions only.
"""
from __future__ import annotations

import torch
from torch import nn


class FixedLabelCritic(nn.Module):
    """``x ↦ critic(x, labels)``: a conditional critic with its labels bound. Its
    parameters are the critic's (nothing is copied); ``labels`` is a buffer-free
    attribute, so it never receives a gradient."""

    def __init__(self, critic: nn.Module, labels: torch.Tensor):
        super().__init__()
        self.critic = critic
        self.labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"a batch of {x.shape[0]} samples for {self.labels.shape[0]} fixed labels")
        return self.critic(x, self.labels)


def draw_labels(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` labels drawn with replacement from the data's labels (so classes come at
    the data's frequencies), on ``labels``' device, with ``generator`` (on that device)."""
    idx = torch.randint(labels.shape[0], (n,), generator=generator, device=generator.device)
    return labels.index_select(0, idx.to(labels.device))


def grid_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels for a picture with one row per class: ``per_class`` of class 0, then
    ``per_class`` of class 1, ..."""
    return torch.arange(num_classes).repeat_interleave(per_class)
