"""Built-in data sets: the WGAN-GP toy sets (8gaussians, 25gaussians, swissroll) and
tensor files (.safetensors / .npy / .npz)."""
from __future__ import annotations

import math
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from .. import presets
from ..components import Dataset
from ..errors import DataError, GantkNote
from ..hookimpl import hookimpl


#: the real-vs-real W1 floors shipped for the toy sets (benchmarks/quality/w1_floors.py);
#: each class names it in its own body, so a subclass drawing other samples never gets it
W1_FLOORS = str(Path(__file__).with_name("w1_floors.json"))


class _Toy(Dataset):
    modality = "points"
    latent_dim = 2
    options = {"n": 100_000}
    # The WGAN-GP authors' toy code's λ = 0.1 and β = (0.5, 0.9) with gantk's measured
    # budget, schedule and networks (gantk/presets.py; reasons in docs/toy-defaults.md).
    # Budget, schedule and networks apply to every method; the optimizer settings only
    # to WGAN-GP, the lazy penalty only to its gp and lp enforcers.
    recommended = presets.TOY_MIXTURES_RECOMMENDED
    tuned = presets.TOY_MIXTURES_TUNED
    protocol = "toy"
    #: mode centres (K, 2) and per-axis σ after the final scaling, or None (no modes)
    modes: tuple[np.ndarray, float] | None = None

    def load(self, seed: int = 0) -> torch.Tensor:
        n = self.opts["n"]
        if n < 1:
            raise DataError(f"{self.name}: n must be >= 1, got {n}")
        g = torch.Generator().manual_seed(seed)
        return self.generate(n, g)

    def generate(self, n: int, g: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class EightGaussians(_Toy):
    """8 Gaussians on a circle of radius 2 (axes and diagonals), σ = 0.02, then / 1.414
    (as in the WGAN-GP toy code)."""

    name = "8gaussians"
    description = "8 Gaussian modes on a ring (WGAN-GP toy set)"

    _R = 1.0 / math.sqrt(2)
    _CENTRES = 2.0 * np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [_R, _R], [_R, -_R], [-_R, _R], [-_R, -_R]])
    _SIGMA, _SCALE = 0.02, 1.414
    modes = (_CENTRES / _SCALE, _SIGMA / _SCALE)
    w1_floors = W1_FLOORS

    def generate(self, n, g):
        centres = torch.from_numpy(self._CENTRES)
        idx = torch.randint(0, 8, (n,), generator=g)
        pts = torch.randn(n, 2, generator=g, dtype=torch.float64) * self._SIGMA + centres[idx]
        return (pts / self._SCALE).float()


class TwentyFiveGaussians(_Toy):
    """25 Gaussians at (2i, 2j), i, j ∈ {−2..2}, σ = 0.05, then / 2.828."""

    name = "25gaussians"
    description = "25 Gaussian modes on a 5x5 grid (WGAN-GP toy set)"

    _GRID = np.arange(-2, 3, dtype=np.float64) * 2
    _CENTRES = np.stack(np.meshgrid(_GRID, _GRID, indexing="ij"), -1).reshape(-1, 2)
    _SIGMA, _SCALE = 0.05, 2.828
    modes = (_CENTRES / _SCALE, _SIGMA / _SCALE)
    w1_floors = W1_FLOORS

    def generate(self, n, g):
        centres = torch.from_numpy(self._CENTRES)
        idx = torch.randint(0, 25, (n,), generator=g)
        pts = torch.randn(n, 2, generator=g, dtype=torch.float64) * self._SIGMA + centres[idx]
        return (pts / self._SCALE).float()


class SwissRoll(_Toy):
    """scikit-learn's swiss roll (noise 0.25), columns 0 and 2, / 7.5 — generated with
    the same formula: t = 1.5π(1 + 2u), (t cos t, t sin t) plus Gaussian noise."""

    name = "swissroll"
    description = "2-D swiss roll (WGAN-GP toy set)"
    # no modes to sharpen: the paper's 3 × 512 networks and every-step penalty
    recommended = presets.SWISSROLL_RECOMMENDED
    tuned = presets.SWISSROLL_TUNED
    w1_floors = W1_FLOORS

    def generate(self, n, g):
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
        pts = pts + 0.25 * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return (pts / 7.5).float()


_TENSOR_SUFFIXES = (".safetensors", ".npy", ".npz")

def _to_float(arr: np.ndarray | torch.Tensor, where: str) -> torch.Tensor:
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{where}: dtype {arr.dtype} is not usable as samples")
        arr = torch.from_numpy(np.ascontiguousarray(arr))
    t = arr
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{where}: dtype {t.dtype} is not usable as samples")
    if t.dim() < 1 or t.shape[0] < 1:
        raise DataError(f"{where}: needs at least one sample (got shape {tuple(t.shape)})")
    if t.dim() == 1:
        t = t[:, None]
    if t.dtype == torch.uint8:
        return t.float().div_(127.5).sub_(1.0)
    t = t.float()
    if not torch.isfinite(t).all():
        raise DataError(f"{where}: contains NaN or infinite values")
    return t


class TensorFile(Dataset):
    """Samples stored in a tensor file: .safetensors (option ``key``, default: the only
    or first tensor), .npy, or .npz (option ``key``). Shape (N, ...) of any rank;
    uint8 data is scaled to [−1, 1]. No pickle is ever loaded.

    Images stored channels-last, (N, H, W, C) with C in 1/3/4, are transposed to
    (N, C, H, W) (see :meth:`is_channels_last`)."""

    name = "tensorfile"
    description = "samples from a .safetensors / .npy / .npz file (--data path/to/file)"
    options = {"path": "", "key": ""}

    @classmethod
    def can_open(cls, path):
        p = Path(path)
        return p.suffix.lower() in _TENSOR_SUFFIXES and not p.is_dir()

    @staticmethod
    def is_channels_last(shape: tuple[int, ...]) -> bool:
        """True for (N, H, W, C) image batches: C in 1/3/4, H and W at least 4 and within
        a factor 4 of each other — unless the shape already reads as (N, C, H, W)
        (C in 1..4, H and W at least 4), which wins when both readings fit."""
        if len(shape) != 4:
            return False
        _, a, b, c = shape
        if a in (1, 2, 3, 4) and b >= 4 and c >= 4:
            return False
        return c in (1, 3, 4) and min(a, b) >= 4 and max(a, b) <= 4 * min(a, b)

    def load(self, seed: int = 0) -> torch.Tensor:
        t = self._read()
        if self.is_channels_last(tuple(t.shape)):
            n, h, w, c = t.shape
            warnings.warn(f"{self.opts['path']}: read ({n}, {h}, {w}, {c}) as channels-last images; "
                          f"transposed to (N, C, H, W) = ({n}, {c}, {h}, {w})", GantkNote, stacklevel=2)
            t = t.permute(0, 3, 1, 2).contiguous()
        return t

    def _read(self) -> torch.Tensor:
        path = Path(self.opts["path"])
        key = self.opts["key"]
        if not path.exists():
            raise DataError(f"data file not found: {path}")
        if not os.access(path, os.R_OK) or path.is_dir():
            raise DataError(f"data file cannot be read: {path}")
        suffix = path.suffix.lower()
        try:
            if suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    keys = list(f.keys())
                    if not keys:
                        raise DataError(f"{path}: holds no tensor")
                    if key and key not in keys:
                        raise DataError(f"{path}: no tensor named {key!r} (it has: {', '.join(keys)})")
                    return _to_float(f.get_tensor(key or keys[0]), str(path))
            if suffix == ".npy":
                return _to_float(np.load(path, allow_pickle=False), str(path))
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    names = list(z.files)
                    if not names:
                        raise DataError(f"{path}: holds no array")
                    if key and key not in names:
                        raise DataError(f"{path}: no array named {key!r} (it has: {', '.join(names)})")
                    return _to_float(z[key or names[0]], str(path))
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError, KeyError, SafetensorError) as exc:
            raise DataError(f"{path}: cannot read tensor data ({type(exc).__name__}: {exc})") from None
        raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(_TENSOR_SUFFIXES)})")


@hookimpl
def register_datasets(register):
    for cls in (EightGaussians, TwentyFiveGaussians, SwissRoll, TensorFile):
        register(cls)
