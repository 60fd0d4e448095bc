"""Checks for plugin authors to call from their own tests (one public module, hence
longer than most: one check per kind of component, each with its messages).

Each ``check_*`` function exercises one component against the contract of its base
class (see ``gantk/components.py`` and ``docs/plugins.md``) and raises
:class:`AssertionError` with a message naming the component and what is wrong, so a
plain pytest test is one line::

    from gantk.testing import check_penalty, check_trains

    def test_my_enforcer():
        check_penalty(MyEnforcer)

    def test_my_enforcer_trains():
        check_trains(lipschitz=MyEnforcer)

Components are given as a registered name (``"gp"``), a class (instantiated with its
default options) or an instance.

:func:`use_plugins` loads named installed (entry-point) plugins for the duration of a
``with`` block, for tests that run under gantk's own test suite, which loads no
third-party plugins unless asked (``GANTK_LOAD_PLUGINS=""``).
"""
from __future__ import annotations

import contextlib
import importlib.metadata as md
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from . import plugins as P
from .components import Component, Dataset, GANModel, LipschitzEnforcer, Loss, PenaltyOutput
from .errors import GantkError, GantkNote
from .markers import hookimpl
from .plugins import get_registry, register_plugin, unregister_plugin
from .presets import infer_preset
from .resolve import make_config
from .training import Trainer

__all__ = [
    "check_penalty",
    "check_loss",
    "check_model",
    "check_dataset",
    "check_trains",
    "use_plugins",
]

_KINDS = {"loss": Loss, "lipschitz": LipschitzEnforcer, "model": GANModel, "dataset": Dataset}


# ------------------------------------------------------------------ helpers
def _instance(obj: Any, kind: str) -> Component:
    """A component instance from a registered name, a class or an instance."""
    base = _KINDS[kind]
    if isinstance(obj, str):
        reg = get_registry(kind)
        if obj not in reg:
            raise AssertionError(f"no {base.__name__} named {obj!r} is registered (known: {', '.join(reg.names())})")
        return reg.get(obj)()
    if isinstance(obj, type):
        if not issubclass(obj, base):
            raise AssertionError(f"{obj.__name__} is not a subclass of gantk.{base.__name__}")
        return obj()
    if not isinstance(obj, base):
        raise AssertionError(f"{obj!r} is not a gantk.{base.__name__} (nor a subclass or a registered name)")
    return obj


def _label(comp: Component) -> str:
    return f"{comp.kind} {comp.name or type(comp).__name__!r}"


def _scalar(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} must return a tensor, got {type(value).__name__}")
    if value.dim() != 0:
        raise AssertionError(f"{what} must return a 0-dim tensor (a scalar), got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise AssertionError(f"{what} must return a floating-point tensor, got {value.dtype}")
    if not torch.isfinite(value).all():
        raise AssertionError(f"{what} returned {value.item()}, not a finite number")
    return value


def _finite_grads(grads, what: str) -> None:
    got = [g for g in grads if g is not None]
    if not got:
        raise AssertionError(f"{what}: no gradient reaches the inputs it should depend on")
    bad = [i for i, g in enumerate(grads) if g is not None and not torch.isfinite(g).all()]
    if bad:
        raise AssertionError(f"{what}: gradient is not finite (nan or inf)")


def _grads(out: torch.Tensor, inputs, what: str) -> tuple:
    """Gradients of ``out`` w.r.t. ``inputs`` (None where unused), all checked finite;
    an output that no input reaches is an AssertionError naming ``what``."""
    inputs = tuple(inputs)
    if not out.requires_grad:
        raise AssertionError(f"{what}: no gradient reaches the inputs it should depend on (detached or no_grad?)")
    grads = torch.autograd.grad(out, inputs, allow_unused=True)
    _finite_grads(grads, what)
    return grads


def _call(who: str, what: str, fn, *args, **kwargs):
    """Call into the component; an exception becomes an AssertionError naming it."""
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as exc:
        raise AssertionError(f"{who}: {what} raised {type(exc).__name__}: {exc}") from exc


def _toy_critic(data_shape: tuple[int, ...]) -> nn.Module:
    """A small smooth critic (tanh, so second derivatives are non-zero) with (B, 1) output."""
    n = math.prod(data_shape)
    return nn.Sequential(nn.Flatten(), nn.Linear(n, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))


# ------------------------------------------------------------------ enforcers
def _prepared_critic(enf: LipschitzEnforcer, who: str, critic: nn.Module | None, data_shape: tuple[int, ...],
                     seed: int) -> nn.Module:
    """The critic (default a tanh MLP seeded with ``seed``) after the enforcer's
    ``prepare_critic``, checked to still be an nn.Module."""
    if critic is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            critic = _toy_critic(data_shape)
    critic = _call(who, "prepare_critic()", enf.prepare_critic, critic)
    if not isinstance(critic, nn.Module):
        raise AssertionError(f"{who}: prepare_critic must return the critic (an nn.Module), "
                             f"got {type(critic).__name__}")
    return critic


def _check_penalty_output(who: str, out: Any, params: list[torch.Tensor], expect_penalty: bool) -> None:
    """What ``penalty()`` returned: None only when allowed, else a PenaltyOutput whose
    value is a finite scalar differentiable w.r.t. ``params`` and whose stats are
    finite scalars."""
    if out is None:
        if expect_penalty:
            raise AssertionError(f"{who}: penalty() returned None (no penalty); pass expect_penalty=False "
                                 "for an enforcer that works through prepare_critic/after_critic_step")
        return
    if not isinstance(out, PenaltyOutput):
        raise AssertionError(f"{who}: penalty() must return a gantk.PenaltyOutput or None, "
                             f"got {type(out).__name__}")
    value = _scalar(out.value, f"{who}: penalty().value")
    if not value.requires_grad:
        raise AssertionError(f"{who}: the penalty is not differentiable w.r.t. the critic's parameters "
                             "(computed under no_grad, or detached?)")
    _grads(value, params, f"{who}: d penalty / d critic parameters")
    if not isinstance(out.stats, Mapping):
        raise AssertionError(f"{who}: PenaltyOutput.stats must be a dict, got {type(out.stats).__name__}")
    for key, v in out.stats.items():
        t = torch.as_tensor(v).detach()
        if t.numel() != 1 or not torch.isfinite(t).all():
            raise AssertionError(f"{who}: stats[{key!r}] must be a finite scalar, got {v!r}")


def _check_critic_unchanged(who: str, critic: nn.Module, params: list[torch.Tensor],
                            before_params: list[torch.Tensor], probe: torch.Tensor,
                            before_out: torch.Tensor) -> None:
    """The critic's parameters, and its eval-mode outputs on ``probe``, as before ``penalty()``."""
    for p, b in zip(params, before_params):
        if not torch.equal(p.detach(), b):
            raise AssertionError(f"{who}: penalty() changed the critic's parameters")
    critic.eval()
    with torch.no_grad():
        after_out = critic(probe)
    critic.train()
    if after_out.shape != before_out.shape or not torch.allclose(after_out, before_out, rtol=1e-5, atol=1e-6):
        raise AssertionError(f"{who}: penalty() changed the critic's outputs")


def check_penalty(
    enforcer: Any,
    *,
    critic: nn.Module | None = None,
    data_shape: tuple[int, ...] = (2,),
    batch_size: int = 8,
    seed: int = 0,
    expect_penalty: bool = True,
) -> PenaltyOutput | None:
    """Check a :class:`gantk.LipschitzEnforcer` against its contract.

    On a small critic (``critic``, default a tanh MLP for ``data_shape``) after
    ``prepare_critic``, one ``penalty(critic, real, fake, generator=...)`` call must:
    return a :class:`gantk.PenaltyOutput` (or ``None`` only when
    ``expect_penalty=False``) whose ``value`` is a finite 0-dim float tensor,
    differentiable w.r.t. the critic's parameters with finite gradients; not call
    ``backward`` itself; leave the real and fake batches, the critic's parameters and
    its outputs unchanged; have finite scalar ``stats``. Returns the output.
    """
    enf = _instance(enforcer, "lipschitz")
    who = _label(enf)
    if not isinstance(type(enf).forbids_batchnorm, bool):
        raise AssertionError(f"{who}: forbids_batchnorm must be a bool")
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(batch_size, *data_shape, generator=gen) + 1.0
    fake = torch.randn(batch_size, *data_shape, generator=gen)
    probe = torch.randn(batch_size, *data_shape, generator=gen)
    critic = _prepared_critic(enf, who, critic, data_shape, seed)
    params = [p for p in critic.parameters() if p.requires_grad]
    critic.eval()
    with torch.no_grad():
        before_out = _call(who, "the critic", critic, probe).clone()
    critic.train()
    before_params = [p.detach().clone() for p in params]
    real_copy, fake_copy = real.clone(), fake.clone()

    noise = torch.Generator().manual_seed(seed + 1)
    out = _call(who, "penalty()", enf.penalty, critic, real, fake, generator=noise)

    if any(p.grad is not None for p in params):
        raise AssertionError(f"{who}: penalty() must not call backward(); the trainer does one backward of loss + penalty")
    if not torch.equal(real, real_copy) or not torch.equal(fake, fake_copy):
        raise AssertionError(f"{who}: penalty() modified the real or fake batch in place")
    _check_penalty_output(who, out, params, expect_penalty)
    _check_critic_unchanged(who, critic, params, before_params, probe, before_out)
    return out


# ------------------------------------------------------------------ losses
def _generator_loss(loss: Loss, fake_out: torch.Tensor, real_out: torch.Tensor) -> torch.Tensor:
    # as the trainer does: real scores only for a loss that asks for them
    if getattr(loss, "needs_real_scores", False):
        return _call(_label(loss), "generator_loss()", loss.generator_loss, fake_out, real_out)
    return _call(_label(loss), "generator_loss()", loss.generator_loss, fake_out)


def check_loss(loss: Any, *, batch_size: int = 16, seed: int = 0) -> None:
    """Check a :class:`gantk.Loss`: finite scalar losses; the critic loss is lower when
    the critic scores real data high and fake data low than the other way round; the
    generator loss is lower when the critic scores fake data high; gradients w.r.t. the
    scores are finite and non-zero; scores of shape (B,) and (B, 1) give one value.

    A loss with ``needs_real_scores = True`` gets neutral real scores (zeros) as
    ``generator_loss``'s second argument, as the trainer passes real scores.
    """
    inst = _instance(loss, "loss")
    who = _label(inst)
    gen = torch.Generator().manual_seed(seed)
    hi = 3.0 + 0.1 * torch.randn(batch_size, generator=gen)
    lo = -3.0 + 0.1 * torch.randn(batch_size, generator=gen)

    r, f = hi.clone().requires_grad_(True), lo.clone().requires_grad_(True)
    good = _scalar(_call(who, "critic_loss()", inst.critic_loss, r, f), f"{who}: critic_loss")
    _grads(good, (r, f), f"{who}: critic_loss")
    bad = _scalar(_call(who, "critic_loss()", inst.critic_loss, lo.clone(), hi.clone()), f"{who}: critic_loss").detach()
    if not good.detach() < bad:
        raise AssertionError(
            f"{who}: critic_loss has the wrong sign: it should be lower when the critic scores real data "
            f"high and fake data low ({good.item():.4g}) than the other way round ({bad.item():.4g})")
    col = _call(who, "critic_loss() on (B, 1) scores", inst.critic_loss, hi[:, None].clone(), lo[:, None].clone())
    if not isinstance(col, torch.Tensor) or col.dim() != 0 or not torch.allclose(col.detach(), good.detach()):
        raise AssertionError(f"{who}: critic_loss gives a different result for scores of shape (B, 1) than (B,) "
                             "(a broadcasting bug?)")

    neutral = torch.zeros(batch_size)
    f = hi.clone().requires_grad_(True)
    g_good = _scalar(_generator_loss(inst, f, neutral), f"{who}: generator_loss")
    (gf,) = _grads(g_good, [f], f"{who}: generator_loss w.r.t. the fake scores")
    g_bad = _scalar(_generator_loss(inst, lo.clone(), neutral), f"{who}: generator_loss").detach()
    if not g_good.detach() < g_bad:
        raise AssertionError(
            f"{who}: generator_loss has the wrong sign: it should be lower when the critic scores fake data "
            f"high ({g_good.item():.4g}) than low ({g_bad.item():.4g})")
    if not bool((gf != 0).any()):
        # not at the easy pair: saturating losses are flat there, so try scores near 0
        f0 = torch.zeros(batch_size, requires_grad=True)
        (g0,) = _grads(_generator_loss(inst, f0, neutral), [f0], f"{who}: generator_loss w.r.t. the fake scores")
        if not bool((g0 != 0).any()):
            raise AssertionError(f"{who}: generator_loss does not depend on the fake scores")
    g_col = _generator_loss(inst, hi[:, None].clone(), neutral[:, None])
    if not isinstance(g_col, torch.Tensor) or g_col.dim() != 0 or not torch.allclose(g_col.detach(), g_good.detach()):
        raise AssertionError(f"{who}: generator_loss gives a different result for scores of shape (B, 1) than (B,)")


# ------------------------------------------------------------------ models
def check_model(model: Any, data_shape: tuple[int, ...], latent_dim: int, *, batch_size: int = 4,
                seed: int = 0, num_classes: int = 0) -> tuple[nn.Module, nn.Module]:
    """Check a :class:`gantk.GANModel` for one data shape: ``supports`` accepts it; the
    generator maps (B, latent_dim) noise to finite (B, *data_shape) samples that depend
    on the noise; the critic maps (B, *data_shape) to finite (B,) or (B, 1) scores,
    differentiable w.r.t. its input (gradient penalties need that) and, through the
    generator's samples, w.r.t. the generator's parameters. Returns (generator, critic).

    ``num_classes`` K > 0 checks the conditional form instead (``G(z, y)``,
    ``D(x, y)``): the same, with labels; the critic's scores change with the label, and
    the generator's samples do, or (a new generator may treat every class alike, as
    conditional batch norm does at its start) the gradients of its parameters do.
    """
    if num_classes:
        return _check_conditional_model(model, tuple(data_shape), latent_dim, batch_size, seed, num_classes)
    inst = _instance(model, "model")
    who = _label(inst)
    data_shape = tuple(data_shape)
    reason = _call(who, "supports()", inst.supports, data_shape)
    if reason:
        raise AssertionError(f"{who}: does not support data of shape {data_shape}: {reason}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = _call(who, "build_generator()", inst.build_generator, data_shape, latent_dim)
        D = _call(who, "build_critic()", inst.build_critic, data_shape)
    for what, net in (("build_generator", G), ("build_critic", D)):
        if not isinstance(net, nn.Module):
            raise AssertionError(f"{who}: {what} must return an nn.Module, got {type(net).__name__}")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch_size, latent_dim, generator=gen)
    x = _call(who, "the generator", G, z)
    want = (batch_size, *data_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise AssertionError(f"{who}: the generator should map ({batch_size}, {latent_dim}) noise to samples of "
                             f"shape {want}, got {got}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise AssertionError(f"{who}: the generator's samples are not finite floats")
    x2 = G(torch.randn(batch_size, latent_dim, generator=gen))
    if torch.equal(x.detach(), x2.detach()):
        raise AssertionError(f"{who}: the generator's samples do not depend on the noise")
    real = torch.randn(want, generator=gen).requires_grad_(True)
    s = _call(who, "the critic", D, real)
    if not isinstance(s, torch.Tensor) or tuple(s.shape) not in ((batch_size,), (batch_size, 1)):
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise AssertionError(f"{who}: the critic should map samples of shape {want} to scores of shape "
                             f"({batch_size},) or ({batch_size}, 1), got {got}")
    if not torch.isfinite(s).all():
        raise AssertionError(f"{who}: the critic's scores are not finite")
    _grads(s.sum(), [real], f"{who}: the critic's output w.r.t. its input (gradient penalties need it)")
    g_params = [p for p in G.parameters() if p.requires_grad]
    if g_params:
        _grads(D(x).sum(), g_params, f"{who}: critic(generator(z)) w.r.t. the generator's parameters")
    return G, D


def _check_conditional_model(model: Any, data_shape: tuple[int, ...], latent_dim: int, batch_size: int,
                             seed: int, k: int) -> tuple[nn.Module, nn.Module]:
    inst = _instance(model, "model")
    who = _label(inst)
    if not type(inst).conditional:
        raise AssertionError(f"{who}: is not conditional (set conditional = True and accept num_classes)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = _call(who, "build_generator(num_classes=...)", inst.make_generator, data_shape, latent_dim, k)
        D = _call(who, "build_critic(num_classes=...)", inst.make_critic, data_shape, k)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch_size, latent_dim, generator=gen)
    y = torch.arange(batch_size) % k
    other = (y + 1) % k
    G.eval()  # batch statistics aside: the label alone must change the samples
    x = _call(who, "the generator", G, z, y)
    want = (batch_size, *data_shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want or not torch.isfinite(x).all():
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise AssertionError(f"{who}: G(z, y) should give finite samples of shape {want}, got {got}")
    if k > 1 and torch.equal(x.detach(), G(z, other).detach()) and not _label_reaches(G, z, y, other):
        raise AssertionError(f"{who}: the generator's samples do not depend on the label")
    G.train()
    real = torch.randn(want, generator=gen).requires_grad_(True)
    s = _call(who, "the critic", D, real, y)
    if not isinstance(s, torch.Tensor) or tuple(s.shape) not in ((batch_size,), (batch_size, 1)) \
            or not torch.isfinite(s).all():
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise AssertionError(f"{who}: D(x, y) should give finite scores of shape ({batch_size},), got {got}")
    if k > 1 and torch.equal(s.detach(), D(real, other).detach()):
        raise AssertionError(f"{who}: the critic's scores do not depend on the label")
    _grads(s.sum(), [real], f"{who}: the critic's output w.r.t. its input (gradient penalties need it)")
    g_params = [p for p in G.parameters() if p.requires_grad]
    if g_params:
        _grads(D(G(z, y), y).sum(), g_params, f"{who}: critic(generator(z, y), y) w.r.t. the generator's parameters")
    return G, D


def _label_reaches(G: nn.Module, z: torch.Tensor, y: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether the label reaches the generator's parameters: the gradients of its
    output's sum differ between two labellings. (Conditional batch norm starts with the
    same scale and offset for every class, so a new generator's samples need not
    differ between classes yet; the parameters that will separate them get different
    gradients.)"""
    params = [p for p in G.parameters() if p.requires_grad]
    if not params:
        return False
    g1 = torch.autograd.grad(G(z, y).sum(), params, allow_unused=True)
    g2 = torch.autograd.grad(G(z, other).sum(), params, allow_unused=True)
    return any((a is None) != (b is None) or (a is not None and not torch.equal(a, b)) for a, b in zip(g1, g2))


# ------------------------------------------------------------------ datasets
def check_dataset(dataset: Any, *, seed: int = 0) -> torch.Tensor:
    """Check a :class:`gantk.Dataset`: ``load(seed)`` returns a non-empty finite float
    tensor of shape (N, *sample_shape), the same for the same seed; image sets lie in
    [-1, 1]; labels, when ``load`` sets them, are N class indices (1-D int64, ≥ 0) with,
    when named, one distinct name per class. Returns the samples."""
    inst = _instance(dataset, "dataset")
    who = _label(inst)
    x = _call(who, "load()", inst.load, seed)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise AssertionError(f"{who}: load() must return a tensor of shape (N, *sample_shape) with N > 0, got {got}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise AssertionError(f"{who}: load() must return finite floats")
    if not torch.equal(x, inst.load(seed)):
        raise AssertionError(f"{who}: load({seed}) is not deterministic")
    if type(inst).modality == "image" and (x.min() < -1 or x.max() > 1):
        raise AssertionError(f"{who}: an image set must lie in [-1, 1], got [{x.min().item()}, {x.max().item()}]")
    _check_labels(who, inst, x.shape[0])
    return x


def _check_labels(who: str, inst: Any, n: int) -> None:
    """Labels, when ``load`` set them: N class indices (1-D int64, ≥ 0) and, when named,
    one distinct name per class."""
    y, names = getattr(inst, "labels", None), getattr(inst, "class_names", None)
    if y is None:
        if names is not None:
            raise AssertionError(f"{who}: class_names without labels")
        return
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (n,):
        got = f"{y.dtype}, shape {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise AssertionError(f"{who}: labels must be a 1-D int64 tensor of {n} class indices, got {got}")
    if int(y.min()) < 0:
        raise AssertionError(f"{who}: labels must be class indices >= 0, got {int(y.min())}")
    if names is not None:
        k = int(y.max()) + 1
        if not (isinstance(names, tuple) and all(isinstance(c, str) for c in names) and len(set(names)) == len(names)
                and len(names) >= k):
            raise AssertionError(f"{who}: class_names must be a tuple of distinct names, one per class "
                                 f"(at least {k}), got {names!r}")


# ------------------------------------------------------------------ training


@contextlib.contextmanager
def _registered(objs: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Names for the components in ``objs`` (kind -> name, class or instance); classes
    that are not registered are registered for the duration, as one in-process plugin."""
    hooks = {"model": "register_models", "loss": "register_losses",
             "lipschitz": "register_lipschitz", "dataset": "register_datasets"}
    names: dict[str, str] = {}
    extra: dict[str, type] = {}
    for kind, obj in objs.items():
        if obj is None or isinstance(obj, str):
            names[kind] = obj
            continue
        cls = obj if isinstance(obj, type) else type(obj)
        _instance(obj, kind)  # type check
        reg = get_registry(kind)
        if cls.name in reg and reg.get(cls.name) is not cls:
            raise AssertionError(f"{kind} {cls.name!r} is already registered by plugin "
                                 f"{reg.entry(cls.name).plugin!r} with another class")
        if cls.name not in reg:
            extra[kind] = cls
        names[kind] = cls.name
    plugin = None
    if extra:
        def make_hook(cls):
            @hookimpl
            def hook(register):
                register(cls)
            return hook

        ns = {hooks[kind]: make_hook(cls) for kind, cls in extra.items()}
        plugin = register_plugin(type("GantkTestingPlugin", (), ns), name=f"gantk.testing:{id(ns):x}")
    try:
        yield names
    finally:
        if plugin is not None:
            unregister_plugin(plugin)


def _instance_options(opts: dict[str, dict | None], objs: dict[str, Any]) -> None:
    """Where a component is given as an instance and its options are not, use the
    instance's own options (``opts`` filled in place)."""
    for kind, obj in objs.items():
        key = "data" if kind == "dataset" else kind
        if obj is not None and not isinstance(obj, (str, type)) and opts[key] is None:
            opts[key] = dict(_instance(obj, kind).opts)


def _small_run_defaults(opts: dict[str, dict | None], names: dict[str, str]) -> None:
    """Options still unset, for a tiny run (``opts`` filled in place): a 2 × 16 MLP and
    a generated set of 256 points."""
    if opts["model"] is None and names["model"] == "mlp":
        opts["model"] = {"width": 16, "depth": 2}
    if opts["data"] is None and "n" in get_registry("dataset").get(names["dataset"]).options:
        opts["data"] = {"n": 256}  # a generated set: a small one


def _train_tiny(what: str, settings: dict[str, Any], callbacks: list | None = None):
    """Build the config and Trainer from ``settings`` and train; any failure is an
    AssertionError naming ``what``. Returns the trainer, its config, the result and the
    generator's and critic's parameters before training."""
    try:
        cfg = make_config(settings.pop("preset", None), **settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GantkNote)  # notes about recommended options
            tr = Trainer(cfg, callbacks=callbacks)
        g0 = [p.detach().clone() for p in tr.G.parameters()]
        d0 = [p.detach().clone() for p in tr.D.parameters()]
        res = tr.train()
    except GantkError as exc:
        raise AssertionError(f"{what} failed: {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    return tr, cfg, res, g0, d0


def _check_trained(what: str, tr: Trainer, cfg, res, g0: list[torch.Tensor], d0: list[torch.Tensor]) -> None:
    """The run finished: every step done, finite metrics and parameters, generator and
    critic both moved, a checkpoint written."""
    if res.step != cfg.steps:
        raise AssertionError(f"{what}: stopped at step {res.step} of {cfg.steps}")
    bad = {k: v for k, v in res.metrics.items() if not math.isfinite(v)}
    if bad:
        raise AssertionError(f"{what}: metrics not finite: {bad}")
    for label, net, before in (("generator", tr.G, g0), ("critic", tr.D, d0)):
        if not all(torch.isfinite(p).all() for p in net.parameters()):
            raise AssertionError(f"{what}: the {label}'s parameters are not finite")
        if before and all(torch.equal(a, b.detach()) for a, b in zip(before, net.parameters())):
            raise AssertionError(f"{what}: the {label}'s parameters did not change")
    if not res.checkpoint.exists():
        raise AssertionError(f"{what}: no checkpoint was written")


def check_trains(
    *,
    loss: Any = "wasserstein",
    lipschitz: Any = "gp",
    model: Any = "mlp",
    data: Any = "8gaussians",
    steps: int = 2,
    n_critic: int = 2,
    batch_size: int = 16,
    loss_options: dict | None = None,
    lipschitz_options: dict | None = None,
    model_options: dict | None = None,
    data_options: dict | None = None,
    out: str | os.PathLike | None = None,
    callbacks: list | None = None,
    **config: Any,
):
    """Train a tiny run (CPU, ``steps`` generator steps of ``n_critic`` critic steps,
    batch 16, toy data of 256 points, a 2 × 16 MLP) with the given components and check
    it finishes: every step done, finite metrics and parameters, generator and critic
    both moved, a checkpoint written.

    ``loss``, ``lipschitz``, ``model``, ``data`` are registered names, classes or
    instances (an instance's options are used); an unregistered class is registered for
    the duration. ``out`` keeps the run folder (default: a temporary one, deleted
    afterwards). ``callbacks`` (e.g. a :class:`gantk.Logger`) receive the run's events.
    The run is neutral: the preset is the one the loss and enforcer imply, named
    explicitly, so no data set's tuned settings apply and the penalty runs on every
    critic step (``res.metrics`` has its figures). Other keyword arguments go to
    :func:`gantk.make_config` (``preset=None`` lets the data set's settings apply, as
    ``gantk train`` does). Returns the :class:`~gantk.training.TrainResult`.
    """
    opts = {"loss": loss_options, "lipschitz": lipschitz_options, "model": model_options, "data": data_options}
    objs = {"loss": loss, "lipschitz": lipschitz, "model": model, "dataset": data}
    _instance_options(opts, objs)
    with _registered(objs) as names, contextlib.ExitStack() as stack:
        _small_run_defaults(opts, names)
        if out is None:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="gantk-check-"))
        what = f"training with loss={names['loss']!r}, lipschitz={names['lipschitz']!r}, model={names['model']!r}"
        settings = dict(
            loss=names["loss"], lipschitz=names["lipschitz"], model=names["model"], data=names["dataset"],
            loss_options=opts["loss"] or {}, lipschitz_options=opts["lipschitz"] or {},
            model_options=opts["model"] or {}, data_options=opts["data"] or {},
            steps=steps, n_critic=n_critic, batch_size=batch_size, out=str(out), device="cpu",
            log_every=1, checkpoint_every=0, image_every=0,
        )
        settings["preset"] = infer_preset(names["loss"], names["lipschitz"])
        settings.update(config)
        tr, cfg, res, g0, d0 = _train_tiny(what, settings, callbacks)
        _check_trained(what, tr, cfg, res, g0, d0)
        return res


# ------------------------------------------------------------------ plugins
@contextlib.contextmanager
def use_plugins(*names: str) -> Iterator[None]:
    """Load the named installed plugins (entry-point names, module names or
    distribution names, as in ``GANTK_LOAD_PLUGINS``) for the ``with`` block, then
    restore ``GANTK_LOAD_PLUGINS`` and reload.

    Reloading starts the plugin manager afresh: in-process plugins registered with
    ``gantk.plugins.register_plugin`` before the block are dropped. Raises
    AssertionError when a named plugin is not installed or fails to load.
    """
    eps = list(md.entry_points(group="gantk"))

    def ep_names(ep) -> set[str]:
        s = {ep.name, ep.value.split(":")[0]}
        dist = getattr(ep, "dist", None)
        if dist is not None:
            s.add(dist.metadata["Name"])
        return s

    for n in names:
        if not any(n in ep_names(ep) for ep in eps):
            have = sorted({x for ep in eps for x in ep_names(ep)})
            raise AssertionError(f"no installed gantk plugin is named {n!r} (installed: {', '.join(have) or 'none'}); "
                                 "pip install it first")
    old = os.environ.get(P.ENV_LOAD)
    os.environ[P.ENV_LOAD] = ",".join(names)
    try:
        P.load_plugins(reload=True)
        failed = P.plugin_failures()  # only the named plugins were tried
        if failed:
            raise AssertionError("; ".join(f"plugin {f.name!r} failed to load: {f.error}" for f in failed))
        yield
    finally:
        if old is None:
            os.environ.pop(P.ENV_LOAD, None)
        else:
            os.environ[P.ENV_LOAD] = old
        P.load_plugins(reload=True)
