"""Checkpoints: one safetensors file holding generator, critic, optimizer states, the
step and RNG states, with the full run config as JSON in the metadata. No pickle
anywhere: the loader checks the header before reading any tensor."""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, save

from .config import TrainConfig
from .errors import CheckpointError, ConfigError
from .fsutil import atomic_path
from .version import __version__

FORMAT = "gantk-checkpoint-1"
MAX_HEADER = 64 * 1024 * 1024
CKPT_DIR = "checkpoints"
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
             "BOOL": 1}
_STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")


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
) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename). ``generator_ema``,
    the generator's weight average (``--ema``), is stored as ``generator_ema.*``."""
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
    except (UnicodeDecodeError, json.JSONDecodeError):
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
    reason for missing, truncated, corrupt or foreign files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
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
    try:
        config = TrainConfig.from_json(meta["config"])
        step = int(meta["step"])
        parsed = {k: json.loads(meta[k]) for k in ("opt_g", "opt_d", "extra")}
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({exc})") from None
    meta = {**meta, **parsed}
    return Checkpoint(path, config, step, tensors, meta)


def optimizer_state(ckpt: Checkpoint, which: str) -> dict:
    return _optim_from_flat(which, ckpt.tensors, ckpt.meta[which])


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
