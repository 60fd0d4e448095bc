"""Built-in models: ``mlp`` (the WGAN-GP toy-experiment networks)."""
from __future__ import annotations

import math

from torch import nn

from ..components import GANModel
from ..markers import hookimpl
from .conditional import ConcatEmbedding, CondSequential

#: length of the class embedding the conditional mlp appends to its inputs
EMBED_DIM = 16


#: hidden layers at most: sizing a network on the meta device takes as long as building
#: it, so a hostile depth is refused by its number before anything is built
MAX_DEPTH = 1000


class _Reshape(nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


def _mlp(n_in: int, n_out: int, width: int, depth: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
        d = width
    layers.append(nn.Linear(d, n_out))
    return layers


class MLP(GANModel):
    """Fully connected generator and critic: ``depth`` hidden layers of ``width`` units
    with ReLU (3 × 512 as in the WGAN-GP toy experiments). ``g_depth`` and ``g_width``
    give the generator its own depth and width (0: the same as ``depth`` / ``width``);
    the toy sets recommend ``g_depth`` 4, which sharpens the modes for a few % more time
    per step (benchmarks/quality/RESULTS.md).
    Works for any data shape (samples are flattened). Conditional (``--conditional``):
    a learned class embedding of 16 values is concatenated to the generator's latent
    and to the critic's flattened input."""

    name = "mlp"
    description = "MLP generator and critic, 3 hidden layers of 512, ReLU (WGAN-GP toy nets)"
    options = {"width": 512, "depth": 3, "g_depth": 0, "g_width": 0}

    default_latent_dim = 2
    conditional = True

    def supports(self, data_shape):
        if self.opts["width"] < 1:
            return f"option width must be >= 1, got {self.opts['width']}"
        for key, note in (("depth", ""), ("g_depth", " (0: same as depth)")):
            if self.opts[key] < 0:
                return f"option {key} must be >= 0{note}, got {self.opts[key]}"
            if self.opts[key] > MAX_DEPTH:
                return f"option {key} must be <= {MAX_DEPTH}{note}, got {self.opts[key]}"
        if self.opts["g_width"] < 0:
            return f"option g_width must be >= 0 (0: same as width), got {self.opts['g_width']}"
        return super().supports(data_shape)

    def build_generator(self, data_shape, latent_dim, num_classes=0):
        n = math.prod(data_shape)
        depth = self.opts["g_depth"] or self.opts["depth"]
        width = self.opts["g_width"] or self.opts["width"]
        if num_classes:
            return CondSequential(ConcatEmbedding(num_classes, EMBED_DIM),
                                  *_mlp(latent_dim + EMBED_DIM, n, width, depth), _Reshape(data_shape))
        return nn.Sequential(*_mlp(latent_dim, n, width, depth), _Reshape(data_shape))

    def build_critic(self, data_shape, num_classes=0):
        n = math.prod(data_shape)
        if num_classes:
            return CondSequential(ConcatEmbedding(num_classes, EMBED_DIM),
                                  *_mlp(n + EMBED_DIM, 1, self.opts["width"], self.opts["depth"]), _Reshape(()))
        # built of Flatten, Linear and ReLU only, so the gradient penalty recognises it as
        # piecewise linear and takes its input gradient in closed form (gantk.ops.piecewise)
        return nn.Sequential(nn.Flatten(), *_mlp(n, 1, self.opts["width"], self.opts["depth"]), nn.Flatten(0))


@hookimpl
def register_models(register):
    register(MLP)
