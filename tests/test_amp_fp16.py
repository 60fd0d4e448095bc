"""Mixed precision beyond bf16: ``--amp fp16`` with loss scaling that is correct with a
gradient penalty (the input gradient taken on the scaled critic and unscaled inside the
norm op), its overflow handling and exact resume, and ``--amp auto``'s resolution.
float16 autocast and GradScaler run on the CPU, so all of it is tested here."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import gantk
from gantk.errors import GantkNote, GantkWarning
from gantk.plugins import register_plugin, unregister_plugin
from gantk.training import Trainer, amp, resume


def _trainer(cfg) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg)


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def test_fp16_penalty_and_critic_gradients_follow_float32(small_cfg):
    """One critic step: under fp16 the penalty, its gradient norms and the update of
    every critic parameter (SGD, so the update is lr × gradient) match float32 within
    float16's rounding, although the input gradient was taken on S·D (S = 1024)."""
    kw = dict(optimizer="sgd", lr=0.1, lipschitz_options={"lambda": 10.0})
    f32, f16 = _trainer(small_cfg(**kw)), _trainer(small_cfg(amp="fp16", **kw))
    seen = []
    for m in f16.D.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    before = _flat(f32.D.parameters())
    torch.testing.assert_close(before, _flat(f16.D.parameters()), rtol=0, atol=0)
    a, b = f32.critic_step(), f16.critic_step()
    assert seen and set(seen) == {torch.float16}  # the critic ran in float16
    assert float(f16.precision.scalers["critic"].get_scale()) == amp.SCALE_INIT  # no step skipped
    torch.testing.assert_close(b["penalty"], a["penalty"], rtol=2e-2, atol=1e-4)
    torch.testing.assert_close(b["grad_norm"], a["grad_norm"], rtol=5e-3, atol=0)
    da, db = _flat(f32.D.parameters()) - before, _flat(f16.D.parameters()) - before
    assert da.norm() > 0 and (da - db).norm() < 1e-2 * da.norm()
    assert all(p.dtype == torch.float32 for p in f16.D.parameters())  # float32 master weights


@pytest.mark.parametrize("impl", ["ref", "ext"])
def test_penalty_gradient_unscaled_inside_the_norm_matches_float32(impl):
    """The op level: on a small critic the penalty of S·D with inv_scale = 1/S (a
    device tensor), in float16 autocast, is the float32 penalty within float16's
    rounding, and its parameter gradients divided by S are float32's; a power-of-two S
    changes no bit of the penalty and the gradients by float16 subnormals only."""
    from gantk.ops import _ext, gradient_penalty

    if impl == "ext" and not _ext.available("cpu")[0]:
        pytest.skip(f"the extension is unavailable: {_ext.available('cpu')[1]}")
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    real, fake = torch.randn(32, 4), torch.randn(32, 4)
    g = torch.Generator()
    ref = gradient_penalty(critic, real, fake, generator=g.manual_seed(3), impl="ref")
    params = [critic[0].weight, critic[2].weight, critic[4].weight]
    ref_grads = torch.autograd.grad(ref.penalty, params)
    results = []
    for scale in (1.0, 2.0**10, 2.0**14):
        s = torch.tensor(scale)
        with torch.autocast("cpu", dtype=torch.float16):
            out = gradient_penalty(lambda x, s=s: critic(x).float() * s, real, fake, generator=g.manual_seed(3),
                                   inv_scale=s.reciprocal(), impl=impl)
        grads = [gr / s for gr in torch.autograd.grad(out.penalty * s, params)]
        results.append((out.penalty, grads))
        torch.testing.assert_close(out.penalty, ref.penalty, rtol=5e-3, atol=0)
        for a, b in zip(ref_grads, grads):
            assert (b - a).norm() < 0.05 * a.norm()  # measured: 2-3 % (float16 rounding, ReLU masks)
    for pen, grads in results[1:]:
        assert torch.equal(pen, results[0][0])
        assert all((a - b).norm() < 1e-3 * a.norm() for a, b in zip(grads, results[0][1]))


def test_overflowing_scale_is_skipped_and_recovered_without_nan(small_cfg):
    """A loss scale far too large for float16 makes the first steps overflow: the
    scaler skips them (weights untouched), halves the scale until it fits, and training
    goes on with finite weights and finite logged figures."""
    tr = _trainer(small_cfg(amp="fp16", steps=40, log_every=10))
    sc = tr.precision.scalers["critic"]
    sc.load_state_dict({**sc.state_dict(), "scale": 2.0**40})
    before = _flat(tr.D.parameters())
    tr.critic_step()
    assert torch.equal(_flat(tr.D.parameters()), before)  # the overflowing step was skipped
    assert float(sc.get_scale()) == 2.0**39
    result = tr.train()
    assert float(sc.get_scale()) < 2.0**20  # backed off to a scale float16 can hold
    for net in (tr.G, tr.D):
        assert torch.isfinite(_flat(net.parameters())).all()
    assert all(torch.isfinite(torch.tensor(v)) for v in result.metrics.values())
    after = _flat(tr.D.parameters())
    assert not torch.equal(after, before)  # and the later steps did train


def test_fp16_resume_is_exact_and_keeps_the_scale(tmp_path, small_cfg):
    """A run resumed from its step-2 checkpoint ends with the same weights and the same
    scaler state (scale and growth counter) as the run that went straight to step 4."""
    straight = _trainer(small_cfg(amp="fp16", steps=4, name="straight", lr_decay="none")).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = Trainer(small_cfg(amp="fp16", steps=2, name="half", lr_decay="none")).train()
        sd = load_file(half.checkpoint)
        assert {"amp.critic.scale", "amp.critic.growth_tracker", "amp.generator.scale"} <= set(sd)
        assert int(sd["amp.critic.growth_tracker"]) == 4  # 2 steps × n_critic 2, none skipped
        resumed = resume(half.run_dir, {"steps": 4})
    a, b = load_file(straight.checkpoint), load_file(resumed.checkpoint)
    assert set(a) == set(b)
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k


def test_fp16_resume_refuses_a_bad_scale(tmp_path, small_cfg):
    from safetensors.torch import save_file

    from gantk.checkpoint import load_checkpoint
    from gantk.errors import CheckpointError

    run = _trainer(small_cfg(amp="fp16", steps=2, name="r")).train()
    sd = load_file(run.checkpoint)
    sd["amp.critic.scale"] = torch.tensor(float("inf"))
    meta = load_checkpoint(run.checkpoint).meta
    save_file(sd, str(run.checkpoint), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    with pytest.raises(CheckpointError, match="loss scale of the critic is inf"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resume(run.run_dir, {"steps": 4})


@pytest.mark.parametrize("bf16_units,expected", [(True, "bf16"), (False, "off")])
def test_auto_resolves_from_what_torch_reports_and_is_stored(small_cfg, monkeypatch, bf16_units, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16_units)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(GantkNote, match=rf"amp = {expected} \(auto: the CPU has"):
        tr = Trainer(small_cfg(amp="auto", steps=1))
    assert tr.cfg.amp == expected and tr.precision.mode == expected
    assert json.loads((tr.run_dir / "config.json").read_text())["amp"] == expected
    result = tr.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gantk.checkpoint import load_checkpoint

        assert load_checkpoint(result.checkpoint).config.amp == expected  # a resume keeps it


def test_fp32_is_off(small_cfg):
    tr = _trainer(small_cfg(amp="fp32"))
    assert tr.cfg.amp == "off" and tr.precision.dtype is None and not tr.precision.scaling


class _PlainGP(gantk.LipschitzEnforcer):
    """A third-party style penalty whose ``penalty`` takes no ``inv_scale``."""

    name = "plain-gp-test"
    forbids_batchnorm = True

    def penalty(self, critic, real, fake, *, generator=None):
        gp = gantk.gradient_penalty(critic, real, fake, generator=generator)
        return gantk.PenaltyOutput(gp.penalty, {"penalty": gp.penalty.detach()})


class _PlainPlugin:
    @gantk.hookimpl
    def register_lipschitz(self, register):
        register(_PlainGP)


def test_fp16_with_an_enforcer_that_takes_no_inv_scale_warns_once_and_trains(small_cfg):
    name = register_plugin(_PlainPlugin(), name="test-plain-gp")
    try:
        tr = _trainer(small_cfg(amp="fp16", lipschitz="plain-gp-test", steps=2))
        with pytest.warns(GantkWarning, match="'plain-gp-test' enforcer takes no inv_scale") as rec:
            tr.train()
    finally:
        unregister_plugin(name)
    assert sum("takes no inv_scale" in str(w.message) for w in rec) == 1
    assert torch.isfinite(_flat(tr.D.parameters())).all()
