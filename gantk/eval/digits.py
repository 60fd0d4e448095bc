"""The bundled digits classifier: a small CNN trained on scikit-learn's 8×8 digits
(training split), cached in the user cache, whose penultimate features the digits
protocol scores (FD, KID, precision/recall/density/coverage)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save
from torch import nn

from ..errors import DataError, GantkWarning, UsageError
from ..fsutil import atomic_path, user_cache_dir

#: Bump when the classifier's architecture, data split or training changes: it keys the
#: cached weights, so old caches are never used with new code.
CLASSIFIER_VERSION = "digits-cnn-1"
CLASSIFIER_EPOCHS = 40
HELDOUT_SHARE = 0.3


class DigitsNet(nn.Module):
    """A small CNN for 8×8 digits in [−1, 1]: two 3×3 convolutions, 2×2 max-pooling,
    a 64-unit hidden layer (the features used for FD, KID and PRDC) and 10 logits."""

    feature_dim = 64

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4 * 4, self.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, 8, 8) → (features (N, 64), logits (N, 10))."""
        f = self.body(x)
        return f, self.head(f)


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits as (N, 1, 8, 8) in [−1, 1] (pixels / 8 − 1, as the
    ``digits`` data set), split once with a fixed seed and stratified by class into
    training (70 %) and held-out (30 %, 540 images): ``(x_train, y_train, x_test, y_test)``."""
    try:  # optional: the "eval" extra
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("the digits protocol needs scikit-learn: pip install 'gantk[eval]'") from None
    d = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=HELDOUT_SHARE,
                                           random_state=0, stratify=d.target)
    x = torch.from_numpy(d.data).float().reshape(-1, 1, 8, 8).div(8.0).sub(1.0)
    y = torch.from_numpy(d.target).long()
    return x[idx_train], y[idx_train], x[idx_test], y[idx_test]


def _train_classifier(epochs: int) -> DigitsNet:
    x, y, _, _ = digits_split()
    threads = torch.get_num_threads()
    # A net this small trains several times faster on one thread (less so on idle
    # machines, much more on busy ones). A private RNG stream: training the classifier
    # inside a run (EvalCallback) must not change the run's random numbers.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            return _fit(x, y, epochs)
    finally:
        torch.set_num_threads(threads)


def _fit(x: torch.Tensor, y: torch.Tensor, epochs: int) -> DigitsNet:
    torch.manual_seed(0)
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    g = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            b = perm[i : i + 64]
            # like the data the GANs see: digits upscaled to 8, 16 or 32 pixels, then
            # area-averaged back to 8 × 8 as generated samples are
            xb = round_trip(x[b], (8, 16, 32)[int(torch.randint(0, 3, (1,), generator=g))])
            # one-pixel random shifts: generated digits are rarely perfectly centred
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
            xb = torch.roll(F.pad(xb, (1, 1, 1, 1), value=-1.0), (dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]
            loss = F.cross_entropy(net(xb)[1], y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def _accuracy(net: DigitsNet) -> float:
    _, _, xt, yt = digits_split()
    return float((net(xt)[1].argmax(1) == yt).float().mean())


_CLASSIFIERS: dict[tuple[str, int], tuple[DigitsNet, float]] = {}


def digits_classifier(epochs: int = CLASSIFIER_EPOCHS, *, cache: str | Path | None = None) -> tuple[DigitsNet, float]:
    """The digits classifier and its held-out accuracy: from memory, else from the cache
    folder (``cache`` or the user cache, :func:`gantk.fsutil.user_cache_dir`), else trained now (about 10 s on a CPU)
    and cached. The file name holds :data:`CLASSIFIER_VERSION` and ``epochs``."""
    if epochs < 1:
        raise UsageError(f"classifier epochs must be >= 1, got {epochs}")
    folder = Path(cache) if cache is not None else user_cache_dir("eval")
    key = (str(folder.resolve()), epochs)
    if key in _CLASSIFIERS:
        return _CLASSIFIERS[key]
    path = folder / f"{CLASSIFIER_VERSION}-e{epochs}.safetensors"
    net = None
    if path.is_file():
        try:
            cand = DigitsNet()
            cand.load_state_dict(load_file(str(path)))
            net = cand.eval()
        except Exception:  # a corrupt or foreign cache file: train afresh and overwrite it
            net = None
    if net is None:
        net = _train_classifier(epochs)
        try:
            data = save({k: v.contiguous() for k, v in net.state_dict().items()},
                        metadata={"version": CLASSIFIER_VERSION, "epochs": str(epochs)})
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except Exception as exc:  # an unwritable cache only costs time next run
            warnings.warn(f"could not cache the digits classifier in {folder}: {exc}", GantkWarning, stacklevel=2)
    result = (net, _accuracy(net))
    _CLASSIFIERS[key] = result
    return result


def round_trip(x: torch.Tensor, size: int) -> torch.Tensor:
    """8 × 8 digits as the ``digits`` data set serves them at ``size`` (bilinear
    upscaling, clamped to [−1, 1]), brought back to 8 × 8 by :func:`to_digit_inputs`: the
    real counterpart of a generated digit of that size. Identity for size 8."""
    if size == 8:
        return x
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return to_digit_inputs(up)


def to_digit_inputs(images: torch.Tensor) -> torch.Tensor:
    """Generated digits (N, 1, S, S), S a multiple of 8 (8, 16 or 32), → (N, 1, 8, 8) in
    [−1, 1] by area averaging: the classifier's input."""
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] or images.shape[2] % 8:
        raise DataError(f"the digits protocol needs grayscale square images of side 8, 16 or 32; "
                        f"got samples of shape {tuple(images.shape[1:])}")
    x = images.float().cpu().clamp(-1, 1)
    s = x.shape[2] // 8
    return F.avg_pool2d(x, s) if s > 1 else x


@torch.no_grad()
def features(net: DigitsNet, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    fs, ls = [], []
    for chunk in x.split(1024):
        f, logits = net(chunk)
        fs.append(f)
        ls.append(logits)
    return torch.cat(fs).double().numpy(), torch.cat(ls).argmax(1).numpy()
