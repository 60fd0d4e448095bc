"""Tests of gantk-r1: values against hand computations, gradient flow, the public op,
and a few training steps through the installed entry point."""
import pytest

gantk_r1 = pytest.importorskip(
    "gantk_r1", reason="gantk-r1 is not installed (pip install --no-deps -e plugins/gantk-r1)")

import torch  # noqa: E402
from torch import nn  # noqa: E402

import gantk  # noqa: E402
from gantk.testing import check_penalty, check_trains, use_plugins  # noqa: E402

B, D = 6, 3


def linear_critic(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(D, 1)


class Quadratic(nn.Module):
    """D(x) = a/2 · ‖x‖², so ∇ₓD = a·x: the gradient differs per point. Records its inputs."""

    def __init__(self, a=1.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return 0.5 * self.a * x.pow(2).sum(dim=1)


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g) + 2.0, torch.randn(B, D, generator=g)


@pytest.mark.parametrize("cls", [gantk_r1.R1, gantk_r1.R2])
def test_zero_centred_value_and_gradient_on_a_linear_critic(cls):
    # D(x) = w·x + b: ∇ₓD = w at every point, so the penalty is γ/2·‖w‖² and ∂/∂w = γ·w
    critic = linear_critic()
    real, fake = batch(1)
    out = cls(gamma=4.0, impl="ref").penalty(critic, real, fake)
    w = critic.weight.detach()
    torch.testing.assert_close(out.value, 2.0 * w.pow(2).sum())
    torch.testing.assert_close(out.stats["grad_norm"], w.norm())
    out.value.backward()
    torch.testing.assert_close(critic.weight.grad, 4.0 * w)
    assert critic.bias.grad is None or torch.all(critic.bias.grad == 0)


@pytest.mark.parametrize("cls,which", [(gantk_r1.R1, "real"), (gantk_r1.R2, "fake")])
def test_r1_uses_real_points_and_r2_fake_points(cls, which):
    # quadratic critic: penalty = γ/2 · a² · mean_i ‖x_i‖², ∂/∂a = γ · a · mean_i ‖x_i‖²
    real, fake = batch(2)
    pts = real if which == "real" else fake
    critic = Quadratic(1.5)
    out = cls(gamma=10.0, impl="ref").penalty(critic, real, fake)
    sq = pts.pow(2).sum(dim=1).mean()
    torch.testing.assert_close(out.value, 5.0 * 1.5**2 * sq)
    out.value.backward()
    torch.testing.assert_close(critic.a.grad, 10.0 * 1.5 * sq)


def test_dragan_value_on_a_linear_critic():
    # the gradient is w wherever x̃ lies: λ·(‖w‖ − k)²
    critic = linear_critic(3)
    real, fake = batch(3)
    out = gantk_r1.DRAGAN(**{"lambda": 7.0, "k": 1.0, "impl": "ref"}).penalty(
        critic, real, fake, generator=torch.Generator().manual_seed(0))
    w = critic.weight.detach()
    torch.testing.assert_close(out.value, 7.0 * (w.norm() - 1.0) ** 2)
    out.value.backward()
    # ∂/∂w λ(‖w‖ − 1)² = 2λ(‖w‖ − 1)·w/‖w‖
    torch.testing.assert_close(critic.weight.grad, 14.0 * (w.norm() - 1.0) * w / w.norm())


def test_dragan_points_lie_between_x_and_x_plus_c_sigma():
    real, fake = batch(4)
    critic = Quadratic(0.8)
    enf = gantk_r1.DRAGAN(**{"lambda": 3.0, "c": 0.5, "impl": "ref"})
    out = enf.penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    (x_t,) = critic.seen
    sigma = real.std(correction=0)
    delta = x_t - real
    assert torch.all(delta >= 0) and torch.all(delta < 0.5 * sigma + 1e-6)
    assert delta.abs().sum() > 0
    # λ·mean(‖a·x̃‖ − 1)² at the recorded points
    torch.testing.assert_close(out.value, 3.0 * ((0.8 * x_t.norm(dim=1) - 1.0) ** 2).mean())
    # c = 0: no perturbation, x̃ = x
    critic.seen.clear()
    gantk_r1.DRAGAN(c=0.0, impl="ref").penalty(critic, real, fake, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(critic.seen[0], real)


def test_dragan_is_reproducible_with_the_generator():
    real, fake = batch(5)
    enf = gantk_r1.DRAGAN(impl="ref")
    a = enf.penalty(Quadratic(), real, fake, generator=torch.Generator().manual_seed(9)).value
    b = enf.penalty(Quadratic(), real, fake, generator=torch.Generator().manual_seed(9)).value
    c = enf.penalty(Quadratic(), real, fake, generator=torch.Generator().manual_seed(10)).value
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_r1_goes_through_the_public_op(monkeypatch):
    calls = []
    orig = gantk.gradient_penalty_at

    def spy(critic, points, **kw):
        calls.append(kw)
        return orig(critic, points, **kw)

    monkeypatch.setattr(gantk, "gradient_penalty_at", spy)
    real, fake = batch(6)
    gantk_r1.R1(gamma=3.0, impl="ref").penalty(linear_critic(), real, fake)
    assert calls == [{"weight": 1.5, "target": 0.0, "impl": "ref"}]


def test_dragan_goes_through_the_public_op(monkeypatch):
    calls = []
    orig = gantk.gradient_penalty

    def spy(critic, a, b, **kw):
        calls.append(kw)
        return orig(critic, a, b, **kw)

    monkeypatch.setattr(gantk, "gradient_penalty", spy)
    real, fake = batch(7)
    gantk_r1.DRAGAN(impl="ref").penalty(linear_critic(), real, fake)
    assert len(calls) == 1 and calls[0]["weight"] == 10.0 and calls[0]["target"] == 1.0 and calls[0]["impl"] == "ref"


@pytest.mark.parametrize("cls", [gantk_r1.R1, gantk_r1.R2, gantk_r1.DRAGAN])
def test_contract(cls):
    assert cls.forbids_batchnorm is True
    check_penalty(cls(impl="ref"))
    check_penalty(cls(impl="ref"), data_shape=(1, 4, 4))  # image-shaped data: norm over all dims


@pytest.mark.parametrize("cls,key", [(gantk_r1.R1, "gamma"), (gantk_r1.R2, "gamma"), (gantk_r1.DRAGAN, "lambda")])
def test_bad_options_are_refused(cls, key):
    with pytest.raises(gantk.UsageError, match=key):
        cls(**{key: -1.0})
    with pytest.raises(gantk.UsageError, match="impl"):
        cls(impl="fast")


@pytest.fixture
def r1_plugin():
    with use_plugins("gantk-r1"):
        yield


def test_registered_through_the_entry_point(r1_plugin):
    assert isinstance(gantk.create_lipschitz("r1", gamma=1.0), gantk_r1.R1)
    assert isinstance(gantk.create_lipschitz("r2"), gantk_r1.R2)
    assert isinstance(gantk.create_lipschitz("dragan"), gantk_r1.DRAGAN)


@pytest.mark.parametrize("enforcer,loss", [("r1", "ns"), ("r2", "ns"), ("dragan", "wasserstein")])
def test_trains_a_few_steps(r1_plugin, enforcer, loss):
    res = check_trains(loss=loss, lipschitz=enforcer)
    assert res.metrics["penalty"] >= 0 and "grad_norm" in res.metrics
