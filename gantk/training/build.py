"""Building a run's parts from its config: the device, the data, the networks, the
loss and enforcer (resolved through the registries), and the optimizers."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import memory
from ..components import GANModel, LipschitzEnforcer, Loss
from ..config import TrainConfig
from ..data import load_samples, modality_of
from ..errors import ConfigError, UsageError
from ..plugins import component_record, get_registry
from ..resolve import default_model_for


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else the CPU; refuses CUDA where there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu)")
    return dev


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


#: devices whose Adam has a fused kernel (one pass over each parameter's four tensors)
_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(name: str, params, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """The run's optimizer. Adam is torch's fused implementation where the parameters'
    device has one: the same update, about 6× faster than the default (foreach) Adam on
    the 3 × 512 critic on a 2-core Xeon (0.36 against 2.2 ms per step; benchmarks/RESULTS.md)."""
    if name == "adam":
        params = list(params)
        fused = bool(params) and all(p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise UsageError(f"unknown optimizer {name!r}")


@dataclass
class Components:
    """Everything built from a config: data, networks, loss and enforcer."""

    data: torch.Tensor
    data_shape: tuple[int, ...]
    modality: str
    latent_dim: int
    model: GANModel
    generator: nn.Module
    critic: nn.Module
    loss: Loss
    enforcer: LipschitzEnforcer
    #: the registered data set that loaded the samples (None when they were handed in)
    dataset: str | None = None

    def record(self) -> dict:
        """Which plugin (and version) provides each component: stored with the run."""
        names = {"model": self.model.name, "loss": self.loss.name, "lipschitz": self.enforcer.name}
        if self.dataset is not None:
            names["dataset"] = self.dataset
        return component_record(names)


#: copies of a network's weights training keeps: weights, gradients, two Adam moments
#: (the generator's weight average, ``--ema``, is one more)
_TRAINING_COPIES = 4


def check_networks_fit(model: GANModel, data_shape: tuple[int, ...], latent: int, cfg: TrainConfig,
                       n_samples: int) -> None:
    """Refuse, before anything is built, networks and batches that cannot fit in the
    machine's memory (the networks are first built on the meta device to size them);
    the message gives the estimate."""
    g = memory.module_bytes(lambda: model.build_generator(data_shape, latent))
    d = memory.module_bytes(lambda: model.build_critic(data_shape))
    sample = 4 * math.prod(data_shape)
    batches = 4 * cfg.batch_size * (latent + 6 * sample)  # latents, real, fake, x̂ and their gradients
    need = (_TRAINING_COPIES + (cfg.ema > 0)) * g + _TRAINING_COPIES * d + batches + 4 * 1024 * latent
    memory.check_fits(need, f"training {model.name!r} with latent size {latent} and batch {cfg.batch_size} "
                            f"(networks of {(g + d) / 1e6:.3g} MB)", ConfigError)


def build_components(cfg: TrainConfig, *, data: torch.Tensor | None = None, device=None) -> Components:
    """Resolve every component of ``cfg`` and build the networks (seeded by cfg.seed)."""
    device = device or resolve_device(cfg.device)
    # resolve names first, so a misspelt name fails before any work
    loss = get_registry("loss").get(cfg.loss)(**cfg.loss_options)
    enforcer = get_registry("lipschitz").get(cfg.lipschitz)(**cfg.lipschitz_options)
    model_cls = get_registry("model").get(cfg.model) if cfg.model else None
    ds = None
    if data is None:
        ds, data = load_samples(cfg.data, cfg.data_options, cfg.seed)
    data_shape = tuple(data.shape[1:])
    modality = modality_of(data_shape)
    if model_cls is None:
        model_cls = get_registry("model").get(default_model_for(modality))
    model = model_cls(**cfg.model_options)
    reason = model.supports(data_shape)
    if reason:
        raise ConfigError(f"model {model.name!r} cannot handle data of shape {data_shape}: {reason}")
    latent = cfg.latent_dim or (ds.latent_dim if ds is not None and ds.latent_dim else None)
    latent = latent or (2 if modality == "points" else model.default_latent_dim)
    check_networks_fit(model, data_shape, latent, cfg, data.shape[0])
    torch.manual_seed(cfg.seed)
    generator = model.build_generator(data_shape, latent)
    critic = model.build_critic(data_shape)
    if enforcer.forbids_batchnorm and has_batchnorm(critic) and not cfg.allow_batchnorm:
        raise ConfigError(
            f"the {model.name!r} critic contains BatchNorm, which couples the samples of a batch and "
            f"makes the per-sample gradient penalty of {enforcer.name!r} wrong (the WGAN-GP critic has "
            "none); choose a critic without it, or pass --allow-batchnorm to train anyway"
        )
    critic = enforcer.prepare_critic(critic)
    # store typed values (the CLI hands strings) so config.json and checkpoints are exact
    cfg.loss_options = {k: loss.opts[k] for k in cfg.loss_options}
    cfg.lipschitz_options = {k: enforcer.opts[k] for k in cfg.lipschitz_options}
    cfg.model_options = {k: model.opts[k] for k in cfg.model_options}
    if ds is not None:
        cfg.data_options = {k: ds.opts[k] for k in cfg.data_options}
    return Components(data.to(device), data_shape, modality, latent, model, generator.to(device),
                      critic.to(device), loss, enforcer, ds.name if ds is not None else None)
