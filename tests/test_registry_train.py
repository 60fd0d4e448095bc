"""Tests generated from the registry: every registered loss × enforcer trains a few
steps (a plugin that registers a component gets these tests automatically)."""
import math
import warnings

import pytest
import torch

from gantk.resolve import make_config
from gantk.plugins import get_registry
from gantk.training import Trainer

LOSSES = get_registry("loss").names()
ENFORCERS = get_registry("lipschitz").names()
MODELS = get_registry("model").names()
POINT_DATASETS = [e.name for e in get_registry("dataset") if getattr(e.obj, "modality", "") == "points"]


@pytest.mark.parametrize("enforcer", ENFORCERS)
@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_with_every_enforcer_trains(small_cfg, loss, enforcer):
    cfg = small_cfg(loss=loss, lipschitz=enforcer, optimizer="rmsprop" if enforcer == "clip" else "adam")
    tr = Trainer(cfg)
    before = [p.detach().clone() for p in tr.G.parameters()]
    res = tr.train()
    assert res.step == 3
    assert all(math.isfinite(v) for v in res.metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters())), "generator did not move"
    assert res.checkpoint.exists()
    if enforcer == "clip":
        c = tr.c.enforcer.opts["c"]
        assert all(p.abs().max() <= c + 1e-7 for p in tr.D.parameters())
    if enforcer in ("gp", "lp"):
        assert "grad_norm" in res.metrics and "penalty" in res.metrics


@pytest.mark.parametrize("model", MODELS)
def test_every_model_builds_and_trains(small_cfg, model):
    if model != "mlp":
        pytest.skip("image models have their own registry tests")
    res = Trainer(small_cfg(model=model)).train()
    assert res.step == 3


@pytest.mark.parametrize("name", POINT_DATASETS)
def test_every_point_dataset_trains(small_cfg, name):
    res = Trainer(small_cfg(data=name)).train()
    assert res.step == 3


def test_spectral_norm_is_applied_to_every_weight_layer(small_cfg):
    tr = Trainer(small_cfg(lipschitz="sn", loss="hinge"))
    from torch import nn
    from torch.nn.utils import parametrize

    linears = [m for m in tr.D.modules() if isinstance(m, nn.Linear)]
    assert linears and all(parametrize.is_parametrized(m, "weight") for m in linears)
    # after a few steps each layer's spectral norm is ≈ 1
    tr.train()
    tr.D.eval()
    for m in linears:
        sigma = torch.linalg.matrix_norm(m.weight.detach(), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.1)


def _linears(net):
    return sum(isinstance(m, torch.nn.Linear) for m in net.modules())


def test_mlp_generator_depth_is_its_own_option():
    from gantk.errors import ConfigError
    from gantk.training import build_components

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config(data="8gaussians", data_options={"n": 64}, model_options={"width": 8, "g_depth": 5})
        c = build_components(cfg)
        assert (_linears(c.generator), _linears(c.critic)) == (6, 4)  # 5 and 3 hidden layers
        same = build_components(make_config(data="8gaussians", data_options={"n": 64},
                                            model_options={"width": 8, "depth": 2, "g_depth": 0}))
        assert (_linears(same.generator), _linears(same.critic)) == (3, 3)
        with pytest.raises(ConfigError, match="g_depth must be >= 0"):
            build_components(make_config(data="8gaussians", data_options={"n": 64}, model_options={"g_depth": -1}))


def test_mlp_generator_width_is_its_own_option():
    from gantk.errors import ConfigError
    from gantk.training import build_components

    def widths(net):
        return [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = build_components(make_config(data="8gaussians", data_options={"n": 64},
                                         model_options={"width": 8, "depth": 2, "g_depth": 0, "g_width": 16}))
        assert widths(c.generator) == [16, 16, 2] and widths(c.critic) == [8, 8, 1]
        same = build_components(make_config(data="8gaussians", data_options={"n": 64},
                                            model_options={"width": 8, "depth": 2, "g_depth": 0}))
        assert widths(same.generator) == [8, 8, 2]
        with pytest.raises(ConfigError, match="g_width must be >= 0"):
            build_components(make_config(data="8gaussians", data_options={"n": 64}, model_options={"g_width": -1}))
