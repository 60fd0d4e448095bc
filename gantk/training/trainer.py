"""The trainer: n_critic critic steps per generator step, with one backward of
(adversarial loss + penalty) per critic step, and the loop that logs, checkpoints,
pictures and stops on a signal.

Started by ``torchrun`` the same loop runs on several processes: each takes its slice
of the global batch and gradients are averaged across processes after every backward
(see :mod:`gantk.training.distributed` for the design); rank 0 alone writes the run
folder. This module is longer than most: the steps and the loop share the trainer's
state, and splitting them apart would scatter one algorithm over several files.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import checkpoint as ckpt_mod
from .. import plots
from ..config import TrainConfig
from ..data import BatchSampler, StreamingBatchSampler
from ..errors import CheckpointError, GantkNote, GantkWarning, TrainingError, TrainingInterrupted, UsageError
from ..fsutil import append_line, check_writable_dir, round_sig, write_bytes_atomic
from ..ops import acc_dtype
from . import amp, distributed
from .accumulate import MetricAccumulator
from .build import build_components, has_batchnorm, make_optimizer, resolve_device
from .callbacks import Callback, TrainResult
from .ema import WeightAverage
from .labels import FixedLabelCritic, draw_labels, grid_labels
from .rundir import new_run_dir
from .runlock import LOCK_NAME, RunLock


class Trainer:
    """Builds a run from a config (or resumes one from a checkpoint) and trains it."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        callbacks: list[Callback] | None = None,
        resume: ckpt_mod.Checkpoint | None = None,
        run_dir: str | Path | None = None,
        lock: RunLock | None = None,
    ):
        cfg.validate()
        # under torchrun: join the process group; rank 0 alone reports (notes, warnings
        # and callbacks are the same on every rank)
        self.dist = distributed.init(cfg.device)
        distributed.check_batch_size(cfg.batch_size, self.dist.world_size)
        if not self.dist.is_main:
            for category in (GantkNote, GantkWarning):
                warnings.filterwarnings("ignore", category=category)
        self.device = self.dist.device or resolve_device(cfg.device)
        cfg.amp, amp_note = amp.resolve(cfg.amp, self.device)  # config.json and checkpoints keep the result
        notes = [*getattr(cfg, "notes", ()), *([amp_note] if amp_note else [])]
        if resume is None and notes:  # what was chosen for the user, and why: one block
            warnings.warn("settings chosen for this run (flags override them):\n  " + "\n  ".join(notes),
                          GantkNote, stacklevel=2)
        self.cfg = cfg
        self.callbacks = list(callbacks or []) if self.dist.is_main else []
        self.c = c = build_components(cfg, device=self.device)
        self.G, self.D = c.generator, c.critic
        self.conditional = c.num_classes > 0  # G(z, y) and D(x, y)
        self._check_setup()
        self._choose_step_form()
        self.ema = WeightAverage(self.G, cfg.ema) if cfg.ema > 0 else None
        self.G_ema = self.ema.module if self.ema is not None else None
        self.opt_g = make_optimizer(cfg.optimizer, self.G.parameters(), cfg.lr, cfg.betas)
        self.opt_d = make_optimizer(cfg.optimizer, self.D.parameters(), cfg.lr, cfg.betas)
        self._make_streams()
        self.step = 0
        self._stop_signal: int | None = None
        self.last_checkpoint: Path | None = None
        self.last_image: Path | None = None
        if resume is not None:
            self._restore(resume)
            self.run_dir = Path(run_dir) if run_dir else resume.path.parent.parent
            self.last_checkpoint = resume.path
        elif self.dist.is_main:
            self.run_dir = Path(run_dir) if run_dir else new_run_dir(cfg)
            check_writable_dir(self.run_dir)
        # the folder is locked while this process trains in it (rank 0 holds it)
        self._fresh = resume is None
        self._lock = lock
        self._owns_lock = lock is None and self.dist.is_main
        if self._owns_lock:
            self._lock = RunLock(self.run_dir).acquire()
        if resume is None and self.dist.enabled:  # the folder rank 0 created (its name has the time)
            self.run_dir = Path(distributed.broadcast_text(str(self.run_dir) if self.dist.is_main else None, self.dist))
        self._critic_index = self.step * cfg.n_critic
        if self.dist.enabled:
            self._join_ranks()
        self.metrics_path = self.run_dir / "metrics.jsonl"
        if self.dist.is_main:
            record = {**json.loads(cfg.to_json()), "components": c.record(),  # the plugins that provide them
                      **ckpt_mod.class_record(c.num_classes, c.class_names)}
            write_bytes_atomic(self.run_dir / "config.json", json.dumps(record, indent=2).encode())

    # ----------------------------------------------------------------- setup
    def _check_setup(self) -> None:
        """Refuse or warn about settings that cannot work with the built networks."""
        cfg, c = self.cfg, self.c
        if c.data.shape[0] < cfg.batch_size:
            raise UsageError(f"--batch-size {cfg.batch_size} is larger than the data ({c.data.shape[0]} samples)")
        if cfg.lipschitz == "clip" and cfg.optimizer == "adam":
            warnings.warn(
                "Adam with weight clipping: the WGAN paper found momentum-based optimizers unstable "
                "with clipping and used RMSProp (--optimizer rmsprop, or --preset wgan)",
                GantkWarning, stacklevel=3,
            )
        amp.check(cfg.amp, self.device)
        self.precision = amp.Precision(cfg.amp, self.device, self.D)
        if cfg.channels_last:
            if c.data.dim() != 4:
                raise UsageError(f"--channels-last needs image data (N, C, H, W); {cfg.data} has samples of shape "
                                 f"{tuple(c.data.shape[1:])}")
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)  # batches are converted as drawn (_layout)

    def _choose_step_form(self) -> None:
        # The critic scores real and fake in one batched forward unless it has BatchNorm
        # (a joint batch would mix real and fake statistics, a different model): fewer,
        # larger kernels, the same numbers for a per-sample critic.
        self._joint_forward = (self.cfg.joint_forward and not has_batchnorm(self.D)
                               and not self.c.model.critic_mixes_batch)
        # On the CPU the adversarial loss is backpropagated before the penalty's graph is
        # built, so the two graphs are never alive together: an interleaved A/B measured
        # the critic step 4 % faster on the 32 and 64 px DCGAN critics, 1 % on the toy
        # MLP (benchmarks/bench_step_ab.py, benchmarks/RESULTS.md).
        # On CUDA one backward of the sum stays (fewer host calls; the step is host-bound).
        self._adversarial_first = self.device.type == "cpu"

    def _make_streams(self) -> None:
        """The run's random streams: data order, latents, the penalty's ε (re-seeded
        every critic step from (seed, critic step), so a lazy schedule or a resume never
        shifts the other streams) and the pictures' fixed latents."""
        cfg, c = self.cfg, self.c
        self.g_data = torch.Generator().manual_seed(cfg.seed)
        self.g_noise = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.g_eps = torch.Generator(device=self.device)
        self.g_aug = torch.Generator(device=self.device)  # re-seeded per step, as g_eps
        if c.streamed:  # a cached set larger than --data-memory: read by DataLoader workers
            self.sampler = StreamingBatchSampler(c.data, cfg.batch_size, self.g_data, labels=c.labels,
                                                 device=self.device, shard=lambda i: distributed.shard(i, self.dist))
        elif self.dist.enabled:
            self.sampler = distributed.ShardedBatchSampler(c.data, cfg.batch_size, self.g_data, self.dist,
                                                           labels=c.labels)
        else:
            self.sampler = BatchSampler(c.data, cfg.batch_size, self.g_data, labels=c.labels)
        nvis = 64 if c.modality == "image" else 1024
        self.y_fixed = None
        if self.conditional:  # pictures: one row of 8 per class (points: the classes in turn)
            nvis = 8 * c.num_classes if c.modality == "image" else nvis
            self.y_fixed = (grid_labels(c.num_classes, 8) if c.modality == "image"
                            else torch.arange(nvis) % c.num_classes).to(self.device)
        self.z_fixed = torch.randn(nvis, c.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 7919)).to(self.device)

    def _join_ranks(self) -> None:
        """Every rank built and loaded the same weights; make sure of it, and fetch the
        fused kernels once per node before the first step."""
        distributed.broadcast_module(self.G, self.dist)
        distributed.broadcast_module(self.D, self.dist)
        self._sync_buffers = has_batchnorm(self.G) or has_batchnorm(self.D)
        distributed.prepare_extension(self.c.enforcer, self.dist)
        if self.dist.rank:  # e.g. dropout: distinct per rank (the data and noise are sliced)
            torch.manual_seed(distributed.derive_seed(self.cfg.seed, "torch", self.dist.rank, self.step))

    # ----------------------------------------------------------------- state
    def rng_state(self) -> dict[str, torch.Tensor]:
        st = {"data": self.g_data.get_state(), "noise": self.g_noise.get_state(), "torch": torch.get_rng_state()}
        s = self.sampler.state()
        st["sampler_seed"], st["sampler_pos"] = s["seed"], s["pos"]
        return st

    def _restore(self, ck: ckpt_mod.Checkpoint) -> None:
        # every tensor is checked against what it replaces before anything is loaded:
        # names, shapes, dtypes (no silent casts), finite values, the optimizer's state
        # after step 0 (never a silent fresh start), the random states and the sampler's
        # seed and position
        extra = ck.meta.get("extra", {})
        for key, have in (("data_shape", tuple(self.c.data_shape)), ("latent_dim", self.c.latent_dim)):
            stored = extra.get(key)
            if stored is not None and (tuple(stored) if key == "data_shape" else stored) != have:
                raise CheckpointError(f"{ck.path}: does not match its run config ({key} {stored} in the checkpoint, "
                                      f"{list(have) if key == 'data_shape' else have} for the run)")
        have = ckpt_mod.class_record(self.c.num_classes, self.c.class_names)
        stored = {k: extra[k] for k in ("num_classes", "class_names") if k in extra}
        if stored != have:  # the data's class list must be the one the run trained on
            raise CheckpointError(f"{ck.path}: the run's classes changed ({stored or 'none'} in the checkpoint, "
                                  f"{have or 'none'} in the data)")
        ckpt_mod.check_module_state(ck, "generator", self.G)
        ckpt_mod.check_module_state(ck, "critic", self.D)
        if self.G_ema is not None:
            ckpt_mod.check_module_state(ck, "generator_ema" if ck.module_state("generator_ema") else "generator",
                                        self.G_ema)
        ckpt_mod.check_optimizer_state(ck, "opt_g", self.opt_g)
        ckpt_mod.check_optimizer_state(ck, "opt_d", self.opt_d)
        ckpt_mod.check_rng_state(ck, data_size=self.c.data.shape[0], noise_state_size=self.g_noise.get_state().numel())
        augment_state = ckpt_mod.augment_state(ck, [a.name for a in self.c.augmentations])
        try:
            self.G.load_state_dict(ck.module_state("generator"))
            self.D.load_state_dict(ck.module_state("critic"))
            if self.G_ema is not None:  # (a checkpoint from before the average existed: start it here)
                self.G_ema.load_state_dict(ck.module_state("generator_ema") or ck.module_state("generator"))
            self.opt_g.load_state_dict(ckpt_mod.optimizer_state(ck, "opt_g", self.opt_g))
            self.opt_d.load_state_dict(ckpt_mod.optimizer_state(ck, "opt_d", self.opt_d))
            t = ck.tensors
            self.g_data.set_state(t["rng.data"])
            self.g_noise.set_state(t["rng.noise"].to(self.g_noise.get_state().device))
            torch.set_rng_state(t["rng.torch"])
            for aug in self.c.augmentations:  # what an adaptive augmentation adjusted (its p)
                aug.load_state(augment_state.get(aug.name, {}))
            if "rng.sampler_seed" in t:
                self.sampler.load_state({"seed": t["rng.sampler_seed"], "pos": t["rng.sampler_pos"]})
            else:  # an older gantk stored the permutation: a new order, from the restored data stream
                self.sampler.load_state({"seed": torch.randint(0, 2**62, (1,), generator=self.g_data)[0],
                                         "pos": torch.tensor(0)})
                warnings.warn(f"{ck.path} stores the batch order of an older gantk: the run continues with a new "
                              "data order (the weights, optimizers and noise continue exactly)", GantkNote,
                              stacklevel=3)
            self.precision.load(ck.module_state("amp"), str(ck.path))
        except (RuntimeError, KeyError, ValueError) as exc:
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
            amp=self.precision.state(),
            extra={"data_shape": list(self.c.data_shape), "latent_dim": self.c.latent_dim,
                   "model": self.c.model.name, "modality": self.c.modality, "components": self.c.record(),
                   **ckpt_mod.class_record(self.c.num_classes, self.c.class_names),
                   "augment": {a.name: a.state() for a in self.c.augmentations}},
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
        """Autocast for the networks' forward passes under ``--amp bf16`` / ``fp16``."""
        return self.precision.autocast()

    def _gen(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.G(z, y) if self.conditional else self.G(z)

    def _critic(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.D(x, y) if self.conditional else self.D(x)

    def _labels(self) -> torch.Tensor | None:
        """This rank's labels for a generator batch (None when unconditional)."""
        if not self.conditional:
            return None
        return distributed.shard(draw_labels(self.c.labels, self.cfg.batch_size, self.g_noise), self.dist)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _augmented(self, real: torch.Tensor | None, fake: torch.Tensor, step_kind: str,
                   index: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``--augment``: data-stage augmentations (flip) on the real batch, then the
        critic-stage ones (DiffAugment) on real and fake alike, differentiably. Their
        randomness is re-seeded from (seed, step kind, index, rank), so a resume or a
        lazy schedule never shifts it."""
        if not self.c.augmentations:
            return real, fake
        g = self.g_aug.manual_seed(distributed.derive_seed(self.cfg.seed, "augment", step_kind, index, self.dist.rank))
        for aug in self.c.augmentations:
            if aug.stage == "data" and real is not None:
                real = aug.apply(real, g)
            elif aug.stage == "critic":
                real = None if real is None else aug.apply(real, g)
                fake = aug.apply(fake, g)
        return real, fake

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
        real, y = self.sampler.next_with_labels() if self.conditional else (self.sampler.next(), None)
        z = self._noise()
        with torch.no_grad(), self._autocast():  # conditional: the fakes get the real batch's labels
            fake = self._gen(z, y).to(real.dtype)  # bf16 under amp: back to the data's dtype
        real, fake = self._augmented(real, fake, "critic", index)  # the critic's inputs, also the penalty's
        real, fake = self._layout(real), self._layout(fake)
        with self._autocast():
            if self._joint_forward:  # one batched pass over real and fake (see __init__)
                both = self._critic(torch.cat([real, fake]), None if y is None else torch.cat([y, y])).float()
                real_out, fake_out = both[: real.shape[0]], both[real.shape[0]:]
            else:
                real_out = self._critic(real, y).float()
                fake_out = self._critic(fake, y).float()
            loss = self.c.loss.critic_loss(real_out, fake_out)
        k = self.cfg.penalty_every
        penalty_step = index % k == 0
        early = self._adversarial_first and penalty_step
        self.opt_d.zero_grad(set_to_none=True)
        if early:
            self.precision.backward("critic", loss)  # frees the adversarial graph before the penalty's is built
        pen = None
        with self._autocast():
            if penalty_step:
                # ε in the dtype draw_epsilon uses, so the rank's slice matches its draw
                g = distributed.rank_stream(self.g_eps, distributed.derive_seed(self.cfg.seed, "eps", index),
                                            self.dist, real.shape[0], acc_dtype(real.dtype))
                # under amp the critic (and the backward to x̂) runs in bf16, but x̂ and
                # ∇ₓD(x̂) are float32 tensors, so the norm and penalty arithmetic is float32
                # conditional: the critic with the labels held fixed (gantk/training/labels.py);
                # under fp16 on the loss-scaled critic, unscaled inside the norm (gantk.training.amp)
                critic = FixedLabelCritic(self.D, y) if self.conditional else self.D
                pen = self.precision.penalty(self.c.enforcer, critic, real, fake, g)
        weighted = None if pen is None else (pen.value * k if k > 1 else pen.value)
        if early:
            if weighted is not None:
                self.precision.backward("critic", weighted)
        else:  # one backward of the sum
            self.precision.backward("critic", loss if weighted is None else loss + weighted)
        distributed.average_gradients(self.D.parameters(), self.dist)
        self.precision.step("critic", self.opt_d)  # (fp16: skipped when a gradient is not finite)
        self.c.enforcer.after_critic_step(self.D)
        for aug in self.c.augmentations:  # an adaptive augmentation (ADA) adjusts its p here
            aug.observe(real_out.detach(), fake_out.detach())
        out = {
            "critic_loss": loss.detach() + self.precision.shown("value", pen.value.detach()) if pen is not None
            else loss.detach(),
            "w_estimate": (real_out.detach().float().mean() - fake_out.detach().float().mean()),
        }
        if pen is not None:
            for k, v in pen.stats.items():
                out[k] = self.precision.shown(k, torch.as_tensor(v).detach().float())
        return out

    def generator_step(self) -> torch.Tensor:
        for p in self.D.parameters():
            p.requires_grad_(False)
        z = self._noise()
        y = self._labels()
        with self._autocast():
            real_out = None
            real = None
            if self.c.loss.needs_real_scores:  # conditional: the fakes get the real batch's labels
                real, y = self.sampler.next_with_labels() if self.conditional else (self.sampler.next(), None)
            real, fake = self._augmented(real, self._gen(z, y), "generator", self.step)
            if real is not None:
                with torch.no_grad():
                    real_out = self._critic(self._layout(real), y).float()
            fake_out = self._critic(self._layout(fake), y).float()
            if real_out is None:
                loss = self.c.loss.generator_loss(fake_out)
            else:
                loss = self.c.loss.generator_loss(fake_out, real_out)
        self.opt_g.zero_grad(set_to_none=True)
        self.precision.backward("generator", loss)
        distributed.average_gradients(self.G.parameters(), self.dist)
        self.precision.step("generator", self.opt_g)
        for p in self.D.parameters():
            p.requires_grad_(True)
        if self.dist.enabled and self._sync_buffers:  # BatchNorm running statistics: rank 0's
            distributed.broadcast_buffers(self.G, self.dist)
            distributed.broadcast_buffers(self.D, self.dist)
        return loss.detach()

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
        fake = G(self.z_fixed, self.y_fixed) if self.conditional else G(self.z_fixed)
        G.train(was)
        path = self.run_dir / "images" / f"step-{self.step:07d}.png"
        title = f"{self.cfg.loss} + {self.cfg.lipschitz}, step {self.step}" + (", EMA" if self.G_ema is not None else "")
        real = critic = None
        if self.c.modality == "points":
            idx = torch.randperm(self.c.data.shape[0], generator=torch.Generator().manual_seed(0))[:1024]
            real, critic = self.c.data[idx.to(self.c.data.device)], (None if self.conditional else self.D)
        if self.conditional and self.c.modality == "image":  # one row per class
            plots.save_class_grid(path, fake, self.y_fixed.cpu(), self.c.num_classes, title=title)
        else:
            plots.save_samples_picture(path, fake, self.c.modality, title=title, real=real, critic=critic)
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
        """Run to ``cfg.steps``: each iteration n_critic critic steps, one generator
        step and the average's update, then the log line, checkpoint and picture when
        due. SIGINT/SIGTERM stop after the current iteration with a checkpoint."""
        t0 = time.perf_counter()
        handlers = self._install_signal_handlers()
        self._acc = MetricAccumulator(self.device)
        self._last: dict[str, float] = {}
        self._t_log = time.perf_counter()
        try:
            for cb in self.callbacks:  # (a logger that cannot start fails the start)
                cb.on_start(self)
            while self.step < self.cfg.steps:
                self._iteration()
                final = self.step >= self.cfg.steps
                # a signal reaches the ranks at different steps: all stop at the first one
                stop = distributed.max_over_ranks(self._stop_signal or 0, self.dist)
                self._periodic(final, t0)
                if stop and not final:
                    path = self.save()
                    code = 130 if stop == signal.SIGINT else 143
                    raise TrainingInterrupted(
                        f"stopped at step {self.step} by {signal.Signals(stop).name}; checkpoint "
                        f"{path}; continue with: gantk train --resume {self.run_dir}", code)
            checkpoint = self.last_checkpoint or self.save()
        except KeyboardInterrupt:
            # a second signal (or one with no handler installed) may land inside a step:
            # a checkpoint now would hold half of it, so the last whole-step one stands
            self._remove_if_empty()
            raise TrainingInterrupted(
                f"interrupted inside step {self.step + 1}; not saved: "
                + (f"the last checkpoint stands ({self.last_checkpoint}); continue with: gantk train --resume "
                   f"{self.run_dir}" if self.last_checkpoint else "no checkpoint was written"),
                130) from None
        except BaseException:
            self._remove_if_empty()
            raise
        finally:
            for sig, h in handlers.items():
                signal.signal(sig, h)
            if hasattr(self.sampler, "close"):  # a streaming loader's workers hold the lock's file too
                self.sampler.close()
            if self._owns_lock and self._lock is not None:
                self._lock.release()
        result = TrainResult(self.run_dir, self.step, checkpoint, self.last_image,
                             self._last, time.perf_counter() - t0)
        for cb in self.callbacks:
            cb.on_end(result)
        return result

    def _remove_if_empty(self) -> None:
        """A new run that failed before its first checkpoint leaves no folder behind
        (only what gantk wrote there is removed, and the folder only when then empty)."""
        if not (self._fresh and self.last_checkpoint is None and self.dist.is_main):
            return
        for name in ("config.json", "metrics.jsonl", "eval.jsonl", LOCK_NAME):
            (self.run_dir / name).unlink(missing_ok=True)
        for sub in ("images", ckpt_mod.CKPT_DIR):
            folder = self.run_dir / sub
            if folder.is_dir():
                for p in folder.glob("step-*.png"):
                    p.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()
        with contextlib.suppress(OSError):
            self.run_dir.rmdir()

    def _install_signal_handlers(self) -> dict:
        """The stop-after-this-step handler for SIGINT and SIGTERM, except for a signal the
        process was told to ignore (``nohup``, or a shell's background job, starts a
        program with SIGINT ignored): that one stays ignored for the whole run, as it
        was before training began, rather than being ignored during start-up and acted
        on once the steps run."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    handlers[sig] = signal.signal(sig, self._request_stop)
        return handlers

    def _iteration(self) -> None:
        """One generator iteration: n_critic critic steps, a generator step, the
        weight average, and the step's figures into the accumulator."""
        cfg = self.cfg
        if cfg.lr_decay != "none":  # a constant lr stays as the optimizers were built
            self._set_lr()
        crit: dict[str, torch.Tensor] = {}
        self._critic_index = self.step * cfg.n_critic
        for _ in range(cfg.n_critic):
            crit.update(self.critic_step())  # the penalty's figures from its last step
        g_loss = self.generator_step()
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        self.step += 1
        self._acc.add(g_loss, crit)
        for cb in self.callbacks:
            cb.on_step(self.step)

    def _periodic(self, final: bool, t0: float) -> None:
        """The log line, checkpoint and picture that are due at this step."""
        cfg = self.cfg
        if (cfg.log_every and self.step % cfg.log_every == 0) or final:
            self._log(t0)
        if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or final:
            self.save()
        if (cfg.image_every and self.step % cfg.image_every == 0) or final:
            self.write_image()

    def _log(self, t0: float) -> None:
        last = self._acc.means(self.dist, self.step, self.last_checkpoint)
        now = time.perf_counter()
        last["steps_per_s"] = self._acc.steps / max(now - self._t_log, 1e-9)
        # six significant digits, not six decimals: a penalty of 3e-8 is not 0
        rec = {"step": self.step, **{k: round_sig(v) for k, v in last.items()}, "time": round(now - t0, 3)}
        if self.cfg.lr_decay != "none":  # the lr this step ran with
            rec["lr"] = self.opt_g.param_groups[0]["lr"]
        if self.dist.is_main:
            append_line(self.metrics_path, json.dumps(rec))
        for cb in self.callbacks:
            cb.on_log(self.step, last)
        self._last = last
        self._acc.reset()
        self._t_log = now


def train(cfg: TrainConfig, *, callbacks: list[Callback] | None = None) -> TrainResult:
    """Train a new run from ``cfg``."""
    return Trainer(cfg, callbacks=callbacks).train()
