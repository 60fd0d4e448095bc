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

from .errors import GantkError, UsageError

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
    """Turn library errors into one line on stderr and an exit code."""
    old = warnings.showwarning
    warnings.showwarning = _show_warning
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


@app.command()
def train(
    data: Annotated[Optional[str], typer.Option(help="Dataset name (see `gantk plugins`) or path to a tensor file. [default: 25gaussians]")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model family. [default: mlp for points, dcgan for images]")] = None,
    loss: Annotated[Optional[str], typer.Option(help="Adversarial loss: minimax, ns, wasserstein, hinge, lsgan, or a plugin's. [default: from the preset]")] = None,
    lipschitz: Annotated[Optional[str], typer.Option(help="Lipschitz enforcer: none, clip, gp, lp, sn, or a plugin's. [default: from the preset]")] = None,
    preset: Annotated[Optional[str], typer.Option(help="gan, wgan, wgan-gp or sngan: loss, enforcer and optimizer settings from the paper; flags override. [default: inferred from --loss/--lipschitz, else wgan-gp]")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Generator updates (total, also when resuming). [default: 2000]")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per batch. [default: 256]")] = None,
    n_critic: Annotated[Optional[int], typer.Option("--n-critic", help="Critic updates per generator update. [default: from the preset]")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate of both networks. [default: from the preset]")] = None,
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
) -> None:
    """Train a GAN; writes a run folder with checkpoints, metrics.jsonl and pictures."""
    from .config import make_config
    from .progress import RichProgress

    with _handle_errors():
        opts = _parse_options(option)
        if lambda_ is not None:
            opts["lipschitz"]["lambda"] = lambda_
        if clip is not None:
            opts["lipschitz"]["c"] = clip
        _load_plugins()
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
            n_critic=n_critic, lr=lr, optimizer=optimizer, betas=_parse_betas(betas), latent_dim=latent_dim,
            seed=seed, device=device, out=out_dir, name=name, log_every=log_every,
            checkpoint_every=checkpoint_every, image_every=image_every, keep=keep,
            allow_batchnorm=allow_batchnorm,
        )
        for kind in ("data", "model", "loss", "lipschitz"):
            if opts[kind]:
                fields[f"{kind}_options"] = opts[kind]
        from . import train as train_mod

        progress = RichProgress(err)
        try:
            if resume is not None:
                if preset is not None:
                    fields["preset"] = preset
                result = train_mod.resume(resume, fields, callbacks=[progress])
            else:
                cfg = make_config(preset, **fields)
                trainer = train_mod.Trainer(cfg, callbacks=[progress])
                result = trainer.train()
        finally:
            progress.stop()
    m = result.metrics
    out.print(f"trained {result.step} steps in {result.seconds:.1f} s", highlight=False)
    out.print(f"run:        {result.run_dir}", highlight=False)
    out.print(f"checkpoint: {result.checkpoint}", highlight=False)
    if result.image:
        out.print(f"picture:    {result.image}", highlight=False)
    if m:
        from .progress import format_metrics

        out.print(f"final:      {format_metrics(m)}", highlight=False)


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file or a run folder (its newest checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 1000,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output file: .safetensors (samples, latents, metadata) or .png (scatter or grid).")] = Path("samples.safetensors"),
    seed: Annotated[int, typer.Option(help="Seed of the latents; same checkpoint + seed = same samples.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "cpu",
) -> None:
    """Draw samples from a trained generator."""
    from .sample import sample as do_sample

    with _handle_errors():
        if n < 1:
            raise typer.BadParameter(f"must be >= 1, got {n}", param_hint="-n")
        if output.suffix.lower() not in (".safetensors", ".png"):
            raise typer.BadParameter(f"{output.name!r}: must end in .safetensors or .png", param_hint="--output")
        _load_plugins()
        res = do_sample(checkpoint, n, output, seed=seed, device=device)
    out.print(f"wrote {res.n} samples of shape {res.shape} from step {res.step} to {res.path}", highlight=False)


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
