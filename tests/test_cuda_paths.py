"""The precision, conditional, augmentation and streaming paths on a GPU: the same
checks the CPU tests make, where the arithmetic differs (CUDA autocast, fused Adam on
the device, the uint8 set held on the device). Skipped without CUDA."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gantk.cli import app
from gantk.training import Trainer, amp

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in params])


def _trainer(cfg) -> Trainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(cfg)


def test_fp16_critic_step_on_cuda_follows_float32(small_cfg):
    kw = dict(optimizer="sgd", lr=0.1, lipschitz_options={"lambda": 10.0}, device="cuda")
    f32, f16 = _trainer(small_cfg(amp="off", **kw)), _trainer(small_cfg(amp="fp16", **kw))
    before = _flat(f32.D.parameters())
    torch.testing.assert_close(before, _flat(f16.D.parameters()), rtol=0, atol=0)
    a, b = f32.critic_step(), f16.critic_step()
    assert float(f16.precision.scalers["critic"].get_scale()) == amp.SCALE_INIT  # no step skipped
    torch.testing.assert_close(b["grad_norm"].cpu(), a["grad_norm"].cpu(), rtol=1e-2, atol=0)
    torch.testing.assert_close(b["penalty"].cpu(), a["penalty"].cpu(), rtol=5e-2, atol=1e-4)
    da, db = _flat(f32.D.parameters()) - before, _flat(f16.D.parameters()) - before
    assert da.norm() > 0 and (da - db).norm() < 2e-2 * da.norm()


@pytest.mark.parametrize("impl", ["ref", "ext"])
def test_scaled_penalty_on_cuda_matches_float32(impl):
    from gantk.ops import _ext, gradient_penalty

    if impl == "ext" and not _ext.available("cuda")[0]:
        pytest.skip(f"the extension is unavailable: {_ext.available('cuda')[1]}")
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)).cuda()
    real, fake = torch.randn(32, 4, device="cuda"), torch.randn(32, 4, device="cuda")
    g = torch.Generator(device="cuda")
    ref = gradient_penalty(critic, real, fake, generator=g.manual_seed(3), impl="ref")
    s = torch.tensor(2.0 ** 12, device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = gradient_penalty(lambda x: critic(x).float() * s, real, fake, generator=g.manual_seed(3),
                               inv_scale=s.reciprocal(), impl=impl)
    torch.testing.assert_close(out.penalty, ref.penalty, rtol=1e-2, atol=0)


def _train(tmp_path, name, *args):
    res = CliRunner().invoke(app, ["train", "--steps", "4", "--batch-size", "16", "--out", str(tmp_path),
                                   "--name", name, "--device", "cuda", *args])
    assert res.exit_code == 0, res.output
    return json.loads((tmp_path / name / "config.json").read_text())


def test_amp_auto_resolves_to_bf16_on_a_bf16_gpu(tmp_path):
    cfg = _train(tmp_path, "auto", "--data", "8gaussians", "-O", "data.n=256", "--amp", "auto")
    assert cfg["amp"] == ("bf16" if torch.cuda.is_bf16_supported() else "off")


def test_fp16_run_on_cuda_resumes(tmp_path):
    _train(tmp_path, "f16", "--data", "8gaussians", "-O", "data.n=256", "--amp", "fp16", "--checkpoint-every", "2")
    res = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "f16"), "--steps", "6"])
    assert res.exit_code == 0, res.output
    assert "step-0000006" in res.output


def test_conditional_augmented_digits_on_cuda(tmp_path):
    pytest.importorskip("sklearn")
    _train(tmp_path, "cond", "--preset", "digits", "--conditional", "--augment", "color,translation,cutout",
           "--amp", "bf16")
    res = CliRunner().invoke(app, ["sample", str(tmp_path / "cond"), "--class", "3", "-n", "8", "-o",
                                   str(tmp_path / "s.safetensors"), "--device", "cuda"])
    assert res.exit_code == 0, res.output
    from safetensors.torch import load_file
    assert load_file(str(tmp_path / "s.safetensors"))["labels"].tolist() == [3] * 8


def test_streamed_image_folder_on_cuda(tmp_path):
    from PIL import Image
    import numpy as np
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(24):
            Image.fromarray((rng.random((20, 20, 3)) * 255).astype("uint8")).save(tmp_path / "imgs" / cls / f"{i}.png")
    cfg = _train(tmp_path, "img", "--data", str(tmp_path / "imgs"), "--resolution", "16", "--data-memory", "1KB",
                 "--cache-dir", str(tmp_path / "cache"), "--conditional")
    assert cfg["conditional"] is True
