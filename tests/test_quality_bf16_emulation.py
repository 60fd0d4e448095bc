"""benchmarks/quality/bf16_emulation.py computes bf16 autocast's numbers in float32, and
amp_quality.py runs its emulated modes through it."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from _helpers import load_script

HERE = Path(__file__).resolve().parents[1] / "benchmarks" / "quality"
SCRIPT = HERE / "bf16_emulation.py"


@pytest.fixture(scope="module")
def emu():
    return load_script(SCRIPT, "bf16_emulation")


def _mlp():
    return nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


def _penalised_step(critic, x, autocast: bool):
    """Scores, input gradient and parameter gradients of a WGAN-GP-like objective, with
    the input gradient taken by autograd's double backward (as under autocast)."""
    critic.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        s = critic(xx).float()
        (g,) = torch.autograd.grad(s.sum(), xx, create_graph=True)
    (((g.norm(dim=1) - 1) ** 2).mean() + s.mean()).backward()
    return s.detach(), g.detach(), [p.grad.clone() for p in critic.parameters()]


def test_emulated_layers_compute_bf16_autocasts_numbers(emu):
    torch.manual_seed(0)
    ref, em, f32 = _mlp(), _mlp(), _mlp()
    em.load_state_dict(ref.state_dict())
    f32.load_state_dict(ref.state_dict())
    assert emu.emulate(em) == 3
    x = torch.randn(128, 2) * 2
    auto = _penalised_step(ref, x, autocast=True)
    mine = _penalised_step(em, x, autocast=False)
    plain = _penalised_step(f32, x, autocast=False)
    # the forward and the input gradient are autocast's to the bit
    assert torch.equal(auto[0], mine[0]) and torch.equal(auto[1], mine[1])
    # parameter gradients: within one bf16 rounding of the largest entry (accumulation order)
    for a, b in zip(auto[2], mine[2]):
        assert (a - b).abs().max() <= a.abs().max() * 2 ** -7
    # and bf16 is not float32: the emulation changes the numbers
    assert not torch.equal(mine[0], plain[0])
    assert max(((a - c).abs().max() / a.abs().max()).item() for a, c in zip(auto[2], plain[2])) > 2 ** -7


def test_the_variants_keep_the_data_facing_layers(emu, small_cfg):
    from gantk.ops import piecewise
    from gantk.training import Trainer, trainer

    built = trainer.Trainer.__init__
    try:
        emu.install("fp32-ends")
        tr = Trainer(small_cfg())
    finally:
        trainer.Trainer.__init__ = built
    kinds = lambda net: [type(m).__name__ for m in net.modules() if isinstance(m, nn.Linear)]  # noqa: E731
    assert kinds(tr.D) == ["Linear", "BF16Linear", "BF16Linear"]
    assert kinds(tr.G) == ["BF16Linear", "BF16Linear", "Linear"]
    # the penalty's closed form reads the weights itself: an emulated critic takes autograd
    assert piecewise.piecewise_layers(tr.D) is None
    with pytest.raises(SystemExit, match="variant must be one of"):
        emu.install("half")


def test_the_final_phase_trains_in_float32(emu, small_cfg):
    """``fp32-final``: bf16 for the first 80 % of the generator steps, float32 after."""
    from gantk.training import Trainer, trainer

    saved = trainer.Trainer.__init__, trainer.Trainer._iteration
    seen = []
    try:
        emu.install("fp32-final")
        tr = Trainer(small_cfg(steps=10))
        step = tr.critic_step
        tr.critic_step = lambda: (seen.append(emu.BF16Linear.active), step())[1]
        tr.train()
    finally:
        trainer.Trainer.__init__, trainer.Trainer._iteration = saved
        emu.BF16Linear.active = True
    assert seen == [True] * 16 + [False] * 4  # 10 steps of 2 critic steps; bf16 for steps 0-7


def test_the_penalty_variant_runs_the_penalty_in_float32(emu, small_cfg):
    """``fp32-penalty``: the enforcer's penalty (its critic pass, input gradient and that
    gradient's backward) in float32, the adversarial scores in bf16."""
    from gantk.training import Trainer, amp, trainer

    saved = trainer.Trainer.__init__, amp.Precision.penalty
    during = []
    try:
        emu.install("fp32-penalty")
        tr = Trainer(small_cfg(steps=2))
        enforcer = tr.c.enforcer
        inner = enforcer.penalty

        def watched(critic, real, fake, **kw):
            out = inner(critic, real, fake, **kw)
            # the critic as the penalty saw it computes float32's numbers, not bf16's
            x = real[:8].detach()
            during.append((emu.BF16Linear.active, torch.equal(critic(x), _float32(tr.D)(x))))
            return out

        enforcer.penalty = watched
        tr.train()
    finally:
        trainer.Trainer.__init__, amp.Precision.penalty = saved
        emu.BF16Linear.active = True
    assert during and all(d == (False, True) for d in during)
    # outside the penalty the layers are bf16 again
    x = torch.randn(8, 2)
    assert not torch.equal(tr.D(x), _float32(tr.D)(x))


def _float32(net):
    """A float32 copy of an emulated net (every layer a plain Linear)."""
    twin = copy.deepcopy(net)
    for m in twin.modules():
        if isinstance(m, nn.Linear):
            m.__class__ = nn.Linear
    return twin


def test_a_model_with_convolutions_is_refused(emu):
    with pytest.raises(SystemExit, match="only Linear layers"):
        emu.emulate(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)))


def test_amp_quality_runs_emulated_modes_through_the_launcher(tmp_path):
    """A 3-step emulated run, trained and scored: its config says --amp off."""
    out = tmp_path / "r.jsonl"
    r = subprocess.run([sys.executable, str(HERE / "amp_quality.py"), "--data", "8gaussians", "--amps",
                        "bf16-emulated", "--seeds", "0", "--steps", "3", "--jobs", "1", "--draws", "2",
                        "--runs", str(tmp_path / "runs"), "--results", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["amp"] == "bf16-emulated" and row["amp_run"] == "off" and row["steps"] == 3
    assert 0 <= row["hq_share"] <= 1 and row["modes_covered"] <= 8
