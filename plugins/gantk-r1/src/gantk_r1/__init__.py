"""gantk-r1: gradient penalties from the "which training methods converge" line of work,
as gantk Lipschitz enforcers.

* ``r1`` — Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do
  actually Converge?": the zero-centred penalty on real data,
  R1 = γ/2 · E_x~P_real ‖∇ₓD(x)‖².
* ``r2`` — the same on generated data, R2 = γ/2 · E_x~P_G ‖∇ₓD(x)‖².
* ``dragan`` — Kodali, Abernethy, Hays & Kira 2017, "On Convergence and Stability of
  GANs": λ · E[(‖∇ₓD(x̃)‖ − k)²] at points x̃ near the real data (see :class:`DRAGAN`).
* ``wgan-div`` — Wu, Huang, Thoma, Acharya & Van Gool 2018, "Wasserstein Divergence for
  GANs": k · E‖∇ₓD(x)‖^p over the real and the generated samples (see :class:`WGANDiv`).
* ``zc-gp`` — Thanh-Tung, Tran & Venkatesh 2019, "Improving Generalization and
  Stability of Generative Adversarial Networks": the zero-centred gradient penalty
  λ · E‖∇ₓD(x̂)‖² at x̂ on the line between a real and a fake sample.

All five go through gantk's public penalty op (``gantk.gradient_penalty_at`` and
``gantk.gradient_penalty``), so they use gantk's fused kernel where it is available
(``wgan-div`` with p ≠ 2 has no kernel and runs the op's reference head); the ``impl``
option (auto | ref | ext) is handed to the op unchanged.

Only gantk's public API is used here.
"""
from __future__ import annotations

import torch

import gantk
from gantk.ops import check_impl

__version__ = "0.1.0"


def _check_options(enforcer: gantk.LipschitzEnforcer, nonneg: tuple[str, ...]) -> None:
    for key in nonneg:
        if not enforcer.opts[key] >= 0:
            raise gantk.UsageError(f"{enforcer.name}: {key} must be >= 0, got {enforcer.opts[key]}")
    check_impl(enforcer.opts["impl"], enforcer.name)


def _output(gp: gantk.GradientPenalty) -> gantk.PenaltyOutput:
    return gantk.PenaltyOutput(gp.penalty, {"grad_norm": gp.norms.mean().detach(), "penalty": gp.penalty.detach()})


class R1(gantk.LipschitzEnforcer):
    """R1 (Mescheder et al. 2018): γ/2 · E‖∇ₓD(x)‖² at the real samples of the batch,
    the norm over all non-batch dimensions. γ = 10 as in the paper's image
    experiments."""

    name = "r1"
    description = "zero-centred gradient penalty on real data gamma/2*E||grad D(x_real)||^2, gamma = 10"
    options = {"gamma": 10.0, "impl": "auto"}
    forbids_batchnorm = True

    def __init__(self, **opts):
        super().__init__(**opts)
        _check_options(self, ("gamma",))

    def _points(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return real

    def penalty(self, critic, real, fake, *, generator=None):
        gp = gantk.gradient_penalty_at(
            critic, self._points(real, fake), weight=self.opts["gamma"] / 2, target=0.0, impl=self.opts["impl"],
        )
        return _output(gp)


class R2(R1):
    """R2 (Mescheder et al. 2018): the R1 penalty at the generated samples."""

    name = "r2"
    description = "zero-centred gradient penalty on generated data gamma/2*E||grad D(x_fake)||^2, gamma = 10"

    def _points(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return fake


class DRAGAN(gantk.LipschitzEnforcer):
    """DRAGAN (Kodali et al. 2017): λ · E[(‖∇ₓD(x̃)‖₂ − k)²] near the real data.

    The paper writes the perturbation as x + δ; its experiments perturb each real batch
    with noise scaled by the batch's spread and take the gradient at a random point
    between the real and the perturbed sample. This implements exactly that:

        x_p = x + c · σ · u,        u ~ U[0, 1) per element, σ = std of the real batch
                                     (one number over all its elements, population std)
        x̃  = x + ε · (x_p − x),     ε ~ U[0, 1) per sample

    i.e. x̃ = x + ε·c·σ·u. Defaults: λ = 10, c = 0.5, k = 1. Both draws use the
    trainer's noise generator, so a seed fixes them. x̃ is formed by gantk's
    ``interpolate`` inside ``gantk.gradient_penalty(critic, x_p, x)``.
    """

    name = "dragan"
    description = "DRAGAN: lambda*E[(||grad D(x~)|| - k)^2] at x~ = x + eps*c*std(x)*U[0,1), lambda = 10, c = 0.5"
    options = {"lambda": 10.0, "c": 0.5, "k": 1.0, "impl": "auto"}
    forbids_batchnorm = True

    def __init__(self, **opts):
        super().__init__(**opts)
        _check_options(self, ("lambda", "c"))

    def perturb(self, real: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_p = x + c · std(x) · u, u ~ U[0, 1) elementwise (no gradient)."""
        real = real.detach()
        sigma = real.std(correction=0)
        u = torch.rand(real.shape, generator=generator, device=real.device, dtype=real.dtype)
        return real + self.opts["c"] * sigma * u

    def penalty(self, critic, real, fake, *, generator=None):
        perturbed = self.perturb(real, generator)
        # gradient_penalty(critic, a, b) takes the gradient at ε·a + (1 − ε)·b
        gp = gantk.gradient_penalty(
            critic, perturbed, real.detach(), weight=self.opts["lambda"], target=self.opts["k"],
            generator=generator, impl=self.opts["impl"],
        )
        return _output(gp)


class WGANDiv(gantk.LipschitzEnforcer):
    """WGAN-div (Wu et al. 2018): k · E_{x~P_u} ‖∇ₓD(x)‖^p, the norm over all non-batch
    dimensions; the paper's k = 2, p = 6.

    The paper's objective for the critic is E_{P_r}[D] − E_{P_g}[D] + k·E_{P_u}‖∇D‖^p
    (the adversarial part is gantk's ``wasserstein`` loss; the sign of D does not change
    the penalty). Its stated objective puts the expectation at the real and the fake
    samples; its released code takes the gradient at interpolates between them. This
    enforcer follows the stated objective: P_u is the batch's real and fake points
    together, each point weighted alike, i.e.

        penalty = k / (B_r + B_f) · (Σ_real ‖∇D(x)‖^p + Σ_fake ‖∇D(x)‖^p)

    (k/2 on each mean when the two batches have one size), so that ``wgan-div`` is the
    formula the paper states and a reader checks it against; at interpolates and p = 2
    it would be the zero-centred GP (``zc-gp``). The real and the fake points go through
    the critic in separate calls, so a critic that mixes its batch still gets each
    gradient from its own kind of points.

    p = 2 uses gantk's fused kernel where it is available; any other p runs the op's
    reference head (``impl=auto`` and ``ref``; ``impl=ext`` with p ≠ 2 is refused).
    """

    name = "wgan-div"
    description = "WGAN-div: k*E||grad D(x)||^p over the real and fake samples, k = 2, p = 6"
    options = {"k": 2.0, "p": 6.0, "impl": "auto"}
    forbids_batchnorm = True

    def __init__(self, **opts):
        super().__init__(**opts)
        _check_options(self, ("k",))
        p = self.opts["p"]
        if not p >= 1:  # (the base class refuses non-finite numbers)
            raise gantk.UsageError(f"{self.name}: p must be >= 1, got {p}")
        if self.opts["impl"] == "ext" and p != 2:
            raise gantk.UsageError(
                f"{self.name}: impl=ext needs p = 2 (gantk's fused kernel implements the square only); "
                "use impl=auto or ref"
            )

    def penalty(self, critic, real, fake, *, generator=None):
        total = real.shape[0] + fake.shape[0]
        parts = [
            gantk.gradient_penalty_at(
                critic, points, weight=self.opts["k"] * points.shape[0] / total, target=0.0,
                power=self.opts["p"], impl=self.opts["impl"],
            )
            for points in (real, fake)
        ]
        value = parts[0].penalty + parts[1].penalty
        norms = torch.cat([parts[0].norms, parts[1].norms])
        return gantk.PenaltyOutput(value, {"grad_norm": norms.mean().detach(), "penalty": value.detach()})


class ZeroCentredGP(gantk.LipschitzEnforcer):
    """Zero-centred gradient penalty (Thanh-Tung et al. 2019): λ · E‖∇ₓD(x̂)‖² at
    x̂ = ε·x_real + (1 − ε)·x_fake, ε ~ U[0, 1) per sample, the norm over all non-batch
    dimensions. WGAN-GP's penalty with target 0: it pushes the critic's gradient towards
    zero on the paths between real and fake samples instead of towards norm 1. λ = 10.
    ε is drawn with the trainer's noise generator, so a seed fixes it.
    """

    name = "zc-gp"
    description = "zero-centred GP lambda*E||grad D(x_hat)||^2 at interpolates of real and fake, lambda = 10"
    options = {"lambda": 10.0, "impl": "auto"}
    forbids_batchnorm = True

    def __init__(self, **opts):
        super().__init__(**opts)
        _check_options(self, ("lambda",))

    def penalty(self, critic, real, fake, *, generator=None):
        gp = gantk.gradient_penalty(
            critic, real, fake, weight=self.opts["lambda"], target=0.0, generator=generator, impl=self.opts["impl"],
        )
        return _output(gp)


@gantk.hookimpl
def register_lipschitz(register):
    """gantk calls this once when it builds its registries."""
    for cls in (R1, R2, DRAGAN, WGANDiv, ZeroCentredGP):
        register(cls)
