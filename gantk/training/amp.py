"""Mixed precision of the training step (``--amp``): which autocast dtype a run uses,
and the loss scaling that float16 needs.

* ``auto`` resolves, once, when the run starts, to ``bf16`` where the device multiplies
  bfloat16 matrices natively (a CUDA GPU with bfloat16 support; a CPU with AVX512-BF16
  or AMX, as torch reports them) and to ``off`` (float32) elsewhere. The resolved value
  is what the run's config.json and checkpoints store, so a resumed run keeps it.
* ``bf16``: autocast only; bfloat16 has float32's exponent range, so nothing is scaled.
* ``fp16``: autocast with ``torch.amp.GradScaler`` (one per network). Float16's range
  is narrow: the backward passes run on S·loss, and the gradient penalty's input
  gradient is taken on the scaled critic S·D(x̂) and divided by S inside the norm op
  (its ``inv_scale`` argument, a device tensor: no host synchronisation is added). A
  step whose gradients hold inf or NaN is skipped by the scaler (the weights and the
  optimizer's state stay as they were, so no checkpoint can hold it) and S is halved;
  S and its growth counter are stored in checkpoints, so a resumed run continues with
  the same scale.

Weights, optimizer state and the penalty's norm arithmetic stay float32 in every mode.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from ..components import LipschitzEnforcer, PenaltyOutput
from ..errors import CheckpointError, GantkWarning, UsageError

#: the autocast dtype of each resolved mode
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: the first loss scale of an fp16 run (torch's default is 2**16). The penalty's double
#: backward runs through float16 matrix products whose outputs carry S times the
#: penalty's parameter gradient, which at initialisation is large (a 3-layer critic
#: with λ = 10: S = 4096 overflowed the last layer's gradient, 2048 did not), so the
#: scale starts lower; the scaler grows it after 2000 steps without overflow.
SCALE_INIT = 2.0**10


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 matrix products in hardware, and what torch
    reports that says so (or what is missing)."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device)
        return ok, f"{name} {'has' if ok else 'has no'} bfloat16 units"
    if device.type == "cpu":
        found = [name for name, have in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                         ("AMX", torch.cpu._is_amx_tile_supported())) if have]
        if found:
            return True, f"the CPU has {' and '.join(found)}"
        return False, "the CPU has neither AVX512-BF16 nor AMX"
    return False, f"no bfloat16 detection for {device.type}"


def resolve(amp: str, device: torch.device) -> tuple[str, str | None]:
    """The mode a run uses for ``--amp amp`` on ``device`` (``fp32`` is ``off``), and
    for ``auto`` the note that says why."""
    if amp == "fp32":
        return "off", None
    if amp != "auto":
        return amp, None
    ok, why = native_bf16(device)
    return ("bf16" if ok else "off"), f"amp = {'bf16' if ok else 'off'} (auto: {why}; --amp overrides)"


def check(amp: str, device: torch.device) -> None:
    """Refuse a resolved mode the device cannot run."""
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError("--amp bf16 needs a GPU with bfloat16 support (Ampere or newer); use --amp off")


class _ScaledCritic(nn.Module):
    """The critic with its scores multiplied by the loss scale S (a device tensor), so
    an input gradient taken from it is S·∇ₓD."""

    def __init__(self, critic: nn.Module):
        super().__init__()
        self.critic = critic
        self.scale = torch.ones(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).float() * self.scale


class Precision:
    """A run's precision: its autocast context, and under fp16 the loss scaling of the
    critic and generator steps. The trainer calls :meth:`autocast` around forward
    passes, :meth:`backward` for every backward, :meth:`penalty` for the enforcer's
    penalty and :meth:`step` for each optimizer step."""

    def __init__(self, amp: str, device: torch.device, critic: nn.Module):
        self.mode, self.device = amp, device
        self.dtype = DTYPES.get(amp)
        self.scaling = amp == "fp16"
        self.scalers = {}
        if self.scaling:
            self.scalers = {net: torch.amp.GradScaler(device.type, init_scale=SCALE_INIT) for net in ("critic", "generator")}
            self._scaled = _ScaledCritic(critic)
        self._warned = False
        self._last: dict[str, torch.Tensor] = {}
        self._one = torch.ones((), device=device)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, net: str, loss: torch.Tensor) -> None:
        """``loss.backward()``, on S·loss under fp16."""
        (self.scalers[net].scale(loss) if self.scaling else loss).backward()

    def step(self, net: str, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step; under fp16 skipped when a gradient is not finite, and the
        scale updated."""
        if not self.scaling:
            optimizer.step()
            return
        self.scalers[net].step(optimizer)
        self.scalers[net].update()

    def penalty(self, enforcer: LipschitzEnforcer, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                generator: torch.Generator) -> PenaltyOutput | None:
        """The enforcer's penalty; under fp16 its input gradient is taken on S·D and
        unscaled inside the norm (enforcers that declare ``takes_inv_scale``)."""
        if not self.scaling:
            return enforcer.penalty(critic, real, fake, generator=generator)
        if not enforcer.takes_inv_scale:
            if not self._warned:
                self._warned = True
                warnings.warn(f"--amp fp16: the {enforcer.name!r} enforcer takes no inv_scale, so its input "
                              "gradient is taken unscaled in float16 (small gradients may underflow)",
                              GantkWarning, stacklevel=3)
            return enforcer.penalty(critic, real, fake, generator=generator)
        # S as the scaler holds it (a device tensor; scale() of a float32 one is S·1)
        s = self.scalers["critic"].scale(self._one)
        self._scaled.critic, self._scaled.scale = critic, s
        return enforcer.penalty(self._scaled, real, fake, generator=generator, inv_scale=s.reciprocal())

    def shown(self, name: str, figure: torch.Tensor) -> torch.Tensor:
        """A penalty figure for the log. Under fp16 a step whose scaled input gradient
        overflowed (the scaler skips it) has no finite penalty: the last finite figure
        stands in for it, on the device (no host synchronisation), so the log's means
        stay finite; elsewhere the figure itself."""
        if not self.scaling:
            return figure
        last = self._last.get(name)
        if last is None:
            last = torch.zeros_like(figure)
        self._last[name] = shown = torch.where(torch.isfinite(figure), figure, last)
        return shown

    # ------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, torch.Tensor]:
        """The scalers' state as tensors for a checkpoint (empty unless fp16)."""
        out = {}
        for net, sc in self.scalers.items():
            st = sc.state_dict()
            out[f"{net}.scale"] = torch.tensor(float(st["scale"]), dtype=torch.float32)
            out[f"{net}.growth_tracker"] = torch.tensor(int(st["_growth_tracker"]), dtype=torch.int64)
        return out

    def load(self, state: dict[str, torch.Tensor], where: str) -> None:
        """Restore :meth:`state`; a checkpoint written without fp16 starts the scalers
        afresh. Refuses a scale that is not a finite positive number."""
        for net, sc in self.scalers.items():
            scale, tracker = state.get(f"{net}.scale"), state.get(f"{net}.growth_tracker")
            if scale is None or tracker is None:
                continue
            if scale.numel() != 1 or tracker.numel() != 1:
                raise CheckpointError(f"{where}: loss scale state of the {net} is not two scalars")
            s = float(scale.reshape(()))
            if not (0 < s < float("inf")):
                raise CheckpointError(f"{where}: loss scale of the {net} is {s}, not a finite positive number")
            sc.load_state_dict({**sc.state_dict(), "scale": s, "_growth_tracker": int(tracker.reshape(()))})
