"""The penalty op's building blocks for hand-written penalties: input_gradient,
gradient_norms and the norm head's ``power``, each against a float64 formula, with
gradcheck in float64 and the inv_scale contract (a gradient of a scaled critic output,
divided inside, equals the unscaled one)."""
import math
import warnings

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import gantk
import gantk.ops
from gantk.ops import (
    _ext,
    gradient_norm_penalty,
    gradient_norms,
    gradient_penalty,
    gradient_penalty_at,
    input_gradient,
)

F64 = dict(rtol=1e-10, atol=1e-12)


def mlp(d_in=3, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)).to(dtype)


def conv_critic(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 1)).to(dtype)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


class Scaled(nn.Module):
    """The critic's output times a loss scale S, as under fp16 AMP with loss scaling."""

    def __init__(self, critic, scale):
        super().__init__()
        self.critic, self.scale = critic, scale

    def forward(self, x):
        return self.critic(x) * self.scale


def per_sample_gradients(critic, points):
    """∇D(x_i) one sample at a time, in float64: the textbook definition."""
    rows = []
    for p in points:
        x = p.detach().double().unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x)
        rows.append(g[0])
    return torch.stack(rows)


# ---------------------------------------------------------------- input_gradient
@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_input_gradient_is_the_per_sample_gradient(kind):
    critic = mlp() if kind == "mlp" else conv_critic()
    points = randn(5, 3) if kind == "mlp" else randn(5, 2, 4, 4)
    scores, g = input_gradient(critic, points)
    assert g.shape == points.shape and g.dtype == torch.float64
    assert_close(scores, critic(points), **F64)
    assert_close(g, per_sample_gradients(critic, points), **F64)


def test_input_gradient_is_differentiable_wrt_the_critic_and_detaches_the_points():
    critic = mlp()
    source = randn(4, 3).requires_grad_(True)
    points = source * 2.0  # points with a history, as a generator's samples have
    _, g = input_gradient(critic, points)
    assert g.requires_grad
    g.pow(2).sum().backward()
    assert source.grad is None  # the penalty reaches the critic, not what made the points
    # ∂/∂θ Σ_i ‖∇D(x_i)‖² against float64 autograd through an explicit create_graph
    x = points.detach().clone().requires_grad_(True)
    ref = mlp()
    (gr,) = torch.autograd.grad(ref(x).sum(), x, create_graph=True)
    gr.pow(2).sum().backward()
    for p, q in zip(critic.parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert_close(p.grad, q.grad, **F64)


# ---------------------------------------------------------------- gradient_norms
@pytest.mark.parametrize("shape", [(5, 2), (4, 3, 4, 4), (3, 7)])
@pytest.mark.parametrize("norm_eps", [0.0, 1e-3])
def test_gradient_norms_match_the_formula_and_the_heads_norms(shape, norm_eps):
    g = randn(*shape, seed=1)
    n = gradient_norms(g, norm_eps=norm_eps)
    expect = torch.sqrt((g**2).flatten(1).sum(dim=1) + norm_eps)
    assert n.shape == (shape[0],) and n.dtype == torch.float64
    assert_close(n, expect, **F64)
    _, head = gradient_norm_penalty(g, norm_eps=norm_eps, impl="ref")
    assert_close(n, head, **F64)


def test_gradient_norms_accumulate_half_precision_in_float32():
    g = randn(4, 3, 8, 8, seed=2)
    for dtype in (torch.float16, torch.bfloat16):
        n = gradient_norms(g.to(dtype))
        assert n.dtype == torch.float32
        assert_close(n.double(), g.to(dtype).double().flatten(1).norm(dim=1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("norm_eps", [0.0, 1e-2])
@pytest.mark.parametrize("with_scale", [False, True])
def test_gradient_norms_gradcheck_float64(norm_eps, with_scale):
    g = randn(4, 2, 3, seed=3).requires_grad_(True)
    s = torch.tensor(0.6, dtype=torch.float64) if with_scale else None
    f = lambda g: gradient_norms(g, norm_eps=norm_eps, inv_scale=s)  # noqa: E731
    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


def test_gradient_norms_zero_row_has_zero_gradient():
    g = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    gradient_norms(g).sum().backward()
    assert torch.equal(g.grad, torch.zeros_like(g))
    h = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    n = gradient_norms(h, norm_eps=1e-4)
    assert_close(n, torch.full((3,), 1e-2, dtype=torch.float64), **F64)
    n.sum().backward()
    assert torch.equal(h.grad, torch.zeros_like(h))


# ---------------------------------------------------------------- the head's power
def _head_formula(g, *, target, one_sided, weight, power, norm_eps=0.0):
    n = torch.sqrt((g.double() ** 2).flatten(1).sum(dim=1) + norm_eps)
    d = n - target
    if one_sided:
        d = d.clamp_min(0)
    return weight * d.abs().pow(power).mean()


@pytest.mark.parametrize("power", [1.0, 1.5, 2.0, 3.0, 6.0])
@pytest.mark.parametrize("target,one_sided", [(0.0, False), (1.0, False), (1.0, True)])
def test_power_matches_the_float64_formula(power, target, one_sided):
    # norms spread over [0.5, 1.5]·‖row‖, none at the target (the kink of |·| and max)
    g = randn(6, 2, 3, seed=4) * torch.linspace(0.1, 0.7, 6, dtype=torch.float64).view(6, 1, 1)
    g = g.requires_grad_(True)
    pen, norms = gradient_norm_penalty(g, target=target, one_sided=one_sided, weight=2.5, power=power, impl="ref")
    ref_g = g.detach().clone().requires_grad_(True)
    ref = _head_formula(ref_g, target=target, one_sided=one_sided, weight=2.5, power=power)
    assert_close(pen, ref, **F64)
    assert_close(norms, g.detach().flatten(1).norm(dim=1), **F64)
    pen.backward()
    ref.backward()
    assert_close(g.grad, ref_g.grad, **F64)


@pytest.mark.parametrize("power", [1.5, 3.0, 6.0])
@pytest.mark.parametrize("one_sided", [False, True])
def test_power_gradcheck_float64(power, one_sided):
    g = (randn(5, 2, 3, seed=5) * 0.5).requires_grad_(True)
    s = torch.tensor(0.7, dtype=torch.float64)
    for scale in (None, s):
        f = lambda g: gradient_norm_penalty(  # noqa: E731
            g, target=0.4, one_sided=one_sided, weight=2.0, norm_eps=1e-3, inv_scale=scale, power=power, impl="ref"
        )[0]
        assert torch.autograd.gradcheck(f, (g,))


def test_power_two_is_the_default_head():
    g = randn(5, 4, seed=6)
    for impl in ("ref", "auto"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "auto" may fall back to the reference
            a = gradient_norm_penalty(g, target=0.5, weight=3.0, impl=impl)
            b = gradient_norm_penalty(g, target=0.5, weight=3.0, power=2, impl=impl)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_zero_rows_are_safe_for_every_power():
    for power in (1.0, 3.0, 6.0):
        g = torch.zeros(3, 5, requires_grad=True)
        pen, _ = gradient_norm_penalty(g, target=1.0, weight=4.0, power=power, impl="ref")
        pen.backward()
        assert_close(pen, torch.tensor(4.0))
        assert torch.equal(g.grad, torch.zeros_like(g))


def test_power_penalty_reaches_the_critic_like_float64_autograd():
    """gradient_penalty_at(power=p) on an image critic: value and ∂/∂θ equal the
    textbook k·mean‖∇D‖^p by float64 autograd."""
    critic, ref = conv_critic(1), conv_critic(1)
    points = randn(5, 2, 4, 4, seed=7)
    out = gradient_penalty_at(critic, points, weight=2.0, target=0.0, power=6.0, impl="auto")
    out.penalty.backward()
    x = points.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ref(x).sum(), x, create_graph=True)
    pen = 2.0 * g.pow(2).flatten(1).sum(dim=1).pow(3.0).mean()
    pen.backward()
    assert_close(out.penalty, pen, rtol=1e-10, atol=0)
    checked = 0
    for p, q in zip(critic.parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-14)
            checked += 1
    assert checked == 3  # the last bias does not change ∇ₓD


def test_building_blocks_give_the_same_penalty_as_the_head():
    """A hand-written WGAN-div term from input_gradient + gradient_norms equals the
    head with power p, in value and in the critic's gradients."""
    a, b = mlp(seed=2), mlp(seed=2)
    points = randn(6, 3, seed=8)
    _, g = input_gradient(a, points)
    by_hand = 2.0 * gradient_norms(g).pow(6).mean()
    by_hand.backward()
    head = gradient_penalty_at(b, points, weight=2.0, target=0.0, power=6, impl="ref")
    head.penalty.backward()
    assert_close(by_hand, head.penalty, **F64)
    for p, q in zip(a.parameters(), b.parameters()):
        if p.grad is not None:
            assert_close(p.grad, q.grad, **F64)


# ---------------------------------------------------------------- impl and bad arguments
def test_ext_refuses_another_power_and_auto_uses_the_reference_without_building(monkeypatch):
    def no_extension(*a, **k):
        raise AssertionError("the extension was consulted for a power it does not implement")

    monkeypatch.setattr(_ext, "ready", no_extension)
    monkeypatch.setattr(_ext, "available", no_extension)
    g = randn(4, 3, seed=9, dtype=torch.float32)
    with pytest.raises(gantk.ExtensionError, match="power 2 only"):
        gradient_norm_penalty(g, power=3.0, impl="ext")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto, _ = gradient_norm_penalty(g, power=3.0, impl="auto")
    ref, _ = gradient_norm_penalty(g, power=3.0, impl="ref")
    assert torch.equal(auto, ref)


def test_ext_with_another_power_fails_before_the_critic_runs():
    calls = []

    def critic(x):
        calls.append(x)
        return x.sum(dim=1)

    real, fake = randn(4, 3, seed=10), randn(4, 3, seed=11)
    with pytest.raises(gantk.ExtensionError):
        gradient_penalty_at(critic, real, power=6.0, impl="ext")
    with pytest.raises(gantk.ExtensionError):
        gradient_penalty(critic, real, fake, power=6.0, impl="ext")
    assert calls == []


@pytest.mark.parametrize("power", [0.5, 0.0, -2.0, math.nan, math.inf])
def test_bad_power_is_refused(power):
    with pytest.raises(gantk.UsageError, match="power"):
        gradient_norm_penalty(randn(3, 2), power=power, impl="ref")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gradient_norms(torch.zeros(0, 2)), "non-empty batch"),
        (lambda: gradient_norms(torch.zeros(3, 2, dtype=torch.int64)), "floating point"),
        (lambda: gradient_norms(torch.zeros(3, 2), norm_eps=-1.0), "norm_eps"),
        (lambda: gradient_norms(torch.zeros(3, 2), inv_scale=torch.ones(2)), "exactly one element"),
        (lambda: gradient_norms(torch.zeros(3, 2), inv_scale=0.5), "must be a tensor"),
        (lambda: gradient_norm_penalty(torch.zeros(3, 2), inv_scale=0.5, impl="ref"), "must be a tensor"),
        (lambda: input_gradient(mlp(), randn(2, 3), inv_scale=0.5), "must be a tensor"),
        (lambda: gradient_norm_penalty(torch.zeros(3, 2), power=3.0, impl="fast"), "impl must be"),
    ],
)
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(gantk.UsageError, match=match):
        call()


# ---------------------------------------------------------------- inv_scale
S = 2.0**14


def test_inv_scale_divides_the_gradient_of_a_scaled_critic():
    critic = conv_critic(2)
    points = randn(4, 2, 4, 4, seed=12)
    inv = torch.tensor(1 / S, dtype=torch.float64)
    scores, g = input_gradient(critic, points)
    s_scores, s_g = input_gradient(Scaled(critic, S), points, inv_scale=inv)
    assert_close(s_scores, scores * S, **F64)  # the scores as the critic gave them
    assert_close(s_g, g, **F64)
    # a gradient left scaled: the norm functions divide it inside
    _, raw = input_gradient(Scaled(critic, S), points)
    assert_close(raw, g * S, **F64)
    assert_close(gradient_norms(raw, inv_scale=inv), gradient_norms(g), **F64)
    assert_close(gradient_norms(raw, inv_scale=inv, norm_eps=1e-3), gradient_norms(g, norm_eps=1e-3), **F64)
    for power in (2.0, 6.0):
        a = gradient_norm_penalty(raw, target=0.0, weight=2.0, inv_scale=inv, power=power, impl="ref")
        b = gradient_norm_penalty(g, target=0.0, weight=2.0, power=power, impl="ref")
        assert_close(a[0], b[0], **F64)
        assert_close(a[1], b[1], **F64)


@pytest.mark.parametrize("power", [2.0, 6.0])
def test_inv_scale_through_the_whole_penalty_reaches_the_critic_unscaled(power):
    a, b = conv_critic(3), conv_critic(3)
    points = randn(5, 2, 4, 4, seed=13)
    inv = torch.tensor([1 / S], dtype=torch.float64)  # 1-element tensors work too
    scaled = gradient_penalty_at(Scaled(a, S), points, weight=2.0, target=0.0, inv_scale=inv, power=power, impl="ref")
    plain = gradient_penalty_at(b, points, weight=2.0, target=0.0, power=power, impl="ref")
    assert_close(scaled.penalty, plain.penalty, **F64)
    assert_close(scaled.norms, plain.norms, **F64)
    scaled.penalty.backward()
    plain.penalty.backward()
    for p, q in zip(a.parameters(), b.parameters()):
        if p.grad is not None:
            assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-14)


@pytest.mark.cuda
def test_inv_scale_needs_no_host_synchronisation():
    """The whole scaled penalty on a GPU with synchronising calls turned into errors."""
    dev = "cuda"
    critic = mlp(dtype=torch.float32).to(dev)
    points = randn(8, 3, dtype=torch.float32).to(dev)
    scale = torch.tensor(S, device=dev)
    inv = scale.reciprocal()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, g = input_gradient(Scaled(critic, scale), points)
        n = gradient_norms(g, inv_scale=inv)
        pen, _ = gradient_norm_penalty(g, target=0.0, weight=2.0, inv_scale=inv, power=6.0, impl="ref")
        pen.backward()
        _, g2 = input_gradient(Scaled(critic, scale), points, inv_scale=inv)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    _, plain = input_gradient(critic, points)
    assert_close(n, gradient_norms(plain))
    assert_close(g2, plain)


def test_the_new_names_are_public():
    for name in ("input_gradient", "gradient_norms"):
        assert name in gantk.ops.__all__ and getattr(gantk.ops, name) is globals()[name]
