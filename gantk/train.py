"""The training loop: n_critic critic steps per generator step, with one backward of
(adversarial loss + penalty) per critic step.

Started by ``torchrun`` the same loop runs on several processes: each takes its slice
of the global batch and gradients are averaged across processes after every backward
(see :mod:`gantk.distributed` for the design); rank 0 alone writes the run folder."""
from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint as ckpt_mod
from . import distributed
from .components import GANModel, LipschitzEnforcer, Loss
from .config import TrainConfig
from .data import BatchSampler, load_samples, modality_of
from .errors import ConfigError, GantkError, TrainingError, UsageError
from .fsutil import append_line, check_writable_dir, write_bytes_atomic
from .ops.penalty import _acc_dtype
from .plugins import get_registry


class GantkWarning(UserWarning):
    """Advice about a run (e.g. Adam with weight clipping)."""


class GantkNote(UserWarning):
    """Information about a choice gantk made for the user (shown as a note)."""


class TrainingInterrupted(GantkError):
    """SIGINT/SIGTERM: the run stopped after writing a checkpoint."""

    def __init__(self, msg: str, exit_code: int):
        super().__init__(msg)
        self.exit_code = exit_code


class Callback:
    """Receives progress from :class:`Trainer`; the CLI's progress bar is one."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_step(self, step: int) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: Path) -> None: ...
    def on_image(self, step: int, path: Path) -> None: ...
    def on_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path
    image: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu)")
    return dev


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def make_optimizer(name: str, params, lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
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


def default_model_for(modality: str) -> str:
    reg = get_registry("model")
    if modality == "image" and "dcgan" in reg:
        return "dcgan"
    return "mlp"


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
                      critic.to(device), loss, enforcer)


def _new_run_dir(cfg: TrainConfig) -> Path:
    out = check_writable_dir(cfg.out)
    stem = cfg.name or f"{Path(cfg.data).stem}-{cfg.preset if cfg.preset else cfg.loss}-{datetime.now():%Y%m%d-%H%M%S}"
    i = 1
    while True:  # mkdir, not exists(): runs started in the same second each get their own
        run = out / (stem if i == 1 else f"{stem}-{i}")
        try:
            run.mkdir(parents=True)
            return run
        except FileExistsError:
            i += 1


_METRIC_KEYS = ("critic_loss", "generator_loss", "w_estimate", "grad_norm", "penalty")


class Trainer:
    """Builds a run from a config (or resumes one from a checkpoint) and trains it."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        callbacks: list[Callback] | None = None,
        resume: ckpt_mod.Checkpoint | None = None,
        run_dir: str | Path | None = None,
    ):
        cfg.validate()
        # under torchrun: join the process group; rank 0 alone reports (notes, warnings
        # and callbacks are the same on every rank)
        self.dist = distributed.init(cfg.device)
        distributed.check_batch_size(cfg.batch_size, self.dist.world_size)
        if not self.dist.is_main:
            for category in (GantkNote, GantkWarning):
                warnings.filterwarnings("ignore", category=category)
        if resume is None:
            for note in getattr(cfg, "notes", ()):
                warnings.warn(note, GantkNote, stacklevel=2)
        self.cfg = cfg
        self.callbacks = list(callbacks or []) if self.dist.is_main else []
        self.device = self.dist.device or resolve_device(cfg.device)
        c = build_components(cfg, device=self.device)
        self.c = c
        self.G, self.D = c.generator, c.critic
        if c.data.shape[0] < cfg.batch_size:
            raise UsageError(f"--batch-size {cfg.batch_size} is larger than the data ({c.data.shape[0]} samples)")
        if cfg.lipschitz == "clip" and cfg.optimizer == "adam":
            warnings.warn(
                "Adam with weight clipping: the WGAN paper found momentum-based optimizers unstable "
                "with clipping and used RMSProp (--optimizer rmsprop, or --preset wgan)",
                GantkWarning, stacklevel=2,
            )
        # The critic scores real and fake in one batched forward unless it has BatchNorm
        # (a joint batch would mix real and fake statistics, a different model): fewer,
        # larger kernels, the same numbers for a per-sample critic.
        self._joint_forward = cfg.joint_forward and not has_batchnorm(self.D) and not c.model.critic_mixes_batch
        # On the CPU the adversarial loss is backpropagated before the penalty's graph is
        # built, so the two graphs are never alive together: an interleaved A/B measured
        # the critic step 4 % faster on the 32 and 64 px DCGAN critics, 1 % on the toy
        # MLP (benchmarks/bench_step_ab.py, benchmarks/RESULTS.md).
        # On CUDA one backward of the sum stays (fewer host calls; the step is host-bound).
        self._adversarial_first = self.device.type == "cpu"
        self._amp = cfg.amp == "bf16"
        if self._amp and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError("--amp bf16 needs a GPU with bfloat16 support (Ampere or newer); use --amp off")
        if cfg.channels_last:
            if c.data.dim() != 4:
                raise UsageError(f"--channels-last needs image data (N, C, H, W); {cfg.data} has samples of shape "
                                 f"{tuple(c.data.shape[1:])}")
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)  # batches are converted as drawn (_layout)
        # the generator's weight average (--ema): sampled, evaluated and pictured in its place
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if cfg.ema > 0 else None
        self.opt_g = make_optimizer(cfg.optimizer, self.G.parameters(), cfg.lr, cfg.betas)
        self.opt_d = make_optimizer(cfg.optimizer, self.D.parameters(), cfg.lr, cfg.betas)
        self.g_data = torch.Generator().manual_seed(cfg.seed)
        self.g_noise = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        # ε of the penalty: re-seeded every critic step from (seed, critic step), so a
        # lazy schedule or a resume never shifts the other streams
        self.g_eps = torch.Generator(device=self.device)
        if self.dist.enabled:
            self.sampler = distributed.ShardedBatchSampler(c.data, cfg.batch_size, self.g_data, self.dist)
        else:
            self.sampler = BatchSampler(c.data, cfg.batch_size, self.g_data)
        nvis = 64 if c.modality == "image" else 1024
        self.z_fixed = torch.randn(nvis, c.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 7919)).to(self.device)
        self.step = 0
        self._stop_signal: int | None = None
        self.last_checkpoint: Path | None = None
        self.last_image: Path | None = None
        if resume is not None:
            self._restore(resume)
            self.run_dir = Path(run_dir) if run_dir else resume.path.parent.parent
            self.last_checkpoint = resume.path
        elif self.dist.is_main:
            self.run_dir = Path(run_dir) if run_dir else _new_run_dir(cfg)
            check_writable_dir(self.run_dir)
        if resume is None and self.dist.enabled:  # the folder rank 0 created (its name has the time)
            self.run_dir = Path(distributed.broadcast_text(str(self.run_dir) if self.dist.is_main else None, self.dist))
        self._critic_index = self.step * cfg.n_critic
        if self.dist.enabled:
            # every rank built and loaded the same weights; make sure of it, and fetch the
            # fused kernels once per node before the first step
            distributed.broadcast_module(self.G, self.dist)
            distributed.broadcast_module(self.D, self.dist)
            self._sync_buffers = has_batchnorm(self.G) or has_batchnorm(self.D)
            distributed.prepare_extension(c.enforcer, self.dist)
            if self.dist.rank:  # e.g. dropout: distinct per rank (the data and noise are sliced)
                torch.manual_seed(distributed.derive_seed(cfg.seed, "torch", self.dist.rank, self.step))
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.dist.is_main:
            write_bytes_atomic(self.run_dir / "config.json", json.dumps(json.loads(cfg.to_json()), indent=2).encode())

    # ----------------------------------------------------------------- state
    def rng_state(self) -> dict[str, torch.Tensor]:
        st = {"data": self.g_data.get_state(), "noise": self.g_noise.get_state(), "torch": torch.get_rng_state()}
        s = self.sampler.state()
        st["sampler_perm"], st["sampler_pos"] = s["perm"], s["pos"]
        return st

    def _restore(self, ck: ckpt_mod.Checkpoint) -> None:
        try:
            self.G.load_state_dict(ck.module_state("generator"))
            self.D.load_state_dict(ck.module_state("critic"))
            if self.G_ema is not None:  # (a checkpoint from before the average existed: start it here)
                self.G_ema.load_state_dict(ck.module_state("generator_ema") or ck.module_state("generator"))
            self.opt_g.load_state_dict(ckpt_mod.optimizer_state(ck, "opt_g"))
            self.opt_d.load_state_dict(ckpt_mod.optimizer_state(ck, "opt_d"))
            t = ck.tensors
            self.g_data.set_state(t["rng.data"])
            self.g_noise.set_state(t["rng.noise"].to(self.g_noise.get_state().device))
            torch.set_rng_state(t["rng.torch"])
            self.sampler.load_state({"perm": t["rng.sampler_perm"], "pos": t["rng.sampler_pos"]})
        except (RuntimeError, KeyError, ValueError) as exc:
            from .errors import CheckpointError

            raise CheckpointError(f"{ck.path}: does not match its run config ({str(exc).splitlines()[0]})") from None
        self.step = ck.step

    def save(self) -> Path:
        for name, mod in (("generator", self.G), ("critic", self.D)):
            for pname, p in mod.named_parameters():
                if not torch.isfinite(p).all():
                    raise TrainingError(
                        f"step {self.step}: {name} parameter {pname} is not finite; not overwriting the "
                        f"last good checkpoint ({self.last_checkpoint or 'none yet'})"
                    )
        path = ckpt_mod.checkpoint_path(self.run_dir, self.step)
        if not self.dist.is_main:  # rank 0 writes it; the weights are the same everywhere
            self.last_checkpoint = path
            return path
        ckpt_mod.save_checkpoint(
            path, config=self.cfg, step=self.step, generator=self.G, critic=self.D,
            opt_g=self.opt_g, opt_d=self.opt_d, rng=self.rng_state(), generator_ema=self.G_ema,
            extra={"data_shape": list(self.c.data_shape), "latent_dim": self.c.latent_dim,
                   "model": self.c.model.name, "modality": self.c.modality},
        )
        self.last_checkpoint = path
        for _, old in ckpt_mod.list_checkpoints(self.run_dir)[: -self.cfg.keep]:
            old.unlink(missing_ok=True)
        for cb in self.callbacks:
            cb.on_checkpoint(self.step, path)
        return path

    # ----------------------------------------------------------------- steps
    def lr_factor(self, step: int | None = None) -> float:
        """The schedule's multiplier of ``lr`` for the iteration that starts at ``step``
        (default: now): 1 throughout for ``lr_decay = "none"``; 1 − step/steps for
        ``"linear"``, so the last iteration runs at lr/steps, or, with ``lr_floor`` f,
        max(f, 1 − step/steps): the same decay, held at f·lr once it gets there. It
        depends on the step alone, so a resumed run continues the same schedule (over
        the new total if ``--steps`` changed on resume)."""
        step = self.step if step is None else step
        if self.cfg.lr_decay == "linear":
            return max(self.cfg.lr_floor, 1.0 - step / self.cfg.steps)
        return 1.0

    def _set_lr(self) -> None:
        lr = self.cfg.lr * self.lr_factor()
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def _noise(self) -> torch.Tensor:
        """This rank's rows of the global batch of latents (all of it in one process)."""
        z = torch.randn(self.cfg.batch_size, self.c.latent_dim, generator=self.g_noise, device=self.device)
        return distributed.shard(z, self.dist)

    def _autocast(self):
        """bfloat16 autocast for the networks' forward passes under ``amp = "bf16"``."""
        if self._amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def critic_step(self) -> dict[str, torch.Tensor]:
        """One critic update: the gradient of (adversarial loss + penalty), then one
        optimizer step. On CUDA that is one backward of the sum; on the CPU the
        adversarial loss is backpropagated first, so its graph is freed before the
        penalty's double-backward graph is built (lower peak memory, faster there).

        With ``penalty_every = k > 1`` (lazy regularization, Karras et al. 2020,
        "Analyzing and Improving the Image Quality of StyleGAN", sec. 3.1) the enforcer's
        penalty is computed on every k-th critic step only and weighted k times there,
        so its expected weight per step is unchanged while the costly double backward
        runs k times less often. Unlike StyleGAN2, which takes a separate optimizer step
        for the penalty alone (and rescales Adam's learning rate and betas for it), the
        penalty joins that step's adversarial loss: the number of optimizer steps and
        the optimizer settings stay as they are, and every backward reaches every
        critic parameter. The logged ``critic_loss`` is loss + penalty (unweighted).
        """
        index = self._critic_index
        self._critic_index += 1
        real = self._layout(self.sampler.next())
        z = self._noise()
        with torch.no_grad(), self._autocast():
            fake = self._layout(self.G(z).to(real.dtype))  # bf16 under amp: back to the data's dtype
        with self._autocast():
            if self._joint_forward:  # one batched pass over real and fake (see __init__)
                both = self.D(torch.cat([real, fake])).float()
                real_out, fake_out = both[: real.shape[0]], both[real.shape[0]:]
            else:
                real_out = self.D(real).float()
                fake_out = self.D(fake).float()
            loss = self.c.loss.critic_loss(real_out, fake_out)
        k = self.cfg.penalty_every
        penalty_step = index % k == 0
        early = self._adversarial_first and penalty_step
        self.opt_d.zero_grad(set_to_none=True)
        if early:
            loss.backward()  # frees the adversarial graph before the penalty's is built
        pen = None
        with self._autocast():
            if penalty_step:
                # ε in the dtype draw_epsilon uses, so the rank's slice matches its draw
                g = distributed.rank_stream(self.g_eps, distributed.derive_seed(self.cfg.seed, "eps", index),
                                            self.dist, real.shape[0], _acc_dtype(real.dtype))
                # under amp the critic (and the backward to x̂) runs in bf16, but x̂ and
                # ∇ₓD(x̂) are float32 tensors, so the norm and penalty arithmetic is float32
                pen = self.c.enforcer.penalty(self.D, real, fake, generator=g)
        weighted = None if pen is None else (pen.value * k if k > 1 else pen.value)
        if early:
            if weighted is not None:
                weighted.backward()
        else:
            (loss if weighted is None else loss + weighted).backward()  # one backward of the sum
        distributed.average_gradients(self.D.parameters(), self.dist)
        self.opt_d.step()
        self.c.enforcer.after_critic_step(self.D)
        out = {
            "critic_loss": loss.detach() + pen.value.detach() if pen is not None else loss.detach(),
            "w_estimate": (real_out.detach().float().mean() - fake_out.detach().float().mean()),
        }
        if pen is not None:
            for k, v in pen.stats.items():
                out[k] = torch.as_tensor(v).detach().float()
        return out

    def generator_step(self) -> torch.Tensor:
        for p in self.D.parameters():
            p.requires_grad_(False)
        z = self._noise()
        with self._autocast():
            real_out = None
            if self.c.loss.needs_real_scores:
                with torch.no_grad():
                    real_out = self.D(self._layout(self.sampler.next())).float()
            fake_out = self.D(self._layout(self.G(z))).float()
            if real_out is None:
                loss = self.c.loss.generator_loss(fake_out)
            else:
                loss = self.c.loss.generator_loss(fake_out, real_out)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.G.parameters(), self.dist)
        self.opt_g.step()
        for p in self.D.parameters():
            p.requires_grad_(True)
        if self.dist.enabled and self._sync_buffers:  # BatchNorm running statistics: rank 0's
            distributed.broadcast_buffers(self.G, self.dist)
            distributed.broadcast_buffers(self.D, self.dist)
        return loss.detach()

    @torch.no_grad()
    def update_average(self) -> None:
        """One step of the generator's exponential moving average (``--ema``), run after
        every generator step: ``avg ← d·avg + (1 − d)·weights`` with
        d = min(ema, (1 + t) / (10 + t)) at the t-th update, so early averages do not
        hold on to the random initial weights. Buffers (BatchNorm's running statistics)
        are copied, not averaged. Every rank holds the same weights, hence the same
        average."""
        if self.G_ema is None:
            return
        d = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        for avg, p in zip(self.G_ema.parameters(), self.G.parameters()):
            avg.lerp_(p.detach(), 1.0 - d)
        for avg, b in zip(self.G_ema.buffers(), self.G.buffers()):
            avg.copy_(b)

    @property
    def sample_generator(self) -> nn.Module:
        """The generator that samples, pictures and evaluations use: the weight average
        when ``--ema`` is on, else the generator itself."""
        return self.G_ema if self.G_ema is not None else self.G

    # --------------------------------------------------------------- outputs
    @torch.no_grad()
    def write_image(self) -> Path | None:
        if not self.dist.is_main:
            return None
        G = self.sample_generator
        was = G.training
        G.eval()
        fake = G(self.z_fixed)
        G.train(was)
        from . import plots

        path = self.run_dir / "images" / f"step-{self.step:07d}.png"
        title = f"{self.cfg.loss} + {self.cfg.lipschitz}, step {self.step}" + (", EMA" if self.G_ema is not None else "")
        if self.c.modality == "points":
            idx = torch.randperm(self.c.data.shape[0], generator=torch.Generator().manual_seed(0))[:1024]
            plots.plot_points(path, fake, self.c.data[idx.to(self.c.data.device)], self.D, title=title)
        elif self.c.modality == "image":
            plots.save_image_grid(path, fake)
        else:
            plots.plot_tensor_samples(path, fake, title=title)
        self.last_image = path
        for cb in self.callbacks:
            cb.on_image(self.step, path)
        return path

    def _request_stop(self, signum, frame) -> None:
        if self._stop_signal is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum

    # ------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        cfg = self.cfg
        t0 = time.perf_counter()
        for cb in self.callbacks:
            cb.on_start(self)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._request_stop)
        sums = {k: torch.zeros((), device=self.device) for k in _METRIC_KEYS}
        counts = dict.fromkeys(_METRIC_KEYS, 0)  # penalty figures exist only on penalty steps
        count = 0
        last: dict[str, float] = {}
        t_log = time.perf_counter()
        try:
            while self.step < cfg.steps:
                if cfg.lr_decay != "none":  # a constant lr stays as the optimizers were built
                    self._set_lr()
                crit: dict[str, torch.Tensor] = {}
                self._critic_index = self.step * cfg.n_critic
                for _ in range(cfg.n_critic):
                    crit.update(self.critic_step())  # the penalty's figures from its last step
                g_loss = self.generator_step()
                self.update_average()
                self.step += 1
                count += 1
                sums["generator_loss"] += g_loss.float()
                counts["generator_loss"] += 1
                for k, v in crit.items():
                    if k in sums:
                        sums[k] += v
                        counts[k] += 1
                for cb in self.callbacks:
                    cb.on_step(self.step)
                final = self.step >= cfg.steps
                # a signal reaches the ranks at different steps: all stop at the first one
                stop = distributed.max_over_ranks(self._stop_signal or 0, self.dist)
                if (cfg.log_every and self.step % cfg.log_every == 0) or final:
                    n = torch.tensor([max(counts[k], 1) for k in _METRIC_KEYS], device=self.device)
                    mean = torch.stack([sums[k] for k in _METRIC_KEYS]).div(n)
                    vals = distributed.all_reduce_mean_(mean, self.dist).tolist()  # global means
                    now = time.perf_counter()
                    last = {k: v for k, v in zip(_METRIC_KEYS, vals) if counts[k]}
                    bad = [k for k, v in last.items() if not math.isfinite(v)]
                    if bad:
                        raise TrainingError(
                            f"training diverged at step {self.step}: {bad[0]} is {last[bad[0]]}; "
                            f"last good checkpoint: {self.last_checkpoint or 'none (nothing was saved)'}"
                        )
                    last["steps_per_s"] = count / max(now - t_log, 1e-9)
                    rec = {"step": self.step, **{k: round(v, 6) for k, v in last.items()},
                           "time": round(now - t0, 3)}
                    if cfg.lr_decay != "none":  # the lr this step ran with
                        rec["lr"] = self.opt_g.param_groups[0]["lr"]
                    if self.dist.is_main:
                        append_line(self.metrics_path, json.dumps(rec))
                    for cb in self.callbacks:
                        cb.on_log(self.step, last)
                    sums = {k: torch.zeros((), device=self.device) for k in _METRIC_KEYS}
                    counts = dict.fromkeys(_METRIC_KEYS, 0)
                    count, t_log = 0, now
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or final:
                    self.save()
                if (cfg.image_every and self.step % cfg.image_every == 0) or final:
                    self.write_image()
                if stop and not final:
                    path = self.save()
                    code = 130 if stop == signal.SIGINT else 143
                    raise TrainingInterrupted(
                        f"stopped at step {self.step} by {signal.Signals(stop).name}; checkpoint "
                        f"{path}; continue with: gantk train --resume {self.run_dir}", code)
        except KeyboardInterrupt:
            path = self.save() if self.step > 0 else None
            raise TrainingInterrupted(
                f"interrupted at step {self.step}; "
                + (f"checkpoint {path}; continue with: gantk train --resume {self.run_dir}" if path else "nothing saved"),
                130) from None
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
        result = TrainResult(self.run_dir, self.step, self.last_checkpoint or self.save(), self.last_image,
                             last, time.perf_counter() - t0)
        for cb in self.callbacks:
            cb.on_end(result)
        return result


RESUME_OVERRIDABLE = ("steps", "log_every", "checkpoint_every", "image_every", "keep", "device", "amp",
                      "channels_last")


def resume_config(saved: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """The saved config with the overrides that are safe on resume; others are refused."""
    given = {k: v for k, v in overrides.items() if v is not None}
    refused = [k for k, v in given.items() if k not in RESUME_OVERRIDABLE and getattr(saved, k, None) != v]
    if refused:
        raise ConfigError(
            f"cannot change {', '.join('--' + k.replace('_', '-') for k in refused)} when resuming "
            f"(it would make a different run); only {', '.join('--' + k.replace('_', '-') for k in RESUME_OVERRIDABLE)} may change"
        )
    cfg = replace(saved, **given)
    cfg.validate()
    return cfg


def train(cfg: TrainConfig, *, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train a new run from ``cfg``."""
    return Trainer(cfg, callbacks=callbacks).train()


def resume(run: str | Path, overrides: dict[str, Any] | None = None, *,
           callbacks: list[Callback] | None = None) -> TrainResult:
    """Continue a run from its newest checkpoint (``--steps`` counts the total)."""
    path = ckpt_mod.resolve_checkpoint(run)
    ck = ckpt_mod.load_checkpoint(path)
    cfg = resume_config(ck.config, overrides or {})
    if cfg.steps <= ck.step:
        raise UsageError(f"the run is already at step {ck.step}; pass --steps larger than that to continue")
    run_dir = path.parent.parent
    return Trainer(cfg, callbacks=callbacks, resume=ck, run_dir=run_dir).train()
