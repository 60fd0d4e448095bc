import math

import pytest
import torch

import gantk
from gantk.plugins import get_registry


def _loss(name, **kw):
    return gantk.create_loss(name, **kw)


def test_builtin_losses_registered():
    assert {"minimax", "ns", "wasserstein", "hinge", "lsgan"} <= set(get_registry("loss").names())


def test_minimax_matches_bce_formula():
    r = torch.tensor([2.0, -1.0, 0.5])
    f = torch.tensor([-3.0, 0.0, 1.0])
    L = _loss("minimax")
    sig = torch.sigmoid
    expect_d = -(torch.log(sig(r)).mean() + torch.log(1 - sig(f)).mean())
    torch.testing.assert_close(L.critic_loss(r, f), expect_d)
    # the saturating generator loss is log(1 - D(G(z)))
    torch.testing.assert_close(L.generator_loss(f), torch.log(1 - sig(f)).mean())


def test_minimax_saturates_where_ns_does_not():
    # a confident discriminator (fake logits very negative): the saturating loss's
    # gradient vanishes, the non-saturating one's does not — the original paper's point.
    f = torch.full((8,), -12.0, requires_grad=True)
    (g_mm,) = torch.autograd.grad(_loss("minimax").generator_loss(f), f)
    (g_ns,) = torch.autograd.grad(_loss("ns").generator_loss(f), f)
    assert g_mm.abs().max() < 1e-5
    assert g_ns.abs().min() > 0.1


def test_wasserstein_and_hinge_values():
    r = torch.tensor([[1.0], [3.0]])
    f = torch.tensor([[0.0], [-2.0]])
    W = _loss("wasserstein")
    assert W.critic_loss(r, f).item() == pytest.approx(-1.0 - 2.0)
    assert W.generator_loss(f).item() == pytest.approx(1.0)
    H = _loss("hinge")
    # relu(1-1)+relu(1-3) = 0, relu(1+0)+relu(1-2) = 1 -> means 0 and 0.5
    assert H.critic_loss(r, f).item() == pytest.approx(0.5)
    assert H.generator_loss(f).item() == pytest.approx(1.0)


def test_lsgan_targets():
    L = _loss("lsgan")
    assert L.critic_loss(torch.ones(4), torch.zeros(4)).item() == pytest.approx(0.0)
    assert L.generator_loss(torch.ones(4)).item() == pytest.approx(0.0)
    assert L.generator_loss(torch.zeros(4)).item() == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["minimax", "ns", "wasserstein", "hinge", "lsgan"])
def test_critic_loss_prefers_correct_ordering(name):
    """Every loss is lower when the critic scores real above fake."""
    L = _loss(name)
    good = L.critic_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))
    bad = L.critic_loss(torch.full((4,), -2.0), torch.full((4,), 2.0))
    assert good < bad
    # and the generator's loss falls when its samples score higher
    assert L.generator_loss(torch.full((4,), 1.0)) < L.generator_loss(torch.full((4,), -1.0))
    assert math.isfinite(good.item())
