"""Augmentations: the built-ins (differentiable, identity at p = 0, reproducible), where
the trainer applies them (both steps; the penalty at the critic's augmented inputs),
and an adaptive (ADA-style) plugin that adjusts p from the critic's outputs."""
from __future__ import annotations

import contextlib
import warnings

import pytest
import torch

import gantk
from gantk.checkpoint import load_checkpoint
from gantk.components import Augmentation, LipschitzEnforcer
from gantk.errors import ConfigError, UnknownComponentError, UsageError
from gantk.markers import hookimpl
from gantk.plugins import get_registry, register_plugin, unregister_plugin
from gantk.training import Trainer

BUILTINS = ("flip", "color", "translation", "cutout")


def _make(name, **opts):
    return get_registry("augmentation").get(name)(**opts)


def test_the_builtins_are_registered_with_their_stage():
    reg = get_registry("augmentation")
    assert {n: reg.get(n).stage for n in BUILTINS} == {
        "flip": "data", "color": "critic", "translation": "critic", "cutout": "critic"}
    assert reg.get("flip").options["p"] == 0.5 and reg.get("cutout").options["p"] == 1.0


@pytest.mark.parametrize("name", BUILTINS)
def test_identity_at_p_zero_and_a_change_at_p_one(name):
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    assert torch.equal(_make(name, p=0.0).apply(x, torch.Generator().manual_seed(0)), x)
    y = _make(name, p=1.0).apply(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(y, x)
    # the same seed, the same transformation
    assert torch.equal(y, _make(name, p=1.0).apply(x, torch.Generator().manual_seed(0)))


def test_p_is_the_share_of_images_transformed():
    x = torch.rand(2000, 1, 4, 4)
    y = _make("flip", p=0.3).apply(x, torch.Generator().manual_seed(1))
    flipped = (y != x).flatten(1).any(1).float().mean().item()
    assert 0.25 < flipped < 0.35
    assert torch.equal(_make("flip", p=1.0).apply(x), x.flip(3))


def test_translation_shifts_whole_pixels_and_cutout_zeroes_a_square():
    x = torch.arange(1, 65, dtype=torch.float64).view(1, 1, 8, 8)
    for seed in range(20):
        y = _make("translation", ratio=0.5).apply(x, torch.Generator().manual_seed(seed))[0, 0]
        nz = y != 0
        # the kept pixels are a shifted block of the input: constant offset from their place
        rows, cols = nz.nonzero(as_tuple=True)
        offsets = (y[nz] - x[0, 0][rows, cols]).unique()
        assert offsets.numel() == 1 and int(offsets) % 1 == 0 and abs(int(offsets)) <= 2 * 8 + 2
        z = _make("cutout").apply(x, torch.Generator().manual_seed(seed))[0, 0]
        zero = z == 0
        assert 1 <= zero.sum() <= 16 and torch.equal(z[~zero], x[0, 0][~zero])
        r, c = zero.nonzero(as_tuple=True)  # one axis-aligned rectangle
        assert zero.sum() == (r.max() - r.min() + 1) * (c.max() - c.min() + 1)


@pytest.mark.parametrize("name", ["color", "translation", "cutout"])
def test_diffaugment_is_differentiable(name):
    aug = _make(name, p=1.0)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, torch.Generator().manual_seed(3)), (x,))


def test_augment_p_and_bad_values(tmp_path):
    with pytest.raises(UsageError, match="p must lie in \\[0, 1\\], got 1.5"):
        _make("color", p=1.5)
    with pytest.raises(UnknownComponentError, match="did you mean 'cutout'"):
        Trainer(_cfg(tmp_path, augment="color,cutuot"))
    with pytest.raises(UsageError, match="--augment must be names separated by commas"):
        _cfg(tmp_path, augment="color;cutout").validate()
    tr = Trainer(_cfg(tmp_path, augment="flip,cutout", augment_p=0.25, name="p"))
    assert [(a.name, a.p) for a in tr.c.augmentations] == [("flip", 0.25), ("cutout", 0.25)]
    tr._lock.release()


# -------------------------------------------------------------- in the trainer
class Recorder(LipschitzEnforcer):
    """Records the batches the penalty is given (no penalty)."""

    name = "test-recorder"
    seen: list = []

    def penalty(self, critic, real, fake, *, generator=None):
        Recorder.seen.append((real.detach().clone(), fake.detach().clone()))
        return None


class Shift(Augmentation):
    """A recognisable critic-stage augmentation: +10 on every pixel; counts its calls."""

    name = "test-shift"
    calls: list = []

    def apply(self, x, generator=None):
        Shift.calls.append(x.requires_grad)
        return x + 10.0 if self.p > 0 else x


class Adaptive(Augmentation):
    """ADA's heuristic in a few lines: r = E[sign(D(real))] over the critic steps; p moves
    up by ``step`` when r is above the target (the critic is overfitting), down otherwise."""

    name = "test-ada"
    options = {"p": 0.0, "target": 0.6, "step": 0.05}

    def apply(self, x, generator=None):
        return _make("translation", p=self.p).apply(x, generator)

    def observe(self, real_out, fake_out):
        r = torch.sign(real_out).mean().item()
        delta = self.opts["step"] if r > self.opts["target"] else -self.opts["step"]
        self.p = min(1.0, max(0.0, self.p + delta))


class Plugin:
    @hookimpl
    def register_augmentations(register):
        register(Shift)
        register(Adaptive)

    @hookimpl
    def register_lipschitz(register):
        register(Recorder)


@contextlib.contextmanager
def _plugin():
    name = register_plugin(Plugin, name="test-augment")
    try:
        yield
    finally:
        unregister_plugin(name)


def _cfg(tmp_path, **kw):
    base = dict(data="digits", data_options={"size": 16, "subset": 40}, model="dcgan", model_options={"width": 4},
                batch_size=8, n_critic=2, steps=2, device="cpu", out=str(tmp_path), log_every=1,
                checkpoint_every=1, image_every=0)
    return gantk.make_config(**{**base, **kw})


def test_the_critic_and_the_penalty_see_augmented_real_and_fake_in_both_steps(tmp_path):
    Recorder.seen.clear()
    Shift.calls.clear()
    with _plugin(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Trainer(_cfg(tmp_path, augment="test-shift", lipschitz="test-recorder", name="a")).train()
    # critic steps: real and fake, no gradient to the generator; generator steps: the fake, with it
    assert Shift.calls == [False, False, False, False, True] * 2
    assert len(Recorder.seen) == 4
    for real, fake in Recorder.seen:  # digits and tanh outputs lie in [-1, 1]: shifted, they lie above 9
        assert real.min() >= 9 and fake.min() >= 9


def test_an_adaptive_augmentation_adjusts_p_and_its_p_is_checkpointed(tmp_path):
    with _plugin(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(_cfg(tmp_path, augment="test-ada", name="b", steps=3))
        tr.train()
        (aug,) = tr.c.augmentations
        assert aug.p != 0.0  # moved by the critic's outputs: 6 critic steps of ±0.05
        ck = load_checkpoint(tr.last_checkpoint)
        assert ck.meta["extra"]["augment"] == {"test-ada": {"p": pytest.approx(aug.p)}}
        again = Trainer(ck.config, resume=ck, run_dir=tmp_path / "b")  # what a resume restores
        again._lock.release()
    assert again.c.augmentations[0].p == pytest.approx(aug.p)


def test_augmentation_needs_images(tmp_path):
    with pytest.raises(ConfigError, match="--augment works on images"):
        Trainer(gantk.make_config(data="8gaussians", augment="color", steps=1, device="cpu", out=str(tmp_path)))
