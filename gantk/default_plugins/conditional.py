"""Class-conditional building blocks of the built-in models (``--conditional``).

* :class:`ConditionalBatchNorm2d` — batch norm without its own affine part, then a
  scale and an offset looked up per class (de Vries et al. 2017; the generators of
  SN-GAN and BigGAN);
* :class:`ConcatEmbedding` — a learned class embedding concatenated to the input (the
  conditional ``mlp``, and generators without a norm layer);
* :class:`CondSequential` — a sequence whose class-conditional layers get ``y``;
* :class:`ProjectionCritic` — the projection discriminator (Miyato & Koyama 2018,
  arXiv 1802.05637): ``D(x, y) = ψ(φ(x)) + ⟨embed(y), pool(φ(x))⟩``, the critic's
  unconditional score plus the inner product of a class embedding with the pooled
  features.

The label is an index, never an input of the gradient penalty: the Lipschitz
enforcers take the gradient with respect to the image with the label held fixed
(:class:`gantk.training.trainer` hands them the critic with ``y`` bound).
"""
from __future__ import annotations

import torch
from torch import nn


class ClassConditional(nn.Module):
    """Marker base: a layer called as ``layer(x, y)``."""


class ConditionalBatchNorm2d(ClassConditional):
    """``BatchNorm2d(affine=False)`` followed by a per-class scale γ_y (initialised to 1)
    and offset β_y (initialised to 0): a new generator is the same for every class,
    and training separates them."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(num_classes, channels)
        self.shift = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.bn(x)
        return h * self.scale(y)[:, :, None, None] + self.shift(y)[:, :, None, None]


class ConcatEmbedding(ClassConditional):
    """``(x, y) → cat(x.flatten(1), embed(y))``: a ``dim``-long learned class embedding
    appended to each (flattened) input."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.flatten(1), self.embed(y).to(x.dtype)], dim=1)


class CondSequential(nn.Sequential):
    """An ``nn.Sequential`` called as ``net(x, y)``: the :class:`ClassConditional`
    layers get ``y``, the others ``x`` alone. Its parameter names are those of the
    same layers in a plain ``nn.Sequential``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, y) if isinstance(layer, ClassConditional) else layer(x)
        return x


class ProjectionCritic(nn.Module):
    """``D(x, y) = head(h) + Σ_c embed(y)_c · pool(h)_c`` with ``h = trunk(x)`` of
    ``channels`` feature maps (or features): the projection discriminator. ``pool``
    sums over the spatial dimensions (SN-GAN's global sum pooling) unless ``mean``.
    The embedding starts small (N(0, 0.02)), so a new critic scores as its
    unconditional part would, and learns per-class directions from there."""

    def __init__(self, trunk: nn.Module, head: nn.Module, channels: int, num_classes: int, *, mean: bool = False):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.embed = nn.Embedding(num_classes, channels)
        self.mean = mean
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        pooled = h if h.dim() == 2 else (h.mean(dim=(2, 3)) if self.mean else h.sum(dim=(2, 3)))
        out = self.head(h).reshape(x.shape[0])
        return out + (self.embed(y).to(pooled.dtype) * pooled).sum(dim=1)
