"""The input gradient of a piecewise-linear MLP critic in closed form.

A critic that is a stack of ``Linear`` layers with ReLU or LeakyReLU between them is
piecewise linear: its input gradient is a product of the weights and the activation
masks, ∇ₓD(x) = W_L S_{L-1} W_{L-1} … S_1 W_1 with S_l the diagonal of σ'(z_l), and
σ'' = 0 almost everywhere. A gradient penalty's parameter gradient therefore flows only
through the weights of that product, never back through the forward pass.

Autograd does not know that: the double backward of ReLU's backward sends a tensor of
zeros back into the forward chain, which costs two matrix products per hidden layer
(the input and the weight gradient of zeros) and their accumulation. On the WGAN-GP toy
networks (3 × 512) that is a third of the penalty's matrix work.

:func:`mlp_input_gradient` computes the scores and ∇ₓD with a hand-written backward:
per layer one product for the forward, one for the input gradient, and two for the
backward (the weight gradients of the penalty and of the scores share one product).
:func:`piecewise_layers` says whether a critic has that form; the penalty op uses the
closed form whenever it does (see ``_input_gradient`` in :mod:`gantk.ops.penalty`) and
autograd otherwise, and ``GANTK_FORCE_REF=1`` forces autograd everywhere.

The closed form is exact almost everywhere (a ReLU kink is met with probability 0, and
there it takes the mask PyTorch's own backward takes: 0 at z = 0). Its gradient with
respect to the points is the scores' part only: the input gradient of a piecewise-linear
function does not change with x between kinks. It is differentiated once (a penalty's
backward), not twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import force_ref

__all__ = ["PiecewiseLayers", "piecewise_layers", "mlp_input_gradient", "closed_form_applies"]


@dataclass
class PiecewiseLayers:
    """A critic read as ``prefix → Linear → act → … → Linear → suffix``: ``linears`` the
    Linear layers, ``slopes[l]`` the negative slope of the activation after linear ``l``
    (0 for ReLU), ``prefix``/``suffix`` the shape-only modules before and after."""

    prefix: list[nn.Module]
    linears: list[nn.Linear]
    slopes: list[float]
    suffix: list[nn.Module]


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    mod = nn.modules.module
    return bool(mod._global_forward_hooks or mod._global_forward_pre_hooks or mod._global_backward_hooks
                or getattr(mod, "_global_backward_pre_hooks", None))


def piecewise_layers(critic) -> PiecewiseLayers | None:
    """The critic's layers when it is an ``nn.Sequential`` of exactly: optional
    ``Flatten()`` / ``Identity``, then ``Linear`` layers with one ``ReLU`` or
    ``LeakyReLU`` between each two, then optional ``Flatten`` / ``Unflatten`` /
    ``Identity`` (shape only) — with no hooks on any of them; else None. A parametrized
    layer (spectral norm) is another class, so it takes autograd's path."""
    if type(critic) is not nn.Sequential or _hooked(critic) or _global_hooks():
        return None
    mods = list(critic)
    if any(_hooked(m) for m in mods):
        return None
    i = 0
    prefix: list[nn.Module] = []
    while i < len(mods) and (type(mods[i]) is nn.Identity
                             or (type(mods[i]) is nn.Flatten and mods[i].start_dim == 1 and mods[i].end_dim == -1)):
        prefix.append(mods[i])
        i += 1
    linears: list[nn.Linear] = []
    slopes: list[float] = []
    while i < len(mods) and type(mods[i]) is nn.Linear:
        linears.append(mods[i])
        i += 1
        if i < len(mods) and type(mods[i]) in (nn.ReLU, nn.LeakyReLU):
            act = mods[i]
            slope = 0.0 if type(act) is nn.ReLU else float(act.negative_slope)
            if slope < 0:  # (a negative slope is not a leaky ReLU's; autograd handles it)
                return None
            slopes.append(slope)
            i += 1
            if i == len(mods) or type(mods[i]) is not nn.Linear:
                return None  # an activation after the last Linear
    suffix = mods[i:]
    if not linears or len(slopes) != len(linears) - 1:
        return None
    if not all(type(m) in (nn.Flatten, nn.Unflatten, nn.Identity) for m in suffix):
        return None
    return PiecewiseLayers(prefix, linears, slopes, suffix)


#: A Linear with fewer inputs than this (a critic's first layer on 2-D points) has its
#: thin products laid out so that BLAS writes the thin side fast. On the CPU-AVX2
#: machine of benchmarks/RESULTS.md (MKL, 2 threads) the first layer's weight gradient
#: (512, 256) × (256, 2) took 154 µs as dᵀh and 39 µs as (hᵀd)ᵀ, and its input gradient
#: (256, 512) × (512, 2) 115 µs with W as stored and 40 µs with W copied column-major.
_NARROW = 64


def _through(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """d W: a gradient d (B, out) taken back through a Linear's weight W (out, in); a
    fresh tensor. One output (d is (B, 1)): an outer product, taken as a broadcast
    multiplication (the same numbers, no reduction). Few inputs: W's transpose made
    contiguous first, so the product writes its thin result column by column."""
    if d.shape[1] == 1:
        return d * w
    if w.shape[1] < _NARROW:
        return d @ w.t().contiguous().t()
    return d @ w


def _weight_grad(d: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """dᵀh: a Linear's weight gradient from d (B, out) at its output and its input h
    (B, in); for few inputs taken as (hᵀd)ᵀ, the thin factor on the left."""
    if h.shape[1] < _NARROW:
        return (h.t() @ d).t().contiguous()
    return d.t() @ h


def _mask(grad: torch.Tensor, h: torch.Tensor, slope: float) -> torch.Tensor:
    """grad · σ'(z), with ``h = σ(z)`` (the activation's output), as the activation's own
    backward computes it, written over ``grad`` (a product's fresh output, used once)."""
    if slope == 0.0:
        return torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad)
    return torch.ops.aten.leaky_relu_backward.grad_input(grad, h, slope, True, grad_input=grad)


class _MLPInputGradient(torch.autograd.Function):
    """(x, W_1, b_1, …, W_L, b_L) ↦ (scores, ∇ₓ Σ scores), backward in closed form."""

    @staticmethod
    def forward(ctx, x, slopes, *params):
        ws, bs = params[0::2], params[1::2]
        hs = [x]  # the layers' inputs h_0 = x, h_l = σ(z_l)
        h = x
        for w, b, slope in zip(ws, bs, slopes):
            z = torch.addmm(b, h, w.t()) if b is not None else h @ w.t()
            # in place: z is not needed again (the masks are read from h = σ(z))
            h = z.relu_() if slope == 0.0 else torch.nn.functional.leaky_relu_(z, slope)
            hs.append(h)
        w, b = ws[-1], bs[-1]
        scores = torch.addmm(b, h, w.t()) if b is not None else h @ w.t()
        # q_L = 1 (∂Σscores/∂scores), p_{l-1} = q_l W_l, q_l = p_l · σ'(z_l)
        q = torch.ones_like(scores)
        qs = [q]
        g = _through(q, w)
        for l in range(len(slopes) - 1, -1, -1):
            q = _mask(g, hs[l + 1], slopes[l])
            qs.append(q)
            g = _through(q, ws[l])
        qs.reverse()  # qs[l] multiplies ws[l]
        ctx.slopes = slopes
        ctx.save_for_backward(*ws, *hs, *qs, g)
        ctx.n = len(ws)
        ctx.set_materialize_grads(False)
        return scores, g

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scores, grad_g):
        n = ctx.n
        saved = ctx.saved_tensors
        ws, hs, qs, g = saved[:n], saved[n:2 * n], saved[2 * n:3 * n], saved[3 * n]
        # One score per sample. The scores path (α = ∂/∂scores, (B, 1)): an MLP's
        # backward from α is α·q_l at every layer (q was computed from ones), so its
        # weight gradient (α·q_l)ᵀh_{l-1} = q_lᵀ(α·h_{l-1}) shares one product with the
        # g path. The g path (u = ∂/∂g): g = q_1 W_1 and p_{l-1} = q_l W_l with
        # q_l = p_l·σ'(z_l), so dW_l = q_lᵀ dp_{l-1}, dq_l = dp_{l-1} W_lᵀ and
        # dp_l = dq_l·σ'(z_l), starting from dp_0 = u.
        alpha, dp = grad_scores, grad_g
        need = ctx.needs_input_grad
        out: list[torch.Tensor | None] = [None, None]
        for l in range(n):
            right = None
            if alpha is not None:
                right = hs[l] * alpha
            if dp is not None:
                right = dp if right is None else right + dp
            gw = _weight_grad(qs[l], right) if right is not None and need[2 + 2 * l] else None
            gb = (qs[l] * alpha).sum(0) if alpha is not None and need[3 + 2 * l] else None
            out += [gw, gb]
            if l < n - 1 and dp is not None:
                dp = _mask(dp @ ws[l].t(), hs[l + 1], ctx.slopes[l])
        if alpha is not None and need[0]:
            out[0] = g * alpha
        return tuple(out)


def mlp_input_gradient(layers: PiecewiseLayers, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, g)`` of the critic ``layers`` describe at ``points``: the scores as the
    critic returns them and g = ∇ₓ Σ_i D(x_i) with ``points``' shape, differentiable
    once with respect to the critic's parameters (and, through the scores, the points)."""
    x = points
    for m in layers.prefix:
        x = m(x)
    params: list[torch.Tensor | None] = []
    for lin in layers.linears:
        params += [lin.weight, lin.bias]
    scores, g = _MLPInputGradient.apply(x, tuple(layers.slopes), *params)
    for m in layers.suffix:
        scores = m(scores)
    return scores, g.reshape(points.shape)


def closed_form_applies(critic, points: torch.Tensor) -> PiecewiseLayers | None:
    """The critic's layers when :func:`mlp_input_gradient` computes exactly what autograd
    would here: a piecewise-linear critic (:func:`piecewise_layers`), weights of the
    points' dtype and device, no autocast, and ``GANTK_FORCE_REF`` unset; else None."""
    if force_ref() or torch.is_autocast_enabled(points.device.type):
        return None
    layers = piecewise_layers(critic)
    if layers is None or layers.linears[-1].out_features != 1:
        return None
    if points.dim() != 2 and not layers.prefix:  # the first Linear would act on the last dim
        return None
    for lin in layers.linears:
        for p in (lin.weight, lin.bias):
            if p is not None and (p.dtype != points.dtype or p.device != points.device):
                return None
    return layers
