"""The gradient-penalty op: interpolation x̂ = ε·real + (1 − ε)·fake and the
per-sample gradient-norm head  λ · mean_i f(‖g_i‖₂ − k)²  (f = identity, or max(0, ·)
for the one-sided variant).

Every function takes ``impl="auto" | "ref" | "ext"``:

* ``"ref"`` — the pure-PyTorch reference in this file;
* ``"ext"`` — the fused C++/CUDA kernels from ``csrc/`` (raises
  :class:`gantk.errors.ExtensionError` when they cannot be had);
* ``"auto"`` — the extension when available, else the reference (one warning naming
  the reason). ``GANTK_FORCE_REF=1`` forces the reference everywhere.

The norm is taken per sample over *all* non-batch dimensions, so 2-D points, images
and sequences are handled alike (the classic ``g.norm(dim=1)`` bug takes it over
channels only for images).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ExtensionError, UsageError
from . import _ext
from .common import acc_dtype, check_impl, force_ref

__all__ = [
    "interpolate",
    "draw_epsilon",
    "gradient_norm_penalty",
    "gradient_penalty",
    "gradient_penalty_at",
    "GradientPenalty",
]


def _use_ext(impl: str, t: torch.Tensor) -> bool:
    """Decide between the reference and the extension for tensor ``t``."""
    if check_impl(impl) == "ref":
        return False
    if force_ref():
        if impl == "ext":
            raise ExtensionError("impl='ext' was asked for but GANTK_FORCE_REF is set")
        return False
    if _ext.ready(t.device.type):  # the per-call path once loaded
        return True
    ok, reason = _ext.available(t.device)
    if ok:
        return True
    if impl == "ext":
        raise ExtensionError(f"the gantk extension is unavailable on {t.device.type}: {reason}")
    _ext.warn_fallback(t.device, reason)
    return False


def draw_epsilon(
    batch: int, *, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample ε ~ U[0, 1), shape (batch,), drawn with ``torch.rand`` on ``like``'s
    device in float32 (float64 for float64 data). The reference and the extension use
    this same draw, so a seed gives the same ε on either path."""
    return torch.rand(batch, generator=generator, device=like.device, dtype=acc_dtype(like.dtype))


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape != fake.shape:
        raise UsageError(f"real and fake must have one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if real.dtype != fake.dtype or real.device != fake.device:
        raise UsageError("real and fake must share dtype and device")
    if real.dim() < 1 or real.shape[0] == 0:
        raise UsageError("real and fake need a non-empty batch dimension")


def interpolate(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂ = ε·real + (1 − ε)·fake with one ε per sample.

    Returns ``(x_hat, eps)``; ``x_hat`` has ``real``'s shape and dtype, ``eps`` has shape
    (B,). Pass ``eps`` to reuse a draw, else it is drawn with :func:`draw_epsilon`.
    """
    _check_pair(real, fake)
    b = real.shape[0]
    if eps is None:
        eps = draw_epsilon(b, like=real, generator=generator)
    elif eps.shape != (b,):
        raise UsageError(f"eps must have shape ({b},), got {tuple(eps.shape)}")
    if _use_ext(impl, real):
        return torch.ops.gantk.interpolate(real, fake, eps), eps
    w = eps.to(real.dtype).view(b, *([1] * (real.dim() - 1)))
    return torch.lerp(fake, real, w), eps


class _NormPenaltyRef(torch.autograd.Function):
    """Reference norm head with a hand-written backward.

    Forward reads g once (norms in float accumulation); backward reads g and writes
    ∂penalty/∂g in one fused expression instead of autograd's chain of
    norm/sub/pow/mean backward kernels. Its backward is not differentiated again:
    the penalty needs ∂/∂θ of a create_graph'd g, which autograd gets by chaining this
    backward's output into g's own graph.
    """

    @staticmethod
    def forward(ctx, g, target, one_sided, weight, norm_eps, inv_scale):
        acc = acc_dtype(g.dtype)
        b = g.shape[0]
        flat = g.reshape(b, -1)
        sq = torch.linalg.vector_norm(flat, 2, dim=1, dtype=acc).square()
        scale = None
        if inv_scale is not None:
            scale = inv_scale.to(acc).reshape(())
            sq = sq * scale.square()
        norms = torch.sqrt(sq + norm_eps) if norm_eps else torch.sqrt(sq)
        d = norms - target
        if one_sided:
            d = d.clamp_min(0)
        penalty = weight * d.square().mean()
        ctx.save_for_backward(g, norms, d, scale if scale is not None else torch.empty(0))
        ctx.weight = weight
        ctx.has_scale = scale is not None
        ctx.mark_non_differentiable(norms)
        return penalty, norms

    @staticmethod
    def backward(ctx, grad_penalty, _grad_norms):
        g, norms, d, scale = ctx.saved_tensors
        b = g.shape[0]
        # ∂/∂g_i = grad_out · λ · 2 f(n_i − k) / (B n_i) · s² g_i  (s = inverse scale; the
        # one-sided d is already zero where inactive). n_i = 0 gives 0, never NaN.
        coef = (2.0 * ctx.weight / b) * d / torch.where(norms > 0, norms, torch.ones_like(norms))
        coef = torch.where(norms > 0, coef, torch.zeros_like(coef))
        if ctx.has_scale:
            coef = coef * scale.square()
        coef = coef * grad_penalty
        grad_g = g * coef.to(g.dtype).view(b, *([1] * (g.dim() - 1)))
        return grad_g, None, None, None, None, None


def gradient_norm_penalty(
    grad: torch.Tensor,
    *,
    target: float = 1.0,
    one_sided: bool = False,
    weight: float = 1.0,
    norm_eps: float = 0.0,
    inv_scale: torch.Tensor | None = None,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalty on per-sample gradient norms.

    ``n_i = sqrt(‖s·g_i‖² + norm_eps)`` over all non-batch dims of ``grad`` (``s`` =
    ``inv_scale``, a 0-dim or 1-element *device tensor* holding 1/loss-scale under AMP,
    default 1); ``penalty = weight · mean_i f(n_i − target)²`` with ``f(x) = x``, or
    ``max(0, x)`` when ``one_sided``.

    Returns ``(penalty, norms)``: a 0-dim tensor (float32, or float64 for float64 input)
    differentiable w.r.t. ``grad``, and the (B,) norms (not differentiable; for logging).
    """
    if grad.dim() < 1 or grad.shape[0] == 0:
        raise UsageError("grad needs a non-empty batch dimension")
    if not grad.is_floating_point():
        raise UsageError(f"grad must be floating point, got {grad.dtype}")
    if inv_scale is not None and inv_scale.numel() != 1:
        raise UsageError("inv_scale must hold exactly one element")
    target, weight, norm_eps = float(target), float(weight), float(norm_eps)
    if norm_eps < 0:
        raise UsageError("norm_eps must be >= 0")
    if _use_ext(impl, grad):
        return torch.ops.gantk.norm_penalty(grad, target, bool(one_sided), weight, norm_eps, inv_scale)
    return _NormPenaltyRef.apply(grad, target, bool(one_sided), weight, norm_eps, inv_scale)


@dataclass
class GradientPenalty:
    """Result of :func:`gradient_penalty`: the scalar ``penalty`` (differentiable w.r.t.
    the critic's parameters), the per-sample gradient ``norms`` (B,), the points ``x_hat``
    where the gradient was taken and the critic's ``scores`` there."""

    penalty: torch.Tensor
    norms: torch.Tensor
    x_hat: torch.Tensor
    scores: torch.Tensor


def gradient_penalty_at(
    critic,
    points: torch.Tensor,
    *,
    weight: float = 10.0,
    target: float = 1.0,
    one_sided: bool = False,
    norm_eps: float = 0.0,
    inv_scale: torch.Tensor | None = None,
    impl: str = "auto",
) -> GradientPenalty:
    """Penalty on ‖∇ₓD(x)‖ at the given points (R1 is ``target=0`` on real data).

    ``critic`` is any callable module. The input gradient is taken with
    ``create_graph=True`` so the penalty can be back-propagated into the critic's
    parameters; call ``backward`` once on (loss + penalty).
    """
    x = points.detach().requires_grad_(True)
    scores = critic(x)
    (g,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    penalty, norms = gradient_norm_penalty(
        g, target=target, one_sided=one_sided, weight=weight, norm_eps=norm_eps,
        inv_scale=inv_scale, impl=impl,
    )
    return GradientPenalty(penalty, norms, x, scores)


def gradient_penalty(
    critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    target: float = 1.0,
    one_sided: bool = False,
    norm_eps: float = 0.0,
    inv_scale: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    impl: str = "auto",
) -> GradientPenalty:
    """WGAN-GP penalty (Gulrajani et al. 2017):
    ``weight · E[(‖∇ₓD(x̂)‖₂ − target)²]`` at x̂ = ε·real + (1 − ε)·fake, ε ~ U[0, 1)
    per sample; ``one_sided=True`` gives the LP form ``E[max(0, ‖∇D‖ − k)²]``."""
    x_hat, _ = interpolate(real.detach(), fake.detach(), generator=generator, impl=impl)
    return gradient_penalty_at(
        critic, x_hat, weight=weight, target=target, one_sided=one_sided,
        norm_eps=norm_eps, inv_scale=inv_scale, impl=impl,
    )
