"""Built-in Lipschitz enforcers: none, clip (WGAN), gp (WGAN-GP), lp (one-sided GP),
sn (spectral normalization)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from ..components import LipschitzEnforcer, PenaltyOutput
from ..errors import UsageError
from ..markers import hookimpl
from ..ops import check_impl, gradient_penalty


class NoEnforcer(LipschitzEnforcer):
    """No constraint (use with the GAN losses)."""

    name = "none"
    description = "no Lipschitz constraint"


class WeightClipping(LipschitzEnforcer):
    """WGAN (Arjovsky et al. 2017): clamp every critic parameter to [−c, c] after each
    critic step."""

    name = "clip"
    description = "clamp critic weights to [-c, c] after each critic step (WGAN), c = 0.01"
    options = {"c": 0.01}

    def __init__(self, **opts):
        super().__init__(**opts)
        if not self.opts["c"] > 0:
            raise UsageError(f"clip: c must be > 0, got {self.opts['c']}")

    @torch.no_grad()
    def after_critic_step(self, critic: nn.Module) -> None:
        c = self.opts["c"]
        for p in critic.parameters():
            p.clamp_(-c, c)


class GradientPenalty(LipschitzEnforcer):
    """WGAN-GP (Gulrajani et al. 2017): λ·E[(‖∇ₓD(x̂)‖₂ − k)²] at x̂ = ε·real + (1−ε)·fake,
    ε ~ U[0, 1) per sample, the norm over all non-batch dimensions."""

    name = "gp"
    description = "gradient penalty lambda*E[(||grad D(x_hat)|| - k)^2] (WGAN-GP), lambda = 10, k = 1"
    options = {"lambda": 10.0, "k": 1.0, "norm_eps": 0.0, "impl": "auto"}
    forbids_batchnorm = True
    takes_inv_scale = True
    one_sided = False

    def __init__(self, **opts):
        super().__init__(**opts)
        if self.opts["lambda"] < 0:
            raise UsageError(f"{self.name}: lambda must be >= 0, got {self.opts['lambda']}")
        check_impl(self.opts["impl"], self.name)

    def penalty(self, critic, real, fake, *, generator=None, inv_scale=None):
        gp = gradient_penalty(
            critic, real, fake,
            weight=self.opts["lambda"], target=self.opts["k"], one_sided=self.one_sided,
            norm_eps=self.opts["norm_eps"], inv_scale=inv_scale, generator=generator, impl=self.opts["impl"],
        )
        return PenaltyOutput(gp.penalty, {"grad_norm": gp.norms.mean().detach(), "penalty": gp.penalty.detach()})


class LipschitzPenalty(GradientPenalty):
    """One-sided penalty (Petzka et al. 2018, "WGAN-LP"; the one-sided form discussed
    in the WGAN-GP paper): λ·E[max(0, ‖∇ₓD(x̂)‖₂ − k)²]."""

    name = "lp"
    description = "one-sided gradient penalty lambda*E[max(0, ||grad D(x_hat)|| - k)^2], lambda = 10"
    one_sided = True


_SN_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Embedding, nn.Bilinear)


class SpectralNorm(LipschitzEnforcer):
    """Spectral normalization (Miyato et al. 2018) of every weight layer of the critic,
    with torch's ``parametrizations.spectral_norm`` (one power iteration per forward)."""

    name = "sn"
    description = "spectral normalization of every critic weight layer (SN-GAN)"
    options = {"n_power_iterations": 1, "eps": 1e-12}

    def prepare_critic(self, critic: nn.Module) -> nn.Module:
        for module in critic.modules():
            if isinstance(module, _SN_TYPES) and not parametrize.is_parametrized(module, "weight"):
                parametrizations.spectral_norm(
                    module, n_power_iterations=self.opts["n_power_iterations"], eps=self.opts["eps"]
                )
        return critic


@hookimpl
def register_lipschitz(register):
    for cls in (NoEnforcer, WeightClipping, GradientPenalty, LipschitzPenalty, SpectralNorm):
        register(cls)
