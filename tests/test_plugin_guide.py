"""docs/plugins.md cannot drift from the code: every hook (with its exact arguments),
every public method and attribute of the base classes (methods with their exact
signatures) and every gantk.testing helper must be described there; its example plugin
must work and its TOML must parse."""
from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
import types
from pathlib import Path

import pytest

import gantk
import gantk.testing
from gantk import components, hookspecs
from gantk.plugins import register_plugin, unregister_plugin

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
CLASSES = (components.Component, components.Loss, components.LipschitzEnforcer, components.PenaltyOutput,
           components.GANModel, components.Dataset, components.Augmentation, components.Protocol, components.Callback,
           components.Logger)


def sections(text: str) -> dict[str, str]:
    """Heading line -> the text up to the next heading of any level."""
    out: dict[str, str] = {}
    head, body = None, []
    for line in text.splitlines():
        if re.match(r"#{1,6} ", line):
            if head is not None:
                out[head] = "\n".join(body)
            head, body = line, []
        else:
            body.append(line)
    if head is not None:
        out[head] = "\n".join(body)
    return out


def signature_text(fn) -> str:
    """``name(a, b, *, c=None)`` without annotations (``self``/``cls`` dropped)."""
    parts, star = [], False
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
            continue
        if p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            star = True
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"{fn.__name__}({', '.join(parts)})"


def hookspec_functions() -> dict[str, types.FunctionType]:
    return {n: f for n, f in vars(hookspecs).items() if inspect.isfunction(f) and hasattr(f, "gantk_spec")}


def public_members(cls: type) -> dict[str, object]:
    """Public names a class itself defines (inherited ones are documented with the
    class that defines them): attributes, methods, annotated class variables, dataclass
    fields and, for components, attributes an instance sets in __init__."""
    names: dict[str, object] = {}
    for n, v in vars(cls).items():
        if not n.startswith("_"):
            names[n] = v
    for n in vars(cls).get("__annotations__", {}):
        if not n.startswith("_"):
            names.setdefault(n, None)
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            names.setdefault(f.name, None)
    if cls is components.Component:
        for n in vars(cls()):
            if not n.startswith("_"):
                names.setdefault(n, None)
    return names


def class_section(secs: dict[str, str], cls: type) -> str | None:
    for head, body in secs.items():
        if f"`{cls.__name__}`" in head:
            return body
    return None


def guide_problems(text: str) -> list[str]:
    """Everything the guide misses; [] when complete."""
    problems = []
    secs = sections(text)
    heads = "\n".join(secs)
    specs = hookspec_functions()
    for name, fn in specs.items():
        sig = signature_text(fn)
        if f"`{sig}`" not in heads:
            problems.append(f"hook {name}: no heading with `{sig}`")
    for documented in set(re.findall(r"`(register_\w+)\(", heads)) - set(specs):
        problems.append(f"the guide documents a hook {documented!r} that gantk/hookspecs.py does not define")
    for cls in CLASSES:
        body = class_section(secs, cls)
        if body is None:
            problems.append(f"class {cls.__name__}: no heading with `{cls.__name__}`")
            continue
        for name, value in public_members(cls).items():
            func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if inspect.isfunction(func):
                sig = signature_text(func)
                if f"`{sig}`" not in body:
                    problems.append(f"{cls.__name__}.{name}: `{sig}` is not in its section")
            elif not re.search(r"`" + re.escape(name) + r"`", body):
                problems.append(f"{cls.__name__}.{name}: `{name}` is not in its section")
    for name in components.__all__:
        if f"`{name}" not in text:
            problems.append(f"gantk.components.{name} is not mentioned")
    for name in gantk.testing.__all__:
        if f"`{name}(" not in text:
            problems.append(f"gantk.testing.{name} is not described (as `{name}(...)`)")
    return problems


def test_guide_describes_every_hook_member_and_helper():
    problems = guide_problems(GUIDE.read_text(encoding="utf-8"))
    assert not problems, "docs/plugins.md is behind the code:\n  " + "\n  ".join(problems)


def test_the_checker_catches_omissions():
    text = GUIDE.read_text(encoding="utf-8")
    # a hook heading renamed, a method's arguments changed, an attribute dropped
    broken = text.replace("### `register_losses(register)`", "### `register_losses(callback)`")
    broken = broken.replace("`penalty(critic, real, fake, *, generator=None)`", "`penalty(critic, real, fake)`")
    broken = broken.replace("`needs_real_scores`", "needs_real_scores")
    problems = "\n".join(guide_problems(broken))
    assert "hook register_losses" in problems
    assert "LipschitzEnforcer.penalty" in problems
    assert "Loss.needs_real_scores" in problems
    assert "register_foo" in "\n".join(guide_problems(text + "\n### `register_foo(register)`\n"))


def test_member_introspection_sees_the_contract():
    # guards the checker itself: if introspection found nothing, the guide test could not fail
    assert set(hookspec_functions()) == {"register_models", "register_losses", "register_lipschitz",
                                         "register_datasets", "register_protocols", "register_loggers",
                                         "register_commands", "register_feature_extractors",
                                         "register_augmentations"}
    assert {"critic_loss", "generator_loss", "needs_real_scores"} <= set(public_members(components.Loss))
    assert {"prepare_critic", "penalty", "after_critic_step", "forbids_batchnorm"} <= set(
        public_members(components.LipschitzEnforcer))
    assert {"value", "stats"} <= set(public_members(components.PenaltyOutput))
    assert {"name", "description", "options", "kind", "opts"} <= set(public_members(components.Component))
    assert {"load", "can_open", "modality", "latent_dim", "recommended", "labels", "class_names"} <= set(
        public_members(components.Dataset))
    assert {"stage", "p", "apply", "observe", "state", "load_state"} <= set(public_members(components.Augmentation))


def test_the_adaptive_augmentation_in_the_guide_works():
    """The ADA-style example: p rises while the critic scores the real images positive."""
    src = next(b for b in _code_blocks("python") if "AdaptiveTranslation" in b)
    mod = types.ModuleType("guide_ada")
    mod.__dict__.update(gantk=gantk, torch=__import__("torch"))
    exec(compile(src, "docs/plugins.md", "exec"), mod.__dict__)
    ada = mod.AdaptiveTranslation(speed=0.3)
    torch = mod.torch
    x = torch.rand(16, 3, 16, 16)
    assert torch.equal(ada.apply(x, torch.Generator().manual_seed(0)), x)  # p = 0 at the start
    for _ in range(3):
        ada.observe(torch.ones(16), torch.zeros(16))
    assert ada.p == pytest.approx(0.9) and not torch.equal(ada.apply(x, torch.Generator().manual_seed(0)), x)
    ada.observe(-torch.ones(16), torch.zeros(16))
    assert ada.p == pytest.approx(0.6) and ada.state() == {"p": pytest.approx(0.6)}


def _code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)


def test_the_example_plugin_in_the_guide_works():
    src = _code_blocks("python")[0]
    mod = types.ModuleType("guide_example_plugin")
    exec(compile(src, "docs/plugins.md", "exec"), mod.__dict__)
    name = register_plugin(mod, name="guide-example")
    try:
        loss = gantk.create_loss("softplus-wgan", beta=2.0)
        gantk.testing.check_loss(loss)
    finally:
        unregister_plugin(name)


@pytest.mark.parametrize("i", range(len(_code_blocks("toml"))))
def test_the_toml_in_the_guide_parses(i):
    data = tomllib.loads(_code_blocks("toml")[i])
    assert "gantk" in data["project"]["entry-points"]
