"""Evaluation during training (``gantk train --eval-every K``): a trainer callback
that scores the current generator and appends to ``eval.jsonl`` in the run folder."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from ..components import Protocol
from ..data import to_float
from ..errors import UsageError
from ..fsutil import append_line, round_sig
from ..sampling import class_labels, generate
from ..training import Callback
from .digits import CLASSIFIER_EPOCHS
from .evaluate import make_protocol

#: generated samples each evaluation during training uses
CALLBACK_N = 1000


class EvalCallback(Callback):
    """Evaluates the trainer's current generator in-process every ``every`` steps (and
    at the last step) with ``n`` samples, and appends one JSON line to
    ``<run>/eval.jsonl``: ``step``, the protocol's numbers, ``critic_w`` — the critic's
    estimate E[D(real)] − E[D(fake)] on the same fake samples and as many real training
    samples (by Kantorovich–Rubinstein duality at most W1, up to sampling error, while
    the critic is 1-Lipschitz) — and the training
    ``w_estimate`` of metrics.jsonl logged at that step (or the latest before it) with
    its ``w_estimate_step``.

    It draws no numbers from the trainer's random streams, and runs both networks in
    eval mode (no BatchNorm statistics or spectral-norm power iterations are updated),
    so a run with evaluation trains exactly as one without.

    ``features`` as for :func:`~gantk.eval.evaluate.make_protocol`, but None by default:
    image data is scored on Inception-v3 features at this small N (the real set's
    features computed once, at the start, and cached), while digits keep their
    classifier numbers only (``gantk eval`` adds Inception's); ``"auto"`` adds them
    during training too. The extractor runs on the trainer's device."""

    def __init__(self, every: int, n: int = CALLBACK_N, seed: int = 0, *,
                 classifier_epochs: int = CLASSIFIER_EPOCHS, cache: str | Path | None = None,
                 features: str | None = None, features_weights: str | None = None):
        if every < 1:
            raise UsageError(f"--eval-every must be >= 1, got {every}")
        self.every, self.n, self.seed = every, n, seed
        self.classifier_epochs, self.cache = classifier_epochs, cache
        self.features, self.features_weights = features, features_weights
        self.trainer = None
        self.protocol: Protocol | None = None
        self.path: Path | None = None
        self.records: list[dict[str, Any]] = []
        self._last_w: tuple[int, float] | None = None
        self._done_step: int | None = None
        self._pending: int | None = None

    def on_start(self, trainer) -> None:
        self.trainer = trainer
        c, cfg = trainer.c, trainer.cfg
        self.path = Path(trainer.run_dir) / "eval.jsonl"
        self.protocol = make_protocol(cfg.data, cfg.data_options, c.data_shape, self.n, self.seed,
                                      # a streamed set is read again by the protocol, as it needs it
                                      data_seed=cfg.seed, real=None if c.streamed else to_float(c.data),
                                      real_labels=None if c.streamed or c.labels is None else c.labels.cpu(),
                                      classifier_epochs=self.classifier_epochs,
                                      cache=self.cache, features=self.features,
                                      features_weights=self.features_weights, device=trainer.device)
        idx = torch.randperm(len(c.data), generator=torch.Generator().manual_seed(self.seed))[: self.n]
        self._critic_real = to_float(c.data[idx.to(c.data.device)])
        self._critic_real_labels = None if c.labels is None else c.labels[idx.to(c.labels.device)]

    def _log_due(self, step: int) -> bool:
        cfg = self.trainer.cfg
        return bool(cfg.log_every and step % cfg.log_every == 0) or step >= cfg.steps

    def on_step(self, step: int) -> None:
        if self.trainer is None:
            return
        if self._pending is not None:  # a deferred evaluation whose log never came
            self._pending = None
            self.evaluate_now(step)
        if step % self.every == 0 or step >= self.trainer.cfg.steps:
            if self._log_due(step):
                self._pending = step  # wait for this step's W estimate (on_log)
            else:
                self.evaluate_now(step)

    def on_log(self, step: int, metrics_: dict[str, float]) -> None:
        if "w_estimate" in metrics_:
            self._last_w = (step, float(metrics_["w_estimate"]))
        self._flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        self._flush()

    def on_end(self, result) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending is not None and self.trainer is not None:
            self._pending = None
            self.evaluate_now(self.trainer.step)

    @torch.no_grad()
    def _critic_w(self, fake: torch.Tensor, labels: torch.Tensor | None = None) -> float:
        D = self.trainer.D
        was = D.training
        D.eval()
        try:
            dev = self._critic_real.device
            if labels is None:
                real_scores = torch.cat([D(x).float().reshape(-1) for x in self._critic_real.split(1024)])
                fake_scores = torch.cat([D(x.to(dev)).float().reshape(-1) for x in fake.split(1024)])
            else:  # a conditional critic: each sample with its own label
                real_y = self._critic_real_labels
                real_scores = torch.cat([D(x, y).float().reshape(-1) for x, y in
                                         zip(self._critic_real.split(1024), real_y.split(1024))])
                fake_scores = torch.cat([D(x.to(dev), y.to(dev)).float().reshape(-1) for x, y in
                                         zip(fake.split(1024), labels.split(1024))])
        finally:
            D.train(was)
        return float(real_scores.mean() - fake_scores.mean())

    def evaluate_now(self, step: int) -> dict[str, Any]:
        """Evaluate now and append the record (once per step)."""
        if self._done_step == step and self.records:
            return self.records[-1]
        t0 = time.perf_counter()
        tr = self.trainer
        labels = class_labels(self.n, tr.c.num_classes)  # a conditional run: the classes in turn
        fake = generate(tr.sample_generator, tr.c.latent_dim, self.n, self.seed, tr.device, labels=labels)
        rec: dict[str, Any] = {"step": step, "protocol": self.protocol.name, "n": self.n}
        if torch.isfinite(fake).all():
            use = labels is not None and self.protocol.uses_labels
            rec.update(self.protocol.score(fake, labels=labels) if use else self.protocol.score(fake))
            rec["critic_w"] = self._critic_w(fake, labels)
        else:  # recorded, not raised: the trainer's own divergence check stops the run
            rec["error"] = "the generator produced NaN or infinite samples"
        if self._last_w is not None:
            rec["w_estimate"], rec["w_estimate_step"] = self._last_w[1], self._last_w[0]
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        append_line(self.path, json.dumps(_rounded(rec)))
        self.records.append(rec)
        for cb in tr.callbacks:  # loggers see the numbers too
            if cb is not self:
                cb.on_eval(step, rec)
        self._done_step = step
        return rec


def _rounded(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (round_sig(v) if isinstance(v, float) else v) for k, v in rec.items()}
