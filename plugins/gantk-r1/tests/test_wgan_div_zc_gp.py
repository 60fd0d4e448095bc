"""Tests of gantk-r1's wgan-div and zc-gp: value and the critic's parameter gradients
against the papers' formulas by float64 autograd, the points each penalty uses, the
public op, the contract checks and a few training steps through the entry point."""
import copy
import warnings

import pytest

gantk_r1 = pytest.importorskip(
    "gantk_r1", reason="gantk-r1 is not installed (pip install --no-deps -e plugins/gantk-r1)")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.testing import assert_close  # noqa: E402

import gantk  # noqa: E402
from gantk.testing import check_penalty, check_trains, use_plugins  # noqa: E402

B, D = 6, 3
TOL64 = dict(rtol=1e-5, atol=1e-12)


def critic64(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)


def batch(seed, n_fake=B, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(B, D, generator=g, dtype=torch.float64) + 1.0
    fake = torch.randn(n_fake, D, generator=g, dtype=torch.float64)
    return real.to(dtype), fake.to(dtype)


def input_grad(critic, x):
    """∇ₓD(x) with create_graph, in float64: the textbook computation."""
    x = x.detach().double().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return g


def compare(enforcer_value, critic, formula_value, ref_critic, **tol):
    """The enforcer's value and ∂/∂θ against the formula's."""
    assert_close(enforcer_value.double(), formula_value, **tol)
    enforcer_value.backward()
    formula_value.backward()
    checked = 0
    for p, q in zip(critic.parameters(), ref_critic.parameters()):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert_close(p.grad.double(), q.grad, **tol)
            checked += 1
    assert checked == 5  # every parameter but the last bias, which does not move ∇ₓD


# ---------------------------------------------------------------- wgan-div
def wgan_div_formula(critic, real, fake, k, p):
    """Wu et al. 2018: k · E_{x ~ P_u} ‖∇ₓD(x)‖^p with P_u the real and fake points."""
    g = input_grad(critic, torch.cat([real, fake]))
    return k * (g**2).sum(dim=1).pow(p / 2).mean()


@pytest.mark.parametrize("k,p", [(2.0, 6.0), (1.0, 2.0), (0.5, 3.0), (3.0, 1.0)])
@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_wgan_div_value_and_gradient_match_the_paper_in_float64(k, p, impl):
    critic = critic64(1)
    ref = copy.deepcopy(critic)
    real, fake = batch(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "auto" may fall back to the reference for p = 2
        out = gantk_r1.WGANDiv(k=k, p=p, impl=impl).penalty(critic, real, fake)
    compare(out.value, critic, wgan_div_formula(ref, real, fake, k, p), ref, **TOL64)
    norms = torch.cat([input_grad(ref, real), input_grad(ref, fake)]).norm(dim=1)
    assert_close(out.stats["grad_norm"], norms.mean(), **TOL64)


def test_wgan_div_weighs_every_point_alike_when_the_batches_differ():
    critic = critic64(2)
    ref = copy.deepcopy(critic)
    real, fake = batch(2, n_fake=3)
    out = gantk_r1.WGANDiv(impl="ref").penalty(critic, real, fake)
    compare(out.value, critic, wgan_div_formula(ref, real, fake, 2.0, 6.0), ref, **TOL64)


def test_wgan_div_in_float32_is_close_to_the_float64_formula():
    critic = critic64(3, dtype=torch.float32)
    ref = copy.deepcopy(critic).double()
    real, fake = batch(3, dtype=torch.float32)
    out = gantk_r1.WGANDiv().penalty(critic, real, fake)
    assert out.value.dtype == torch.float32
    compare(out.value, critic, wgan_div_formula(ref, real.double(), fake.double(), 2.0, 6.0), ref,
            rtol=1e-4, atol=1e-7)


class Recorder(nn.Module):
    """D(x) = a/2 · ‖x‖²; records each batch it scores."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return 0.5 * self.a * x.pow(2).sum(dim=1)


def test_wgan_div_scores_real_and_fake_points_in_separate_calls():
    critic = Recorder()
    real, fake = batch(4)
    gantk_r1.WGANDiv(impl="ref").penalty(critic, real, fake)
    assert len(critic.seen) == 2
    assert torch.equal(critic.seen[0], real) and torch.equal(critic.seen[1], fake)


def test_wgan_div_goes_through_the_public_op(monkeypatch):
    calls = []
    orig = gantk.gradient_penalty_at

    def spy(critic, points, **kw):
        calls.append((points.shape[0], kw))
        return orig(critic, points, **kw)

    monkeypatch.setattr(gantk, "gradient_penalty_at", spy)
    real, fake = batch(5)
    gantk_r1.WGANDiv(k=2.0, p=6.0, impl="ref").penalty(critic64(), real, fake)
    kw = {"weight": 1.0, "target": 0.0, "power": 6.0, "impl": "ref"}  # k/2 on each of two equal batches
    assert calls == [(B, kw), (B, kw)]


# ---------------------------------------------------------------- zc-gp
def zc_gp_formula(critic, real, fake, lam, seed):
    """Thanh-Tung et al. 2019: λ · E‖∇ₓD(x̂)‖², x̂ = α·real + (1 − α)·fake, α ~ U[0, 1)
    per sample (drawn as gantk draws ε: torch.rand in the accumulation dtype)."""
    alpha = torch.rand(real.shape[0], generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64 if real.dtype == torch.float64 else torch.float32).double()
    x_hat = alpha[:, None] * real.double() + (1 - alpha[:, None]) * fake.double()
    g = input_grad(critic, x_hat)
    return lam * (g**2).sum(dim=1).mean(), x_hat


@pytest.mark.parametrize("lam", [10.0, 0.3])
@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_zc_gp_value_and_gradient_match_the_paper_in_float64(lam, impl):
    critic = critic64(6)
    ref = copy.deepcopy(critic)
    real, fake = batch(6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "auto" may fall back to the reference
        out = gantk_r1.ZeroCentredGP(**{"lambda": lam, "impl": impl}).penalty(
            critic, real, fake, generator=torch.Generator().manual_seed(11))
    formula, x_hat = zc_gp_formula(ref, real, fake, lam, 11)
    compare(out.value, critic, formula, ref, **TOL64)
    assert_close(out.stats["grad_norm"], input_grad(ref, x_hat).norm(dim=1).mean(), **TOL64)


def test_zc_gp_in_float32_is_close_to_the_float64_formula():
    critic = critic64(7, dtype=torch.float32)
    ref = copy.deepcopy(critic).double()
    real, fake = batch(7, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = gantk_r1.ZeroCentredGP().penalty(critic, real, fake, generator=torch.Generator().manual_seed(3))
    formula, _ = zc_gp_formula(ref, real, fake, 10.0, 3)
    compare(out.value, critic, formula, ref, rtol=1e-4, atol=1e-7)


def test_zc_gp_points_lie_between_real_and_fake():
    critic = Recorder()
    real, fake = batch(8)
    gantk_r1.ZeroCentredGP(impl="ref").penalty(critic, real, fake, generator=torch.Generator().manual_seed(2))
    (x_hat,) = critic.seen
    # x̂ − fake = α·(real − fake) with one α in [0, 1) per sample
    alpha = ((x_hat - fake) / (real - fake))
    assert_close(alpha, alpha[:, :1].expand_as(alpha), rtol=1e-9, atol=1e-9)
    assert torch.all(alpha >= 0) and torch.all(alpha < 1) and alpha[:, 0].unique().numel() == B


def test_zc_gp_goes_through_the_public_op(monkeypatch):
    calls = []
    orig = gantk.gradient_penalty

    def spy(critic, a, b, **kw):
        calls.append(kw)
        return orig(critic, a, b, **kw)

    monkeypatch.setattr(gantk, "gradient_penalty", spy)
    real, fake = batch(9)
    gantk_r1.ZeroCentredGP(impl="ref").penalty(critic64(), real, fake)
    assert len(calls) == 1
    assert calls[0]["weight"] == 10.0 and calls[0]["target"] == 0.0 and calls[0]["impl"] == "ref"


# ---------------------------------------------------------------- contract, options, entry point
@pytest.mark.parametrize("cls", [gantk_r1.WGANDiv, gantk_r1.ZeroCentredGP])
def test_contract(cls):
    assert cls.forbids_batchnorm is True
    check_penalty(cls(impl="ref"))
    check_penalty(cls(), data_shape=(1, 4, 4))  # image-shaped data: norm over all dims


@pytest.mark.parametrize(
    "cls, opts, match",
    [
        (gantk_r1.WGANDiv, {"k": -1.0}, "k must be"),
        (gantk_r1.WGANDiv, {"p": 0.5}, "p must be"),
        (gantk_r1.WGANDiv, {"p": float("nan")}, "p=nan"),
        (gantk_r1.WGANDiv, {"impl": "ext"}, "impl=ext needs p = 2"),
        (gantk_r1.WGANDiv, {"impl": "fast"}, "impl"),
        (gantk_r1.ZeroCentredGP, {"lambda": -1.0}, "lambda"),
        (gantk_r1.ZeroCentredGP, {"impl": "fast"}, "impl"),
    ],
)
def test_bad_options_are_refused(cls, opts, match):
    with pytest.raises(gantk.UsageError, match=match):
        cls(**opts)


def test_wgan_div_with_p_2_may_ask_for_the_kernel():
    assert gantk_r1.WGANDiv(p=2.0, impl="ext").opts["impl"] == "ext"


@pytest.fixture
def r1_plugin():
    with use_plugins("gantk-r1"):
        yield


def test_registered_through_the_entry_point(r1_plugin):
    enf = gantk.create_lipschitz("wgan-div")
    assert isinstance(enf, gantk_r1.WGANDiv) and enf.opts["k"] == 2.0 and enf.opts["p"] == 6.0
    enf = gantk.create_lipschitz("zc-gp")
    assert isinstance(enf, gantk_r1.ZeroCentredGP) and enf.opts["lambda"] == 10.0


@pytest.mark.parametrize("enforcer,loss", [("wgan-div", "wasserstein"), ("zc-gp", "wasserstein"), ("zc-gp", "ns")])
def test_trains_a_few_steps(r1_plugin, enforcer, loss):
    res = check_trains(loss=loss, lipschitz=enforcer)
    assert res.metrics["penalty"] >= 0 and "grad_norm" in res.metrics
