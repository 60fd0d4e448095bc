"""Public ops. One file per op: a pure-PyTorch reference beside the compiled path."""
from .penalty import (
    GradientPenalty,
    draw_epsilon,
    gradient_norm_penalty,
    gradient_penalty,
    gradient_penalty_at,
    interpolate,
)

__all__ = [
    "GradientPenalty",
    "draw_epsilon",
    "gradient_norm_penalty",
    "gradient_penalty",
    "gradient_penalty_at",
    "interpolate",
]
