"""The plugin manager: built-in plugins, entry-point discovery and the registries.

Third-party packages declare an entry point in the ``gantk`` group::

    [project.entry-points.gantk]
    myplugin = "my_package.plugin"

``GANTK_LOAD_PLUGINS`` limits which third-party plugins load: unset loads all,
an empty value (or ``none``) loads none, ``a,b`` loads only the entry points (or
distributions) named ``a`` and ``b``. Built-ins always load.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .components import Dataset, GANModel, LipschitzEnforcer, Loss, Protocol
from .errors import PluginError
from .registry import Registry
from .version import __version__

DEFAULT_PLUGINS = (
    "gantk.default_plugins.losses",
    "gantk.default_plugins.lipschitz",
    "gantk.default_plugins.models",
    "gantk.default_plugins.datasets",
    "gantk.default_plugins.image_models",
    "gantk.default_plugins.image_data",
    # the evaluation protocols use gantk.eval's metrics, so they live there; loaded by
    # name at run time like any plugin (no static import from this layer upwards)
    "gantk.eval.protocols",
)

ENV_LOAD = "GANTK_LOAD_PLUGINS"

#: hook name -> (registry kind, base class)
KINDS = {
    "register_models": ("model", GANModel),
    "register_losses": ("loss", Loss),
    "register_lipschitz": ("lipschitz", LipschitzEnforcer),
    "register_datasets": ("dataset", Dataset),
    "register_protocols": ("protocol", Protocol),
}
_HINTS = {"lipschitz": "a plugin package may provide more (see `gantk plugins`)",
          "loss": "a plugin package may provide more (see `gantk plugins`)",
          "model": "a plugin package may provide more (see `gantk plugins`)",
          "dataset": "or give a path to a tensor file or folder",
          "protocol": "a plugin package may provide more (see `gantk plugins`)"}


@dataclass
class PluginInfo:
    """What ``gantk plugins`` shows for one plugin."""

    name: str
    version: str | None
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class _State:
    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    failures: list[PluginInfo]
    registries: dict[str, Registry] | None = None


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
            except Exception as exc:  # a broken plugin must not take gantk down
                info = PluginInfo(label, version, False, error=f"{type(exc).__name__}: {exc}")
                failures.append(info)
                infos[label] = info
                continue
            infos[label] = PluginInfo(label, version, False)
        pm.check_pending()
        _state = _State(pm, infos, failures)
        return pm


def register_plugin(obj: Any, name: str | None = None, version: str | None = None) -> str:
    """Register an in-process plugin object (a module or class with ``@hookimpl``
    functions); the registries are rebuilt on next use. Returns the plugin's name."""
    pm = load_plugins()
    with _lock:
        assert _state is not None
        name = pm.register(obj, name=name)
        if name is None:
            raise PluginError(f"plugin {obj!r} is already registered")
        pm.check_pending()
        _state.infos[name] = PluginInfo(name, version, False)
        _state.registries = None
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


def _build_registries() -> dict[str, Registry]:
    assert _state is not None
    pm = _state.pm
    regs = {kind: Registry(kind if kind != "lipschitz" else "lipschitz enforcer", base, _HINTS[kind])
            for kind, base in KINDS.values()}
    for info in _state.infos.values():
        if info.error is None:
            info.registered = {}
    for hook_name, (kind, _base) in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name
            info = _state.infos.get(plugin)
            if info is not None and info.error is not None:
                continue
            added: list[type] = []

            def register(obj, _added=added):
                _added.append(obj)

            try:
                impl.function(register=register)
            except Exception as exc:
                msg = f"{type(exc).__name__} in {hook_name}: {exc}"
                if info is None or info.builtin:
                    raise PluginError(f"plugin {plugin!r} failed: {msg}") from exc
                info.error = msg
                _state.failures.append(info)
                for reg in regs.values():  # drop what it registered before failing
                    for e in [e for e in reg if e.plugin == plugin]:
                        del reg._entries[e.name]
                continue
            for obj in added:
                regs[kind].add(obj, plugin)
                if info is not None:
                    info.registered.setdefault(kind, []).append(getattr(obj, "name", "?"))
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
