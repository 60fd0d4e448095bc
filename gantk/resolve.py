"""From what the user gave to a full :class:`~gantk.config.TrainConfig`: the preset
(named, or inferred from the loss and enforcer), the data set's recommended and tuned
settings (:mod:`gantk.presets` holds the built-in sets' tables), then the flags."""
from __future__ import annotations

import copy
import dataclasses
from typing import Any

from .config import TrainConfig
from .errors import UnknownComponentError, UsageError
from .plugins import get_registry
from .presets import PRESETS, infer_preset


def default_model_for(modality: str) -> str:
    """The model a run uses when none is named: ``dcgan`` for images (when registered),
    else ``mlp``."""
    if modality == "image" and "dcgan" in get_registry("model"):
        return "dcgan"
    return "mlp"


def make_config(preset: str | None = None, *, origins: dict[str, str] | None = None, **overrides: Any) -> TrainConfig:
    """Build a config from a preset and explicit overrides (``None`` values mean "not
    given"). Without a named preset: the one the loss or enforcer declares
    (``Component.preset``), else the one their built-in names imply, then the settings
    the components declare (``Component.settings``) and the data set's recommended and
    tuned settings, each only where the user gave nothing. ``cfg.notes`` says what was
    chosen and why (the trainer shows them as one block); ``cfg.sources`` maps every
    setting (``lr``, ``lipschitz.lambda``) to where its value came from: ``default``,
    ``preset NAME``, a component, the data set, or ``origins[key]`` for what was given
    (default ``given``; the CLI says ``flag`` or ``file PATH``)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    explicit_preset = preset is not None
    notes: list[str] = []
    comps = _component_classes(given)
    preset_origin = (origins or {}).get("preset", "given") if explicit_preset else "inferred from the loss and enforcer"
    if preset is None:
        preset, why = _choose_preset(given, comps)
        if why:
            notes.append(why)
        declared = [f"declared by {k} {c.name!r}" for k, c in comps.items() if c.preset == preset]
        if declared:
            preset_origin = declared[0]
    if preset not in PRESETS:
        raise UnknownComponentError("preset", preset, PRESETS)
    track = _Sources()
    base = copy.deepcopy(PRESETS[preset])
    base["preset"] = preset
    track.stage(base, f"preset {preset}")
    track.sources["preset"] = preset_origin
    for key, value in given.items():
        if key.endswith("_options") and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # -O merges into a preset's options
        else:
            base[key] = value
    track.given(base, given, origins or {})
    if not explicit_preset:
        notes += _apply_component_settings(base, given, comps)
        track.stage(base, "declared by the loss or enforcer")
        notes += apply_data_settings(base, given)
        track.stage(base, f"data set {base.get('data', TrainConfig.data)}")
    if "betas" in base:
        base["betas"] = tuple(base["betas"])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(base) - names
    if unknown:
        raise UsageError(f"unknown config keys: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**base)
    cfg.validate()
    cfg.notes = notes  # shown by the Trainer (rank 0): what was chosen for the user
    cfg.sources = track.sources
    return cfg


class _Sources:
    """Where each setting's value came from, found by comparing the settings after each
    stage of :func:`make_config` with those before it."""

    def __init__(self):
        self.sources: dict[str, str] = {}
        self._seen: dict[str, Any] = {}

    @staticmethod
    def _flat(base: dict[str, Any]) -> dict[str, Any]:
        flat = {}
        for key, value in base.items():
            if key.endswith("_options") and isinstance(value, dict):
                for opt, v in value.items():
                    flat[f"{key[: -len('_options')]}.{opt}"] = v
            else:
                flat[key] = value
        return flat

    def stage(self, base: dict[str, Any], label: str) -> None:
        flat = self._flat(base)
        for key, value in flat.items():
            if key not in self._seen or self._seen[key] != value:
                self.sources[key] = label
        self._seen = copy.deepcopy(flat)

    def given(self, base: dict[str, Any], given: dict[str, Any], origins: dict[str, str]) -> None:
        flat_given = self._flat(given)
        for key in flat_given:
            top = key.split(".", 1)[0] + ("_options" if "." in key else "")
            self.sources[key] = origins.get(key, origins.get(top, "given"))
        self._seen = copy.deepcopy(self._flat(base))


def _component_classes(given: dict[str, Any]) -> dict[str, type]:
    """The registered loss and enforcer classes the user named (unknown names are
    reported later, where the run is built)."""
    out = {}
    for kind in ("lipschitz", "loss"):
        name = given.get(kind)
        if isinstance(name, str) and name in get_registry(kind):
            out[kind] = get_registry(kind).get(name)
    return out


def _choose_preset(given: dict[str, Any], comps: dict[str, type]) -> tuple[str, str | None]:
    """(preset, note or None): the enforcer's or loss's declared preset, else the one
    the built-in names imply; a note when a plugin's component declares none."""
    for kind in ("lipschitz", "loss"):
        cls = comps.get(kind)
        if cls is not None and cls.preset:
            return cls.preset, f"preset = {cls.preset} (declared by {kind} {cls.name!r}; --preset overrides)"
    preset = infer_preset(given.get("loss"), given.get("lipschitz"))
    builtin = {p.get(k) for p in PRESETS.values() for k in ("loss", "lipschitz")} | {"ns", "lsgan", "lp"}
    foreign = [f"{kind} {cls.name!r}" for kind, cls in comps.items() if cls.name not in builtin]
    if foreign:
        p = PRESETS[preset]
        verb = "declares" if len(foreign) == 1 else "declare"
        return preset, (f"preset = {preset} ({' and '.join(foreign)} {verb} no preset: {p['optimizer']} "
                        f"lr {p['lr']:g}, betas {','.join(map(str, p['betas']))}, n_critic {p['n_critic']}; "
                        "--preset or the flags override)")
    return preset, None


def _apply_component_settings(base: dict[str, Any], given: dict[str, Any], comps: dict[str, type]) -> list[str]:
    """The run settings the enforcer and loss declare (``Component.settings``), the
    enforcer's first, where the user gave none."""
    notes = []
    for kind in ("lipschitz", "loss"):
        cls = comps.get(kind)
        for key, value in (cls.settings if cls is not None else {}).items():
            if key in given or key in ("preset", "data", "loss", "lipschitz"):
                continue
            base[key] = value
            notes.append(f"{key} = {_shown(value)} (declared by {kind} {cls.name!r}; {_flag(key)} overrides)")
    return notes


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _scoped_settings(ds: type, data: str, preset: str | None, loss: str | None,
                     enforcer: str | None) -> dict[str, tuple[Any, str]]:
    """key → (value, why) from the data set's ``recommended`` (every method), then its
    ``tuned`` settings that were tuned with this run's components: ``tuned[preset]``
    when the loss and enforcer are the preset's own, ``tuned["preset+enforcer"]`` when
    the loss is the preset's and the enforcer that one. The narrower scope wins."""
    own = PRESETS.get(preset or "", {})
    scoped = [(key, value, f"{data}") for key, value in ds.recommended.items()]
    if loss == own.get("loss"):
        if enforcer == own.get("lipschitz"):
            scoped += [(key, value, f"{data} with {preset}") for key, value in (ds.tuned.get(preset) or {}).items()]
        scoped += [(key, value, f"{data} with {preset} and {enforcer}")
                   for key, value in (ds.tuned.get(f"{preset}+{enforcer}") or {}).items()]
    chosen: dict[str, tuple[Any, str]] = {}
    for key, value, why in scoped:  # one entry per key, the narrowest last
        chosen.pop(key, None)
        chosen[key] = (value, why)
    return chosen


def apply_data_settings(base: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Apply the settings the data set recommends to the keys the user did not give:
    ``Dataset.recommended`` for every method, then ``Dataset.tuned`` only for the
    components they were tuned with (see :func:`_scoped_settings`), so that settings
    tuned for one method never reach another method or a plugin's component. Model
    options are recommended as a set: none applies when the user gave any model option
    (``-O model.width=64`` means both networks 64 wide, not a 64-wide critic beside a
    recommended 512-wide generator). Only used when no preset was named: ``--preset
    wgan-gp`` always means the paper's settings. Returns one note per applied setting."""
    data = base.get("data", TrainConfig.data)
    reg = get_registry("dataset")
    if not isinstance(data, str) or data not in reg:
        return []
    ds = reg.get(data)
    notes = []
    for key, (value, why) in _scoped_settings(ds, data, base.get("preset"), base.get("loss"),
                                               base.get("lipschitz")).items():
        if "." in key:
            note = _apply_component_option(base, given, key, value, ds.modality)
            if note:
                notes.append(f"{note} (recommended for {why}; -O {key}=... overrides)")
        elif key not in given:
            base[key] = value
            notes.append(f"{key} = {_shown(value)} (recommended for {why}; {_flag(key)} overrides, --preset uses "
                         "the paper's)")
    return notes


def _apply_component_option(base: dict[str, Any], given: dict[str, Any], key: str, value: Any,
                            modality: str) -> str | None:
    """Set a recommended ``KIND.OPTION`` where the chosen component has that option and
    the user set neither it nor (for the model) any model option; returns the note."""
    kind, opt = key.split(".", 1)
    name = base.get(kind)
    if kind == "model" and not name:  # the model chosen for this data when none is named
        name = default_model_for(modality)
    kreg = get_registry(kind)
    if not name or name not in kreg or opt not in kreg.get(name).options:
        return None
    if opt in given.get(f"{kind}_options", {}) or opt in base.get(f"{kind}_options", {}):
        return None
    if kind == "model" and given.get("model_options"):
        return None  # the network's shape is one choice: the user made it
    base[f"{kind}_options"] = {**base.get(f"{kind}_options", {}), opt: value}
    return f"{kind} option {opt} = {value}"
