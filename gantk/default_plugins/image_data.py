"""Built-in image data sets: ``digits`` (scikit-learn's bundled 8×8 digits) and
``imagefolder`` (a folder of png / jpg / webp / bmp files, ``--data path/to/folder``).

Both return float tensors (N, C, H, W) in [−1, 1] and never download anything.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..components import Dataset
from ..errors import DataError, GantkNote, GantkWarning, UsageError
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
    protocol's FD stays measured on digits the run never saw. Needs scikit-learn
    (``pip install 'gantk[images]'``); the data ship inside it, so nothing is
    downloaded. Labels (the digit) are set in ``labels``.
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


def _decode(path: Path, resolution: int, channels: int) -> np.ndarray | str:
    """One file → a (resolution, resolution, channels) uint8 array, or the reason it
    could not be read."""
    try:
        # a FIFO or device named like an image would hang the reader: only regular files
        with open_regular_file(path) as fh, Image.open(fh) as im:
            im.draft("RGB" if channels == 3 else "L", (resolution, resolution))  # JPEG: decode smaller
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_mode(im, channels)
            # scale the shorter side to `resolution`, then crop the centre square
            im = ImageOps.fit(im, (resolution, resolution), method=Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    # Malformed files make decoders raise many exception types (OSError, SyntaxError,
    # ValueError, struct.error, DecompressionBombError...); any of them means "skip it".
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return arr.reshape(resolution, resolution, channels)


class ImageFolder(Dataset):
    """Every png / jpg / jpeg / webp / bmp file in a folder and its sub-folders
    (``--data path/to/folder``), decoded once into memory.

    Each image is scaled so that its shorter side is ``resolution`` (Lanczos), then the
    centre square is cropped; ``channels`` 3 gives RGB, 1 grayscale. Transparent pixels
    are composited over white; EXIF rotations are applied. Files that cannot be decoded,
    and anything that is not a regular file (a FIFO, a device), are skipped and counted
    in one warning; a folder without any readable image is an error. Other files (no
    image suffix, hidden files) are ignored.
    """

    name = "imagefolder"
    protocol = "image"
    description = "images in a folder, recursive (--data path/to/folder); resolution 32, RGB"
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
        return Path(path).is_dir()

    def load(self, seed: int = 0) -> torch.Tensor:
        root = Path(self.opts["path"])
        res, ch = self.opts["resolution"], self.opts["channels"]
        if not root.is_dir():
            raise DataError(f"image folder not found: {root}")
        files = _image_files(root)
        kinds = "/".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root}: holds no image file ({kinds}), also not in sub-folders")
        images = np.empty((len(files), res, res, ch), dtype=np.uint8)
        bad: list[tuple[Path, str]] = []
        n = 0
        # Pillow releases the GIL while decoding and resizing, so threads help.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for path, out in zip(files, pool.map(lambda p: _decode(p, res, ch), files)):
                if isinstance(out, str):
                    bad.append((path, out))
                else:
                    images[n] = out
                    n += 1
        if n == 0:
            raise DataError(f"{root}: none of its {len(files)} image files could be read "
                            f"(e.g. {bad[0][0].name}: {bad[0][1]})")
        if bad:
            warnings.warn(f"skipped {len(bad)} of {len(files)} image files in {root} that could not be "
                          f"read (first: {bad[0][0]}: {bad[0][1]})", GantkWarning, stacklevel=2)
        x = torch.from_numpy(images[:n]).permute(0, 3, 1, 2).contiguous().float().div_(127.5).sub_(1.0)
        mib = x.numel() * x.element_size() / 2**20
        _note(f"decoded {n} images from {root} into memory at {res}x{res}, "
              f"{'RGB' if ch == 3 else 'grayscale'}: {mib:.1f} MiB as float32")
        return x


@hookimpl
def register_datasets(register):
    for cls in (Digits, ImageFolder):
        register(cls)
