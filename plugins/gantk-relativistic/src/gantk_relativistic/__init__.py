"""gantk-relativistic: the relativistic average standard GAN loss (RaSGAN,
Jolicoeur-Martineau 2018, "The relativistic discriminator: a key element missing from
standard GAN") as a gantk loss named ``ragan``.

With C the critic's raw score and σ the logistic function, the relativistic average
discriminator asks "is a real sample more realistic than the average fake one?":

    D̃(x_r) = σ(C(x_r) − E_f C(x_f)),     D̃(x_f) = σ(C(x_f) − E_r C(x_r))

    critic:     − E_r log D̃(x_r) − E_f log(1 − D̃(x_f))
    generator:  − E_f log D̃(x_f) − E_r log(1 − D̃(x_r))

(with −log σ(a) = softplus(−a) and −log(1 − σ(a)) = softplus(a)).

The generator loss needs the critic's scores on real data as well as on fakes, so the
loss sets ``needs_real_scores = True``: gantk's trainer then scores a real batch (without
gradient to the critic) on every generator step and calls
``generator_loss(fake_out, real_out)``. Called without ``real_out``, the generator loss
raises :class:`gantk.UsageError` rather than guess.

Only gantk's public API is used here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import gantk

__version__ = "0.1.0"


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B,) or (B, 1) scores -> (B,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1) if x.dim() > 1 else x


class RelativisticAverage(gantk.Loss):
    """Relativistic average standard GAN loss (RaSGAN)."""

    name = "ragan"
    description = "relativistic average GAN (RaSGAN): sigma(C(x_r) - E C(x_f)) vs sigma(C(x_f) - E C(x_r))"
    #: the trainer passes the critic's real scores to generator_loss
    needs_real_scores = True

    def critic_loss(self, real_out, fake_out):
        r, f = _flat(real_out), _flat(fake_out)
        return F.softplus(-(r - f.mean())).mean() + F.softplus(f - r.mean()).mean()

    def generator_loss(self, fake_out, real_out=None):
        if real_out is None:
            raise gantk.UsageError(
                "ragan: generator_loss needs the critic's scores on real data (real_out); "
                "gantk's trainer passes them because this loss sets needs_real_scores = True"
            )
        f, r = _flat(fake_out), _flat(real_out)
        return F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean()


@gantk.hookimpl
def register_losses(register):
    """gantk calls this once when it builds its registries."""
    register(RelativisticAverage)
