"""Training on several processes with ``torch.distributed`` (started by ``torchrun``).

``torchrun --nproc_per_node N -m gantk train ...`` starts N copies of ``gantk train``;
each finds ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in its environment, and
:func:`init` joins the process group (NCCL for CUDA tensors plus Gloo for small
control messages on CPU tensors, or Gloo alone on CPU). The trainer then

* gives every rank its own slice of each global batch (``--batch-size`` is the global
  batch and must be divisible by the number of processes): all ranks draw the *global*
  batch indices and the global noise with the shared seed and keep their slice
  (:class:`ShardedBatchSampler`, :func:`shard`), so a run on N processes sees exactly
  the samples and latents a single process sees;
* averages the gradients of both networks across ranks after every backward
  (:func:`average_gradients`), so every rank takes the same optimizer step on the same
  weights — the parameters stay identical everywhere without being re-sent;
* lets rank 0 alone write the run folder, checkpoints, metrics and pictures.

Why explicit averaging and not DistributedDataParallel
------------------------------------------------------
Neither network is wrapped in ``DistributedDataParallel``. The critic step needs
``torch.autograd.grad(..., create_graph=True)`` at x̂ (the gradient penalty), a forward
of the critic three times per backward (real, fake, x̂) and, with ``penalty_every > 1``
or with spectral norm's extra forwards, a graph that changes from step to step. DDP
documents that it does not support ``autograd.grad``; its bucketed all-reduce hooks
fire once per parameter per backward and need ``find_unused_parameters`` or
``static_graph`` to cope with several forwards and parameters that get no gradient — a
parameter without gradient on some rank is silently not averaged. Averaging explicitly
after ``backward`` has none of these traps: it runs one all-reduce per network per
step over the flattened gradients, treats a missing gradient as zero when another rank
has one (and leaves it missing when no rank has one, as a single process would), and
is correct for any loss, enforcer or schedule a plugin brings. What it gives up is
DDP's overlap of communication with the backward pass: the all-reduce starts after the
backward ends. For the networks gantk trains this costs a few percent of a step on one
node (unmeasured here); the generator uses the same scheme for symmetry.

Randomness
----------
Data order and noise come from generators seeded alike on every rank; each rank keeps
its rows of the global draw. The interpolation ε of the gradient penalty is drawn inside
the enforcer (``penalty(..., generator=g)`` draws ``B_local`` values), so the trainer
hands it a generator re-seeded per critic step (:func:`derive_seed`) and advanced past
the ``rank · B_local`` values that belong to lower ranks (:func:`rank_stream`). On CPU,
``torch.rand`` draws serially, so rank r's ε is exactly its slice of the single-process
draw (the tests check the parameters of a 2-process run against one process). CUDA's
Philox generator assigns values by thread, not by position, so there each rank draws
a distinct, equally valid ε: the same algorithm, not the same numbers as one GPU.

Spectral norm's power-iteration vectors (u, v) are updated from the weights alone, and
every rank runs the same forwards on the same weights, so they stay identical; weight
clipping is deterministic. BatchNorm statistics are per-rank batch statistics (as with
DDP without SyncBatchNorm); their running buffers are re-broadcast from rank 0 every
step (:func:`broadcast_buffers`), as DDP's ``broadcast_buffers`` does.
"""
from __future__ import annotations

import atexit
import gc
import hashlib
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

import torch.distributed as dist

from ..data import BatchSampler, to_float
from ..errors import DistributedError, UsageError
from ..ops import _ext, force_ref

__all__ = [
    "Context",
    "SINGLE",
    "env_world_size",
    "init",
    "shutdown",
    "is_main",
    "get_rank",
    "get_world_size",
    "check_batch_size",
    "shard",
    "ShardedBatchSampler",
    "derive_seed",
    "rank_stream",
    "average_gradients",
    "broadcast_module",
    "broadcast_buffers",
    "broadcast_text",
    "all_reduce_mean_",
    "max_over_ranks",
    "barrier",
    "prepare_extension",
]


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes, its rank on this
    node and (when distributed) the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: the context of an ordinary single-process run
SINGLE = Context()

_owns_group = False
_control_group = None  # a Gloo group for CPU tensors when the default group is NCCL-only


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset, as outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else env_world_size()


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and prints."""
    return get_rank() == 0


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device.startswith("cuda:"):
        raise UsageError(f"--device {device}: under torchrun pass --device cuda (or auto); "
                         "each process takes the GPU cuda:LOCAL_RANK")
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if not want_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu)")
    n = torch.cuda.device_count()
    if local_rank >= n:
        raise UsageError(f"LOCAL_RANK {local_rank} but only {n} GPU(s) are visible; start at most {n} "
                         "processes per node (--nproc_per_node)")
    return torch.device("cuda", local_rank)


def init(device: str = "auto") -> Context:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else
    return :data:`SINGLE`. ``device`` is the run's ``--device``: ``cuda``/``auto`` with
    a GPU gives ``cuda:LOCAL_RANK`` and the NCCL backend, ``cpu`` the Gloo backend.
    Idempotent: a group that already exists (ours or the caller's) is reused."""
    already = dist.is_available() and dist.is_initialized()
    if env_world_size() <= 1 and not already:
        return SINGLE
    if not dist.is_available():
        raise UsageError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    global _owns_group, _control_group
    if not already:
        # CUDA tensors (gradients, metrics) go through NCCL, CPU tensors (stop flags,
        # the run folder's name) through Gloo, on one group.
        backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            where = f"MASTER_ADDR={os.environ.get('MASTER_ADDR')} MASTER_PORT={os.environ.get('MASTER_PORT')}"
            raise DistributedError(f"could not join the process group ({where}): "
                                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        _owns_group = True
        atexit.register(shutdown)
    if _control_group is None and "gloo" not in str(dist.get_backend()):
        _control_group = dist.new_group(backend="gloo")
    return Context(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def shutdown() -> None:
    """Leave the process group if :func:`init` created it."""
    global _owns_group, _control_group
    if _owns_group and dist.is_initialized():
        # all ranks leave together: a rank tearing down its gloo context while a peer is
        # still exchanging with it can abort the process ("terminate called without an
        # active exception", seen in the 2-process tests under load)
        try:
            dist.barrier()
        except Exception:  # a peer already died: leave anyway, torchrun reports it
            pass
        dist.destroy_process_group()
        # free the group's C++ side (Gloo's worker threads and sockets) now, while the
        # interpreter is whole, rather than whenever the last reference dies at exit
        gc.collect()
    _owns_group = False
    _control_group = None


def check_batch_size(batch_size: int, world_size: int) -> None:
    """``--batch-size`` is the global batch; each of the processes takes an equal share."""
    if world_size > 1 and batch_size % world_size:
        lo = max(world_size, batch_size - batch_size % world_size)
        raise UsageError(f"--batch-size {batch_size} is the global batch and must be divisible by the "
                         f"{world_size} processes (WORLD_SIZE); try {lo} or {lo + world_size}")


def shard(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's rows of a global batch (rank r of W keeps rows r·B/W … (r+1)·B/W)."""
    if not ctx.enabled:
        return t
    n = t.shape[0] // ctx.world_size
    return t[ctx.rank * n : (ctx.rank + 1) * n]


class ShardedBatchSampler:
    """:class:`gantk.data.BatchSampler`'s global batches, of which this rank keeps its
    slice (labels sliced alike). The epoch order and the position are those of the
    global sampler (it runs on indices), so its :meth:`state` (seed and position) is the
    one a single process saves and restores."""

    def __init__(self, data: torch.Tensor, batch_size: int, generator: torch.Generator | int, ctx: Context, *,
                 labels: torch.Tensor | None = None):
        self.data = data
        self.labels = None if labels is None else labels.to(data.device)
        self.ctx = ctx
        self.batch_size = batch_size
        self._index = BatchSampler(data, batch_size, generator)

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = shard(self._index.indices(), self.ctx).to(self.data.device)
        y = None if self.labels is None else self.labels.index_select(0, idx)
        return to_float(self.data.index_select(0, idx)), y

    def next(self) -> torch.Tensor:
        return self.next_with_labels()[0]

    def state(self) -> dict[str, torch.Tensor]:
        return self._index.state()

    def load_state(self, st: dict[str, torch.Tensor]) -> None:
        self._index.load_state(st)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (e.g. the run seed, a stream name, a step index)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def rank_stream(g: torch.Generator, seed: int, ctx: Context, n_local: int,
                dtype: torch.dtype = torch.float32) -> torch.Generator:
    """Seed ``g`` with ``seed`` and skip the ``rank · n_local`` uniform draws of the
    ranks before this one, so that its next ``torch.rand(n_local)`` is this rank's
    slice of ``torch.rand(n_local · world_size)`` (exact on CPU, where uniform values
    are drawn one after another; a distinct stream per rank on CUDA)."""
    g.manual_seed(seed)
    if ctx.enabled and ctx.rank:
        torch.rand(ctx.rank * n_local, generator=g, device=g.device, dtype=dtype)
    return g


def average_gradients(params: Iterable[nn.Parameter], ctx: Context) -> None:
    """Replace each gradient by its mean over ranks (one all-reduce per device/dtype).

    A parameter without gradient on this rank counts as zero when some other rank has
    one (it then gets the mean); when no rank has one, it stays without gradient, so
    the optimizer skips it as it would in a single process. Dense gradients only.
    """
    if not ctx.enabled:
        return
    groups: dict[tuple[torch.device, torch.dtype], list[nn.Parameter]] = {}
    for p in params:
        if p.requires_grad:
            groups.setdefault((p.device, p.dtype), []).append(p)
    for ps in groups.values():
        have = [p.grad is not None for p in ps]
        parts = [p.grad.reshape(-1) if h else p.new_zeros(p.numel()) for p, h in zip(ps, have)]
        parts.append(torch.tensor(have, dtype=ps[0].dtype).to(ps[0].device))
        flat = torch.cat(parts)
        dist.all_reduce(flat)
        flat.div_(ctx.world_size)
        any_has = None
        if not all(have):  # only then does this rank need to know who had a gradient (a sync)
            any_has = (flat[-len(ps):] > 0).tolist()
        offset = 0
        for i, p in enumerate(ps):
            view = flat[offset : offset + p.numel()].view(p.shape)
            offset += p.numel()
            if have[i]:
                p.grad.copy_(view)
            elif any_has[i]:
                p.grad = view.clone()


@torch.no_grad()
def broadcast_module(module: nn.Module, ctx: Context, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank."""
    if not ctx.enabled:
        return
    for t in itertools.chain(module.parameters(), module.buffers()):
        dist.broadcast(t.data, src)


@torch.no_grad()
def broadcast_buffers(module: nn.Module, ctx: Context, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank."""
    if not ctx.enabled:
        return
    for b in module.buffers():
        dist.broadcast(b, src)


def broadcast_text(text: str | None, ctx: Context, src: int = 0) -> str | None:
    """Rank ``src``'s string on every rank (e.g. the run folder rank 0 created)."""
    if not ctx.enabled:
        return text
    data = (text or "").encode() if ctx.rank == src else b""
    n = torch.tensor([len(data)], dtype=torch.int64)
    dist.broadcast(n, src, group=_control_group)
    buf = torch.tensor(list(data), dtype=torch.uint8) if ctx.rank == src else torch.empty(int(n), dtype=torch.uint8)
    if int(n):
        dist.broadcast(buf, src, group=_control_group)
    return bytes(buf.tolist()).decode()


def all_reduce_mean_(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    """In place: the mean of ``t`` over ranks (equal shards: the global mean)."""
    if ctx.enabled:
        dist.all_reduce(t)
        t.div_(ctx.world_size)
    return t


def max_over_ranks(value: int, ctx: Context) -> int:
    """The largest of every rank's ``value`` (on CPU, through Gloo: no GPU sync)."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group)
    return int(t)


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier(group=_control_group)


def _wants_extension(enforcer: object) -> bool:
    """Whether the enforcer will call the fused penalty op (built-in gp/lp, impl not ref)."""
    impl = getattr(enforcer, "opts", {}).get("impl")
    return impl in ("auto", "ext") and not force_ref()


def prepare_extension(enforcer: object, ctx: Context) -> None:
    """Build the fused kernels once per node before training: local rank 0 builds (or
    loads) them while the others wait at a barrier, then load the cached build. When
    it could not be built, the other ranks do not try again (they set
    ``GANTK_EXT_AUTOBUILD=0``) and fall back to the reference as rank 0 does. (The
    extension's own lock file also makes concurrent builds safe; this only keeps N
    processes from queueing on it inside the first training step.)"""
    if not ctx.enabled or not _wants_extension(enforcer) or ctx.device is None:
        return
    ok = 1
    if ctx.local_rank == 0:
        ok = int(_ext.available(ctx.device)[0])
    barrier(ctx)
    all_ok = -max_over_ranks(-ok, ctx)  # the minimum
    if not all_ok and ctx.local_rank != 0:
        os.environ["GANTK_EXT_AUTOBUILD"] = "0"
