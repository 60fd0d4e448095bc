"""Built-in augmentations (``--augment NAME[,NAME]``), registered through the
``register_augmentations`` hook like a plugin's.

* ``flip``: x-flip of real images as they are drawn (StyleGAN's ``--mirror``), each
  image with probability ``p`` (default 0.5): a data augmentation, the generator
  learns mirrored images too.
* ``color``, ``translation``, ``cutout``: DiffAugment (Zhao et al. 2020, "Differentiable
  Augmentation for Data-Efficient GAN Training", arXiv 2006.10738), applied to real and
  generated images before every critic call; differentiable w.r.t. the images, so the
  generator's gradient flows through them. ``color`` shifts brightness by U(−0.5, 0.5),
  scales saturation by U(0, 2) and contrast by U(0.5, 1.5); ``translation`` shifts by
  whole pixels, up to ``ratio``/2 of the side each way, filling with 0 (mid-grey);
  ``cutout`` sets a square of side ``ratio`` × the side, centred anywhere, to 0. Each
  image is transformed with probability ``p`` (default 1, as in DiffAugment).

Images are (B, C, H, W) in [−1, 1]; the random parameters come from the generator the
trainer passes (seeded per critic step, so runs are reproducible and resumable).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..components import Augmentation
from ..errors import UsageError
from ..markers import hookimpl


def _rand(n: int, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """n uniform values on x's device, in x's dtype, shaped to broadcast over (B, C, H, W)."""
    return torch.rand(n, generator=g, device=x.device, dtype=x.dtype).view(n, 1, 1, 1)


def _mix(x: torch.Tensor, y: torch.Tensor, p: float, g: torch.Generator | None) -> torch.Tensor:
    """y for each sample with probability p, else x."""
    if p >= 1.0:
        return y
    keep = torch.rand(x.shape[0], generator=g, device=x.device) >= p
    return torch.where(keep.view(-1, 1, 1, 1), x, y)


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise UsageError(f"augmentation {name!r} takes image batches (B, C, H, W), got shape {tuple(x.shape)}")


class Flip(Augmentation):
    name = "flip"
    description = "x-flip of real images as drawn (StyleGAN's --mirror); p = 0.5"
    stage = "data"
    options = {"p": 0.5}

    def apply(self, x, generator=None):
        _check_images(x, self.name)
        if self.p <= 0:
            return x
        return _mix(x, x.flip(3), self.p, generator)


class Color(Augmentation):
    name = "color"
    description = "DiffAugment colour: brightness, saturation, contrast, on real and fake before the critic"

    def apply(self, x, generator=None):
        _check_images(x, self.name)
        if self.p <= 0:
            return x
        b = x.shape[0]
        y = x + (_rand(b, x, generator) - 0.5)
        mean = y.mean(dim=1, keepdim=True)
        y = (y - mean) * (_rand(b, x, generator) * 2) + mean
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * (_rand(b, x, generator) + 0.5) + mean
        return _mix(x, y, self.p, generator)


class Translation(Augmentation):
    name = "translation"
    description = "DiffAugment translation: whole-pixel shifts up to ratio/2 of the side, zero fill; ratio 0.125"
    options = {"p": 1.0, "ratio": 0.125}

    def apply(self, x, generator=None):
        _check_images(x, self.name)
        if self.p <= 0:
            return x
        b, _, h, w = x.shape
        sh, sw = int(h * self.opts["ratio"] / 2 + 0.5), int(w * self.opts["ratio"] / 2 + 0.5)
        dy = torch.randint(-sh, sh + 1, (b, 1), generator=generator, device=x.device)
        dx = torch.randint(-sw, sw + 1, (b, 1), generator=generator, device=x.device)
        # output (i, j) reads input (i + dy, j + dx); outside the image: the zero border
        rows = (torch.arange(h, device=x.device) + dy).clamp(-1, h) + 1  # (B, H) into the padded image
        cols = (torch.arange(w, device=x.device) + dx).clamp(-1, w) + 1
        padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
        batch = torch.arange(b, device=x.device).view(b, 1, 1)
        y = padded[batch, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
        return _mix(x, y, self.p, generator)


class Cutout(Augmentation):
    name = "cutout"
    description = "DiffAugment cutout: a zeroed square of side ratio x the image side, anywhere; ratio 0.5"
    options = {"p": 1.0, "ratio": 0.5}

    def apply(self, x, generator=None):
        _check_images(x, self.name)
        if self.p <= 0:
            return x
        b, _, h, w = x.shape
        ch, cw = int(h * self.opts["ratio"] + 0.5), int(w * self.opts["ratio"] + 0.5)
        cy = torch.randint(0, h + (1 - ch % 2), (b, 1), generator=generator, device=x.device) - ch // 2
        cx = torch.randint(0, w + (1 - cw % 2), (b, 1), generator=generator, device=x.device) - cw // 2
        r, c = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        in_y = (r >= cy) & (r < cy + ch)  # (B, H)
        in_x = (c >= cx) & (c < cx + cw)
        keep = ~(in_y[:, :, None] & in_x[:, None, :])
        y = x * keep[:, None].to(x.dtype)
        return _mix(x, y, self.p, generator)


@hookimpl
def register_augmentations(register):
    for cls in (Flip, Color, Translation, Cutout):
        register(cls)
