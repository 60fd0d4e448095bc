"""Built-in image data sets: ``digits`` (scikit-learn's bundled 8×8 digits, a float
tensor in [−1, 1]) and ``imagefolder`` (png / jpg / webp / bmp files in a folder or a
zip archive, ``--data path/to/folder``, decoded once into a memory-mapped uint8 cache).
Neither downloads anything.
"""
from __future__ import annotations

import io
import os
import threading
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..cachefile import build_cache, cache_key, open_cache
from ..components import Dataset
from ..errors import DataError, GantkNote, GantkWarning, UsageError
from ..fsutil import path_text, user_cache_dir
from ..markers import hookimpl
from .datasets import open_regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _note(message: str) -> None:
    warnings.warn(message, GantkNote, stacklevel=3)


class Digits(Dataset):
    """scikit-learn's copy of the UCI optical digits: 1,797 grayscale 8×8 images of the
    digits 0–9 with values 0..16, scaled to [−1, 1] → (N, 1, size, size).

    ``size`` 8 keeps the originals; 16 or 32 *upscales* them with bilinear
    interpolation (no padding), which gives smooth strokes and lets the dcgan/resnet
    models use more layers. ``subset`` k > 0 keeps k digits only, for small-data
    experiments: drawn stratified by class, with a fixed seed (the same k digits for
    every run), from the 70 % that the digits protocol does not hold out, so the
    protocol's FD stays measured on digits the run never saw. Labelled: ``labels``
    holds the digit each image shows, ``class_names`` the names "0".."9". Needs
    scikit-learn (``pip install 'gantk[images]'``); the data ship inside it, so nothing
    is downloaded.
    """

    name = "digits"
    protocol = "digits"
    description = "scikit-learn's 1,797 8x8 digits in [-1, 1]; size 8, 16 or 32 (bilinear upscaling)"
    modality = "image"
    latent_dim = 64
    options = {"size": 8, "subset": 0}
    #: the held-out share of the digits protocol's split (gantk/eval/digits.py), which
    #: ``subset`` never draws from
    HELDOUT_SHARE = 0.3

    def __init__(self, **opts):
        super().__init__(**opts)
        if self.opts["size"] not in (8, 16, 32):
            raise UsageError(f"dataset 'digits': size must be 8, 16 or 32, got {self.opts['size']}")
        if not 0 <= self.opts["subset"] <= 1257:
            raise UsageError(f"dataset 'digits': subset must be 0 (all) or 1..1257 digits, got {self.opts['subset']}")

    def load(self, seed: int = 0) -> torch.Tensor:
        try:  # optional: the "images" extra
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError:
            raise DataError("the digits data set needs scikit-learn: pip install 'gantk[images]'") from None
        d = load_digits()
        pixels, target = d.data, d.target  # (1797, 64) float64 in 0..16, the digit
        if self.opts["subset"]:
            idx, _ = train_test_split(np.arange(len(target)), test_size=self.HELDOUT_SHARE, random_state=0,
                                      stratify=target)
            if self.opts["subset"] < len(idx):
                idx, _ = train_test_split(idx, train_size=self.opts["subset"], random_state=0, stratify=target[idx])
            idx = np.sort(idx)
            pixels, target = pixels[idx], target[idx]
        self.labels = torch.from_numpy(np.asarray(target)).long()
        self.class_names = tuple(str(k) for k in range(10))
        x = torch.from_numpy(pixels).float().reshape(-1, 1, 8, 8).div_(8.0).sub_(1.0)
        size = self.opts["size"]
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(-1, 1)
        return x.contiguous()


def _image_files(root: Path) -> list[Path]:
    """Every file under ``root`` (recursively, following no hidden folders) whose
    suffix is an image suffix, in a stable order."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath) / f)
    return found


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The image files of a zip archive (no folders, no hidden files or folders, no
    ``__MACOSX``), sorted by name."""
    found = []
    for info in archive.infolist():
        parts = info.filename.split("/")
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        if parts[-1].lower().endswith(IMAGE_SUFFIXES):
            found.append(info)
    return sorted(found, key=lambda i: i.filename)


def _to_mode(im, channels: int):
    """Any Pillow image → mode ``L`` (channels 1) or ``RGB`` (channels 3).

    Transparency (RGBA, LA, palette with a transparent colour) is composited over
    white; 16-bit grayscale is scaled, not clipped, to 8 bits."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("L" if channels == 1 else "RGB")


def _decode(fh: BinaryIO, resolution: int, channels: int) -> tuple[np.ndarray, str, bool] | str:
    """One open file → a (channels, resolution, resolution) uint8 array, the image's
    own mode and whether it was smaller than the resolution (upscaled); or the reason it
    could not be read."""
    try:
        with Image.open(fh) as im:
            im.draft("RGB" if channels == 3 else "L", (resolution, resolution))  # JPEG: decode smaller
            im.load()
            mode, small = im.mode, min(im.size) < resolution
            im = ImageOps.exif_transpose(im)
            im = _to_mode(im, channels)
            # scale the shorter side to `resolution`, then crop the centre square
            im = ImageOps.fit(im, (resolution, resolution), method=Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    # Malformed files make decoders raise many exception types (OSError, SyntaxError,
    # ValueError, struct.error, DecompressionBombError...); any of them means "skip it".
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return arr.reshape(resolution, resolution, channels).transpose(2, 0, 1), mode, small


class _Source:
    """The image files of a folder or a zip archive: their names (relative, with "/"),
    sizes and modification times (what keys the cache), and a reader of each."""

    def __init__(self, root: Path):
        self.root = root
        self.is_zip = root.is_file()
        self._local = threading.local()
        if self.is_zip:
            try:
                with zipfile.ZipFile(root) as z:
                    members = _zip_members(z)
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"{root}: not a readable zip archive ({exc})") from None
            self.names = [m.filename for m in members]
            self.stamps = [(m.file_size, m.date_time) for m in members]
            st = root.stat()
            self.stamps.append((st.st_size, st.st_mtime_ns))  # the archive itself
        else:
            files = _image_files(root)
            self.names = [f.relative_to(root).as_posix() for f in files]
            self.stamps = []
            for f in files:
                try:
                    st = f.stat()
                    self.stamps.append((st.st_size, st.st_mtime_ns))
                except OSError:
                    self.stamps.append((-1, -1))  # gone or unreadable: it is skipped when decoded

    def read(self, i: int, resolution: int, channels: int):
        try:
            if self.is_zip:
                z = getattr(self._local, "zip", None)
                if z is None:  # one handle per thread: a ZipFile is not thread-safe
                    z = self._local.zip = zipfile.ZipFile(self.root)
                with z.open(self.names[i]) as fh:
                    return _decode(io.BytesIO(fh.read()), resolution, channels)
            # a FIFO or device named like an image would hang the reader: only regular files
            with open_regular_file(self.root / self.names[i]) as fh:
                return _decode(fh, resolution, channels)
        except Exception as exc:  # unreadable member or file: skipped like a corrupt one
            return f"{type(exc).__name__}: {exc}"

    def classes(self) -> tuple[tuple[str, ...], list[int]] | None:
        """ImageFolder's convention: when every image lies in a sub-folder of the root
        (none directly in it), the top-level sub-folders are the classes, in sorted
        order; None otherwise."""
        tops = [n.split("/", 1)[0] if "/" in n else None for n in self.names]
        if not tops or None in tops:
            return None
        names = tuple(sorted(set(tops)))
        index = {c: k for k, c in enumerate(names)}
        return names, [index[t] for t in tops]


def _progress(total: int, what: str):
    """A progress bar on stderr while a cache builds (only on a terminal)."""
    console = Console(stderr=True)
    return Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)


class ImageFolder(Dataset):
    """Every png / jpg / jpeg / webp / bmp file in a folder and its sub-folders, or in a
    zip archive (StyleGAN's dataset convention): ``--data path/to/folder`` or
    ``--data images.zip``.

    Each image is scaled so that its shorter side is ``resolution`` (Lanczos), then the
    centre square is cropped; ``channels`` 3 gives RGB, 1 grayscale. Transparent pixels
    are composited over white; EXIF rotations are applied; other modes are converted
    (said in a note, as are images smaller than the resolution, which are upscaled).
    Files that cannot be decoded, and anything that is not a regular file (a FIFO, a
    device), are skipped and counted in one warning; a source without any readable
    image is an error. Other files (no image suffix, hidden files) are ignored.

    The images are decoded once into a cache (:mod:`gantk.cachefile`): uint8 rows in a
    memory-mapped file under ``cache_dir`` (``--cache-dir``; default the user cache),
    keyed by the source's path, its files' names, sizes and modification times, the
    resolution and channels. A changed source gets a new cache; an unchanged one reuses
    it. ``load`` returns the (N, C, H, W) uint8 tensor backed by that file (nothing is
    read until used): the trainer holds it in memory or streams it (``--data-memory``).

    When every image lies in a sub-folder of the root, the top-level sub-folders are
    classes (torchvision's ImageFolder convention): ``labels`` and ``class_names``.
    """

    name = "imagefolder"
    protocol = "image"
    description = "images in a folder (recursive) or a zip archive, cached as uint8; resolution 32, RGB"
    modality = "image"
    options = {"path": "", "resolution": 32, "channels": 3}

    def __init__(self, **opts):
        super().__init__(**opts)
        if self.opts["channels"] not in (1, 3):
            raise UsageError(f"dataset 'imagefolder': channels must be 1 or 3, got {self.opts['channels']}")
        if not 4 <= self.opts["resolution"] <= 4096:
            raise UsageError(
                f"dataset 'imagefolder': resolution must be 4..4096 pixels, got {self.opts['resolution']}")

    @classmethod
    def can_open(cls, path):
        p = Path(path)
        return p.is_dir() or (p.is_file() and p.suffix.lower() == ".zip")

    def load(self, seed: int = 0) -> torch.Tensor:
        root = Path(self.opts["path"])
        res, ch = self.opts["resolution"], self.opts["channels"]
        if not (root.is_dir() or root.is_file()):
            raise DataError(f"image folder not found: {root}")
        source = _Source(root)
        kinds = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        if not source.names:
            raise DataError(f"{root}: holds no image file ({kinds}), also not in sub-folders")
        key = cache_key({"source": path_text(root.resolve()), "names": source.names, "stamps": source.stamps,
                         "resolution": res, "channels": ch})
        folder = Path(self.cache_dir or user_cache_dir("datasets")) / f"{root.name[:40]}-{res}px-{ch}ch-{key}"
        opened = open_cache(folder)
        built = opened is None
        if built:
            build_cache(folder, len(source.names), (ch, res, res), lambda rows: self._fill(source, rows))
            opened = open_cache(folder)
            if opened is None:
                raise DataError(f"{folder}: the image cache just built cannot be read back")
        x, meta = opened
        self._report(root, folder, x, meta, built)
        if meta.get("labels") is not None:
            self.labels = torch.tensor(meta["labels"], dtype=torch.int64)
            self.class_names = tuple(meta["class_names"])
        return x

    def _fill(self, source: _Source, rows) -> tuple[int, dict]:
        """Decode every image of ``source`` into ``rows``; returns the count and the
        metadata (labels, what was skipped, converted or upscaled)."""
        res, ch = self.opts["resolution"], self.opts["channels"]
        total = len(source.names)
        classes = source.classes()
        labels: list[int] = []
        bad: list[tuple[str, str]] = []
        modes: dict[str, int] = {}
        small = n = 0
        t0 = time.perf_counter()
        # Pillow releases the GIL while decoding and resizing, so threads help.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
                _progress(total, f"caching {source.root.name}") as bar:
            task = bar.add_task("decode", total=total, rate="")
            for i, out in enumerate(pool.map(lambda k: source.read(k, res, ch), range(total))):
                if isinstance(out, str):
                    bad.append((source.names[i], out))
                else:
                    rows[n], mode, upscaled = out
                    modes[mode] = modes.get(mode, 0) + 1
                    small += upscaled
                    if classes is not None:
                        labels.append(classes[1][i])
                    n += 1
                if i % 256 == 0 or i == total - 1:
                    bar.update(task, completed=i + 1, rate=f"{(i + 1) / max(time.perf_counter() - t0, 1e-9):.0f} images/s")
        if n == 0:
            raise DataError(f"{source.root}: none of its {total} image files could be read "
                            f"(e.g. {bad[0][0]}: {bad[0][1]})")
        meta = {"source": path_text(source.root), "files": total, "skipped": len(bad),
                "first_skipped": list(bad[0]) if bad else None, "modes": modes, "upscaled": small,
                "labels": labels if classes is not None else None,
                "class_names": list(classes[0]) if classes is not None else None,
                "build_seconds": round(time.perf_counter() - t0, 3)}
        return n, meta

    def _report(self, root: Path, folder: Path, x: torch.Tensor, meta: dict, built: bool) -> None:
        res, ch = self.opts["resolution"], self.opts["channels"]
        n, files = x.shape[0], meta.get("files", x.shape[0])
        if meta.get("skipped"):
            first = meta.get("first_skipped") or ["?", "?"]
            warnings.warn(f"skipped {meta['skipped']} of {files} image files in {root} that could not be "
                          f"read (first: {root / first[0]}: {first[1]})", GantkWarning, stacklevel=3)
        want = "RGB" if ch == 3 else "L"
        other = {m: k for m, k in (meta.get("modes") or {}).items() if m != want}
        if other:
            shown = ", ".join(f"{k} {m}" for m, k in sorted(other.items()))
            _note(f"converted {sum(other.values())} images of {root} to {want} ({shown})")
        if meta.get("upscaled"):
            _note(f"{meta['upscaled']} images of {root} are smaller than {res}x{res} and were upscaled")
        mib = x.numel() / 2**20
        classes = f", {len(meta['class_names'])} classes" if meta.get("class_names") else ""
        what = "decoded" if built else "read the cache of"
        _note(f"{what} {n} images from {root} at {res}x{res}, {'RGB' if ch == 3 else 'grayscale'}{classes}: "
              f"{mib:.1f} MiB as uint8 ({folder})")


@hookimpl
def register_datasets(register):
    for cls in (Digits, ImageFolder):
        register(cls)
