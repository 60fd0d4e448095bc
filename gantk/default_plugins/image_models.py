"""Built-in image models: ``dcgan`` (Radford et al. 2016) and ``resnet`` (the residual
networks of the WGAN-GP paper's CIFAR-10 experiments, Gulrajani et al. 2017).

Both take square images (C, H, H) with C = 1 or 3 and H a power of two, map a latent
vector to images in [−1, 1] (tanh) and score images with a critic that returns (B,).
Every weight layer is an ``nn.Linear`` / ``nn.Conv2d`` / ``nn.ConvTranspose2d``, so the
``sn`` enforcer's spectral normalization applies to them unchanged.

Both have a class-conditional form (``--conditional``, :mod:`.conditional`): the
generator's batch norms become class-conditional batch norms (a scale and offset per
class), or, with ``generator_norm=none``, a class embedding is appended to z; the
critic gets the projection head of Miyato & Koyama (2018), as in SN-GAN and BigGAN.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..components import GANModel
from ..errors import ConfigError, UsageError
from ..markers import hookimpl
from .conditional import ConcatEmbedding, ConditionalBatchNorm2d, CondSequential, ProjectionCritic

#: length of the class embedding a conditional generator without norm layers appends to z
EMBED_DIM = 32

_CHANNELS = (1, 3)


def _image_reason(data_shape: tuple[int, ...], lo: int, hi: int | None) -> str | None:
    """Why ``data_shape`` is not a square (C, H, H) image this model family can make."""
    if len(data_shape) != 3:
        return f"needs images of shape (C, H, W), got a sample shape of rank {len(data_shape)}"
    c, h, w = data_shape
    if c not in _CHANNELS:
        return f"needs 1 (grayscale) or 3 (RGB) channels, got {c}"
    if h != w:
        return f"needs square images, got {h}x{w}"
    size = f"{lo} to {hi}" if hi else f"at least {lo}"
    if h < lo or (hi is not None and h > hi) or h & (h - 1):
        return f"needs a side that is a power of two, {size} pixels; got {h}"
    return None


def _check_shape(model: GANModel, data_shape: tuple[int, ...]) -> tuple[int, int]:
    reason = model.supports(tuple(data_shape))
    if reason:
        raise ConfigError(f"model {model.name!r} cannot handle data of shape {tuple(data_shape)}: {reason}")
    return data_shape[0], data_shape[1]


def _choice(model: GANModel, key: str, allowed: tuple[str, ...]) -> None:
    if model.opts[key] not in allowed:
        raise UsageError(f"model {model.name!r}: {key} must be one of {', '.join(allowed)}, "
                         f"not {model.opts[key]!r}")


def _layer_norm(channels: int) -> nn.Module:
    """Layer normalization of conv features as in the WGAN-GP code: statistics over
    (C, H, W) of each sample, a learned scale and offset per channel — exactly
    ``GroupNorm`` with one group. No statistic crosses samples, so the per-sample
    gradient penalty stays correct."""
    return nn.GroupNorm(1, channels)


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return _layer_norm(channels)
    return nn.Identity()


class _Flatten1(nn.Module):
    """(B, 1, ...) or (B, 1) scores → (B,)."""

    def forward(self, x):
        return x.reshape(x.shape[0])


# --------------------------------------------------------------------------- DCGAN


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN paper: weights from N(0, 0.02); normalization scales from N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGAN(GANModel):
    """DCGAN (Radford et al. 2016), the usual PyTorch-sized variant.

    Generator: a linear projection of z to 4×4 feature maps, then fractionally strided
    4×4 convolutions (stride 2) that double the side and halve the channels until the
    image side, the last one to C channels with tanh; batch norm + ReLU in between
    (``generator_norm``). Critic: the mirror image, strided 4×4 convolutions with
    LeakyReLU(0.2) down to 4×4 and a 4×4 convolution to one score; no normalization
    after the first layer (as in DCGAN), ``critic_norm`` after the others.

    Channels: ``width`` next to the image, doubling per halving of the side up to
    8 × ``width`` (64×64 with width 64 is the DCGAN generator: 512-256-128-64).

    ``critic_norm``: ``layer`` (default; the WGAN-GP paper's advice for a critic under
    a gradient penalty), ``none``, or ``batch`` (the DCGAN/WGAN critic; refused under
    gp/lp unless --allow-batchnorm).
    """

    name = "dcgan"
    description = "DCGAN generator and critic for square images 8..128 px (width 64, layer-norm critic)"
    options = {"width": 64, "critic_norm": "layer", "generator_norm": "batch"}
    default_latent_dim = 100  # the DCGAN paper's z
    conditional = True

    def __init__(self, **opts):
        super().__init__(**opts)
        if self.opts["width"] < 1:
            raise UsageError(f"model 'dcgan': width must be >= 1, got {self.opts['width']}")
        _choice(self, "critic_norm", ("layer", "none", "batch"))
        _choice(self, "generator_norm", ("batch", "none"))

    def supports(self, data_shape):
        return _image_reason(tuple(data_shape), 8, 128)

    def _channels(self, level: int) -> int:
        """Channels at ``level`` halvings below the image side (level 1 = side / 2)."""
        return self.opts["width"] * min(2 ** (level - 1), 8)

    def build_generator(self, data_shape, latent_dim, num_classes=0):
        c, side = _check_shape(self, data_shape)
        n_up = int(math.log2(side)) - 2  # 4 → side
        bn = self.opts["generator_norm"] == "batch"
        c0 = self._channels(n_up)

        def norm(channels: int) -> nn.Module:
            if not bn:
                return nn.Identity()
            return ConditionalBatchNorm2d(channels, num_classes) if num_classes else nn.BatchNorm2d(channels)

        embed = num_classes and not bn  # no norm to condition: the class embedding joins z
        layers: list[nn.Module] = [ConcatEmbedding(num_classes, EMBED_DIM)] if embed else []
        layers += [
            nn.Linear(latent_dim + (EMBED_DIM if embed else 0), c0 * 16, bias=not bn),
            nn.Unflatten(1, (c0, 4, 4)),
            norm(c0),
            nn.ReLU(),
        ]
        for level in range(n_up, 1, -1):
            c_in, c_out = self._channels(level), self._channels(level - 1)
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not bn), norm(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(self._channels(1), c, 4, 2, 1), nn.Tanh()]
        net = CondSequential(*layers) if num_classes else nn.Sequential(*layers)
        _dcgan_init(net)
        return net

    def build_critic(self, data_shape, num_classes=0):
        c, side = _check_shape(self, data_shape)
        n_down = int(math.log2(side)) - 2  # side → 4
        norm = self.opts["critic_norm"]
        layers: list[nn.Module] = [nn.Conv2d(c, self._channels(1), 4, 2, 1), nn.LeakyReLU(0.2)]
        for level in range(2, n_down + 1):
            c_in, c_out = self._channels(level - 1), self._channels(level)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"), _norm2d(norm, c_out),
                       nn.LeakyReLU(0.2)]
        head = [nn.Conv2d(self._channels(n_down), 1, 4, 1, 0), _Flatten1()]
        if num_classes:  # the projection head on the 4×4 features (sum-pooled)
            net = ProjectionCritic(nn.Sequential(*layers), nn.Sequential(*head), self._channels(n_down),
                                   num_classes)
        else:
            net = nn.Sequential(*layers, *head)
        _dcgan_init(net)
        return net


# -------------------------------------------------------------------------- ResNet


class _ResBlock(nn.Module):
    """Pre-activation residual block of the WGAN-GP ResNets: (norm, ReLU, 3×3 conv)
    twice. ``up``: nearest-neighbour ×2 before the first conv; ``down``: 2×2 mean pool
    after the second. The shortcut is the identity, or a 1×1 conv with the same
    resampling where the shape changes."""

    def __init__(self, c_in: int, c_out: int, resample: str | None, norm: str, num_classes: int = 0):
        super().__init__()
        self.resample = resample
        self.norm1 = _cond_norm2d(norm, c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2 = _cond_norm2d(norm, c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or resample) else nn.Identity()

    def forward(self, x, y=None):
        h = F.relu(_apply(self.norm1, x, y))
        if self.resample == "up":
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(_apply(self.norm2, self.conv1(h), y)))
        s = self.shortcut(x)
        if self.resample == "down":
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return h + s


def _cond_norm2d(kind: str, channels: int, num_classes: int) -> nn.Module:
    """:func:`_norm2d`, with class-conditional batch norm for ``num_classes`` > 0."""
    if kind == "batch" and num_classes:
        return ConditionalBatchNorm2d(channels, num_classes)
    return _norm2d(kind, channels)


def _apply(norm: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return norm(x, y) if isinstance(norm, ConditionalBatchNorm2d) else norm(x)


class _FirstCriticBlock(nn.Module):
    """The critic's first block, on raw pixels: conv, ReLU, conv, mean pool; shortcut
    mean pool then 1×1 conv (no activation or normalization of the input image)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))


class _ResGenerator(nn.Module):
    """``G(z)``, or ``G(z, y)`` with ``num_classes``: class-conditional batch norms, or
    (no norm) a class embedding appended to z."""

    def __init__(self, latent_dim: int, c: int, side: int, width: int, bn: bool, num_classes: int = 0):
        super().__init__()
        self.width = width
        norm = "batch" if bn else "none"
        self.embed = ConcatEmbedding(num_classes, EMBED_DIM) if num_classes and not bn else None
        self.input = nn.Linear(latent_dim + (EMBED_DIM if self.embed is not None else 0), 16 * width)
        # a ModuleList, not a Sequential, so the blocks can take y; the weights' names are the same
        self.blocks = nn.ModuleList([_ResBlock(width, width, "up", norm, num_classes)
                                     for _ in range(int(math.log2(side)) - 2)])
        self.out_norm = _cond_norm2d(norm, width, num_classes)
        self.output = nn.Conv2d(width, c, 3, 1, 1)

    def forward(self, z, y=None):
        if self.embed is not None:
            z = self.embed(z, y)
        h = self.input(z).reshape(z.shape[0], self.width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        h = F.relu(_apply(self.out_norm, h, y))
        return torch.tanh(self.output(h))


class _ResCritic(nn.Module):
    """``D(x)``, or ``D(x, y)`` with ``num_classes``: the projection head on the
    mean-pooled features."""

    def __init__(self, c: int, side: int, width: int, norm: str, num_classes: int = 0):
        super().__init__()
        n_down = max(1, int(math.log2(side)) - 3)  # down to 8×8 (4×4 for 8×8 images)
        blocks: list[nn.Module] = [_FirstCriticBlock(c, width)]
        blocks += [_ResBlock(width, width, "down", norm) for _ in range(n_down - 1)]
        blocks += [_ResBlock(width, width, None, norm) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        self.output = nn.Linear(width, 1)
        self.embed = nn.Embedding(num_classes, width) if num_classes else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x, y=None):
        h = F.relu(self.blocks(x)).mean(dim=(2, 3))
        out = self.output(h).reshape(x.shape[0])
        if self.embed is not None:  # projection: ⟨embed(y), pooled features⟩
            out = out + (self.embed(y).to(h.dtype) * h).sum(dim=1)
        return out


class ResNet(GANModel):
    """The WGAN-GP paper's CIFAR-10 ResNets (Gulrajani et al. 2017, appendix), for
    square images with a power-of-two side ≥ 8.

    Generator: linear z → 4×4×``width``, one up-sampling residual block per doubling
    (three for 32×32), batch norm, ReLU, 3×3 conv to C channels, tanh. Critic: residual
    blocks down-sampling to 8×8 (two for 32×32; the first one acts on raw pixels),
    then two residual blocks at that size, ReLU, global mean pool, linear → score.
    ``width`` channels throughout (128 in the paper). The critic has no batch norm;
    ``critic_norm=layer`` adds layer norm (default ``none``, as in the paper's
    unconditional CIFAR-10 model).
    """

    name = "resnet"
    description = "WGAN-GP CIFAR-10 residual generator and critic, square images >= 8 px (width 128)"
    options = {"width": 128, "critic_norm": "none", "generator_norm": "batch"}
    default_latent_dim = 128
    conditional = True

    def __init__(self, **opts):
        super().__init__(**opts)
        if self.opts["width"] < 1:
            raise UsageError(f"model 'resnet': width must be >= 1, got {self.opts['width']}")
        _choice(self, "critic_norm", ("none", "layer"))
        _choice(self, "generator_norm", ("batch", "none"))

    def supports(self, data_shape):
        return _image_reason(tuple(data_shape), 8, None)

    def build_generator(self, data_shape, latent_dim, num_classes=0):
        c, side = _check_shape(self, data_shape)
        return _ResGenerator(latent_dim, c, side, self.opts["width"], self.opts["generator_norm"] == "batch",
                             num_classes)

    def build_critic(self, data_shape, num_classes=0):
        c, side = _check_shape(self, data_shape)
        return _ResCritic(c, side, self.opts["width"], self.opts["critic_norm"], num_classes)


@hookimpl
def register_models(register):
    for cls in (DCGAN, ResNet):
        register(cls)
