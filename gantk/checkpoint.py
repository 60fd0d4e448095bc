"""Checkpoints: one safetensors file holding generator, critic, optimizer states, the
step and RNG states, with the full run config as JSON in the metadata. No pickle
anywhere: the loader checks the header before reading any tensor.

A checkpoint may come from anywhere, so nothing in it is trusted: :func:`load_checkpoint`
validates the config and the metadata and compares the stored networks with the ones
the config describes (built on the meta device) before any caller builds them; the
callers check the rest against what they built (:func:`check_module_state`,
:func:`check_optimizer_state`, :func:`check_rng_state`). This module is longer than
most because those checks sit beside the format they check: what is saved and what is
accepted change together."""
from __future__ import annotations

import json
import math
import os
import re
import reprlib
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from . import memory
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, GantkError, UsageError
from .fsutil import atomic_path
from .plugins import get_registry
from .version import __version__

FORMAT = "gantk-checkpoint-1"
MAX_HEADER = 64 * 1024 * 1024
CKPT_DIR = "checkpoints"
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "BOOL": 1}
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")
#: bounds on what a checkpoint's metadata may describe (checked before anything is built)
MAX_STEP = 10**12
MAX_DATA_DIMS, MAX_DATA_SIDE, MAX_DATA_NUMEL = 4, 65536, 2**24
MAX_LATENT = 65536
#: classes a conditional checkpoint may name at most, and the length of one name
MAX_CLASSES, MAX_CLASS_NAME = 100_000, 200
#: the optimizer state kept per parameter that must be there after step 0, by optimizer
#: type (a resume without it would silently restart the optimizer's averages)
_STATE_KEYS: dict[type, Callable[[dict], set[str]]] = {
    torch.optim.Adam: lambda g: {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if g.get("amsgrad") else set()),
    torch.optim.RMSprop: lambda g: ({"step", "square_avg"} | ({"momentum_buffer"} if g.get("momentum") else set())
                                    | ({"grad_avg"} if g.get("centered") else set())),
    torch.optim.SGD: lambda g: {"momentum_buffer"} if g.get("momentum") else set(),
}
#: state entries that are never negative (a negative one makes the update NaN)
_NON_NEGATIVE = ("exp_avg_sq", "max_exp_avg_sq", "square_avg")
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 2


@dataclass
class Checkpoint:
    path: Path
    config: TrainConfig
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        p = prefix + "."
        return {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}


def _optim_to_flat(prefix: str, state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in state["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.state.{idx}.{key}"] = val
            else:
                scalars.setdefault(str(idx), {})[key] = val
    groups = []
    for g in state["param_groups"]:
        gg = {}
        for k, v in g.items():
            gg[k] = list(v) if isinstance(v, tuple) else v
        groups.append(gg)
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optim_from_flat(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    p = prefix + ".state."
    for k, v in tensors.items():
        if k.startswith(p):
            idx, key = k[len(p):].split(".", 1)
            state.setdefault(int(idx), {})[key] = v
    for idx, d in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(d)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | Path,
    *,
    config: TrainConfig,
    step: int,
    generator: torch.nn.Module,
    critic: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    extra: dict[str, Any] | None = None,
    generator_ema: torch.nn.Module | None = None,
    amp: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename). ``generator_ema``,
    the generator's weight average (``--ema``), is stored as ``generator_ema.*``;
    ``amp``, the loss scalers' state under ``--amp fp16``, as ``amp.*``."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in generator.state_dict().items():
        tensors[f"generator.{k}"] = v
    if generator_ema is not None:
        for k, v in generator_ema.state_dict().items():
            tensors[f"generator_ema.{k}"] = v
    for k, v in critic.state_dict().items():
        tensors[f"critic.{k}"] = v
    tg, mg = _optim_to_flat("opt_g", opt_g.state_dict())
    td, mdd = _optim_to_flat("opt_d", opt_d.state_dict())
    tensors.update(tg)
    tensors.update(td)
    for k, v in rng.items():
        tensors[f"rng.{k}"] = v
    for k, v in (amp or {}).items():
        tensors[f"amp.{k}"] = v
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {
        "format": FORMAT,
        "config": config.to_json(),
        "step": str(step),
        "opt_g": json.dumps(mg),
        "opt_d": json.dumps(mdd),
        "extra": json.dumps(extra or {}),
    }
    meta["gantk_version"] = __version__
    data = save(tensors, metadata=meta)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _read_header(path: Path, blob: bytes) -> dict:
    if len(blob) < 8:
        raise CheckpointError(f"{path}: not a gantk checkpoint (file too short)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise CheckpointError(f"{path}: not a gantk checkpoint (bad header length, truncated or foreign file)")
    try:
        header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: not a gantk checkpoint (header is not valid JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a gantk checkpoint (bad header)")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gantk checkpoint (a safetensors file without gantk metadata)")
    body = len(blob) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        # dtype, shape and byte range are checked before any tensor is allocated
        try:
            start, end = info["data_offsets"]
            dtype, shape = info["dtype"], info["shape"]
            ok = (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= body
                  and dtype in _ITEMSIZE and isinstance(shape, list)
                  and all(isinstance(d, int) and 0 <= d for d in shape))
            if ok:
                numel = 1
                for d in shape:
                    numel *= d
                ok = numel * _ITEMSIZE[dtype] == end - start
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path}: corrupt checkpoint (tensor {name!r} has a bad dtype, shape or byte range)")
    return header


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and check a checkpoint file; raises :class:`CheckpointError` with a one-line
    reason for missing, truncated, corrupt or foreign files, and for metadata that is
    not what gantk writes: the config is validated as ``gantk train`` validates its
    options, the step, the optimizer metadata and ``extra`` (data shape, latent size,
    model) are checked, and the networks the config describes are built on the meta
    device (no storage) and compared with the stored tensors (names, shapes, dtypes,
    finite values) before any caller builds them for real."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    try:
        # a FIFO or a device named like a checkpoint would block or never end
        if not stat.S_ISREG(path.stat().st_mode):
            raise CheckpointError(f"{path} is not a regular file, not a checkpoint")
        size = path.stat().st_size
        # the file's bytes, then its tensors: about twice its size
        memory.check_fits(2 * size, f"reading checkpoint {path}", CheckpointError)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced since the stat above
                raise CheckpointError(f"{path} is not a regular file, not a checkpoint")
            head = f.read(8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                if n > MAX_HEADER or 8 + n > size:  # refuse before reading (or allocating) anything
                    raise CheckpointError(
                        f"{path}: not a gantk checkpoint (bad header length, truncated or foreign file)")
            blob = head + f.read()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    header = _read_header(path, blob)
    meta = header["__metadata__"]
    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors raises its own error type for corrupt data
        raise CheckpointError(f"{path}: corrupt checkpoint ({exc})") from None
    config, step, parsed = _parse_metadata(path, meta)
    ck = Checkpoint(path, config, step, tensors, {**meta, **parsed})
    _check_networks(ck)
    return ck


def _parse_metadata(path: Path, meta: dict) -> tuple[TrainConfig, int, dict[str, Any]]:
    """The config (validated), the step and the JSON entries of a checkpoint's metadata."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: corrupt checkpoint metadata ({what})")

    missing = [k for k in ("config", "step", "opt_g", "opt_d", "extra") if not isinstance(meta.get(k), str)]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    try:
        config = TrainConfig.from_json(meta["config"])
    except ConfigError as exc:
        raise bad(str(exc)) from None
    try:
        config.validate()
    except UsageError as exc:  # ConfigError and UnknownComponentError too
        raise bad(f"run config: {exc}") from None
    if not re.fullmatch(r"[0-9]{1,13}", meta["step"]) or int(meta["step"]) > MAX_STEP:
        raise bad(f"step must be an integer in [0, {MAX_STEP}], got {_short(meta['step'])}")
    parsed: dict[str, Any] = {}
    for key in ("opt_g", "opt_d", "extra"):
        try:
            parsed[key] = json.loads(meta[key])
        except (ValueError, RecursionError):  # JSONDecodeError, or an integer too long to parse
            raise bad(f"{key} is not valid JSON") from None
    for key in ("opt_g", "opt_d"):
        problem = _optim_meta_problem(parsed[key])
        if problem:
            raise bad(f"{key}: {problem}")
    problem = _extra_problem(parsed["extra"], config)
    if problem:
        raise bad(f"extra: {problem}")
    return config, int(meta["step"]), parsed


def _short(value: Any) -> str:
    """A repr of at most about 60 characters, safe for deeply nested values."""
    return _REPR.repr(value)


def _name(text: str) -> str:
    """A name from the file (a tensor's, a key's) as a message may show it: quoted and
    escaped when it holds control characters or is long."""
    return text if text.isprintable() and len(text) <= 80 else _short(text)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_index(x: Any, limit: int | None = None) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0 and (limit is None or x < limit)


def _optim_meta_problem(d: Any) -> str | None:
    """What is wrong with an optimizer's metadata (``_optim_to_flat``'s second half)."""
    if not isinstance(d, dict) or not isinstance(d.get("param_groups"), list):
        return "must be an object with a list param_groups"
    groups = d["param_groups"]
    if not groups or len(groups) > 1000:
        return f"param_groups must hold 1 to 1000 groups, got {len(groups)}"
    ids: set[int] = set()
    for i, g in enumerate(groups):
        if not isinstance(g, dict) or not isinstance(g.get("params"), list):
            return f"param group {i} must be an object with a list params"
        params = g["params"]
        if not all(_is_index(p, 2**31) for p in params) or ids & set(params) or len(set(params)) != len(params):
            return f"param group {i}: params must be distinct parameter indices"
        ids |= set(params)
        for k, v in g.items():
            if k == "params":
                continue
            ok = v is None or isinstance(v, bool) or _is_number(v) or (
                isinstance(v, list) and len(v) <= 16 and all(_is_number(x) for x in v))
            if not ok:
                return (f"param group {i}: {_name(k)} must be a finite number, a flag or a list of numbers, "
                        f"got {_short(v)}")
    scalars = d.get("scalars", {})
    if not isinstance(scalars, dict):
        return "scalars must be an object"
    for idx, st in scalars.items():
        if not (re.fullmatch(r"[0-9]{1,10}", idx) and int(idx) in ids) or not isinstance(st, dict):
            return f"scalars: {_short(idx)} is not the state of a parameter"
        for k, v in st.items():
            if not (v is None or isinstance(v, bool) or _is_number(v)):
                return f"scalars: parameter {idx}: {_name(k)} must be a finite number, got {_short(v)}"
    return None


def _extra_problem(extra: Any, config: TrainConfig) -> str | None:
    """What is wrong with a checkpoint's ``extra`` (data shape, latent size, model)."""
    if not isinstance(extra, dict):
        return "must be an object"
    shape = extra.get("data_shape")
    if shape is not None:
        if not (isinstance(shape, list) and 1 <= len(shape) <= MAX_DATA_DIMS
                and all(_is_index(d) and 1 <= d <= MAX_DATA_SIDE for d in shape)):
            return (f"data_shape must be 1 to {MAX_DATA_DIMS} sizes in [1, {MAX_DATA_SIDE}], "
                    f"got {_short(shape)}")
        if math.prod(shape) > MAX_DATA_NUMEL:
            return f"data_shape {shape} has more than {MAX_DATA_NUMEL} values per sample"
    latent = extra.get("latent_dim")
    if latent is not None:
        if not (_is_index(latent) and 1 <= latent <= MAX_LATENT):
            return f"latent_dim must be an integer in [1, {MAX_LATENT}], got {_short(latent)}"
        if config.latent_dim is not None and latent != config.latent_dim:
            return f"latent_dim {latent} differs from the config's latent_dim {config.latent_dim}"
    for key in ("model", "modality"):
        if extra.get(key) is not None and not isinstance(extra[key], str):
            return f"{key} must be a string, got {_short(extra[key])}"
    components = extra.get("components")  # kind -> {"name", "plugin", "version"}: the plugins a run needs
    if components is not None and not (isinstance(components, dict) and all(
            isinstance(rec, dict) and all(v is None or (isinstance(v, str) and _name(v) == v) for v in rec.values())
            for rec in components.values())):
        return f"components must map kinds to names, plugins and versions, got {_short(components)}"
    if extra.get("model") and config.model and extra["model"] != config.model:
        return f"model {_short(extra['model'])} differs from the config's model {_short(config.model)}"
    return _classes_problem(extra, config)


def class_record(num_classes: int, class_names: tuple[str, ...] | None) -> dict[str, Any]:
    """What a conditional run records of its classes (checkpoint ``extra`` and
    config.json): ``num_classes`` and ``class_names`` (a list, or null); nothing for an
    unconditional run."""
    if not num_classes:
        return {}
    return {"num_classes": num_classes, "class_names": list(class_names) if class_names is not None else None}


def class_names_of(ck: Checkpoint) -> list[str]:
    """The classes of a conditional checkpoint by index: their names, or "0", "1", ..."""
    extra = ck.meta.get("extra", {})
    k = extra.get("num_classes") or 0
    return list(extra.get("class_names") or [str(i) for i in range(k)])


def _classes_problem(extra: dict, config: TrainConfig) -> str | None:
    k, names = extra.get("num_classes"), extra.get("class_names")
    if k is None:
        if config.conditional:
            return "num_classes is missing from a conditional run's checkpoint"
        return None if names is None else "class_names without num_classes"
    if not config.conditional:
        return f"num_classes {_short(k)} in the checkpoint of an unconditional run"
    if not (_is_index(k) and 1 <= k <= MAX_CLASSES):
        return f"num_classes must be an integer in [1, {MAX_CLASSES}], got {_short(k)}"
    if names is not None and not (isinstance(names, list) and len(names) == k and all(
            isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME and n.isprintable() for n in names)
            and len(set(names)) == k):
        return f"class_names must be {k} distinct printable names, got {_short(names)}"
    return None


#: optimizer group keys that choose an implementation, not a hyperparameter: the live
#: optimizer's value stands on resume (a checkpoint from a foreach Adam resumes fused)
IMPLEMENTATION_KEYS = ("fused", "foreach")


def optimizer_state(ckpt: Checkpoint, which: str, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """The stored state of ``which``, ready for ``optimizer.load_state_dict``; with
    ``optimizer``, its implementation choices (:data:`IMPLEMENTATION_KEYS`) replace the
    stored ones."""
    state = _optim_from_flat(which, ckpt.tensors, ckpt.meta[which])
    if optimizer is not None:
        for saved, live in zip(state["param_groups"], optimizer.param_groups):
            saved.update({k: live[k] for k in IMPLEMENTATION_KEYS if k in live})
    return state


def _describe(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {tuple(t.shape)}"


def _check_values(ck: Checkpoint, name: str, t: torch.Tensor, non_negative: bool = False) -> None:
    if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{ck.path}: tensor {name} holds NaN or infinite values")
    if non_negative and bool((t < 0).any()):
        raise CheckpointError(f"{ck.path}: tensor {name} holds negative values")


def check_module_state(ck: Checkpoint, prefix: str, module: torch.nn.Module) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's ``prefix.*`` tensors are
    exactly what ``module.state_dict()`` holds: the same names, shapes and dtypes (no
    silent casts: int64 weights for float32 parameters are refused), and finite
    floating values. ``module`` may live on the meta device (only its shapes and
    dtypes are used), so a network can be checked before it is built for real."""
    stored = ck.module_state(prefix)
    expected = {k: v for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    missing = [k for k in expected if k not in stored]
    if missing:
        raise CheckpointError(f"{ck.path}: missing {prefix} tensors: {', '.join(missing[:5])}"
                              + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    unexpected = [k for k in stored if k not in expected]
    if unexpected:
        raise CheckpointError(f"{ck.path}: {prefix} tensors the model does not have: "
                              f"{', '.join(map(_name, unexpected[:5]))}"
                              + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    for k, want in expected.items():
        have, name = stored[k], f"{prefix}.{k}"
        lazy = isinstance(want, torch.nn.parameter.UninitializedTensorMixin)
        if not lazy and (have.shape != want.shape or have.dtype != want.dtype):
            raise CheckpointError(f"{ck.path}: tensor {name} is {_describe(have)}, the model expects {_describe(want)}")
        _check_values(ck, name, have)


def check_optimizer_state(ck: Checkpoint, which: str, optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's ``which`` (``opt_g`` or
    ``opt_d``) state fits ``optimizer``: the same groups and parameter counts, the same
    hyperparameters (``lr`` may differ: the schedule sets it), and after step 0 the state
    the optimizer type keeps for every trainable parameter (Adam: ``step``,
    ``exp_avg``, ``exp_avg_sq``; RMSprop: ``step``, ``square_avg``; SGD without
    momentum: none) with the parameter's shape and dtype and finite values. A checkpoint
    without that state is refused rather than resumed with a fresh optimizer."""
    meta = ck.meta[which]
    saved, live = meta["param_groups"], optimizer.param_groups

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{ck.path}: optimizer state {which} does not fit the run's optimizer ({what})")

    if len(saved) != len(live) or any(len(s["params"]) != len(g["params"]) for s, g in zip(saved, live)):
        raise bad(f"{[len(s['params']) for s in saved]} parameters per group, the optimizer has "
                  f"{[len(g['params']) for g in live]}")
    params: dict[int, tuple[torch.Tensor, dict]] = {}
    for s, g in zip(saved, live):
        for k, v in g.items():
            if k == "params":
                continue
            numeric = isinstance(v, (int, float, tuple, list)) and not isinstance(v, bool)
            if numeric and k not in s:
                raise bad(f"no {k}")
            problem = _group_value_problem(k, s[k], v) if k in s else None
            if problem:
                raise bad(problem)
        params.update({i: (p, s) for i, p in zip(s["params"], g["params"])})
    try:
        state = _optim_from_flat(which, ck.tensors, meta)["state"]
    except ValueError:  # a tensor name that is not WHICH.state.INDEX.KEY
        raise bad("a state tensor's name is not state.INDEX.KEY") from None
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise bad(f"state for parameter {unknown[0]}, which no group holds")
    needed = next((f for cls, f in _STATE_KEYS.items() if isinstance(optimizer, cls)), None)
    for i, (p, group) in params.items():
        st, keys = state.get(i, {}), needed(group) if needed is not None else set()
        lacking = sorted(keys - set(st))
        if ck.step > 0 and p.requires_grad and lacking:
            raise CheckpointError(
                f"{ck.path}: optimizer state {which} lacks {', '.join(lacking)} of parameter {i} at step "
                f"{ck.step}; resuming would restart {type(optimizer).__name__} from scratch")
        for key, v in st.items():
            name = _name(f"{which}.state.{i}.{key}")
            if not isinstance(v, torch.Tensor):
                if key in keys and key != "step":
                    raise bad(f"{name} must be a tensor")
            elif key == "step":
                if v.numel() != 1 or v.dtype == torch.bool or v.is_complex():
                    raise bad(f"{name} must be one number, got {_describe(v)}")
                _check_values(ck, name, v, non_negative=True)
            elif v.shape != p.shape or v.dtype != p.dtype:
                raise CheckpointError(f"{ck.path}: tensor {name} is {_describe(v)}, its parameter is {_describe(p)}")
            else:
                _check_values(ck, name, v, non_negative=key in _NON_NEGATIVE)


def _group_value_problem(key: str, saved: Any, live: Any) -> str | None:
    """Why a stored hyperparameter cannot replace the optimizer's ``live`` one: the run
    config and ``make_optimizer`` chose the live values (betas, eps, flags such as
    ``capturable`` or ``amsgrad``), so the stored ones must be the same; only ``lr``,
    which the schedule sets before every step, may be any finite non-negative number."""
    if key == "lr":
        ok = _is_number(saved) and saved >= 0
    elif key in IMPLEMENTATION_KEYS:
        ok = saved is None or isinstance(saved, bool)
    else:
        ok = _same_value(saved, live)
    return None if ok else f"{key} is {_short(saved)}, the run's is {_short(live)}"


def _same_value(saved: Any, live: Any) -> bool:
    if isinstance(live, (tuple, list)):
        return (isinstance(saved, list) and len(saved) == len(live)
                and all(_same_value(s, x) for s, x in zip(saved, live)))
    if _is_number(live):
        return _is_number(saved) and saved == live
    return type(saved) is type(live) and saved == live


def check_rng_state(ck: Checkpoint, *, data_size: int, noise_state_size: int) -> None:
    """Raise :class:`CheckpointError` unless the checkpoint's random states fit the run:
    ``rng.data`` and ``rng.torch`` CPU generator states and ``rng.noise`` a state of
    ``noise_state_size`` bytes (all uint8 vectors), and the batch sampler's state:
    ``rng.sampler_seed`` one int64 ≥ 0 and ``rng.sampler_pos`` one int64 ≥ 0 (batches
    drawn). A checkpoint of an older gantk stores the sampler's permutation instead
    (``rng.sampler_perm``, an int64 permutation of the ``data_size`` samples, with
    ``rng.sampler_pos`` in [0, data_size]); it is checked as such."""
    t = ck.tensors
    cpu_size = torch.get_rng_state().numel()
    for key, size in (("data", cpu_size), ("torch", cpu_size), ("noise", noise_state_size)):
        v = t.get(f"rng.{key}")
        if v is None:
            raise CheckpointError(f"{ck.path}: missing random state rng.{key}")
        if v.dtype != torch.uint8 or v.shape != (size,):
            raise CheckpointError(f"{ck.path}: random state rng.{key} is {_describe(v)}, expected uint8 ({size},)")
    seed, perm, pos = t.get("rng.sampler_seed"), t.get("rng.sampler_perm"), t.get("rng.sampler_pos")
    if pos is None or (seed is None and perm is None):
        raise CheckpointError(f"{ck.path}: missing the batch sampler's state (rng.sampler_seed, rng.sampler_pos)")
    if seed is not None:
        for key, v in (("seed", seed), ("pos", pos)):
            if v.dtype != torch.int64 or v.numel() != 1 or int(v) < 0:
                shown = f" = {int(v)}" if v.numel() == 1 and v.dtype == torch.int64 else ""
                raise CheckpointError(f"{ck.path}: the batch sampler's {'seed' if key == 'seed' else 'position'} "
                                      f"rng.sampler_{key} must be one int64 >= 0, got {_describe(v)}{shown}")
        return
    if perm.dtype != torch.int64 or perm.dim() != 1 or perm.numel() not in (0, data_size):
        raise CheckpointError(f"{ck.path}: the batch sampler's order rng.sampler_perm is {_describe(perm)}, "
                              f"expected int64 ({data_size},) for the run's {data_size} samples")
    if perm.numel() and not torch.equal(perm.sort().values, torch.arange(data_size)):
        raise CheckpointError(f"{ck.path}: the batch sampler's order rng.sampler_perm is not a permutation of "
                              f"the run's {data_size} samples")
    if pos.dtype != torch.int64 or pos.numel() != 1 or not 0 <= int(pos) <= data_size:
        shown = f" = {int(pos)}" if pos.numel() == 1 and pos.dtype == torch.int64 else ""
        raise CheckpointError(f"{ck.path}: the batch sampler's position rng.sampler_pos must be one int64 in "
                              f"[0, {data_size}], got {_describe(pos)}{shown}")


def augment_state(ck: Checkpoint, names: list[str]) -> dict[str, dict[str, float]]:
    """The stored state of the run's augmentations (``extra["augment"]``: name → {key:
    finite number}, e.g. an adaptive augmentation's p); empty for a checkpoint without
    it. Anything else is refused with :class:`CheckpointError`."""
    stored = ck.meta.get("extra", {}).get("augment", {})
    ok = isinstance(stored, dict) and all(
        isinstance(v, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                                    for x in v.values()) for v in stored.values())
    if not ok:
        raise CheckpointError(f"{ck.path}: corrupt checkpoint metadata (extra: augment must map names to numbers)")
    return {name: dict(stored[name]) for name in names if name in stored}


def _check_networks(ck: Checkpoint) -> None:
    """The networks the config and ``extra`` describe, built on the meta device (nothing
    allocated), must fit in memory and hold exactly the checkpoint's tensors. Skipped
    for a model or enforcer that is not registered (the caller reports it) and for a
    network that cannot be built on the meta device."""
    cfg, extra = ck.config, ck.meta["extra"]
    shape, latent = tuple(extra.get("data_shape") or ()), extra.get("latent_dim")
    name = extra.get("model") or cfg.model or "mlp"
    models, enforcers = get_registry("model"), get_registry("lipschitz")
    if cfg.model is None and name not in models:  # a run without --model trained a built-in default
        raise CheckpointError(f"{ck.path}: corrupt checkpoint metadata (extra: model {_short(name)} is not "
                              "registered, and the run config names no model)")
    if not shape or not latent or name not in models:  # the caller reports the unknown model
        return
    try:
        model = models.get(name)(**cfg.model_options)
        reason = model.supports(shape)
        enforcer = enforcers.get(cfg.lipschitz)(**cfg.lipschitz_options) if cfg.lipschitz in enforcers else None
    except GantkError as exc:
        raise CheckpointError(f"{ck.path}: corrupt checkpoint metadata (run config: {exc})") from None
    if reason:
        raise CheckpointError(f"{ck.path}: model {_short(name)} cannot handle its data shape {shape}: {reason}")
    k = extra.get("num_classes") or 0
    if k and not model.conditional:
        raise CheckpointError(f"{ck.path}: model {_short(name)} has no class-conditional form, but the checkpoint "
                              f"holds a conditional run of {k} classes")
    G = memory.meta_module(lambda: model.make_generator(shape, latent, k))
    D = memory.meta_module(lambda: enforcer.prepare_critic(model.make_critic(shape, k))) if enforcer else None
    copies = 2 if any(k.startswith("generator_ema.") for k in ck.tensors) else 1
    memory.check_fits(copies * memory.tensor_bytes(G) + memory.tensor_bytes(D),
                      f"model {_short(name)} of {ck.path} (its config's model options)", CheckpointError)
    if G is not None:
        check_module_state(ck, "generator", G)
        if copies == 2:
            check_module_state(ck, "generator_ema", G)
    if D is not None:
        check_module_state(ck, "critic", D)


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    d = Path(run_dir) / CKPT_DIR
    out = []
    if d.is_dir():
        for p in d.iterdir():
            m = _STEP_RE.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
    return sorted(out)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    p = Path(path)
    if p.is_dir():
        ckpts = list_checkpoints(p)
        if not ckpts:
            raise CheckpointError(f"no checkpoint in {p} (expected {p / CKPT_DIR}/step-*.safetensors)")
        return ckpts[-1][1]
    if not p.exists():
        raise CheckpointError(f"checkpoint or run not found: {p}")
    return p


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step-{step:07d}.safetensors"


def is_checkpoint_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file whose safetensors header carries gantk's
    checkpoint format (nothing but the header is read)."""
    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            return False
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, p.stat().st_size - 8):
                return False
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and meta.get("format") == FORMAT
