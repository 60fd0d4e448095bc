"""The plugin manager: built-in plugins, entry-point discovery and the registries. It is
longer than most modules because loading, the registries, clash handling, component
descriptions and run records all read one shared plugin state.

Third-party packages declare an entry point in the ``gantk`` group::

    [project.entry-points.gantk]
    myplugin = "my_package.plugin"

``GANTK_LOAD_PLUGINS`` limits which third-party plugins load: unset loads all,
an empty value (or ``none``) loads none, ``a,b`` loads only the entry points (or
distributions) named ``a`` and ``b``. Built-ins always load.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .components import Augmentation, Dataset, FeatureExtractor, GANModel, LipschitzEnforcer, Logger, Loss, Protocol
from .errors import DuplicateComponentError, PluginError
from .registry import Registry
from .version import __version__

DEFAULT_PLUGINS = (
    "gantk.default_plugins.losses",
    "gantk.default_plugins.lipschitz",
    "gantk.default_plugins.models",
    "gantk.default_plugins.datasets",
    "gantk.default_plugins.image_models",
    "gantk.default_plugins.image_data",
    "gantk.default_plugins.loggers",
    "gantk.default_plugins.augment",
    # the evaluation protocols use gantk.eval's metrics, so they live there; loaded by
    # name at run time like any plugin (no static import from this layer upwards)
    "gantk.eval.protocols",
    # the feature extractors (Inception-v3, the digits classifier) live beside the
    # protocols that use them, loaded by name the same way
    "gantk.eval.features",
)

ENV_LOAD = "GANTK_LOAD_PLUGINS"

#: hook name -> (registry kind, base class)
KINDS = {
    "register_models": ("model", GANModel),
    "register_losses": ("loss", Loss),
    "register_lipschitz": ("lipschitz", LipschitzEnforcer),
    "register_datasets": ("dataset", Dataset),
    "register_protocols": ("protocol", Protocol),
    "register_loggers": ("logger", Logger),
    "register_feature_extractors": ("extractor", FeatureExtractor),
    "register_augmentations": ("augmentation", Augmentation),
}
_HINTS = {"lipschitz": "a plugin package may provide more (see `gantk plugins`)",
          "loss": "a plugin package may provide more (see `gantk plugins`)",
          "model": "a plugin package may provide more (see `gantk plugins`)",
          "dataset": "or give a path to a tensor file or folder",
          "protocol": "a plugin package may provide more (see `gantk plugins`)",
          "logger": "a plugin package may provide more (see `gantk plugins`)",
          "extractor": "a plugin package may provide more (see `gantk plugins`)",
          "augmentation": "a plugin package may provide more (see `gantk plugins`)"}


@dataclass
class PluginInfo:
    """What ``gantk plugins`` shows for one plugin."""

    name: str
    version: str | None
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    #: components refused because another plugin registered the name first
    refused: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _State:
    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    failures: list[PluginInfo]
    registries: dict[str, Registry] | None = None
    clashes: list[str] = field(default_factory=list)
    env_notes: list[str] = field(default_factory=list)


_lock = threading.RLock()
_state: _State | None = None


def _new_pm() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("gantk")
    pm.add_hookspecs(hookspecs)
    return pm


def _allowed(ep: md.EntryPoint) -> bool:
    raw = os.environ.get(ENV_LOAD)
    if raw is None:
        return True
    wanted = {w.strip() for w in raw.split(",") if w.strip()}
    if not wanted or wanted == {"none"}:
        return False
    dist = getattr(ep, "dist", None)
    names = {ep.name, ep.value.split(":")[0]}
    if dist is not None:
        names.add(dist.metadata["Name"])
    return bool(names & wanted)


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group="gantk"), key=lambda ep: ep.name)


def load_plugins(*, reload: bool = False) -> pluggy.PluginManager:
    """Load built-in plugins and allowed entry-point plugins (once; idempotent).

    A third-party plugin that fails to import is recorded (see :func:`plugin_failures`)
    and skipped. ``reload=True`` starts over (re-reads ``GANTK_LOAD_PLUGINS``).
    """
    global _state
    with _lock:
        if _state is not None and not reload:
            return _state.pm
        pm = _new_pm()
        infos: dict[str, PluginInfo] = {}
        failures: list[PluginInfo] = []
        for modname in DEFAULT_PLUGINS:
            mod = importlib.import_module(modname)
            pm.register(mod, name=modname)
            infos[modname] = PluginInfo(modname, __version__, True)
        for ep in _entry_points():
            if not _allowed(ep):
                continue
            dist = getattr(ep, "dist", None)
            version = dist.version if dist is not None else None
            label = dist.metadata["Name"] if dist is not None else ep.name
            if pm.get_plugin(label) is not None or label in infos:
                label = f"{label}:{ep.name}"
            try:
                obj = ep.load()
                pm.register(obj, name=label)
                pm.check_pending()  # a misspelt hook in this plugin
            except Exception as exc:  # a broken plugin must not take gantk down
                if pm.get_plugin(label) is not None:
                    pm.unregister(name=label)
                info = PluginInfo(label, version, False, error=f"{type(exc).__name__}: {exc}")
                failures.append(info)
                infos[label] = info
                continue
            infos[label] = PluginInfo(label, version, False)
        pm.check_pending()
        _state = _State(pm, infos, failures, env_notes=_unmatched_env_names())
        return pm


def _unmatched_env_names() -> list[str]:
    """A note for each ``GANTK_LOAD_PLUGINS`` name that matches no installed plugin."""
    raw = os.environ.get(ENV_LOAD)
    wanted = {w.strip() for w in (raw or "").split(",") if w.strip()} - {"none"}
    if not wanted:
        return []
    known: set[str] = set()
    for ep in _entry_points():
        known |= {ep.name, ep.value.split(":")[0]}
        if getattr(ep, "dist", None) is not None:
            known.add(ep.dist.metadata["Name"])
    notes = []
    for name in sorted(wanted - known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6) or [
            k for k in sorted(known) if k.lower() == name.lower()]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        notes.append(f"{ENV_LOAD} names {name!r}, which matches no installed plugin{hint} "
                     f"(installed: {', '.join(sorted(known)) or 'none'})")
    return notes


def register_plugin(obj: Any, name: str | None = None, version: str | None = None) -> str:
    """Register an in-process plugin object (a module or class with ``@hookimpl``
    functions); the registries are rebuilt on next use. Returns the plugin's name."""
    pm = load_plugins()
    with _lock:
        assert _state is not None
        name = pm.register(obj, name=name)
        if name is None:
            raise PluginError(f"plugin {obj!r} is already registered")
        try:
            pm.check_pending()
        except Exception:
            pm.unregister(name=name)
            raise
        info = _state.infos[name] = PluginInfo(name, version, False)
        _state.registries = None
        registries()  # a clash or a failing hook is this caller's error, raised now
        if info.error is not None or info.refused:
            pm.unregister(name=name)
            _state.infos.pop(name, None)
            if info in _state.failures:
                _state.failures.remove(info)
            clashes = [c for c in _state.clashes if f"of plugin {name!r}" in c]
            _state.registries = None
            if clashes:
                raise DuplicateComponentError(clashes[0])
            raise PluginError(f"plugin {name!r} failed: {info.error}")
        return name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    pm = load_plugins()
    with _lock:
        assert _state is not None
        pm.unregister(name=name)
        _state.infos.pop(name, None)
        _state.registries = None


def get_plugin_manager() -> pluggy.PluginManager:
    return load_plugins()


def _collect(impl, hook_name: str) -> list[type]:
    added: list[type] = []
    impl.function(register=added.append)
    return added


def _drop(regs: dict[str, Registry], plugin: str) -> None:
    """Remove what ``plugin`` registered (it failed part-way)."""
    for reg in regs.values():
        for e in [e for e in reg if e.plugin == plugin]:
            reg.remove(e.name)


def _build_registries() -> dict[str, Registry]:
    """Call every collection hook of every plugin, built-ins first (registration order).

    A third-party plugin whose hook raises, or that registers something that is not a
    component, is skipped whole and reported like an import failure. A name that is
    already taken keeps its first owner (built-ins always win; among third-party
    plugins the one loaded first): the later plugin's clashing component is refused and
    reported, the rest of that plugin and every other plugin keep working."""
    assert _state is not None
    pm = _state.pm
    regs = {kind: Registry(kind if kind != "lipschitz" else "lipschitz enforcer", base, _HINTS[kind])
            for kind, base in KINDS.values()}
    for info in _state.infos.values():
        if info.error is None:
            info.registered, info.refused = {}, {}
    _state.clashes = []
    for hook_name, (kind, _base) in KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            info = _state.infos.get(plugin)
            if info is not None and info.error is not None:
                continue
            try:
                added = _collect(impl, hook_name)
                for obj in added:
                    regs[kind].check(obj, plugin)
            except Exception as exc:
                msg = f"{type(exc).__name__} in {hook_name}: {exc}" if not isinstance(exc, PluginError) else str(exc)
                if info is None or info.builtin:
                    raise PluginError(f"plugin {plugin!r} failed: {msg}") from exc
                info.error = msg
                _state.failures.append(info)
                _drop(regs, plugin)
                continue
            for obj in added:
                if obj.name in regs[kind]:
                    owner = regs[kind].entry(obj.name).plugin
                    msg = (f"{regs[kind].kind} {obj.name!r} of plugin {plugin!r} was refused: plugin {owner!r} "
                           f"registered that name first; uninstall one of them, or set {ENV_LOAD} to the "
                           "third-party plugins to load")
                    if info is None or info.builtin:
                        raise DuplicateComponentError(msg)
                    info.refused.setdefault(kind, []).append(obj.name)
                    _state.clashes.append(msg)
                    continue
                regs[kind].add(obj, plugin)
                if info is not None:
                    info.registered.setdefault(kind, []).append(obj.name)
    return regs


def registries() -> dict[str, Registry]:
    """The registries: ``model``, ``loss``, ``lipschitz``, ``dataset``, ``protocol``."""
    load_plugins()
    with _lock:
        assert _state is not None
        if _state.registries is None:
            _state.registries = _build_registries()
        return _state.registries


def get_registry(kind: str) -> Registry:
    return registries()[kind]


def plugin_infos() -> list[PluginInfo]:
    """Every loaded (or failed) plugin with its version and what it registered."""
    registries()
    assert _state is not None
    return sorted(_state.infos.values(), key=lambda i: (not i.builtin, i.name))


def plugin_failures() -> list[PluginInfo]:
    """Third-party plugins that failed to import or register (name + error)."""
    registries()
    assert _state is not None
    return list(_state.failures)


def plugin_problems() -> list[str]:
    """One line per problem with third-party plugins, for the CLI to show once: plugins
    skipped (import or registration failed), components refused (a name taken by
    another plugin), and ``GANTK_LOAD_PLUGINS`` names that match no installed plugin."""
    registries()
    assert _state is not None
    return ([f"plugin {f.name!r} was skipped: {f.error}" for f in _state.failures]
            + list(_state.clashes) + list(_state.env_notes))


def create(kind: str, name: str, **options: Any) -> Any:
    """Instantiate the registered component ``name`` of ``kind`` with ``options``."""
    return get_registry(kind).get(name)(**options)


def create_model(name: str, **options: Any) -> GANModel:
    """Instantiate a registered model family by name."""
    return create("model", name, **options)


def create_loss(name: str, **options: Any) -> Loss:
    """Instantiate a registered loss by name."""
    return create("loss", name, **options)


def create_lipschitz(name: str, **options: Any) -> LipschitzEnforcer:
    """Instantiate a registered Lipschitz enforcer by name."""
    return create("lipschitz", name, **options)


def create_dataset(name: str, **options: Any) -> Dataset:
    """Instantiate a registered dataset by name."""
    return create("dataset", name, **options)


def create_augmentation(name: str, **options: Any) -> Augmentation:
    """Instantiate a registered augmentation by name."""
    return create("augmentation", name, **options)


def describe(kind: str, name: str) -> dict[str, Any]:
    """What ``gantk plugins --verbose`` and ``gantk describe`` show of one registered
    component: its description, options (type and default), and the plugin (name,
    version, built-in or not) that provides it."""
    entry = get_registry(kind).entry(name)
    obj = entry.obj
    info = _state.infos.get(entry.plugin) if _state is not None else None
    options = [{"name": k, "type": type(v).__name__ if v is not None else "any", "default": v}
               for k, v in getattr(obj, "options", {}).items()]
    out: dict[str, Any] = {
        "kind": kind, "name": name, "description": getattr(obj, "description", "") or "",
        "options": options, "plugin": entry.plugin,
        "version": info.version if info is not None else None,
        "builtin": bool(info is not None and info.builtin),
    }
    for attr in ("protocol", "modality"):  # a data set's evaluation protocol and kind of samples
        if kind == "dataset" and getattr(obj, attr, None) is not None:
            out[attr] = getattr(obj, attr)
    return out


def describe_all() -> list[dict[str, Any]]:
    """:func:`describe` for every registered component, by kind then name."""
    return [describe(kind, e.name) for kind, reg in registries().items() for e in reg]


#: how a run names each kind of component in its record (config.json, checkpoints)
_RECORD_KINDS = {"model": "model", "loss": "loss", "lipschitz": "lipschitz enforcer", "dataset": "data set",
                 "logger": "logger", "augmentation": "augmentation"}


def component_record(names: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{kind: {"name", "plugin", "version"}}`` for the components a run uses
    (``names``: kind → registered name), stored with the run so that a run whose
    plugin is missing can say which plugin it needs."""
    record = {}
    for kind, name in names.items():
        entry = get_registry(kind).entry(name)
        info = _state.infos.get(entry.plugin) if _state is not None else None
        record[kind] = {"name": name, "plugin": entry.plugin, "version": info.version if info else None}
    return record


def require_components(record: Any) -> None:
    """Raise :class:`PluginError` naming the plugin a run needs when one of the
    components in its ``record`` (see :func:`component_record`) is not registered."""
    if not isinstance(record, dict):
        return
    regs = registries()
    for key, rec in record.items():
        kind = key.split(":", 1)[0]  # "augmentation:flip": one entry per augmentation of the run
        if kind not in regs or not isinstance(rec, dict) or not isinstance(rec.get("name"), str):
            continue
        if rec["name"] not in regs[kind]:
            plugin = f"{rec.get('plugin')} {rec.get('version') or ''}".strip()
            raise PluginError(f"this run needs plugin {plugin} for its {_RECORD_KINDS.get(kind, kind)} "
                              f"{rec['name']!r} (not installed or not loaded; see `gantk plugins`)")


def add_commands(cli: Any) -> None:
    """Let every plugin add its subcommands to the Typer app ``cli`` (the
    ``register_commands`` hook). A third-party plugin whose hook raises is recorded as
    failed (reported by :func:`plugin_problems`) and skipped."""
    pm = load_plugins()
    assert _state is not None
    for impl in pm.hook.register_commands.get_hookimpls():
        info = _state.infos.get(impl.plugin_name)
        if info is not None and info.error is not None:
            continue
        try:
            impl.function(cli=cli)
        except Exception as exc:
            if info is None or info.builtin:
                raise PluginError(f"plugin {impl.plugin_name!r} failed: {type(exc).__name__} in "
                                  f"register_commands: {exc}") from exc
            info.error = f"{type(exc).__name__} in register_commands: {exc}"
            _state.failures.append(info)
            _state.registries = None
