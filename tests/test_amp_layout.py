"""Opt-in speed settings of the training step: bfloat16 autocast (``amp = "bf16"``) with
the penalty in float32, and channels-last images. Both run here on the CPU (torch's CPU
autocast supports bfloat16); their speed is a GPU question, measured in benchmarks/."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gantk.errors import UsageError
from gantk.training import Trainer


def _trainer(cfg) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg)


def test_bf16_autocast_runs_critic_in_bf16_and_penalty_in_float32(small_cfg):
    tr = _trainer(small_cfg(amp="bf16"))
    seen = []
    for m in tr.D.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in tr.D.parameters()]
    out = tr.critic_step()
    assert seen and set(seen) == {torch.bfloat16}  # every critic layer ran in bfloat16
    # the same first step in float32: bf16 changes the gradient norms by rounding only
    ref = _trainer(small_cfg()).critic_step()
    torch.testing.assert_close(out["grad_norm"], ref["grad_norm"], rtol=2e-2, atol=0)
    assert not torch.equal(out["grad_norm"], ref["grad_norm"])  # and it did run in bf16
    assert all(p.dtype == torch.float32 for p in tr.D.parameters())  # master weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.D.parameters()))
    g = tr.generator_step()
    assert g.dtype == torch.float32 and torch.isfinite(g)


def test_bf16_training_stays_close_to_float32(small_cfg):
    """A few steps in bf16 follow float32 closely (bf16 keeps 8 bits of mantissa)."""
    f32, b16 = _trainer(small_cfg(steps=3)), _trainer(small_cfg(steps=3, amp="bf16"))
    init = [p.detach().clone() for p in f32.G.parameters()]
    f32.train(), b16.train()
    a, b, i = (torch.cat([p.detach().reshape(-1) for p in ps]) for ps in (f32.G.parameters(), b16.G.parameters(), init))
    moved, diff = (a - i).norm(), (a - b).norm()
    assert 0 < diff < 0.1 * moved  # measured: 1.5 %


def test_amp_value_is_checked(small_cfg):
    with pytest.raises(UsageError, match="--amp must be auto or off or fp32 or bf16 or fp16"):
        small_cfg(amp="fp8")


def test_channels_last_images(small_cfg, tmp_path):
    import numpy as np

    path = tmp_path / "imgs.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, size=(64, 3, 16, 16), dtype=np.uint8))
    # SGD: Adam's first step is lr * sign(grad), which would turn rounding into a full step
    kw = dict(data=str(path), data_options={}, model="dcgan", model_options={"width": 8}, batch_size=8,
              lipschitz_options={"lambda": 10.0}, optimizer="sgd", lr=0.01)
    cl = _trainer(small_cfg(channels_last=True, **kw))
    convs = [m for m in cl.D.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    seen = []
    convs[0].register_forward_hook(lambda mod, inp, out: seen.append(inp[0].is_contiguous(memory_format=torch.channels_last)))
    cl.critic_step()
    assert seen and all(seen)
    # the layout changes no number beyond rounding
    ref = _trainer(small_cfg(channels_last=False, **kw))
    ref.critic_step()
    for a, b in zip(cl.D.parameters(), ref.D.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_channels_last_needs_images(small_cfg):
    with pytest.raises(UsageError, match="--channels-last needs image data"):
        _trainer(small_cfg(channels_last=True))


@pytest.mark.cuda
@pytest.mark.parametrize("amp,channels_last", [("bf16", False), ("off", True), ("bf16", True)])
def test_speed_settings_on_cuda_follow_float32(small_cfg, tmp_path, amp, channels_last):
    """On a GPU (cuDNN's channels-last kernels, CUDA bf16 autocast) a few DCGAN steps
    with the opt-in settings end near the plain float32 run."""
    import numpy as np

    path = tmp_path / "imgs.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, size=(64, 3, 32, 32), dtype=np.uint8))
    kw = dict(data=str(path), data_options={}, model="dcgan", model_options={"width": 16}, batch_size=16,
              lipschitz_options={"lambda": 10.0}, optimizer="sgd", lr=0.01, steps=3, device="cuda")
    ref, fast = _trainer(small_cfg(**kw)), _trainer(small_cfg(amp=amp, channels_last=channels_last, **kw))
    init = [p.detach().clone() for p in ref.G.parameters()]
    ref.train(), fast.train()
    a, b, i = (torch.cat([p.detach().float().reshape(-1) for p in ps])
               for ps in (ref.G.parameters(), fast.G.parameters(), init))
    moved, diff = (a - i).norm(), (a - b).norm()
    assert torch.isfinite(b).all() and moved > 0
    assert diff < (0.1 if amp == "bf16" else 0.02) * moved  # cuDNN convs may use TF32 either way
    if channels_last:
        convs = [m for m in fast.D.modules() if isinstance(m, nn.Conv2d)]
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
