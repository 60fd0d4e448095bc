"""Turning ``--data NAME_OR_PATH`` into samples, and batching them."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.utils.data

from .cachefile import CacheInfo, read_rows
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


def load_samples(data: str, options: dict[str, Any] | None = None, seed: int = 0, *,
                 keep_uint8: bool = False, cache_dir: str | None = None) -> tuple[Dataset, torch.Tensor]:
    """The data set ``data`` names and its samples: float32 in [−1, 1] for images, or,
    with ``keep_uint8``, uint8 where the set holds uint8 pixels (4× less memory; the
    batch samplers convert each batch with :func:`to_float`). ``cache_dir`` is where a
    set that preprocesses files keeps its cache (None: the user cache)."""
    ds = resolve_dataset(data, options)
    ds.cache_dir = cache_dir
    x = ds.load(seed)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        raise DataError(f"dataset {ds.name!r} returned no usable samples")
    if 0 in x.shape:  # nothing to learn, and no picture can be drawn of it
        raise DataError(f"{data}: samples of shape {tuple(x.shape[1:])} hold no values (a zero-size dimension)")
    labels = getattr(ds, "labels", None)
    if labels is not None and (not isinstance(labels, torch.Tensor) or labels.shape != (x.shape[0],)):
        raise DataError(f"dataset {ds.name!r} returned labels that are not one class index per sample")
    if keep_uint8 and x.dtype == torch.uint8:
        return ds, x  # a memory-mapped cache stays mapped: the caller decides what to hold in memory
    return ds, to_float(x).contiguous()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """Samples as float32: uint8 pixels 0..255 → [−1, 1] (``x / 127.5 − 1``, the
    conversion the image readers use, so both paths give the same numbers); other
    dtypes converted as they are."""
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _seed_of(generator: torch.Generator | int) -> int:
    if isinstance(generator, torch.Generator):  # one draw: the same generator state gives the same order
        return int(torch.randint(0, 2**62, (1,), generator=generator))
    return int(generator)


class BatchSampler:
    """Random batches without replacement within an epoch (an incomplete last batch is
    dropped), reshuffled each epoch.

    The order is a function of a seed and the number of batches drawn: epoch e's
    permutation is drawn from a generator seeded with (seed, e). So the sampler's
    :meth:`state` is two int64 numbers, whatever the size of the data, and a resumed
    run draws exactly the batches it would have drawn. ``generator`` is a
    ``torch.Generator`` (one value is drawn from it as the seed) or an int seed.
    ``labels`` (one int64 class index per sample, or None) travel with their samples:
    :meth:`next_with_labels` returns ``(x, y)``. uint8 data are converted to float32
    in [−1, 1] per batch, on the data's device."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator | int, *,
                 labels: torch.Tensor | None = None):
        if batch_size > data.shape[0]:
            raise DataError(f"--batch-size {batch_size} is larger than the data ({data.shape[0]} samples)")
        if labels is not None and tuple(labels.shape) != (data.shape[0],):
            raise DataError(f"labels of shape {tuple(labels.shape)} do not match the {data.shape[0]} samples")
        self.data = data
        self.labels = None if labels is None else labels.to(data.device)
        self.batch_size = batch_size
        self.n = data.shape[0]
        self.seed = _seed_of(generator)
        self.pos = 0  # batches drawn since the start of the run
        self._epoch: int | None = None
        self._perm: torch.Tensor | None = None

    def indices(self) -> torch.Tensor:
        """The next batch's sample indices (int64, on the CPU); advances the position."""
        per_epoch = self.n // self.batch_size
        epoch, k = divmod(self.pos, per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch)))
            self._epoch = epoch
        self.pos += 1
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.indices().to(self.data.device)
        y = None if self.labels is None else self.labels.index_select(0, idx)
        return to_float(self.data.index_select(0, idx)), y

    def next(self) -> torch.Tensor:
        return self.next_with_labels()[0]

    def state(self) -> dict[str, torch.Tensor]:
        return {"seed": torch.tensor(self.seed, dtype=torch.int64), "pos": torch.tensor(self.pos, dtype=torch.int64)}

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        self.seed, self.pos = int(st["seed"]), int(st["pos"])
        self._epoch = self._perm = None


def is_mapped(x: torch.Tensor) -> bool:
    """Whether ``x`` is a memory-mapped sample cache (:mod:`gantk.cachefile`)."""
    return isinstance(getattr(x, "gantk_cache", None), CacheInfo)


class _CacheRows(torch.utils.data.Dataset):
    """The rows of a sample cache, fetched a batch at a time (``__getitems__``) with
    ``os.pread`` in the DataLoader's workers; each worker opens the file once."""

    def __init__(self, info: CacheInfo):
        self.info = info
        self._fd: int | None = None

    def __len__(self) -> int:
        return self.info.n

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fd is None:
            self._fd = os.open(self.info.path, os.O_RDONLY)
        return torch.from_numpy(read_rows(self.info, indices, self._fd)), torch.as_tensor(indices, dtype=torch.int64)

    def __getstate__(self):  # a worker opens its own descriptor
        return {"info": self.info, "_fd": None}


class _IndexStream:
    """The DataLoader's batch sampler: the batches a :class:`BatchSampler` draws from
    a given state on, endlessly (this rank's slice of each, through ``shard``)."""

    def __init__(self, n: int, batch_size: int, state: dict[str, torch.Tensor], shard):
        self.order = BatchSampler(torch.empty(n, 0), batch_size, 0)
        self.order.load_state(state)
        self.shard = shard

    def __iter__(self):
        while True:
            yield self.shard(self.order.indices()).tolist()


def _as_is(batch):  # __getitems__ already made the batch (a module-level function: workers may pickle it)
    return batch


def loader_workers() -> int:
    """DataLoader workers for streaming: half the CPU cores (the training step needs the
    rest), at least 1, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class StreamingBatchSampler:
    """The batches of :class:`BatchSampler` (same seed, same order, same state) read
    from a memory-mapped sample cache by a torch DataLoader: worker processes fetch
    the rows with ``os.pread`` and prefetch batches ahead, pinned when training on a
    GPU; the uint8 batch is converted to float32 in [−1, 1] on the training device.

    The state is the number of batches the trainer has *taken* (not those prefetched),
    so a checkpoint resumes exactly; :meth:`load_state` restarts the loader there.
    ``shard`` keeps this rank's slice of each global batch (identity in one process)."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator | int, *,
                 labels: torch.Tensor | None = None, device: torch.device | str = "cpu", shard=None,
                 workers: int | None = None, prefetch: int = 4):
        if not is_mapped(data):
            raise DataError("streaming needs a memory-mapped sample cache")
        self.info: CacheInfo = data.gantk_cache
        self._order = BatchSampler(data, batch_size, generator)
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.labels = None if labels is None else labels.to(self.device)  # batches' labels on the device
        self.shard = shard or (lambda i: i)
        self.workers = loader_workers() if workers is None else workers
        self.prefetch = prefetch
        self._it = None

    def _start(self):
        loader = torch.utils.data.DataLoader(
            _CacheRows(self.info), batch_sampler=_IndexStream(self.info.n, self.batch_size, self._order.state(),
                                                              self.shard),
            collate_fn=_as_is, num_workers=self.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=self.prefetch if self.workers else None, persistent_workers=False,
            generator=torch.Generator().manual_seed(0))  # workers draw nothing; the global stream stays untouched
        return iter(loader)

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self._it is None:
            self._it = self._start()
        x, idx = next(self._it)
        self._order.pos += 1  # one more batch taken
        y = None if self.labels is None else self.labels.index_select(0, idx.to(self.labels.device))
        return to_float(x.to(self.device, non_blocking=True)), y

    def next(self) -> torch.Tensor:
        return self.next_with_labels()[0]

    def state(self) -> dict[str, torch.Tensor]:
        return self._order.state()

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        self._order.load_state(st)
        self._it = None  # the prefetched batches were for the old position

    def close(self) -> None:
        """Stop the loader's workers (forked, they share the process's open files, the
        run folder's lock among them)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
