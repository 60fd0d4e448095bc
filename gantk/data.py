"""Turning ``--data NAME_OR_PATH`` into samples, and batching them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .components import Dataset
from .errors import DataError, UnknownComponentError
from .plugins import get_registry


def modality_of(shape: tuple[int, ...]) -> str:
    """``points`` for 2-D points, ``image`` for (C, H, W) with C in 1..4, else ``tensor``."""
    if shape == (2,):
        return "points"
    if len(shape) == 3 and shape[0] in (1, 2, 3, 4) and shape[1] >= 4 and shape[2] >= 4:
        return "image"
    return "tensor"


def resolve_dataset(data: str, options: dict[str, Any] | None = None) -> Dataset:
    """A registered dataset name, or a path that some registered dataset can open."""
    reg = get_registry("dataset")
    options = dict(options or {})
    if data in reg:
        return reg.get(data)(**options)
    p = Path(data)
    looks_like_path = p.exists() or any(s in data for s in ("/", "\\", ".")) 
    if looks_like_path:
        if not p.exists():
            raise DataError(f"data not found: {data}")
        for entry in reg:
            if entry.obj.can_open(p):
                options.setdefault("path", str(p))
                return entry.obj(**options)
        raise DataError(f"no dataset can read {data} (tensor files: .safetensors, .npy, .npz)")
    raise UnknownComponentError("dataset", data, reg.names(), "or give a path to a tensor file or folder")


def load_samples(data: str, options: dict[str, Any] | None = None, seed: int = 0) -> tuple[Dataset, torch.Tensor]:
    ds = resolve_dataset(data, options)
    x = ds.load(seed)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise DataError(f"dataset {ds.name!r} returned no usable samples")
    if 0 in x.shape:  # nothing to learn, and no picture can be drawn of it
        raise DataError(f"{data}: samples of shape {tuple(x.shape[1:])} hold no values (a zero-size dimension)")
    return ds, x.float().contiguous()


class BatchSampler:
    """Random batches without replacement within an epoch, reshuffled each epoch with
    its own generator (so runs are reproducible and resumable). ``labels`` (one class
    index per sample) travel with their samples: :meth:`next_with_labels`."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator,
                 labels: torch.Tensor | None = None):
        if batch_size > data.shape[0]:
            raise DataError(f"--batch-size {batch_size} is larger than the data ({data.shape[0]} samples)")
        if labels is not None and tuple(labels.shape) != (data.shape[0],):
            raise DataError(f"labels of shape {tuple(labels.shape)} do not match the {data.shape[0]} samples")
        self.data = data
        self.labels = None if labels is None else labels.to(data.device)
        self.batch_size = batch_size
        self.g = generator
        self._perm: torch.Tensor | None = None
        self._pos = 0

    def next(self) -> torch.Tensor:
        return self.data.index_select(0, self.next_indices())

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch and its labels (None for unlabelled data)."""
        idx = self.next_indices()
        y = None if self.labels is None else self.labels.index_select(0, idx)
        return self.data.index_select(0, idx), y

    def next_indices(self) -> torch.Tensor:
        """The indices of the next batch (the same draws :meth:`next` makes)."""
        n = self.data.shape[0]
        if self._perm is None or self._pos + self.batch_size > n:
            self._perm = torch.randperm(n, generator=self.g).to(self.data.device)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def state(self) -> dict[str, torch.Tensor]:
        perm = self._perm if self._perm is not None else torch.empty(0, dtype=torch.long)
        return {"perm": perm.cpu(), "pos": torch.tensor(self._pos)}

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        perm = st.get("perm")
        self._perm = perm.to(self.data.device) if perm is not None and perm.numel() else None
        self._pos = int(st.get("pos", torch.tensor(0)))
