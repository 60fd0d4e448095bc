"""Public ops. One file per op: a pure-PyTorch reference beside the compiled path;
``common`` holds what they share (the ``impl`` choice, ``GANTK_FORCE_REF``, the
accumulation dtype); ``piecewise`` takes the input gradient of ReLU/LeakyReLU MLP
critics in closed form."""
from .common import IMPLS, acc_dtype, check_impl, force_ref
from .penalty import (
    GradientPenalty,
    draw_epsilon,
    gradient_norm_penalty,
    gradient_norms,
    gradient_penalty,
    gradient_penalty_at,
    input_gradient,
    interpolate,
)

__all__ = [
    "IMPLS",
    "acc_dtype",
    "check_impl",
    "force_ref",
    "GradientPenalty",
    "draw_epsilon",
    "gradient_norm_penalty",
    "gradient_norms",
    "gradient_penalty",
    "gradient_penalty_at",
    "input_gradient",
    "interpolate",
]
