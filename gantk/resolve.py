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


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Build a config from a preset (inferred from loss/lipschitz when not given) and
    explicit overrides (``None`` values mean "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    explicit_preset = preset is not None
    if preset is None:
        preset = infer_preset(given.get("loss"), given.get("lipschitz"))
    if preset not in PRESETS:
        raise UnknownComponentError("preset", preset, PRESETS)
    base = copy.deepcopy(PRESETS[preset])
    base["preset"] = preset
    for key, value in given.items():
        if key.endswith("_options") and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # -O merges into a preset's options
        else:
            base[key] = value
    notes = [] if explicit_preset else apply_data_settings(base, given)
    if "betas" in base:
        base["betas"] = tuple(base["betas"])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(base) - names
    if unknown:
        raise UsageError(f"unknown config keys: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**base)
    cfg.validate()
    cfg.notes = notes  # shown by the Trainer (rank 0): what the data set chose
    return cfg


def _scoped_settings(ds: type, data: str, preset: str | None, enforcer: str | None) -> dict[str, tuple[Any, str]]:
    """key → (value, why) from the data set's ``recommended`` (every method), then
    ``tuned[preset]`` and ``tuned["preset+enforcer"]``; the narrower scope wins."""
    scoped = [(key, value, f"{data}") for key, value in ds.recommended.items()]
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
    ``Dataset.recommended`` for every method, then ``Dataset.tuned[preset]`` for the
    run's (inferred) preset only and ``Dataset.tuned["preset+enforcer"]`` for that
    preset with that Lipschitz enforcer only, so that settings tuned for one method
    never replace another method's paper settings. Model options are recommended as a
    set: none applies when the user gave any model option (``-O model.width=64`` means
    both networks 64 wide, not a 64-wide critic beside a recommended 512-wide
    generator). Only used when no preset was named: ``--preset wgan-gp`` always means
    the paper's settings. Returns one note per applied setting."""
    data = base.get("data", TrainConfig.data)
    reg = get_registry("dataset")
    if not isinstance(data, str) or data not in reg:
        return []
    ds = reg.get(data)
    notes = []
    for key, (value, why) in _scoped_settings(ds, data, base.get("preset"), base.get("lipschitz")).items():
        if "." in key:
            note = _apply_component_option(base, given, key, value, ds.modality)
            if note:
                notes.append(f"{note} (recommended for {why}; -O {key}=... overrides)")
        elif key not in given:
            base[key] = value
            flag = "--" + key.replace("_", "-")
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            notes.append(f"{key} = {shown} (recommended for {why}; {flag} overrides, --preset uses the paper's)")
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
