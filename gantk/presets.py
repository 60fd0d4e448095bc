"""Presets from the papers and the settings tuned for the built-in data sets, as data.

Nothing here runs: :mod:`gantk.resolve` applies these tables to a run's configuration,
and the built-in data sets (:mod:`gantk.default_plugins.datasets`) point their
``recommended`` and ``tuned`` attributes at the tables below. docs/toy-defaults.md gives
the measurements behind the toy settings.
"""
from __future__ import annotations

from typing import Any

#: Presets (explicit flags override). Optimizer settings follow each paper:
#: GAN — DCGAN's Adam 2e-4, β = (0.5, 0.999); WGAN — RMSProp 5e-5, n_critic 5, c = 0.01;
#: WGAN-GP — Algorithm 1: Adam 1e-4, β = (0, 0.9), λ = 10, n_critic 5;
#: SN-GAN — hinge loss, Adam 2e-4, β = (0, 0.9), n_critic 5.
PRESETS: dict[str, dict[str, Any]] = {
    "gan": {"loss": "minimax", "lipschitz": "none", "optimizer": "adam", "lr": 2e-4,
            "betas": (0.5, 0.999), "n_critic": 1},
    "wgan": {"loss": "wasserstein", "lipschitz": "clip", "optimizer": "rmsprop", "lr": 5e-5,
             "betas": (0.5, 0.999), "n_critic": 5},
    "wgan-gp": {"loss": "wasserstein", "lipschitz": "gp", "optimizer": "adam", "lr": 1e-4,
                "betas": (0.0, 0.9), "n_critic": 5},
    "sngan": {"loss": "hinge", "lipschitz": "sn", "optimizer": "adam", "lr": 2e-4,
              "betas": (0.0, 0.9), "n_critic": 5},
    # WGAN-GP on scikit-learn's 8x8 digits upscaled to 16x16 with a small DCGAN (width 32,
    # batch 32, Adam 2e-4, beta = (0.5, 0.9)): about 9 minutes on a shared 2-core CPU with
    # one torch thread, digits of every class (docs/images/digits-wgan-gp.png).
    "digits": {"data": "digits", "data_options": {"size": 16}, "model": "dcgan",
               "model_options": {"width": 32}, "loss": "wasserstein", "lipschitz": "gp",
               "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.9), "n_critic": 5,
               "batch_size": 32, "steps": 3000, "image_every": 500, "checkpoint_every": 500},
}
DEFAULT_PRESET = "wgan-gp"


def infer_preset(loss: str | None, lipschitz: str | None) -> str:
    """The preset whose (loss, enforcer) pair matches what the user chose among the
    built-in components; the default preset's optimizer settings otherwise (a plugin's
    component names its own preset instead: ``Component.preset``)."""
    if loss is None and lipschitz is None:
        return DEFAULT_PRESET
    for name, p in PRESETS.items():
        if (loss in (None, p["loss"])) and (lipschitz in (None, p["lipschitz"])):
            return name
    if lipschitz in ("gp", "lp") or (lipschitz is None and loss == "wasserstein"):
        return "wgan-gp"
    if lipschitz == "clip":
        return "wgan"
    if lipschitz == "sn":
        return "sngan"
    if loss in ("minimax", "ns", "lsgan") and lipschitz in (None, "none"):
        return "gan"
    return DEFAULT_PRESET


# ------------------------------------------------------------ the toy sets' settings
# Keys: "KIND.KEY" for a component option, else a TrainConfig field (see
# gantk.components.Dataset.recommended and .tuned for how they apply).

#: Every method on the Gaussian mixtures: a longer run with a linear lr decay (the decay
#: is what sharpens the modes), a 3 × 256 critic and a 4 × 512 generator.
TOY_MIXTURES_RECOMMENDED: dict[str, Any] = {
    "model.width": 256, "model.g_width": 512, "model.g_depth": 4, "lr_decay": "linear", "steps": 6000,
}

#: WGAN-GP's gp and lp enforcers on the mixtures: the penalty on every 4th critic step
#: (weighted 4), a batch of 512 for 4500 steps, the decay held at 0.3·lr and a weight
#: average (EMA 0.99) of the generator sampled in its place.
TOY_LAZY_WIDE: dict[str, Any] = {"penalty_every": 4, "batch_size": 512, "steps": 4500, "lr_floor": 0.3,
                                 "ema": 0.99}

#: WGAN-GP (its gp and lp enforcers) on the mixtures: the authors' toy code's λ = 0.1 and
#: β = (0.5, 0.9), lr 2e-3, and the lazy, wide schedule above.
_TOY_WGAN_GP = {"lipschitz.lambda": 0.1, "lr": 2e-3, "betas": (0.5, 0.9)}
TOY_MIXTURES_TUNED: dict[str, dict[str, Any]] = {
    "wgan-gp+gp": {**_TOY_WGAN_GP, **TOY_LAZY_WIDE},
    "wgan-gp+lp": {**_TOY_WGAN_GP, **TOY_LAZY_WIDE},
}

#: The swiss roll has no modes to sharpen: the paper's 3 × 512 networks, 2000 steps.
SWISSROLL_RECOMMENDED: dict[str, Any] = {"lr_decay": "linear", "steps": 2000}
_SWISSROLL_WGAN_GP = {"lipschitz.lambda": 0.1, "lr": 1e-3, "betas": (0.5, 0.9)}
SWISSROLL_TUNED: dict[str, dict[str, Any]] = {"wgan-gp+gp": _SWISSROLL_WGAN_GP, "wgan-gp+lp": _SWISSROLL_WGAN_GP}
