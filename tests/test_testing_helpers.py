"""gantk.testing: the checks pass on the built-in components and catch broken ones."""
import os

import pytest
import torch
from torch import nn

import gantk
from gantk.plugins import get_registry
from gantk.testing import check_dataset, check_loss, check_model, check_penalty, check_trains, use_plugins


# ------------------------------------------------------------------ built-ins pass
@pytest.mark.parametrize("name", ["gp", "lp"])
def test_builtin_penalties_pass(name):
    out = check_penalty(name)
    assert isinstance(out, gantk.PenaltyOutput)


@pytest.mark.parametrize("name", ["none", "clip", "sn"])
def test_enforcers_without_penalty_pass_when_told(name):
    assert check_penalty(name, expect_penalty=False) is None
    with pytest.raises(AssertionError, match="returned None"):
        check_penalty(name)


@pytest.mark.parametrize("name", ["minimax", "ns", "wasserstein", "hinge", "lsgan"])
def test_builtin_losses_pass(name):
    check_loss(name)
    check_loss(get_registry("loss").get(name))  # a class works too


def test_builtin_model_and_dataset_pass():
    G, D = check_model("mlp", (2,), 2)
    assert isinstance(G, nn.Module) and isinstance(D, nn.Module)
    check_model(gantk.create_model("mlp", width=8, depth=1), (3, 4, 4), 5)
    x = check_dataset(gantk.create_dataset("8gaussians", n=64))
    assert x.shape == (64, 2)


def test_check_trains_with_names(tmp_path):
    res = check_trains(loss="wasserstein", lipschitz="gp", out=tmp_path)
    assert res.step == 2 and res.checkpoint.exists() and res.run_dir.parent == tmp_path


# ------------------------------------------------------------------ broken penalties
class _Penalty(gantk.LipschitzEnforcer):
    name = "test-broken-penalty"

    def gp(self, critic, real):
        x = real.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return g.pow(2).sum(dim=1).mean()


class NaNPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        return gantk.PenaltyOutput(self.gp(critic, real) * float("nan"))


class BackwardPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        p = self.gp(critic, real)
        p.backward(retain_graph=True)
        return gantk.PenaltyOutput(p)


class DetachedPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        return gantk.PenaltyOutput(self.gp(critic, real).detach())


class VectorPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        return gantk.PenaltyOutput(critic(real).pow(2).flatten())


class ClippingPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-0.01, 0.01)
        return gantk.PenaltyOutput(self.gp(critic, real))


class InPlacePenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        real.add_(0.1)
        return gantk.PenaltyOutput(self.gp(critic, real))


class TuplePenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        return self.gp(critic, real), {}


class CrashingPenalty(_Penalty):
    def penalty(self, critic, real, fake, *, generator=None):
        raise RuntimeError("boom")


@pytest.mark.parametrize("cls,message", [
    (NaNPenalty, "not a finite number"),
    (BackwardPenalty, "must not call backward"),
    (DetachedPenalty, "not differentiable"),
    (VectorPenalty, "0-dim"),
    (ClippingPenalty, "changed the critic's parameters"),
    (InPlacePenalty, "modified the real or fake batch"),
    (TuplePenalty, "PenaltyOutput"),
    (CrashingPenalty, "penalty\\(\\) raised RuntimeError: boom"),
])
def test_check_penalty_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_penalty(cls)


def test_check_penalty_names_the_component():
    with pytest.raises(AssertionError, match="test-broken-penalty"):
        check_penalty(NaNPenalty())


def test_check_penalty_refuses_non_enforcers():
    with pytest.raises(AssertionError, match="not a subclass of gantk.LipschitzEnforcer"):
        check_penalty(nn.Linear)
    with pytest.raises(AssertionError, match="no LipschitzEnforcer named 'nope'"):
        check_penalty("nope")


# ------------------------------------------------------------------ broken losses
class WrongSignCritic(gantk.Loss):
    name = "test-wrong-sign"

    def critic_loss(self, real_out, fake_out):
        return real_out.mean() - fake_out.mean()  # the critic would learn to score fakes high

    def generator_loss(self, fake_out):
        return -fake_out.mean()


class WrongSignGenerator(gantk.Loss):
    name = "test-wrong-sign-g"

    def critic_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def generator_loss(self, fake_out):
        return fake_out.mean()


class PerColumnLoss(gantk.Loss):
    name = "test-per-column"

    def critic_loss(self, real_out, fake_out):
        return (fake_out - real_out).mean(dim=0)  # (1,) for (B, 1) scores

    def generator_loss(self, fake_out):
        return -fake_out.mean()


class ConstantGenerator(gantk.Loss):
    name = "test-constant-g"

    def critic_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()

    def generator_loss(self, fake_out):
        return torch.tensor(0.0)


@pytest.mark.parametrize("cls,message", [
    (WrongSignCritic, "critic_loss has the wrong sign"),
    (WrongSignGenerator, "generator_loss has the wrong sign"),
    (PerColumnLoss, "shape \\(B, 1\\)"),
    (ConstantGenerator, "generator_loss w.r.t. the fake scores: no gradient"),
])
def test_check_loss_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_loss(cls)


def test_check_loss_passes_real_scores_when_the_loss_needs_them():
    seen = {}

    class Relative(gantk.Loss):
        name = "test-relative"
        needs_real_scores = True

        def critic_loss(self, real_out, fake_out):
            return torch.nn.functional.softplus(fake_out - real_out.mean()).mean() + \
                torch.nn.functional.softplus(-(real_out - fake_out.mean())).mean()

        def generator_loss(self, fake_out, real_out=None):
            seen["real"] = real_out
            return torch.nn.functional.softplus(-(fake_out - real_out.mean())).mean()

    check_loss(Relative)
    assert seen["real"] is not None


# ------------------------------------------------------------------ broken models
class _Model(gantk.GANModel):
    name = "test-broken-model"
    default_latent_dim = 2

    def build_generator(self, data_shape, latent_dim):
        return nn.Linear(latent_dim, data_shape[0])

    def build_critic(self, data_shape):
        return nn.Linear(data_shape[0], 1)


class WrongGeneratorShape(_Model):
    def build_generator(self, data_shape, latent_dim):
        return nn.Linear(latent_dim, data_shape[0] + 1)


class WrongCriticShape(_Model):
    def build_critic(self, data_shape):
        return nn.Linear(data_shape[0], 2)


class NonDifferentiableCritic(_Model):
    class _Detach(nn.Module):
        def forward(self, x):
            return x.detach().sum(dim=1)

    def build_critic(self, data_shape):
        return self._Detach()


class Unsupported(_Model):
    def supports(self, data_shape):
        return "only 2-D points"


class NotAModule(_Model):
    def build_critic(self, data_shape):
        return lambda x: x.sum(dim=1)


@pytest.mark.parametrize("cls,message", [
    (WrongGeneratorShape, "samples of shape \\(4, 2\\), got \\(4, 3\\)"),
    (WrongCriticShape, "scores of shape \\(4,\\) or \\(4, 1\\), got \\(4, 2\\)"),
    (NonDifferentiableCritic, "w.r.t. its input"),
    (Unsupported, "only 2-D points"),
    (NotAModule, "must return an nn.Module"),
])
def test_check_model_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_model(cls, (2,), 3)


def test_check_model_passes_a_correct_small_model():
    check_model(_Model, (2,), 3)


# ------------------------------------------------------------------ broken datasets
class RandomEachTime(gantk.Dataset):
    name = "test-random"

    def load(self, seed=0):
        return torch.randn(10, 2)


class FlatDataset(gantk.Dataset):
    name = "test-flat"

    def load(self, seed=0):
        return torch.zeros(10)


class BrightImages(gantk.Dataset):
    name = "test-bright"
    modality = "image"

    def load(self, seed=0):
        return torch.full((4, 1, 2, 2), 255.0)


@pytest.mark.parametrize("cls,message", [
    (RandomEachTime, "not deterministic"),
    (FlatDataset, "shape \\(N, \\*sample_shape\\)"),
    (BrightImages, "\\[-1, 1\\]"),
])
def test_check_dataset_catches(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_dataset(cls)


# ------------------------------------------------------------------ training
def test_check_trains_registers_an_unregistered_class_for_the_duration():
    class Tiny(gantk.LipschitzEnforcer):
        name = "test-tiny-penalty"
        options = {"weight": 0.1}

        def penalty(self, critic, real, fake, *, generator=None):
            return gantk.PenaltyOutput(self.opts["weight"] * critic(real).pow(2).mean())

    assert "test-tiny-penalty" not in get_registry("lipschitz")
    res = check_trains(lipschitz=Tiny(weight=0.5), steps=1)
    assert res.step == 1
    assert "test-tiny-penalty" not in get_registry("lipschitz")


def test_check_trains_catches_a_diverging_penalty():
    with pytest.raises(AssertionError, match="lipschitz='test-broken-penalty'.*diverged at step 1: critic_loss is nan"):
        check_trains(lipschitz=NaNPenalty, steps=1)
    assert "test-broken-penalty" not in get_registry("lipschitz")


def test_check_trains_catches_a_crashing_loss():
    class Crash(gantk.Loss):
        name = "test-crash"

        def critic_loss(self, real_out, fake_out):
            raise ValueError("bad scores")

        def generator_loss(self, fake_out):
            return -fake_out.mean()

    with pytest.raises(AssertionError, match="loss='test-crash'.*ValueError: bad scores"):
        check_trains(loss=Crash, steps=1)


def test_check_trains_refuses_a_name_clash():
    class FakeGP(gantk.LipschitzEnforcer):
        name = "gp"

    with pytest.raises(AssertionError, match="'gp' is already registered"):
        check_trains(lipschitz=FakeGP)


# ------------------------------------------------------------------ use_plugins
def test_use_plugins_refuses_an_uninstalled_plugin():
    before = os.environ.get("GANTK_LOAD_PLUGINS")
    with pytest.raises(AssertionError, match="no installed gantk plugin is named 'gantk-not-there'"):
        with use_plugins("gantk-not-there"):
            pass
    assert os.environ.get("GANTK_LOAD_PLUGINS") == before
