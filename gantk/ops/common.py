"""What every op shares: the ``impl`` choice, the ``GANTK_FORCE_REF`` switch and the
accumulation dtype. A leaf of ``gantk.ops``: the ops and the extension loader import
it, it imports neither."""
from __future__ import annotations

import os

import torch

from ..errors import UsageError

__all__ = ["IMPLS", "check_impl", "force_ref", "acc_dtype"]

IMPLS = ("auto", "ref", "ext")


def check_impl(impl: str, where: str = "") -> str:
    """Return ``impl`` when it is one of :data:`IMPLS`, else raise
    :class:`gantk.errors.UsageError`; ``where`` (e.g. an enforcer's name) prefixes the
    message."""
    if impl not in IMPLS:
        prefix = f"{where}: " if where else ""
        raise UsageError(f"{prefix}impl must be one of {', '.join(IMPLS)}, not {impl!r}")
    return impl


def force_ref() -> bool:
    """Whether ``GANTK_FORCE_REF`` is set (to anything but empty or "0"): every op then
    runs its pure-PyTorch reference, and ``impl="ext"`` raises."""
    return os.environ.get("GANTK_FORCE_REF", "").strip() not in ("", "0")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation / output dtype for data of ``dtype``: float64 stays float64,
    everything else (float32, float16, bfloat16) accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
