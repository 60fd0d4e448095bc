"""The critic's real and fake passes run as one batched forward (issue 4's lever) when
that gives the same per-sample scores: never for a BatchNorm critic."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import gantk
from gantk.training import Trainer

from _helpers import BNModel, registered_models


def _params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def _two_critic_steps(cfg) -> tuple[Trainer, list[torch.Tensor], list[torch.Tensor]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(cfg)
    outs = [tr.critic_step() for _ in range(2)]
    return tr, _params(tr.D), [o["w_estimate"] for o in outs]


# (not sn: torch's spectral norm runs a power iteration on every forward in training mode,
# so one forward per critic step refines sigma once where two forwards refine it twice)
@pytest.mark.parametrize("lipschitz,loss,opts", [("gp", "wasserstein", {}), ("clip", "wasserstein", {}),
                                                  ("lp", "wasserstein", {})])
def test_joint_forward_matches_two_forwards(small_cfg, lipschitz, loss, opts):
    # SGD: Adam's first step is lr * sign(grad), which turns rounding noise in a near-zero
    # gradient into a full step
    kw = dict(lipschitz=lipschitz, loss=loss, lipschitz_options=opts, optimizer="sgd", lr=0.05)
    joint, p_joint, w_joint = _two_critic_steps(small_cfg(joint_forward=True, **kw))
    sep, p_sep, w_sep = _two_critic_steps(small_cfg(joint_forward=False, **kw))
    assert joint._joint_forward and not sep._joint_forward
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = _params(Trainer(small_cfg(**kw)).D)
    assert any(not torch.equal(a, b) for a, b in zip(p_joint, init))  # the steps did move the critic
    atol = 1e-6
    for a, b in zip(p_joint, p_sep):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=atol)
    torch.testing.assert_close(torch.stack(w_joint), torch.stack(w_sep), rtol=1e-5, atol=atol)


def test_joint_forward_calls_the_critic_once_for_real_and_fake(small_cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(small_cfg(lipschitz="clip", loss="wasserstein"))
    sizes = []
    tr.D.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    tr.critic_step()
    assert sizes == [2 * tr.cfg.batch_size]


def test_batchnorm_critic_keeps_separate_forwards(small_cfg):
    with registered_models(BNModel, name="test-joint-bn"):
        kw = dict(model="bn-mlp", model_options={}, preset="gan")
        tr, p_asked_joint, _ = _two_critic_steps(small_cfg(joint_forward=True, **kw))
        _, p_sep, _ = _two_critic_steps(small_cfg(joint_forward=False, **kw))
        assert not tr._joint_forward
        for a, b in zip(p_asked_joint, p_sep):
            assert torch.equal(a, b)
        # and batching would have changed the scores: BatchNorm mixes the two halves
        D = tr.D.train()
        real, fake = torch.randn(32, 2), torch.randn(32, 2) + 3
        with torch.no_grad():
            assert not torch.allclose(D(torch.cat([real, fake]))[:32], D(real), atol=1e-3)


def test_cli_flag_is_stored(tmp_path):
    import json

    from typer.testing import CliRunner

    from gantk.cli import app

    res = CliRunner().invoke(app, ["train", "--data", "8gaussians", "-O", "data.n=128", "-O", "model.width=8",
                                   "--batch-size", "16", "--steps", "1", "--separate-forward", "--image-every", "0",
                                   "--out", str(tmp_path), "--name", "r", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["joint_forward"] is False


class _MixingModel(gantk.GANModel):
    name = "test-joint-mixing"
    description = "critic whose scores depend on the batch (declared)"
    critic_mixes_batch = True

    def build_generator(self, data_shape, latent_dim):
        return nn.Sequential(nn.Linear(latent_dim, 8), nn.ReLU(), nn.Linear(8, 2))

    def build_critic(self, data_shape):
        return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))


def test_model_can_declare_a_batch_mixing_critic(small_cfg):
    with registered_models(_MixingModel, name="test-joint-mixing"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tr = Trainer(small_cfg(model="test-joint-mixing", model_options={}, joint_forward=True))
        sizes = []
        tr.D.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
        tr.critic_step()
        assert not tr._joint_forward and sizes[:2] == [tr.cfg.batch_size] * 2


def test_runs_saved_before_the_joint_forward_resume_with_separate_forwards(small_cfg):
    import json

    from gantk.config import TrainConfig

    cfg = small_cfg()
    d = json.loads(cfg.to_json())
    assert d["joint_forward"] is True
    del d["joint_forward"]  # a config stored by an older gantk
    assert TrainConfig.from_json(json.dumps(d)).joint_forward is False
    assert TrainConfig.from_json(cfg.to_json()).joint_forward is True


def test_speed_settings_may_change_on_resume_but_the_forward_may_not(small_cfg):
    from gantk.errors import ConfigError
    from gantk.training import resume_config

    saved = small_cfg()
    assert resume_config(saved, {"amp": "bf16", "channels_last": True}).amp == "bf16"
    with pytest.raises(ConfigError, match="--joint-forward"):
        resume_config(saved, {"joint_forward": False})


@pytest.mark.filterwarnings("ignore:Full backward hook")
@pytest.mark.parametrize("lipschitz,penalty_every", [("gp", 1), ("lp", 1), ("gp", 2), ("clip", 1)])
def test_adversarial_backward_first_matches_one_backward_of_the_sum(small_cfg, lipschitz, penalty_every):
    # on the CPU the adversarial loss is backpropagated before the penalty's graph exists;
    # the gradients (and so the steps) must be those of one backward of loss + penalty
    kw = dict(lipschitz=lipschitz, loss="wasserstein", optimizer="sgd", lr=0.05, penalty_every=penalty_every)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, summed = Trainer(small_cfg(**kw)), Trainer(small_cfg(**kw))
    assert first._adversarial_first  # the CPU default
    summed._adversarial_first = False
    order = []
    first.D.register_full_backward_hook(lambda *a: order.append("backward"))
    real_penalty = first.c.enforcer.penalty

    def spy(*a, **k):
        order.append("penalty")
        return real_penalty(*a, **k)

    first.c.enforcer.penalty = spy
    outs = [(first.critic_step(), summed.critic_step()) for _ in range(3)]
    for a, b in zip(first.D.parameters(), summed.D.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for oa, ob in outs:
        torch.testing.assert_close(oa["critic_loss"], ob["critic_loss"], rtol=1e-5, atol=1e-6)
    # a critic step that computes the penalty runs the loss's backward before it
    assert order[:2] == ["backward", "penalty"]
    assert order.count("penalty") == (3 if penalty_every == 1 else 2)
