"""Building a run's parts from its config: the device, the data, the networks, the
loss and enforcer (resolved through the registries), and the optimizers."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import memory
from ..cachefile import read_all
from ..components import Augmentation, GANModel, LipschitzEnforcer, Loss
from ..config import TrainConfig, parse_bytes
from ..data import is_mapped, load_samples, modality_of
from ..errors import ConfigError, DataError, UsageError
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
    #: one int64 class index per sample (on the training device, also when the samples are
    #: streamed from a cache), or None for unlabelled data
    labels: torch.Tensor | None = None
    #: the classes' names (index order), or None
    class_names: tuple[str, ...] | None = None
    #: classes the networks are conditioned on (0: an unconditional run)
    num_classes: int = 0
    #: the augmentations of ``--augment``, in the order given
    augmentations: tuple[Augmentation, ...] = ()
    #: True when ``data`` is a memory-mapped cache read through DataLoader workers
    #: (larger than ``--data-memory``); False when it is held in memory
    streamed: bool = False

    def record(self) -> dict:
        """Which plugin (and version) provides each component: stored with the run."""
        names = {"model": self.model.name, "loss": self.loss.name, "lipschitz": self.enforcer.name}
        if self.dataset is not None:
            names["dataset"] = self.dataset
        record = component_record(names)
        for a in self.augmentations:  # keyed "augmentation:NAME": a run may use several
            record[f"augmentation:{a.name}"] = component_record({"augmentation": a.name})["augmentation"]
        return record


#: copies of a network's weights training keeps: weights, gradients, two Adam moments
#: (the generator's weight average, ``--ema``, is one more)
_TRAINING_COPIES = 4


def check_networks_fit(model: GANModel, data_shape: tuple[int, ...], latent: int, cfg: TrainConfig,
                       n_samples: int, num_classes: int = 0) -> None:
    """Refuse, before anything is built, networks and batches that cannot fit in the
    machine's memory (the networks are first built on the meta device to size them);
    the message gives the estimate."""
    g = memory.module_bytes(lambda: model.make_generator(data_shape, latent, num_classes))
    d = memory.module_bytes(lambda: model.make_critic(data_shape, num_classes))
    sample = 4 * math.prod(data_shape)
    batches = 4 * cfg.batch_size * (latent + 6 * sample)  # latents, real, fake, x̂ and their gradients
    need = (_TRAINING_COPIES + (cfg.ema > 0)) * g + _TRAINING_COPIES * d + batches + 4 * 1024 * latent
    memory.check_fits(need, f"training {model.name!r} with latent size {latent} and batch {cfg.batch_size} "
                            f"(networks of {(g + d) / 1e6:.3g} MB)", ConfigError)


def resolve_augmentations(names: str, p: float | None) -> tuple[Augmentation, ...]:
    """The augmentations ``--augment`` names (comma-separated), each with ``p`` when given."""
    reg = get_registry("augmentation")
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if len(set(chosen)) != len(chosen):
        raise UsageError(f"--augment names an augmentation twice: {names}")
    return tuple(reg.get(n)(**({} if p is None else {"p": p})) for n in chosen)


def data_budget(cfg: TrainConfig) -> int:
    """``--data-memory`` in bytes; ``auto``: a quarter of the memory available now
    (what is left holds the networks, their optimizer state, the batches and the
    loader's prefetched batches), or 4 GB when that cannot be known."""
    given = parse_bytes(cfg.data_memory)
    if given is not None:
        return given
    avail = memory.available_bytes()
    return avail // 4 if avail > 0 else 4 * 10**9


def place_data(data: torch.Tensor, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Where the training set lives: a memory-mapped cache larger than the budget (or,
    training on a GPU, than half its free memory) stays mapped and is streamed (True);
    anything else is read into memory, onto the training device (a uint8 set on a GPU:
    batches cost no host transfer)."""
    nbytes = data.numel() * data.element_size()
    on_gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    # a GPU keeps half its free memory for the networks and their activations
    if is_mapped(data) and (nbytes > data_budget(cfg) or (on_gpu_free is not None and nbytes > on_gpu_free // 2)):
        return data, True
    if is_mapped(data):
        memory.check_fits(nbytes, f"holding the {data.shape[0]} samples in memory (--data-memory to stream them)",
                          ConfigError)
        data = read_all(data.gantk_cache)  # read the cache once, into memory
    return data.to(device), False


def class_list(labels: torch.Tensor | None, names: tuple[str, ...] | None) -> tuple[int, tuple[str, ...] | None]:
    """(K, names) of labelled data: K from the names when there are some, else the
    largest label + 1; (0, None) for unlabelled data."""
    if labels is None or labels.numel() == 0:
        return 0, None
    k = int(labels.max()) + 1
    if names is not None:
        if len(names) < k:
            raise DataError(f"the data names {len(names)} classes but has labels up to {k - 1}")
        k = len(names)
    return k, (tuple(names) if names is not None else None)


def build_components(cfg: TrainConfig, *, data: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                     class_names: tuple[str, ...] | None = None, device=None) -> Components:
    """Resolve every component of ``cfg`` and build the networks (seeded by cfg.seed).
    ``data`` (and its ``labels``, ``class_names``) replace the config's data set."""
    device = device or resolve_device(cfg.device)
    # resolve names first, so a misspelt name fails before any work
    loss = get_registry("loss").get(cfg.loss)(**cfg.loss_options)
    enforcer = get_registry("lipschitz").get(cfg.lipschitz)(**cfg.lipschitz_options)
    model_cls = get_registry("model").get(cfg.model) if cfg.model else None
    augmentations = resolve_augmentations(cfg.augment, cfg.augment_p)
    ds = None
    if data is None:
        ds, data = load_samples(cfg.data, cfg.data_options, cfg.seed, keep_uint8=True, cache_dir=cfg.cache_dir)
        labels, class_names = getattr(ds, "labels", None), getattr(ds, "class_names", None)
    num_classes = 0
    if cfg.conditional:
        if labels is None:
            raise DataError(f"--conditional needs labelled data, and {cfg.data} has no labels (labelled: digits, "
                             "a .safetensors/.npz file with a 'labels' array, an image folder of class subfolders)")
        num_classes, class_names = class_list(labels, class_names)
    data_shape = tuple(data.shape[1:])
    modality = modality_of(data_shape)
    if augmentations and modality != "image":
        raise ConfigError(f"--augment works on images (C, H, W); {cfg.data} has samples of shape {data_shape}")
    if model_cls is None:
        model_cls = get_registry("model").get(default_model_for(modality))
    model = model_cls(**cfg.model_options)
    reason = model.supports(data_shape)
    if reason:
        raise ConfigError(f"model {model.name!r} cannot handle data of shape {data_shape}: {reason}")
    latent = cfg.latent_dim or (ds.latent_dim if ds is not None and ds.latent_dim else None)
    latent = latent or (2 if modality == "points" else model.default_latent_dim)
    check_networks_fit(model, data_shape, latent, cfg, data.shape[0], num_classes)
    torch.manual_seed(cfg.seed)
    generator = model.make_generator(data_shape, latent, num_classes)
    critic = model.make_critic(data_shape, num_classes)
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
    data, streamed = place_data(data, cfg, device)
    return Components(data, data_shape, modality, latent, model, generator.to(device),
                      critic.to(device), loss, enforcer, ds.name if ds is not None else None,
                      labels=None if labels is None else labels.to(device), class_names=class_names,
                      num_classes=num_classes, augmentations=augmentations, streamed=streamed)
