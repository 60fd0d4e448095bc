"""The gradient-penalty op: interpolation x̂ = ε·real + (1 − ε)·fake and the
per-sample gradient-norm head  λ · mean_i |f(‖g_i‖₂ − k)|^p  (f = identity, or
max(0, ·) for the one-sided variant; p = 2 unless ``power`` says otherwise).

The building blocks of a penalty the head does not cover are public too:
:func:`input_gradient` (the critic's scores and the per-sample input gradient, with
``create_graph=True``) and :func:`gradient_norms` (per-sample norms, differentiable).

The other functions take ``impl="auto" | "ref" | "ext"`` (these two are plain PyTorch:
one autograd call, one reduction, nothing to fuse):

* ``"ref"`` — the pure-PyTorch reference in this file;
* ``"ext"`` — the fused C++/CUDA kernels from ``csrc/`` (raises
  :class:`gantk.errors.ExtensionError` when they cannot be had);
* ``"auto"`` — the extension when available, else the reference (one warning naming
  the reason). ``GANTK_FORCE_REF=1`` forces the reference everywhere.

The norm is taken per sample over *all* non-batch dimensions, so 2-D points, images
and sequences are handled alike (the classic ``g.norm(dim=1)`` bug takes it over
channels only for images).

The fused kernels implement the head for ``power=2`` (WGAN-GP, LP, R1, zero-centred
GP). Any other power runs the reference head of this file, which has the same shape
(one read of g forward, one fused expression backward): ``"auto"`` uses it without a
warning, since there is no kernel to fall back from, and ``"ext"`` raises.

Two arguments shared by the norm functions:

* ``norm_eps`` — the norm is ``sqrt(‖g_i‖² + norm_eps)``: a smooth norm at g = 0 (and
  never below ``sqrt(norm_eps)``). The functions here need none: at a zero row they
  return the gradient 0, never NaN; a hand-written ``sqrt(g.pow(2).sum())`` does not.
* ``inv_scale`` — under mixed precision with loss scaling the critic's output is
  multiplied by a scale S, so the input gradient taken from it is S·∇ₓD and must be
  divided by S before the norm. ``inv_scale`` is 1/S as a 0-dim or 1-element *device
  tensor*: it is folded into the float32 (float64) accumulation on the device, with no
  host synchronisation (a Python float would need ``.item()``), and the result equals
  the unscaled computation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ExtensionError, UsageError
from . import _ext, piecewise
from .common import acc_dtype, check_impl, force_ref

__all__ = [
    "interpolate",
    "draw_epsilon",
    "input_gradient",
    "gradient_norms",
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
    def forward(ctx, g, target, one_sided, weight, norm_eps, inv_scale, power):
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
        if power == 2.0:
            penalty = weight * d.square().mean()
        else:
            penalty = weight * d.abs().pow(power).mean()
        ctx.save_for_backward(g, norms, d, scale if scale is not None else torch.empty(0))
        ctx.weight = weight
        ctx.power = power
        ctx.has_scale = scale is not None
        ctx.mark_non_differentiable(norms)
        return penalty, norms

    @staticmethod
    def backward(ctx, grad_penalty, _grad_norms):
        g, norms, d, scale = ctx.saved_tensors
        b = g.shape[0]
        # ∂/∂g_i = grad_out · λ · p |f(n_i − k)|^(p−1) sign(f) / (B n_i) · s² g_i
        # (s = inverse scale; for p = 2 the factor is 2 f(n_i − k); the one-sided d is
        # already zero where inactive). n_i = 0 gives 0, never NaN.
        safe = torch.where(norms > 0, norms, torch.ones_like(norms))
        if ctx.power == 2.0:
            coef = (2.0 * ctx.weight / b) * d / safe
        else:
            p = ctx.power
            coef = (p * ctx.weight / b) * (d.abs().pow(p - 1.0) * d.sign()) / safe
        coef = torch.where(norms > 0, coef, torch.zeros_like(coef))
        if ctx.has_scale:
            coef = coef * scale.square()
        coef = coef * grad_penalty
        grad_g = g * coef.to(g.dtype).view(b, *([1] * (g.dim() - 1)))
        return grad_g, None, None, None, None, None, None


def _check_inv_scale(inv_scale: torch.Tensor | None) -> None:
    if inv_scale is None:
        return
    if not isinstance(inv_scale, torch.Tensor):
        raise UsageError(
            f"inv_scale must be a tensor on the device (1/loss scale), got {type(inv_scale).__name__}"
        )
    if inv_scale.numel() != 1:
        raise UsageError("inv_scale must hold exactly one element")


def _check_grad(grad: torch.Tensor, norm_eps: float, inv_scale: torch.Tensor | None) -> float:
    """Validate the arguments every norm function shares; returns ``norm_eps`` as a float."""
    if grad.dim() < 1 or grad.shape[0] == 0:
        raise UsageError("grad needs a non-empty batch dimension")
    if not grad.is_floating_point():
        raise UsageError(f"grad must be floating point, got {grad.dtype}")
    _check_inv_scale(inv_scale)
    norm_eps = float(norm_eps)
    if norm_eps < 0:
        raise UsageError("norm_eps must be >= 0")
    return norm_eps


def _check_power(power: float, impl: str) -> float:
    """``power`` as a float, >= 1 (below 1 the penalty's gradient is infinite where a norm
    meets its target). The fused kernel implements power 2 only: ``impl="ext"`` with
    another power raises :class:`gantk.errors.ExtensionError`."""
    check_impl(impl)
    power = float(power)
    if not (math.isfinite(power) and power >= 1.0):
        raise UsageError(f"power must be a finite number >= 1, got {power:g}")
    if power != 2.0 and impl == "ext":
        raise ExtensionError(
            f"impl='ext' was asked for, but the fused norm-penalty kernel implements power 2 only "
            f"(got power={power:g}); use impl='auto' or 'ref'"
        )
    return power


def gradient_norms(
    grad: torch.Tensor,
    *,
    norm_eps: float = 0.0,
    inv_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample norms ``n_i = sqrt(‖s·g_i‖² + norm_eps)`` over all non-batch dims of
    ``grad`` (``s`` = ``inv_scale``, default 1), differentiable w.r.t. ``grad`` (to any
    order away from g_i = 0; a zero row gets the gradient 0, never NaN).

    Returns a (B,) tensor in float32 (float64 for float64 input), the same numbers as the
    ``norms`` of :func:`gradient_norm_penalty`. Build a penalty the norm head does not
    cover from it: ``weight * h(gradient_norms(g)).mean()`` for any differentiable ``h``.
    Plain PyTorch (one reduction; there is nothing to fuse), so it takes no ``impl``.
    """
    norm_eps = _check_grad(grad, norm_eps, inv_scale)
    acc = acc_dtype(grad.dtype)
    norms = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), 2, dim=1, dtype=acc)
    if inv_scale is not None:
        norms = norms * inv_scale.to(acc).reshape(()).abs()
    if norm_eps:
        norms = torch.sqrt(norms.square() + norm_eps)
    return norms


def gradient_norm_penalty(
    grad: torch.Tensor,
    *,
    target: float = 1.0,
    one_sided: bool = False,
    weight: float = 1.0,
    norm_eps: float = 0.0,
    inv_scale: torch.Tensor | None = None,
    power: float = 2.0,
    impl: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penalty on per-sample gradient norms.

    ``n_i = sqrt(‖s·g_i‖² + norm_eps)`` over all non-batch dims of ``grad`` (``s`` =
    ``inv_scale``, a 0-dim or 1-element *device tensor* holding 1/loss-scale under AMP,
    default 1); ``penalty = weight · mean_i |f(n_i − target)|^power`` with ``f(x) = x``,
    or ``max(0, x)`` when ``one_sided``. ``power`` (>= 1, default 2) other than 2 runs the
    reference (see the module's notes); WGAN-div's ``k·E‖∇D‖^p`` is ``weight=k,
    target=0, power=p``.

    Returns ``(penalty, norms)``: a 0-dim tensor (float32, or float64 for float64 input)
    differentiable w.r.t. ``grad``, and the (B,) norms (not differentiable; for logging;
    :func:`gradient_norms` gives differentiable ones).
    """
    norm_eps = _check_grad(grad, norm_eps, inv_scale)
    power = _check_power(power, impl)
    target, weight = float(target), float(weight)
    # power 2 only: for another power the reference is the one implementation, so "auto"
    # neither builds the extension nor warns about not using it
    if power == 2.0 and _use_ext(impl, grad):
        return torch.ops.gantk.norm_penalty(grad, target, bool(one_sided), weight, norm_eps, inv_scale)
    return _NormPenaltyRef.apply(grad, target, bool(one_sided), weight, norm_eps, inv_scale, power)


def _input_gradient(critic, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, scores, g)``: x a detached copy of ``points`` that requires grad, the critic's
    scores there and ∇ₓ Σ_i D(x_i), differentiable with respect to the critic's
    parameters (closed form for piecewise-linear MLP critics, else autograd with
    ``create_graph=True``)."""
    x = points.detach().requires_grad_(True)
    layers = piecewise.closed_form_applies(critic, x)
    if layers is not None:  # a ReLU/LeakyReLU MLP: no double backward through zeros
        scores, g = piecewise.mlp_input_gradient(layers, x)
        return x, scores, g
    scores = critic(x)
    (g,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return x, scores, g


def input_gradient(
    critic,
    points: torch.Tensor,
    *,
    inv_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The critic's scores at ``points`` and the per-sample input gradient ∇ₓD(x_i).

    Returns ``(scores, grad)``: ``scores = critic(x)`` and ``grad = ∇ₓ Σ_i D(x_i)`` with
    ``points``' shape, taken with ``create_graph=True`` so that a penalty built on it
    back-propagates into the critic's parameters. Row i is ∇D(x_i) when sample i's score
    depends on x_i alone (no BatchNorm or other batch mixing in the critic). ``points``
    are detached first: the penalty reaches the critic, not what produced the points.
    A ReLU/LeakyReLU MLP critic (``nn.Sequential``; :mod:`gantk.ops.piecewise` says
    which) gets g in closed form: autograd's numbers without its double backward
    through zeros, differentiable once.

    ``inv_scale`` (1/S as a device tensor) is for a critic whose output carries a loss
    scale S: the returned ``grad`` is multiplied by it (in ``grad``'s dtype), i.e.
    unscaled; ``scores`` are returned as the critic gave them. Alternatively leave the
    gradient scaled and pass ``inv_scale`` to :func:`gradient_norms` or
    :func:`gradient_norm_penalty`, which fold it into their float32 accumulation — never
    both.
    """
    _check_inv_scale(inv_scale)
    _, scores, g = _input_gradient(critic, points)
    if inv_scale is not None:
        g = g * inv_scale.to(g.dtype).reshape(())
    return scores, g


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
    power: float = 2.0,
    impl: str = "auto",
) -> GradientPenalty:
    """Penalty ``weight · mean_i |f(‖∇ₓD(x_i)‖ − target)|^power`` at the given points
    (R1 is ``target=0`` on real data; WGAN-div's term ``target=0, power=p``).

    ``critic`` is any callable module. The input gradient is taken with
    ``create_graph=True`` so the penalty can be back-propagated into the critic's
    parameters; call ``backward`` once on (loss + penalty). ``inv_scale``: see
    :func:`gradient_norm_penalty` (the critic's output carries the loss scale).
    """
    _check_power(power, impl)  # before the critic runs
    x, scores, g = _input_gradient(critic, points)
    penalty, norms = gradient_norm_penalty(
        g, target=target, one_sided=one_sided, weight=weight, norm_eps=norm_eps,
        inv_scale=inv_scale, power=power, impl=impl,
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
    power: float = 2.0,
    impl: str = "auto",
) -> GradientPenalty:
    """WGAN-GP penalty (Gulrajani et al. 2017):
    ``weight · E[(‖∇ₓD(x̂)‖₂ − target)²]`` at x̂ = ε·real + (1 − ε)·fake, ε ~ U[0, 1)
    per sample; ``one_sided=True`` gives the LP form ``E[max(0, ‖∇D‖ − k)²]``,
    ``target=0`` the zero-centred GP (Thanh-Tung et al. 2019), and ``power`` replaces
    the square by ``|·|^power``."""
    _check_power(power, impl)  # before the critic runs
    x_hat, _ = interpolate(real.detach(), fake.detach(), generator=generator, impl=impl)
    return gradient_penalty_at(
        critic, x_hat, weight=weight, target=target, one_sided=one_sided,
        norm_eps=norm_eps, inv_scale=inv_scale, power=power, impl=impl,
    )
