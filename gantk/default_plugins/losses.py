"""Built-in adversarial losses: minimax, ns, wasserstein, hinge, lsgan.

The critic's raw output is a logit for the GAN losses and a score for the others.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..components import Loss
from ..markers import hookimpl


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1) if x.dim() > 1 else x


class Minimax(Loss):
    """The original GAN (Goodfellow et al. 2014): D maximises log D(x) + log(1 − D(G(z)));
    G minimises the *saturating* log(1 − D(G(z)))."""

    name = "minimax"
    description = "original GAN objective, saturating generator loss log(1 - D(G(z)))"

    def critic_loss(self, real_out, fake_out):
        real_out, fake_out = _flat(real_out), _flat(fake_out)
        # -log σ(r) - log(1 - σ(f)) = softplus(-r) + softplus(f)
        return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()

    def generator_loss(self, fake_out, real_out=None):
        # log(1 - σ(f)) = -softplus(f)
        return -F.softplus(_flat(fake_out)).mean()


class NonSaturating(Minimax):
    """Non-saturating GAN: the critic as in minimax, G minimises −log D(G(z))."""

    name = "ns"
    description = "non-saturating GAN, generator loss -log D(G(z))"

    def generator_loss(self, fake_out, real_out=None):
        return F.softplus(-_flat(fake_out)).mean()


class Wasserstein(Loss):
    """WGAN (Arjovsky et al. 2017): the critic maximises E[D(x)] − E[D(G(z))]."""

    name = "wasserstein"
    description = "WGAN critic/generator losses, E[D(fake)] - E[D(real)] and -E[D(fake)]"

    def critic_loss(self, real_out, fake_out):
        return _flat(fake_out).mean() - _flat(real_out).mean()

    def generator_loss(self, fake_out, real_out=None):
        return -_flat(fake_out).mean()


class Hinge(Loss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018)."""

    name = "hinge"
    description = "hinge loss: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))]"

    def critic_loss(self, real_out, fake_out):
        return F.relu(1 - _flat(real_out)).mean() + F.relu(1 + _flat(fake_out)).mean()

    def generator_loss(self, fake_out, real_out=None):
        return -_flat(fake_out).mean()


class LeastSquares(Loss):
    """LSGAN (Mao et al. 2017) with targets a = 0 (fake), b = 1 (real), c = 1."""

    name = "lsgan"
    description = "least-squares GAN: (D(x) - 1)^2 + D(G(z))^2; G: (D(G(z)) - 1)^2"
    options = {"real_target": 1.0, "fake_target": 0.0}

    def critic_loss(self, real_out, fake_out):
        b, a = self.opts["real_target"], self.opts["fake_target"]
        return 0.5 * ((_flat(real_out) - b) ** 2).mean() + 0.5 * ((_flat(fake_out) - a) ** 2).mean()

    def generator_loss(self, fake_out, real_out=None):
        return 0.5 * ((_flat(fake_out) - self.opts["real_target"]) ** 2).mean()


@hookimpl
def register_losses(register):
    for cls in (Minimax, NonSaturating, Wasserstein, Hinge, LeastSquares):
        register(cls)
