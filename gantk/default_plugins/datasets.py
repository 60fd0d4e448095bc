"""Built-in data sets: the WGAN-GP toy sets (8gaussians, 25gaussians, swissroll) and
tensor files (.safetensors / .npy / .npz)."""
from __future__ import annotations

import json
import math
import os
import stat
import warnings
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.lib.format as npy_format
import torch
from safetensors import SafetensorError, safe_open

from .. import memory, presets
from ..components import Dataset
from ..errors import DataError, GantkNote
from ..markers import hookimpl


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
        # float64 points, their noise and indices, then the float32 copy: about 40 bytes a point
        memory.check_fits(40 * n, f"{self.name} with n = {n}", DataError)
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
#: the array or tensor beside the samples that holds their class indices
LABELS_KEY = "labels"
#: classes a labelled data set may have at most
MAX_CLASSES = 100_000
#: the array or tensor a file with several is read from, when option ``key`` is not given
PREFERRED_KEYS = ("samples", "images", "x")
#: deflate never expands data more than about 1032-fold, so a zip member claiming a larger
#: uncompressed size than this allows is lying about it
_DEFLATE_MAX_RATIO = 1032
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file (after symlinks), else
    raise OSError saying what it is.

    The file is opened without blocking and checked on the open descriptor, so a FIFO or
    a device named like a data file is refused at once instead of hanging the reader,
    and nothing can swap the file between the check and the read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
            raise OSError(f"not a regular file but {kind}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _pick_key(names: list[str], key: str, where: str, what: str) -> str:
    """The array (``what``) of a file to read: option ``key`` when given; else the first of
    :data:`PREFERRED_KEYS` the file holds (with a note, when it holds others too); else
    its only one. Several others are ambiguous: an error listing them."""
    if not names:
        raise DataError(f"{where}: holds no {what}")
    if key:
        if key not in names:
            raise DataError(f"{where}: no {what} named {key!r} (it has: {', '.join(names)})")
        return key
    if len(names) == 1:
        return names[0]
    for name in PREFERRED_KEYS:
        if name in names:
            others = ", ".join(n for n in names if n != name)
            warnings.warn(f"{where}: reading the {what} {name!r} (it also holds {others}); "
                          f"choose another with -O data.key=NAME", GantkNote, stacklevel=4)
            return name
    raise DataError(f"{where}: holds several {what}s ({', '.join(names)}) and none is named "
                    f"{', '.join(PREFERRED_KEYS)}; choose one with -O data.key=NAME")


def _read_npy(f: BinaryIO, size: int, where: str, holder: str = "the file") -> np.ndarray:
    """An .npy stream of ``size`` bytes (``holder``: what holds them) → its array. The
    header is read first: a claim of more data than ``size`` allows, and an object or
    other unusable dtype, are refused before anything is allocated or read."""
    version = npy_format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise DataError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    # version 3.0 differs from 2.0 only in allowing utf-8 field names (structured dtypes,
    # which are refused below anyway)
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise DataError(f"{where}: cannot read an array of Python objects (dtype {dtype}); gantk never unpickles")
    if dtype.kind not in "fiub":
        raise DataError(f"{where}: dtype {dtype} is not usable as samples")
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > size - f.tell():
        raise DataError(f"{where}: header claims shape {tuple(shape)} of {dtype} ({claimed:,} bytes) "
                        f"but {holder} holds {size:,} bytes")
    f.seek(0)
    return npy_format.read_array(f, allow_pickle=False)


def _read_npz(f: BinaryIO, key: str, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """One array of an .npz archive (see :func:`_pick_key`; an array named
    :data:`LABELS_KEY` is never the samples) and the labels array when it holds one,
    each header checked against the member's uncompressed size before it is read."""
    with zipfile.ZipFile(f) as z:
        members = {i.filename[: -len(".npy")]: i for i in z.infolist() if i.filename.endswith(".npy")}
        name = _pick_key([n for n in members if n != LABELS_KEY], key, where, "array")

        def read(name: str) -> np.ndarray:
            info = members[name]
            member = f"{where}, array {name!r}"
            if (info.compress_type == zipfile.ZIP_STORED and info.file_size > info.compress_size) or (
                    info.compress_type == zipfile.ZIP_DEFLATED
                    and info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 4096):
                raise DataError(f"{member}: claims {info.file_size:,} bytes uncompressed from "
                                f"{info.compress_size:,} compressed, more than its compression can give")
            with z.open(info) as m:
                return _read_npy(m, info.file_size, member, holder="the member")

        return read(name), (read(LABELS_KEY) if LABELS_KEY in members else None)


def to_labels(arr: np.ndarray | torch.Tensor, n: int, where: str) -> torch.Tensor:
    """A labels array → a 1-D int64 tensor of ``n`` class indices in [0, MAX_CLASSES);
    a float array is taken when every value is a whole number."""
    t = torch.from_numpy(np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("=")))) \
        if isinstance(arr, np.ndarray) else arr
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1 or t.shape[0] != n:
        raise DataError(f"{where}: labels of shape {tuple(t.shape)} do not match the {n} samples "
                        "(one class index per sample)")
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{where}: labels of dtype {t.dtype} are not class indices")
    if t.is_floating_point():
        if not (torch.isfinite(t).all() and (t == t.round()).all()):
            raise DataError(f"{where}: labels must be whole class indices, got fractional or non-finite values")
    t = t.to(torch.int64) if t.is_floating_point() else t.long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= MAX_CLASSES):
        raise DataError(f"{where}: labels must be class indices in [0, {MAX_CLASSES}), got values from "
                        f"{int(t.min())} to {int(t.max())}")
    return t


def _as_samples(arr: np.ndarray | torch.Tensor, where: str) -> torch.Tensor:
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{where}: dtype {arr.dtype} is not usable as samples")
        if not arr.dtype.isnative:  # torch reads native byte order only
            arr = arr.astype(arr.dtype.newbyteorder("="))
        arr = torch.from_numpy(np.ascontiguousarray(arr))
    t = arr
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
        torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DataError(f"{where}: dtype {t.dtype} is not usable as samples")
    if t.dim() < 1 or t.shape[0] < 1:
        raise DataError(f"{where}: needs at least one sample (got shape {tuple(t.shape)})")
    if 0 in t.shape:
        raise DataError(f"{where}: samples of shape {tuple(t.shape[1:])} hold no values (a zero-size dimension)")
    if t.dim() == 1:
        t = t[:, None]
    if t.dtype == torch.uint8:  # kept as pixels: the samplers convert each batch to [-1, 1]
        return t
    t = t.float()
    if not torch.isfinite(t).all():
        raise DataError(f"{where}: contains NaN or infinite values")
    return t


class TensorFile(Dataset):
    """Samples stored in a tensor file: .safetensors, .npy or .npz. Shape (N, ...) of any
    rank, no dimension of size zero; uint8 data stay uint8 (pixels 0..255, a quarter of
    float32's memory; training converts each batch to [−1, 1]). No pickle is ever
    loaded, and only regular files are opened (a FIFO or device is refused).

    A .safetensors or .npz file holding several tensors is read from the one named by
    option ``key``; else from the first of ``samples``, ``images``, ``x`` it holds (with
    a note); else from its only one; several others are an error. An .npy header (and
    each .npz member's) is checked against the file's size before any data is read.

    Images stored channels-last, (N, H, W, C) with C in 1/3/4, are transposed to
    (N, C, H, W) (see :meth:`is_channels_last`).

    Labels: a .safetensors or .npz file may hold, beside the samples, a tensor named
    ``labels`` of N integer class indices (0..K−1); it sets ``labels`` (K is the
    largest index + 1). A .safetensors file may name the classes in its metadata,
    ``class_names`` holding a JSON list of K strings."""

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
        t, labels, names = self._read()
        self.labels = None if labels is None else to_labels(labels, t.shape[0], f"{self.opts['path']}, labels")
        self.class_names = None
        if names is not None and self.labels is not None:
            self.class_names = _class_names(names, int(self.labels.max()) + 1, str(self.opts["path"]))
        if self.is_channels_last(tuple(t.shape)):
            n, h, w, c = t.shape
            warnings.warn(f"{self.opts['path']}: read ({n}, {h}, {w}, {c}) as channels-last images; "
                          f"transposed to (N, C, H, W) = ({n}, {c}, {h}, {w})", GantkNote, stacklevel=2)
            t = t.permute(0, 3, 1, 2).contiguous()
        return t

    def _read(self) -> tuple[torch.Tensor, np.ndarray | torch.Tensor | None, str | None]:
        path = Path(self.opts["path"])
        key = self.opts["key"]
        where = str(path)
        if not path.exists():
            raise DataError(f"data file not found: {path}")
        suffix = path.suffix.lower()
        if suffix not in _TENSOR_SUFFIXES:
            raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(_TENSOR_SUFFIXES)})")
        try:
            f = open_regular_file(path)
        except OSError as exc:
            raise DataError(f"data file cannot be read: {path} ({exc.strerror or exc})") from None
        try:
            with f:
                if suffix == ".npy":
                    return _as_samples(_read_npy(f, os.fstat(f.fileno()).st_size, where), where), None, None
                if suffix == ".npz":
                    x, labels = _read_npz(f, key, where)
                    return _as_samples(x, where), labels, None
            # safetensors opens the file by name; it was a regular file an instant ago, and
            # its reader checks the header's offsets against the file's size
            with safe_open(where, framework="pt") as st:
                names = list(st.keys())
                name = _pick_key([n for n in names if n != LABELS_KEY], key, where, "tensor")
                labels = st.get_tensor(LABELS_KEY) if LABELS_KEY in names else None
                return _as_samples(st.get_tensor(name), where), labels, (st.metadata() or {}).get("class_names")
        except DataError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError, KeyError, SafetensorError,
                MemoryError) as exc:
            raise DataError(f"{path}: cannot read tensor data ({type(exc).__name__}: {exc})") from None


def _class_names(text: str, k: int, where: str) -> tuple[str, ...]:
    """A JSON list of ``k`` distinct class names (short, printable) → a tuple."""
    try:
        names = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        names = None
    if not (isinstance(names, list) and len(names) == k and all(
            isinstance(n, str) and 0 < len(n) <= 200 and n.isprintable() for n in names)
            and len(set(names)) == k):
        raise DataError(f"{where}: metadata class_names must be a JSON list of {k} distinct names "
                        f"(one per class index 0..{k - 1})")
    return tuple(names)


@hookimpl
def register_datasets(register):
    for cls in (EightGaussians, TwentyFiveGaussians, SwissRoll, TensorFile):
        register(cls)
