"""The ``gantk`` command line: parsing and printing only.

Results go to stdout; progress, warnings and errors to stderr. Library errors
(:class:`gantk.errors.GantkError`) become one line and exit code 1 (2 for usage
errors); set ``GANTK_DEBUG=1`` to see the traceback.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import GantkError

app = typer.Typer(
    name="gantk",
    help="Train Wasserstein GANs (WGAN, WGAN-GP, SN-GAN) with pluggable models, losses and Lipschitz enforcers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
ext_app = typer.Typer(help="The fused C++/CUDA gradient-penalty extension.", no_args_is_help=True)
app.add_typer(ext_app, name="ext")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _debug() -> bool:
    return os.environ.get("GANTK_DEBUG", "").strip() not in ("", "0")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    from .train import GantkNote

    if issubclass(category, GantkNote):
        err.print(f"[cyan]note:[/] {message}", highlight=False)
    else:
        err.print(f"[yellow]warning:[/] {message}", highlight=False)


@contextlib.contextmanager
def _handle_errors():
    """Turn library errors into one line on stderr and an exit code; show every note and
    warning of this command (none is swallowed by Python's once-per-place rule)."""
    old = warnings.showwarning
    warnings.showwarning = _show_warning
    caught = warnings.catch_warnings()
    caught.__enter__()
    warnings.simplefilter("always", UserWarning)
    try:
        yield
    except GantkError as exc:
        if _debug():
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except typer.BadParameter as exc:
        err.print(f"[red]error:[/] invalid value for {exc.param_hint}: {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        caught.__exit__(None, None, None)
        warnings.showwarning = old


_reported_failures = False


def _load_plugins() -> None:
    """Load plugins once and report third-party plugins that failed (once)."""
    global _reported_failures
    from .plugins import plugin_failures

    fails = plugin_failures()
    if fails and not _reported_failures:
        for f in fails:
            err.print(f"[yellow]warning:[/] plugin {f.name!r} was skipped: {f.error}", highlight=False)
        _reported_failures = True


def _parse_options(items: list[str] | None) -> dict[str, dict[str, str]]:
    kinds = {"data": "data", "dataset": "data", "model": "model", "loss": "loss",
             "lipschitz": "lipschitz", "enforcer": "lipschitz"}
    outd: dict[str, dict[str, str]] = {"data": {}, "model": {}, "loss": {}, "lipschitz": {}}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise typer.BadParameter(f"{item!r}: expected KIND.KEY=VALUE, e.g. lipschitz.lambda=10", param_hint="--option")
        lhs, value = item.split("=", 1)
        kind, key = lhs.split(".", 1)
        if kind not in kinds:
            raise typer.BadParameter(f"{item!r}: KIND must be one of data, model, loss, lipschitz", param_hint="--option")
        outd[kinds[kind]][key] = value
    return outd


def _parse_betas(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        b1, b2 = (float(x) for x in text.replace(" ", "").split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected two numbers like 0,0.9", param_hint="--betas") from None
    return (b1, b2)


def _check_name(kind: str, name: str | None, param: str) -> None:
    """Unknown component names are usage errors with a 'did you mean'."""
    if name is None:
        return
    from .errors import UnknownComponentError
    from .plugins import get_registry

    try:
        get_registry(kind).get(name)
    except UnknownComponentError as exc:
        raise typer.BadParameter(str(exc), param_hint=param) from None


def _resolution_key(data: str | None, preset: str | None) -> str:
    """The data option --resolution sets: ``resolution``, or ``size`` for a named data
    set (given or from the preset) that has ``size`` but no ``resolution`` (digits)."""
    from .config import PRESETS
    from .plugins import get_registry

    name = data if data is not None else PRESETS.get(preset or "", {}).get("data")
    reg = get_registry("dataset")
    if name in reg:
        opts = reg.get(name).options
        if "resolution" not in opts and "size" in opts:
            return "size"
    return "resolution"


@app.command()
def train(
    data: Annotated[Optional[str], typer.Option(help="Dataset name (see `gantk plugins`) or path to a tensor file. [default: 25gaussians]")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model family. [default: mlp for points, dcgan for images]")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Adversarial loss: minimax, ns, wasserstein, hinge, lsgan, or a plugin's. [default: from the preset]")] = None,
    lipschitz: Annotated[Optional[str], typer.Option(help="Lipschitz enforcer: none, clip, gp, lp, sn, or a plugin's. [default: from the preset]")] = None,
    preset: Annotated[Optional[str], typer.Option(help="gan, wgan, wgan-gp or sngan: loss, enforcer and optimizer settings from the paper; flags override. [default: inferred from --loss/--lipschitz, else wgan-gp]")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Generator updates (total, also when resuming). [default: 1000]")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per batch. [default: 256]")] = None,
    n_critic: Annotated[Optional[int], typer.Option("--n-critic", help="Critic updates per generator update. [default: from the preset]")] = None,
    lr_floor: Annotated[Optional[float], typer.Option("--lr-floor", help="With --lr-decay linear: stop the decay at this fraction of --lr and hold it. [default: 0, down to 0; 0.3 for WGAN-GP on the toy mixtures]")] = None,
    ema: Annotated[Optional[float], typer.Option("--ema", help="Keep an exponential moving average of the generator's weights with this decay per step; samples, pictures and evaluations use it (sample/eval --raw: the weights themselves). [default: 0, off; 0.99 for WGAN-GP on the toy mixtures]")] = None,
    penalty_every: Annotated[Optional[int], typer.Option("--penalty-every", help="Lazy regularization: the Lipschitz penalty on every k-th critic step only, weighted k times (StyleGAN2). [default: 1, every step; 4 for WGAN-GP on the toy mixtures]")] = None,
    joint_forward: Annotated[Optional[bool], typer.Option("--joint-forward/--separate-forward", help="Score real and fake in one batched critic forward (critics without BatchNorm). [default: joint]")] = None,
    amp: Annotated[Optional[str], typer.Option(help="Mixed precision: off, or bf16 (autocast forward passes; weights, optimizer state and the penalty's norm arithmetic stay float32). [default: off]")] = None,
    channels_last: Annotated[Optional[bool], typer.Option("--channels-last", help="Channels-last (NHWC) images and conv weights, the fast layout of cuDNN and oneDNN convolutions. [default: off]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of both networks. [default: from the preset]")] = None,
    lr_decay: Annotated[Optional[str], typer.Option("--lr-decay", help="Learning-rate schedule: none, or linear (lr down to 0 at the last step, as in the WGAN-GP authors' CIFAR-10 code, or to --lr-floor). [default: linear for the toy sets, else none]")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam, rmsprop or sgd. [default: from the preset]")] = None,
    betas: Annotated[Optional[str], typer.Option(help="Adam betas, e.g. 0,0.9. [default: from the preset]")] = None,
    latent_dim: Annotated[Optional[int], typer.Option("--latent-dim", help="Latent size. [default: 2 for 2-D toy data, else the model's]")] = None,
    lambda_: Annotated[Optional[float], typer.Option("--lambda", help="Penalty weight λ of gp/lp (same as -O lipschitz.lambda=...). [default: 10]")] = None,
    clip: Annotated[Optional[float], typer.Option("--clip", help="Clipping bound c of clip (same as -O lipschitz.c=...). [default: 0.01]")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-O", help="Component option KIND.KEY=VALUE (KIND: data, model, loss, lipschitz); repeatable, e.g. -O lipschitz.k=0 -O model.width=256.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (data, initialisation, noise). [default: 0]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda. [default: auto]")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Folder that receives run folders. [default: runs]")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name. [default: DATA-PRESET-TIME]")] = None,
    log_every: Annotated[Optional[int], typer.Option("--log-every", help="Write metrics.jsonl every N steps. [default: 50]")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="Checkpoint every N steps (and at the end). [default: 500]")] = None,
    image_every: Annotated[Optional[int], typer.Option("--image-every", help="Picture every N steps (and at the end). [default: 500]")] = None,
    keep: Annotated[Optional[int], typer.Option(help="Checkpoints kept. [default: 3]")] = None,
    allow_batchnorm: Annotated[Optional[bool], typer.Option("--allow-batchnorm", help="Allow a BatchNorm critic under gp/lp (wrong per-sample penalty; not recommended).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the run in this folder (or from this checkpoint) with its stored config.")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Evaluate the generator every K steps (and at the end) with 1000 samples, as `gantk eval` does; appends to eval.jsonl in the run folder. [default: off]")] = None,
    resolution: Annotated[Optional[int], typer.Option(help="Image side in pixels for image data (-O data.resolution=..., or data.size=... for digits). [default: the data set's]")] = None,
    channels: Annotated[Optional[int], typer.Option(help="Image channels for image folders: 3 (RGB) or 1 (grayscale) (-O data.channels=...). [default: 3]")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for torch (1 is often fastest on a busy machine). [default: torch's choice]")] = None,
) -> None:
    """Train a GAN; writes a run folder with checkpoints, metrics.jsonl and pictures."""
    from .config import make_config
    from .progress import RichProgress

    with _handle_errors():
        if threads is not None:
            if threads < 1:
                raise typer.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
            import torch

            torch.set_num_threads(threads)
        opts = _parse_options(option)
        if lambda_ is not None:
            opts["lipschitz"]["lambda"] = lambda_
        if clip is not None:
            opts["lipschitz"]["c"] = clip
        _load_plugins()
        if resolution is not None:
            opts["data"][_resolution_key(data, preset)] = resolution
        if channels is not None:
            opts["data"]["channels"] = channels
        _check_name("loss", loss, "--loss")
        _check_name("lipschitz", lipschitz, "--lipschitz")
        _check_name("model", model, "--model")
        if preset is not None:
            from .config import PRESETS
            from .errors import UnknownComponentError

            if preset not in PRESETS:
                raise typer.BadParameter(str(UnknownComponentError("preset", preset, PRESETS)), param_hint="--preset")
        fields = dict(
            data=data, model=model, loss=loss, lipschitz=lipschitz, steps=steps, batch_size=batch_size,
            n_critic=n_critic, lr=lr, lr_decay=lr_decay, optimizer=optimizer, betas=_parse_betas(betas), latent_dim=latent_dim,
            seed=seed, device=device, out=out_dir, name=name, log_every=log_every,
            checkpoint_every=checkpoint_every, image_every=image_every, keep=keep,
            allow_batchnorm=allow_batchnorm, penalty_every=penalty_every, joint_forward=joint_forward,
            amp=amp, channels_last=channels_last, ema=ema, lr_floor=lr_floor,
        )
        for kind in ("data", "model", "loss", "lipschitz"):
            if opts[kind]:
                fields[f"{kind}_options"] = opts[kind]
        from . import train as train_mod

        if eval_every is not None and eval_every < 1:
            raise typer.BadParameter(f"must be >= 1, got {eval_every}", param_hint="--eval-every")
        progress = RichProgress(err)
        callbacks: list = [progress]
        if eval_every is not None:
            from .evaluate import EvalCallback

            callbacks.append(EvalCallback(eval_every))
        try:
            if resume is not None:
                if preset is not None:
                    fields["preset"] = preset
                result = train_mod.resume(resume, fields, callbacks=callbacks)
            else:
                cfg = make_config(preset, **fields)
                trainer = train_mod.Trainer(cfg, callbacks=callbacks)
                result = trainer.train()
        finally:
            progress.stop()
    from .distributed import is_main

    if not is_main():  # under torchrun only rank 0 reports
        return
    m = result.metrics
    out.print(f"trained {result.step} steps in {result.seconds:.1f} s", highlight=False)
    out.print(f"run:        {result.run_dir}", highlight=False)
    out.print(f"checkpoint: {result.checkpoint}", highlight=False)
    if result.image:
        out.print(f"picture:    {result.image}", highlight=False)
    if eval_every is not None:
        out.print(f"eval:       {result.run_dir / 'eval.jsonl'}", highlight=False)
    if m:
        from .progress import format_metrics

        out.print(f"final:      {format_metrics(m)}", highlight=False)


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file or a run folder (its newest checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 1000,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file: .safetensors (samples, latents, metadata) or .png (scatter or grid); with --each, a folder. [default: samples.safetensors, or the folder samples with --each]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latents; same checkpoint + seed = same samples.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    each: Annotated[bool, typer.Option("--each", help="Image runs: write every sample as its own PNG (native size) into the folder -o (new or empty).")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average the run kept (--ema).")] = False,
) -> None:
    """Draw samples from a trained generator."""
    from .sample import sample as do_sample

    with _handle_errors():
        if n < 1:
            raise typer.BadParameter(f"must be >= 1, got {n}", param_hint="-n")
        if output is None:
            output = Path("samples" if each else "samples.safetensors")
        if each:
            if output.suffix.lower() in (".safetensors", ".png"):
                raise typer.BadParameter(f"{output.name!r}: with --each, -o names a folder", param_hint="--output")
        elif output.suffix.lower() not in (".safetensors", ".png"):
            raise typer.BadParameter(f"{output.name!r}: must end in .safetensors or .png", param_hint="--output")
        _load_plugins()
        res = do_sample(checkpoint, n, output, seed=seed, device=device, each=each, raw=raw)
    what = "PNG files" if each else "samples"
    avg = " (weight average)" if res.weights == "ema" else ""
    out.print(f"wrote {res.n} {what} of shape {res.shape} from step {res.step}{avg} to {res.path}", highlight=False)


@app.command("eval")
def eval_(
    run_or_checkpoint: Annotated[Path, typer.Argument(help="A run folder (its newest checkpoint) or a checkpoint file.")],
    n: Annotated[int, typer.Option("-n", "--num", help="Generated samples (and real ones: W1 pairs N with N).")] = 2500,
    seed: Annotated[int, typer.Option(help="Seed of the latents (the real samples follow from it too).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
    draws: Annotated[int, typer.Option(help="Toy sets: average W1 over this many generated sets of N "
                                              "(each against fresh real samples); W1/floor is known to about ±0.1 "
                                              "at 5 on the toy mixtures, ±0.04 at 40 (w1_over_floor_se).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average the run kept (--ema).")] = False,
) -> None:
    """Score a trained generator: W1, its real-vs-real floor and mode coverage on the toy
    sets; FD, KID, class histogram and precision/recall/density/coverage on digits."""
    from .evaluate import METRIC_NOTES, MIN_N, evaluate

    with _handle_errors():
        if n < MIN_N:
            raise typer.BadParameter(f"must be >= {MIN_N}, got {n}", param_hint="-n")
        if draws < 1:
            raise typer.BadParameter(f"must be >= 1, got {draws}", param_hint="--draws")
        _load_plugins()
        with err.status(f"evaluating {run_or_checkpoint} with {n} samples ..."):
            res = evaluate(run_or_checkpoint, n=n, seed=seed, device=device, draws=draws, raw=raw)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    avg = ", weight average (--ema)" if res.get("weights") == "ema" else ""
    table = Table(title=f"{res['data']} ({res['protocol']} protocol), step {res['step']}{avg}, n = {res['n']}, seed {res['seed']}")
    for col in ("metric", "value", "meaning"):
        table.add_column(col)
    for key, value in res.items():
        if key in ("protocol", "data", "step", "checkpoint", "weights", "n", "seed", "n_modes"):
            continue
        if key == "modes_covered":
            text = f"{value} / {res['n_modes']}"
        elif isinstance(value, float):
            text = f"{value:.4g}" if key != "seconds" else f"{value:.1f}"
        elif isinstance(value, list):
            text = " ".join(str(v) for v in value)
        else:
            text = str(value)
        table.add_row(key, text, METRIC_NOTES.get(key, ""))
    out.print(table)
    out.print(f"checkpoint: {res['checkpoint']}", highlight=False)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List plugins, their versions and what each registered."""
    from .plugins import plugin_infos

    with _handle_errors():
        infos = plugin_infos()
    if as_json:
        print(json.dumps([
            {"name": i.name, "version": i.version, "builtin": i.builtin, "registered": i.registered, "error": i.error}
            for i in infos
        ], indent=2))
        return
    table = Table(title="gantk plugins")
    for col in ("plugin", "version", "registered"):
        table.add_column(col)
    for i in infos:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(i.registered.items())) or "-"
        if i.error:
            what = f"[red]failed: {i.error}[/]"
        table.add_row(i.name + (" (built-in)" if i.builtin else ""), i.version or "?", what)
    out.print(table)


@ext_app.command("status")
def ext_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show whether the fused kernels are available, and why not."""
    from .ops import _ext

    with _handle_errors():
        st = _ext.status()
    if as_json:
        print(json.dumps(st, indent=2, default=str))
        return
    for k, v in st.items():
        out.print(f"{k}: {v}", highlight=False)


@ext_app.command("build")
def ext_build() -> None:
    """Build the extension now, showing the compiler output."""
    from .ops import _ext

    with _handle_errors():
        st = _ext.build(verbose=True)
    for k, v in st.items():
        out.print(f"{k}: {v}", highlight=False)


@app.command()
def bench(
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "auto",
    quick: Annotated[bool, typer.Option("--quick/--full", help="Short timings (default) or longer ones.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check this machine: the penalty head (as users write it vs gantk) and the whole
    WGAN-GP step (gantk vs the reference loop), side by side."""
    from . import benchmarking as B
    from .train import resolve_device

    with _handle_errors():
        _load_plugins()
        dev = resolve_device(device).type
        t = 0.3 if quick else 2.0
        err.print(f"timing the penalty head on {dev} ...")
        pen = B.bench_penalty_quick(dev, min_time=t)
        err.print(f"timing the training step on {dev} ...")
        steps = B.bench_steps(("toy-mlp",) if quick else ("toy-mlp", "dcgan-32"), device=dev, min_time=t)
    if as_json:
        print(json.dumps({"meta": B.run_metadata(dev), "penalty": pen, "steps": steps}, indent=2, default=str))
        return
    table = Table(title=f"penalty head on {dev} (interpolation + norm penalty, forward + backward)")
    for col in ("shape", "as users write it", "gantk ref", "gantk ext", "ext speed-up"):
        table.add_column(col)
    for r in pen:
        ext = f"{r['ext'] * 1e3:.3f} ms" if "ext" in r else "unavailable"
        sp = f"{r['user'] / r['ext']:.2f}x" if "ext" in r else "-"
        table.add_row("x".join(map(str, r["shape"])), f"{r['user'] * 1e3:.3f} ms", f"{r['ref'] * 1e3:.3f} ms", ext, sp)
    out.print(table)
    table = Table(title=f"WGAN-GP iteration (5 critic + 1 generator steps) on {dev}")
    for col in ("case", "gantk it/s", "reference it/s", "speed-up", "penalty elementwise share"):
        table.add_column(col)
    for r in steps:
        if "missing" in r:
            table.add_row(r["case"], "missing", r["missing"], "", "")
            continue
        table.add_row(r["case"], f"{r['gantk_iter_per_s']:.2f}", f"{r['reference_iter_per_s']:.2f}",
                      f"{r['speedup']:.2f}x", f"{100 * r['penalty_share']:.1f}%")
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except GantkError as exc:  # raised outside a command's handler
        if _debug():
            raise
        err.print(f"[red]error:[/] {exc}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
