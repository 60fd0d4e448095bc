"""Gradient-penalty tests that catch the classic WGAN-GP bugs (reference path)."""
import pytest
import torch
from torch import nn

import gantk
from gantk.ops import draw_epsilon, gradient_norm_penalty, gradient_penalty, interpolate

IMPL = "ref"


class Linear(nn.Module):
    """D(x) = <w, x> + b over all non-batch dims: ∇ₓD = w for every sample."""

    def __init__(self, shape, dtype=torch.float32):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(*shape, generator=g, dtype=dtype) * 0.3)
        self.b = nn.Parameter(torch.zeros((), dtype=dtype))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1) + self.b


@pytest.mark.parametrize("shape", [(2,), (3, 8, 8), (5, 7)])
@pytest.mark.parametrize("one_sided", [False, True])
def test_closed_form_linear_critic(shape, one_sided):
    D = Linear(shape)
    real, fake = torch.randn(6, *shape), torch.randn(6, *shape)
    out = gradient_penalty(D, real, fake, weight=10.0, target=1.0, one_sided=one_sided, impl=IMPL)
    wn = D.w.detach().flatten().norm()
    d = wn - 1.0
    if one_sided:
        d = d.clamp_min(0)
    torch.testing.assert_close(out.penalty, 10.0 * d**2)
    torch.testing.assert_close(out.norms, wn.expand(6))
    # ∂penalty/∂w = λ·2(‖w‖−1)·w/‖w‖ (closed form)
    out.penalty.backward()
    torch.testing.assert_close(D.w.grad, 10.0 * 2 * d * D.w.detach() / wn, rtol=1e-4, atol=1e-6)


def test_norm_is_per_sample_over_all_non_batch_dims():
    """The `g.norm(dim=1)` bug takes the norm over channels only for images."""
    g = torch.randn(4, 3, 5, 5)
    pen, norms = gradient_norm_penalty(g, weight=1.0, impl=IMPL)
    expect = torch.sqrt((g**2).sum(dim=(1, 2, 3)))
    torch.testing.assert_close(norms, expect)
    torch.testing.assert_close(pen, ((expect - 1) ** 2).mean())
    buggy = ((g.norm(2, dim=1) - 1) ** 2).mean()
    assert not torch.allclose(pen, buggy)


def test_epsilon_is_per_sample_and_seeded():
    real, fake = torch.ones(64, 3, 4, 4), torch.zeros(64, 3, 4, 4)
    x_hat, eps = interpolate(real, fake, generator=torch.Generator().manual_seed(1), impl=IMPL)
    assert eps.shape == (64,)
    # x̂ = ε·1 + (1−ε)·0 = ε, constant within each sample, different across samples
    torch.testing.assert_close(x_hat, eps.view(64, 1, 1, 1).expand_as(x_hat))
    assert eps.unique().numel() == 64
    assert 0 <= eps.min() and eps.max() < 1
    _, eps2 = interpolate(real, fake, generator=torch.Generator().manual_seed(1), impl=IMPL)
    torch.testing.assert_close(eps, eps2)
    eps3 = draw_epsilon(64, like=real, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(eps, eps3)


def test_one_sided_vs_two_sided():
    g = torch.cat([torch.full((1, 4), 0.1), torch.full((1, 4), 1.0)])  # norms 0.2 and 2.0
    two, n = gradient_norm_penalty(g, weight=1.0, impl=IMPL)
    one, _ = gradient_norm_penalty(g, weight=1.0, one_sided=True, impl=IMPL)
    torch.testing.assert_close(n, torch.tensor([0.2, 2.0]))
    torch.testing.assert_close(two, torch.tensor(((0.2 - 1) ** 2 + 1.0) / 2))
    torch.testing.assert_close(one, torch.tensor(1.0 / 2))  # only the norm above 1 counts
    # target k
    k0, _ = gradient_norm_penalty(g, weight=1.0, target=0.0, impl=IMPL)
    torch.testing.assert_close(k0, torch.tensor((0.04 + 4.0) / 2))


def test_zero_gradient_row_is_safe():
    g = torch.zeros(3, 5, requires_grad=True)
    pen, norms = gradient_norm_penalty(g, weight=10.0, impl=IMPL)
    pen.backward()
    assert torch.isfinite(g.grad).all() and torch.isfinite(pen)
    torch.testing.assert_close(pen, torch.tensor(10.0))


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradcheck_float64(one_sided):
    g = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.7, dtype=torch.float64)
    for scale in (None, s):
        f = lambda g: gradient_norm_penalty(g, target=1.3, one_sided=one_sided, weight=2.0, inv_scale=scale, impl=IMPL)[0]
        assert torch.autograd.gradcheck(f, (g,))


def test_inverse_scale_equals_unscaled():
    g = torch.randn(4, 3, 2, 2)
    scale = torch.tensor(1024.0)
    a, na = gradient_norm_penalty(g * scale, inv_scale=1 / scale, impl=IMPL)
    b, nb = gradient_norm_penalty(g, impl=IMPL)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(na, nb)


def _critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))


def test_gradient_wrt_critic_params_matches_float64_autograd():
    """∂penalty/∂θ through the hand-written backward equals plain float64 autograd."""
    D = _critic()
    D64 = _critic().double()
    real, fake = torch.randn(6, 2, 5, 5), torch.randn(6, 2, 5, 5)
    gen = torch.Generator().manual_seed(5)
    out = gradient_penalty(D, real, fake, weight=10.0, generator=gen, impl=IMPL)
    out.penalty.backward()
    # float64 textbook computation at the same x̂
    x = out.x_hat.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(D64(x).sum(), x, create_graph=True)
    pen = 10.0 * ((g.reshape(6, -1).norm(2, dim=1) - 1) ** 2).mean()
    pen.backward()
    torch.testing.assert_close(out.penalty.double(), pen, rtol=1e-5, atol=1e-6)
    checked = 0
    for p, p64 in zip(D.parameters(), D64.parameters()):
        # the last bias does not affect ∇ₓD: no gradient on either side
        assert (p.grad is None) == (p64.grad is None)
        if p.grad is not None:
            torch.testing.assert_close(p.grad.double(), p64.grad, rtol=1e-4, atol=1e-6)
            checked += 1
    assert checked == 3


def test_public_api_exports_the_op():
    assert gantk.gradient_penalty is gradient_penalty
    assert gantk.gradient_norm_penalty is gradient_norm_penalty


def test_bad_impl_name():
    with pytest.raises(gantk.UsageError):
        gradient_norm_penalty(torch.randn(2, 2), impl="fast")
