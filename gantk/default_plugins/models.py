"""Built-in models: ``mlp`` (the WGAN-GP toy-experiment networks)."""
from __future__ import annotations

import math

from torch import nn

from ..components import GANModel
from ..hookimpl import hookimpl


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
        layers += [nn.Linear(d, width), nn.ReLU()]
        d = width
    layers.append(nn.Linear(d, n_out))
    return layers


class MLP(GANModel):
    """Fully connected generator and critic: ``depth`` hidden layers of ``width`` units
    with ReLU (3 × 512 as in the WGAN-GP toy experiments). Works for any data shape
    (samples are flattened)."""

    name = "mlp"
    description = "MLP generator and critic, 3 hidden layers of 512, ReLU (WGAN-GP toy nets)"
    options = {"width": 512, "depth": 3}
    default_latent_dim = 2

    def build_generator(self, data_shape, latent_dim):
        n = math.prod(data_shape)
        return nn.Sequential(*_mlp(latent_dim, n, self.opts["width"], self.opts["depth"]), _Reshape(data_shape))

    def build_critic(self, data_shape):
        n = math.prod(data_shape)
        return nn.Sequential(nn.Flatten(), *_mlp(n, 1, self.opts["width"], self.opts["depth"]), _Reshape(()))


@hookimpl
def register_models(register):
    register(MLP)
