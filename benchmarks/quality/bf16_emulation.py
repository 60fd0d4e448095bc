"""bfloat16 autocast's numbers on a CPU without bfloat16 units, at float32 speed: ``gantk``
run with every ``nn.Linear`` of the generator and the critic computing what a bf16
autocast ``linear`` computes. Used by ``amp_quality.py`` for its ``bf16-emulated…``
modes, to ask on any machine whether a precision choice keeps the toy mixtures' quality.

    python benchmarks/quality/bf16_emulation.py VARIANT train --loss wasserstein --lipschitz gp ...

VARIANT:

* ``all``: every Linear layer in bf16, as ``--amp bf16`` runs the MLP nets;
* ``fp32-ends``: the critic's first Linear (where it reads the data) and the
  generator's last (where it writes samples) stay float32, the rest in bf16;
* ``fp32-final``: every Linear in bf16 for the first 80 % of the steps, all float32
  for the last 20 % (where the learning rate has decayed and the modes sharpen);
* ``fp32-penalty``: every Linear in bf16 except inside the Lipschitz enforcer's penalty
  (its critic pass at x̂, the input gradient and that gradient's backward), which runs
  in float32 throughout.

**Why it matches autocast.** Under bf16 autocast ``linear(x, W, b)`` casts x, W and b to
bfloat16, multiplies with float32 accumulation and rounds the output to bfloat16; its
backward rounds the incoming gradient to bfloat16 at each cast and the gradients of x
and W are bf16 products again. Here ``R(t) = t.to(bfloat16).to(float32)`` and a layer
computes ``R(linear(R(x), R(W), R(b)))`` in float32: the forward values are the same up
to the order of accumulation, and autograd's backward of each cast is R on the
gradient, so the backward (and the penalty's double backward) rounds where autocast's
does. ReLU of a bf16-valued tensor is exact in either. The emulated layers are a
subclass of ``nn.Linear``, so the penalty's closed form for ReLU MLPs (which reads the
weights itself) does not take them: it takes autograd's path, as under autocast. The
run's config says ``--amp off``; its checkpoints hold ordinary Linear weights, and
``gantk eval`` samples them in float32, as it samples a ``--amp bf16`` run.

A model with other weight layers (convolutions) is refused rather than half emulated.
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

VARIANTS = ("all", "fp32-ends", "fp32-final", "fp32-penalty")
#: ``fp32-final``: the share of the steps trained in bf16 before float32 takes over
BF16_SHARE = 0.8
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
             nn.Bilinear, nn.Embedding)


def _r(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.to(torch.bfloat16).to(t.dtype)


class BF16Linear(nn.Linear):
    """An ``nn.Linear`` whose forward computes bf16 autocast's numbers in float32 while
    :attr:`active` (the class's switch) is on, and float32's when it is off."""

    active = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not BF16Linear.active:
            return super().forward(x)
        return _r(F.linear(_r(x), _r(self.weight), _r(self.bias)))


def emulate(net: nn.Module, keep: nn.Linear | None = None) -> int:
    """Turn every Linear of ``net`` but ``keep`` into a :class:`BF16Linear` (in place, the
    parameters unchanged); the number turned."""
    bad = [type(m).__name__ for m in net.modules() if isinstance(m, _WEIGHTED)]
    if bad:
        raise SystemExit(f"bf16_emulation: only Linear layers are emulated; this model has {sorted(set(bad))}")
    n = 0
    for m in net.modules():
        if type(m) is nn.Linear and m is not keep:
            m.__class__ = BF16Linear
            n += 1
    return n


def _linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if type(m) is nn.Linear]


def install(variant: str) -> None:
    """Patch the Trainer so that every run it builds is emulated as ``variant`` says."""
    if variant not in VARIANTS:
        raise SystemExit(f"bf16_emulation: variant must be one of {VARIANTS}, got {variant!r}")
    from gantk.training import trainer

    built = trainer.Trainer.__init__

    def init(self, cfg, *args, **kwargs):
        built(self, cfg, *args, **kwargs)
        if self.precision.dtype is not None:
            raise SystemExit("bf16_emulation: run it with --amp off (it emulates bf16 itself)")
        ends = variant == "fp32-ends"
        emulate(self.D, keep=_linears(self.D)[0] if ends else None)
        emulate(self.G, keep=_linears(self.G)[-1] if ends else None)

    trainer.Trainer.__init__ = init
    if variant == "fp32-final":
        iteration = trainer.Trainer._iteration

        def step(self):
            BF16Linear.active = self.step < int(BF16_SHARE * self.cfg.steps)
            iteration(self)

        trainer.Trainer._iteration = step
    if variant == "fp32-penalty":
        # the graph records what each layer did, so the penalty's backward (taken later,
        # with the switch back on) stays float32 too
        from gantk.training import amp

        penalty = amp.Precision.penalty

        def float32_penalty(self, *args, **kwargs):
            BF16Linear.active = False
            try:
                return penalty(self, *args, **kwargs)
            finally:
                BF16Linear.active = True

        amp.Precision.penalty = float32_penalty


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    install(argv[0])
    sys.argv = ["gantk", *argv[1:]]
    from gantk.entry import main as gantk_main

    gantk_main()


if __name__ == "__main__":
    main(sys.argv[1:])
