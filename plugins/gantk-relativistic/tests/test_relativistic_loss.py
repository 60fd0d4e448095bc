"""Tests of gantk-relativistic: the RaSGAN formulas by hand, the real-score fallback,
and a few training steps through the installed entry point."""
import math

import pytest

gantk_relativistic = pytest.importorskip(
    "gantk_relativistic",
    reason="gantk-relativistic is not installed (pip install --no-deps -e plugins/gantk-relativistic)")

import torch  # noqa: E402

import gantk  # noqa: E402
from gantk.testing import check_loss, check_trains, use_plugins  # noqa: E402

RaGAN = gantk_relativistic.RelativisticAverage


def softplus(a):
    return math.log1p(math.exp(a))


REAL = [1.0, 2.0, 3.0]
FAKE = [0.0, -1.0]


def hand_critic():
    mr, mf = sum(REAL) / 3, sum(FAKE) / 2
    return (sum(softplus(-(r - mf)) for r in REAL) / 3          # −E log σ(C(x_r) − E C(x_f))
            + sum(softplus(f - mr) for f in FAKE) / 2)         # −E log(1 − σ(C(x_f) − E C(x_r)))


def hand_generator():
    mr, mf = sum(REAL) / 3, sum(FAKE) / 2
    return (sum(softplus(-(f - mr)) for f in FAKE) / 2
            + sum(softplus(r - mf) for r in REAL) / 3)


def test_critic_loss_by_hand():
    loss = RaGAN().critic_loss(torch.tensor(REAL, dtype=torch.float64), torch.tensor(FAKE, dtype=torch.float64))
    assert loss.item() == pytest.approx(hand_critic(), rel=1e-12)
    # (B, 1) scores give the same
    loss2 = RaGAN().critic_loss(torch.tensor(REAL)[:, None], torch.tensor(FAKE)[:, None])
    assert loss2.item() == pytest.approx(hand_critic(), rel=1e-6)


def test_generator_loss_by_hand_with_real_scores():
    f, r = torch.tensor(FAKE, dtype=torch.float64), torch.tensor(REAL, dtype=torch.float64)
    g = RaGAN().generator_loss(f, real_out=r)
    assert g.item() == pytest.approx(hand_generator(), rel=1e-12)


def test_generator_loss_gradient_by_hand():
    # ∂/∂f_j = −[σ(−(f_j − E r)) + E_r σ(r − E f)] / n_f
    f = torch.tensor(FAKE, dtype=torch.float64, requires_grad=True)
    r = torch.tensor(REAL, dtype=torch.float64)
    RaGAN().generator_loss(f, r).backward()
    mr, mf = sum(REAL) / 3, sum(FAKE) / 2
    sig = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731
    common = sum(sig(x - mf) for x in REAL) / 3
    want = [-(sig(-(x - mr)) + common) / 2 for x in FAKE]
    torch.testing.assert_close(f.grad, torch.tensor(want, dtype=torch.float64))


def test_generator_loss_without_real_scores_says_so():
    with pytest.raises(gantk.UsageError, match="real_out"):
        RaGAN().generator_loss(torch.zeros(3))


def test_equal_scores_give_two_log_two():
    s = torch.full((4,), 0.7)
    assert RaGAN().critic_loss(s, s).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert RaGAN().generator_loss(s, real_out=s).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_relativistic_losses_ignore_a_common_shift():
    # only differences of scores matter: C + c gives the same losses
    r, f = torch.tensor(REAL), torch.tensor(FAKE)
    a = RaGAN().critic_loss(r, f), RaGAN().generator_loss(f, real_out=r)
    b = RaGAN().critic_loss(r + 4.0, f + 4.0), RaGAN().generator_loss(f + 4.0, real_out=r + 4.0)
    torch.testing.assert_close(a, b)


def test_contract():
    assert RaGAN.needs_real_scores is True
    check_loss(RaGAN)


@pytest.fixture
def relativistic_plugin():
    with use_plugins("gantk-relativistic"):
        yield


def test_registered_and_trains(relativistic_plugin):
    assert isinstance(gantk.create_loss("ragan"), RaGAN)
    res = check_trains(loss="ragan", lipschitz="gp")
    assert res.metrics["generator_loss"] > 0


def test_the_trainer_passes_real_scores():
    seen = []

    class Spy(RaGAN):
        name = "ragan-spy"

        def generator_loss(self, fake_out, real_out=None):
            seen.append(real_out)
            return super().generator_loss(fake_out, real_out)

    check_trains(loss=Spy, lipschitz="gp", steps=2)
    assert len(seen) == 2 and all(r is not None and r.shape[0] == 16 and not r.requires_grad for r in seen)
