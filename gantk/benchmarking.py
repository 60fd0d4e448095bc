"""Benchmark helpers shared by ``benchmarks/`` and ``gantk bench``: a timer, the
metadata of a run, and the training-step comparison (gantk's step vs the WGAN-GP
reference loop).

The timer warms up, then repeats the call until a time budget (or repeat cap) is
spent, synchronising the GPU inside the timed region, and reports the median and the
interquartile range. Benchmarks are not tests: nothing here asserts a timing.
"""
from __future__ import annotations

import copy
import datetime as _dt
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import to_float
from .errors import ExtensionError, UsageError
from .ops import gradient_norm_penalty, interpolate
from .plugins import get_registry
from .resolve import make_config
from .training import Trainer

ROOT = Path(__file__).resolve().parents[1]  # the checkout (for git metadata)


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timeit(
    fn: Callable[[], Any],
    *,
    device: torch.device | str = "cpu",
    warmup: int = 3,
    min_repeat: int = 5,
    max_repeat: int = 200,
    min_time: float = 0.5,
) -> dict[str, float]:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``min_repeat`` timed calls
    and more until ``min_time`` seconds or ``max_repeat`` calls. Each call is timed on
    its own with the device synchronised before it and inside the timed region after
    it. Returns seconds: median, q1, q3, iqr (q3 − q1), min, and the count n."""
    for _ in range(warmup):
        fn()
    _sync(device)
    # On a GPU one call is often shorter than its launch overhead: time `inner` calls
    # back to back (launches queue as they do in training) and divide.
    inner = 1
    if torch.device(device).type == "cuda":
        t0 = time.perf_counter()
        fn()
        _sync(device)
        one = time.perf_counter() - t0
        inner = max(1, min(100, int(2e-3 / max(one, 1e-7))))
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeat or (len(times) < max_repeat and time.perf_counter() - start < min_time):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / inner)
    if len(times) >= 4:
        q1, _, q3 = statistics.quantiles(times, n=4)
    else:
        q1 = q3 = statistics.median(times)
    return {
        "median": statistics.median(times),
        "q1": q1,
        "q3": q3,
        "iqr": q3 - q1,
        "min": min(times),
        "n": len(times),
    }


def memory_bandwidth(device: torch.device | str = "cpu", mbytes: int = 256) -> dict[str, float]:
    """Copy bandwidth: ``dst.copy_(src)`` of ``mbytes`` MiB moves 2×mbytes (one read,
    one write). Returns bytes/s (median) and the timing."""
    n = mbytes * 2**20 // 4
    src = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), device=device, warmup=2, min_repeat=5, min_time=1.0)
    return {"bytes_per_s": 2 * n * 4 / t["median"], "bytes_moved": 2 * n * 4, "time": t}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except Exception:  # no git: metadata only
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_metadata(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Where and with what a benchmark ran: commit, versions, device, CPU."""
    dev = torch.device(device)
    status = _git("status", "--porcelain")
    meta: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD") or "none (no commit yet)",
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        # the ISA that decides CPU speed, as torch reports it (bf16 matrix units: avx512_bf16, amx)
        "cpu_isa": {"capability": torch.backends.cpu.get_cpu_capability(),
                    "avx512": torch.cpu._is_avx512_supported(),
                    "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
                    "amx_tile": torch.cpu._is_amx_tile_supported(),
                    "amx_fp16": torch.cpu._is_amx_fp16_supported()},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": dev.type,
        # other work on the machine skews CPU timings: recorded, not corrected for
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        meta["device_name"] = props.name
        meta["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        meta["sm_count"] = props.multi_processor_count
    else:
        meta["device_name"] = meta["cpu"]
    return meta


# --------------------------------------------------------------------------------------
# The training step: gantk's Trainer vs a loop written like the WGAN-GP reference code
# --------------------------------------------------------------------------------------
STEP_CASES = {
    "toy-mlp": {"data": "25gaussians", "model": "mlp", "batch_size": 256, "shape": (2,)},
    "dcgan-32": {"data": None, "model": "dcgan", "batch_size": 64, "shape": (3, 32, 32)},
    "dcgan-64": {"data": None, "model": "dcgan", "batch_size": 64, "shape": (3, 64, 64)},
}


class ReferenceLoop:
    """WGAN-GP as the authors' PyTorch reference code writes it: three backward calls per
    critic step (real, fake, penalty), ε of shape (B, 1, …) from the global RNG,
    ``autograd.grad`` with ``grad_outputs=ones``, ``g.view(B, -1).norm(2, dim=1)``."""

    def __init__(self, G, D, data, latent_dim, batch_size, lr, betas, lam):
        self.G, self.D, self.data = G, D, data
        self.latent, self.B, self.lam = latent_dim, batch_size, lam
        self.opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
        self.opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
        self.dev = data.device

    @classmethod
    def like(cls, tr, lam: float = 10.0) -> "ReferenceLoop":
        """The reference loop on copies of a Trainer's networks, with its data, batch and
        optimizer settings."""
        return cls(copy.deepcopy(tr.G), copy.deepcopy(tr.D), tr.c.data, tr.c.latent_dim,
                   tr.cfg.batch_size, tr.cfg.lr, tr.cfg.betas, lam)

    def critic_step(self):
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.D.zero_grad()
        real = to_float(self.data[torch.randint(0, self.data.shape[0], (self.B,), device=self.dev)])
        d_real = self.D(real).mean()
        d_real.backward(torch.tensor(-1.0, device=self.dev))
        with torch.no_grad():
            fake = self.G(torch.randn(self.B, self.latent, device=self.dev))
        d_fake = self.D(fake).mean()
        d_fake.backward(torch.tensor(1.0, device=self.dev))
        alpha = torch.rand(self.B, *([1] * (real.dim() - 1)), device=self.dev)
        interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        out = self.D(interp)
        (grads,) = torch.autograd.grad(out, interp, grad_outputs=torch.ones_like(out), create_graph=True,
                                       retain_graph=True)
        gp = ((grads.view(self.B, -1).norm(2, dim=1) - 1) ** 2).mean() * self.lam
        gp.backward()
        self.opt_d.step()

    def generator_step(self):
        for p in self.D.parameters():
            p.requires_grad_(False)
        self.G.zero_grad()
        g = self.D(self.G(torch.randn(self.B, self.latent, device=self.dev))).mean()
        g.backward(torch.tensor(-1.0, device=self.dev))
        self.opt_g.step()


def _case_data(case: dict, workdir: Path) -> str:
    if case["data"]:
        return case["data"]
    path = workdir / f"images-{'x'.join(map(str, case['shape']))}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        np.save(path, rng.integers(0, 256, size=(512, *case["shape"]), dtype=np.uint8))
    return str(path)


def step_case_trainer(name: str, workdir: Path, device: str = "cpu", model_options: dict | None = None,
                      **overrides):
    """A WGAN-GP Trainer (λ = 10) for one of :data:`STEP_CASES`, with ``overrides`` of its
    config; nothing written during training (no checkpoints, pictures or logs)."""
    case = STEP_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = make_config("wgan-gp", data=_case_data(case, workdir), model=case["model"],
                          batch_size=case["batch_size"], steps=1, device=device, out=str(workdir / "runs"),
                          lipschitz_options={"lambda": 10.0}, model_options=dict(model_options or {}),
                          checkpoint_every=0, image_every=0, log_every=0, **overrides)
        return Trainer(cfg)


#: Opt-in speed levers of the training step (config overrides), for ``bench_steps(levers=...)``:
#: what the joint real+fake forward buys (by turning it off) and lazy regularization.
LEVERS: dict[str, dict[str, Any]] = {
    "separate-forward": {"joint_forward": False},
    "penalty-every-4": {"penalty_every": 4},
    "penalty-every-8": {"penalty_every": 8},
    "penalty-every-16": {"penalty_every": 16},
    # GPU levers (bench_step.py times them on CUDA by default, on the CPU when asked)
    "amp-bf16": {"amp": "bf16"},
    "channels-last": {"channels_last": True},
    "amp-bf16+channels-last": {"amp": "bf16", "channels_last": True},
}
GPU_LEVERS = ("amp-bf16", "channels-last", "amp-bf16+channels-last")


#: critic steps per generator step in the iterations/s figures of :func:`bench_steps`
_N_CRITIC = 5


def _iter_s(critic_s: float, generator_s: float) -> float:
    """Seconds per training iteration: ``_N_CRITIC`` critic steps and one generator step."""
    return _N_CRITIC * critic_s + generator_s


def _time_steps(tr, ref: ReferenceLoop, device: str, min_time: float) -> dict[str, dict[str, float]]:
    """One critic step and one generator step of the Trainer and of the reference loop."""
    return {
        "gantk_critic": timeit(tr.critic_step, device=device, min_time=min_time),
        "reference_critic": timeit(ref.critic_step, device=device, min_time=min_time),
        "gantk_generator": timeit(tr.generator_step, device=device, min_time=min_time),
        "reference_generator": timeit(ref.generator_step, device=device, min_time=min_time),
    }


def _time_penalty_elementwise(case: dict, device: str, min_time: float) -> dict[str, float]:
    """The penalty's elementwise work (interpolation and norm head, ``impl="auto"``) on
    tensors of the case's shape."""
    shape = (case["batch_size"], *case["shape"])
    real = torch.randn(shape, device=device)
    fake = torch.randn(shape, device=device)
    g = (0.05 * torch.randn(shape, device=device)).requires_grad_(True)

    def elementwise():
        interpolate(real, fake)
        pen, _ = gradient_norm_penalty(g)
        torch.autograd.grad(pen, g)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timeit(elementwise, device=device, min_time=min_time / 2)


def _time_lever(make_trainer: Callable[..., Any], overrides: dict[str, Any], t: dict[str, dict[str, float]],
                reference_iter_per_s: float, device: str, min_time: float) -> dict[str, Any]:
    """One lever's entry of ``row["levers"]``: its Trainer's critic step averaged over
    ``penalty_every`` consecutive steps, against the reference (``t``: the case's times);
    a note when the overrides do not apply to the case."""
    try:
        ltr = make_trainer(**overrides)
    except UsageError as exc:  # e.g. channels-last on the toy MLP
        return {"overrides": overrides, "missing": str(exc)}
    k = max(1, ltr.cfg.penalty_every)

    def k_steps():
        for _ in range(k):
            ltr.critic_step()

    crit = timeit(k_steps, device=device, min_time=min_time)["median"] / k
    it = _iter_s(crit, t["gantk_generator"]["median"])
    return {
        "overrides": overrides, "critic_s": crit, "iter_per_s": 1.0 / it,
        "speedup": (1.0 / it) / reference_iter_per_s,
        "critic_speedup": t["reference_critic"]["median"] / crit,
    }


def _bench_step_case(name: str, tmp: Path, device: str, min_time: float, model_options: dict | None,
                     levers: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """One row of :func:`bench_steps`: the case ``name`` timed, or a note when its model
    is not registered."""
    case = STEP_CASES[name]
    row: dict[str, Any] = {"case": name, "device": device, "batch_size": case["batch_size"],
                           "shape": list(case["shape"]), "model": case["model"]}
    if case["model"] not in get_registry("model"):
        row["missing"] = f"model {case['model']!r} is not registered"
        return row

    def trainer(**overrides):
        return step_case_trainer(name, tmp, device, model_options, **overrides)

    tr = trainer()
    t = _time_steps(tr, ReferenceLoop.like(tr), device, min_time)
    t["penalty_elementwise"] = _time_penalty_elementwise(case, device, min_time)
    for who in ("gantk", "reference"):
        row[f"{who}_iter_per_s"] = 1.0 / _iter_s(t[f"{who}_critic"]["median"], t[f"{who}_generator"]["median"])
    row["times"] = t
    row["speedup"] = row["gantk_iter_per_s"] / row["reference_iter_per_s"]
    row["critic_speedup"] = t["reference_critic"]["median"] / t["gantk_critic"]["median"]
    row["penalty_share"] = t["penalty_elementwise"]["median"] / t["gantk_critic"]["median"]
    if levers:
        row["levers"] = {label: _time_lever(trainer, overrides, t, row["reference_iter_per_s"], device, min_time)
                         for label, overrides in levers.items()}
    return row


def bench_steps(cases=("toy-mlp",), device: str = "cpu", min_time: float = 1.0, workdir: Path | None = None,
                model_options: dict | None = None, levers: dict[str, dict[str, Any]] | None = None,
                ) -> list[dict[str, Any]]:
    """Time one critic step and one generator step of gantk's Trainer and of
    :class:`ReferenceLoop` on the same networks, batch, dtype and seed; also the
    share of the critic step spent in the penalty's elementwise work (interpolation and
    norm head, gantk ``impl="auto"``). A case whose model is not registered is a note.

    ``levers`` maps a label to config overrides (see :data:`LEVERS`): each is timed as
    another Trainer on the same case, its critic step averaged over ``penalty_every``
    consecutive steps (the lazy penalty runs on one of them), and reported in
    ``row["levers"]`` as seconds per critic step and iterations/s against the reference."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="gantk-bench-"))
    return [_bench_step_case(name, tmp, device, min_time, model_options, levers) for name in cases]


# --------------------------------------------------------------------------------------
# The penalty head alone
# --------------------------------------------------------------------------------------
def user_step(real, fake, g):
    """Interpolation and penalty head as WGAN-GP code usually writes them."""
    b = real.shape[0]
    eps = torch.rand(b, *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = eps * real + (1 - eps) * fake
    n = g.view(b, -1).norm(2, dim=1)
    pen = ((n - 1) ** 2).mean()
    return x_hat, pen


def bench_penalty_quick(device: str = "cpu", shapes=((256, 2), (64, 3, 32, 32), (64, 3, 64, 64)),
                        min_time: float = 0.5) -> list[dict[str, Any]]:
    """Interpolation + norm-penalty forward and backward: as users write it vs gantk's
    reference (``impl="ref"``) vs the fused extension (``impl="ext"``, a note when it
    cannot be had)."""
    rows = []
    for shape in shapes:
        gen = torch.Generator(device=device).manual_seed(0)
        real = torch.randn(shape, generator=gen, device=device)
        fake = torch.randn(shape, generator=gen, device=device)
        g = (0.05 * torch.randn(shape, generator=gen, device=device)).requires_grad_(True)

        def user():
            _, pen = user_step(real, fake, g)
            torch.autograd.grad(pen, g)

        def ours(impl):
            def f():
                interpolate(real, fake, impl=impl)
                pen, _ = gradient_norm_penalty(g, impl=impl)
                torch.autograd.grad(pen, g)
            return f

        row: dict[str, Any] = {"shape": list(shape), "device": device}
        row["user"] = timeit(user, device=device, min_time=min_time)["median"]
        row["ref"] = timeit(ours("ref"), device=device, min_time=min_time)["median"]
        try:
            row["ext"] = timeit(ours("ext"), device=device, min_time=min_time)["median"]
        except ExtensionError as exc:
            row["ext_missing"] = str(exc)
        rows.append(row)
    return rows
