"""The ``gantk`` command line: parsing and printing only.

Results go to stdout; progress, warnings and errors to stderr. Library errors
(:class:`gantk.errors.GantkError`) become one line and exit code 1 (2 for usage
errors); set ``GANTK_DEBUG=1`` to see the traceback.

The module is longer than most because it holds every command; each command only
parses its options, calls the library and prints the result.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import sys
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import benchmarking, training
from .config import EXTRA_OPTIONS, PANELS, TrainConfig, panel_of, read_config_file, check_value, cli_fields, flag_of, option
from .errors import GantkError, GantkNote, UnknownComponentError
from .eval import METRIC_NOTES, MIN_N, EvalCallback, evaluate
from .eval import compare as compare_sets
from .ops import _ext
from .plugins import describe as describe_component
from .plugins import add_commands, describe_all, get_registry, plugin_infos, plugin_problems, registries
from .presets import PRESETS
from .progress import RichProgress, format_metrics
from .resolve import make_config
from .sampling import SUFFIXES as SAMPLE_SUFFIXES
from .sampling import export_generator
from .sampling import interpolate as draw_interpolation
from .sampling import sample as draw_samples
from .training import TrainResult, resolve_device
from .training.distributed import is_main
from .version import __version__

_CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Command(typer.core.TyperCommand):
    """A command whose flags (``--help`` included) show no value type in the help:
    Typer writes ``<bool>`` beside them, which reads as if they took a value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _App(typer.Typer):
    """Typer whose commands, plugins' commands too, are :class:`_Command`."""

    def command(self, *args: Any, cls: Optional[type[typer.core.TyperCommand]] = None, **kwargs: Any):
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _App(
    name="gantk",
    help="Train Wasserstein GANs (WGAN, WGAN-GP, SN-GAN) with pluggable models, losses and Lipschitz enforcers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=_CONTEXT,
)
ext_app = _App(help="The fused C++/CUDA gradient-penalty extension.", no_args_is_help=True,
               context_settings=_CONTEXT)
app.add_typer(ext_app, name="ext")


def _print_version(value: bool) -> None:
    if value:
        out.print(f"gantk {__version__} (torch {torch.__version__})", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Show gantk's version and exit.")] = False,
) -> None:
    """Train Wasserstein GANs (WGAN, WGAN-GP, SN-GAN) with pluggable models, losses and Lipschitz enforcers."""

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _debug() -> bool:
    return os.environ.get("GANTK_DEBUG", "").strip() not in ("", "0")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, GantkNote):
        err.print(f"[cyan]note:[/] {escape(str(message))}", highlight=False)
    else:
        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False)


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
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except typer.BadParameter as exc:
        err.print(f"[red]error:[/] {escape(f'invalid value for {exc.param_hint}: {exc.message}')}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # outside the trainer's own signal handling
        err.print("[red]error:[/] interrupted", highlight=False)
        raise typer.Exit(130) from None
    finally:
        caught.__exit__(None, None, None)
        warnings.showwarning = old


_reported_failures = False


def _load_plugins() -> None:
    """Load plugins once and report, once, the problems of third-party plugins (skipped,
    refused names, unknown names in GANTK_LOAD_PLUGINS)."""
    global _reported_failures
    problems = plugin_problems()
    if problems and not _reported_failures:
        for line in problems:
            err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
        _reported_failures = True


def _parse_options(items: list[str] | None) -> dict[str, dict[str, str]]:
    kinds = {"data": "data", "dataset": "data", "model": "model", "loss": "loss",
             "lipschitz": "lipschitz", "enforcer": "lipschitz", "logger": "logger"}
    outd: dict[str, dict[str, str]] = {"data": {}, "model": {}, "loss": {}, "lipschitz": {}, "logger": {}}
    for item in items or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise typer.BadParameter(f"{item!r}: expected KIND.KEY=VALUE, e.g. lipschitz.lambda=10", param_hint="--option")
        lhs, value = item.split("=", 1)
        kind, key = lhs.split(".", 1)
        if kind not in kinds:
            raise typer.BadParameter(f"{item!r}: KIND must be one of data, model, loss, lipschitz, logger", param_hint="--option")
        outd[kinds[kind]][key] = value
    return outd


def _check_name(kind: str, name: str | None, param: str) -> None:
    """Unknown component names are usage errors with a 'did you mean'."""
    if name is None:
        return
    try:
        get_registry(kind).get(name)
    except UnknownComponentError as exc:
        raise typer.BadParameter(str(exc), param_hint=param) from None


def _resolution_key(data: str | None, preset: str | None) -> str:
    """The data option --resolution sets: ``resolution``, or ``size`` for a named data
    set (given or from the preset) that has ``size`` but no ``resolution`` (digits)."""
    name = data if data is not None else PRESETS.get(preset or "", {}).get("data")
    reg = get_registry("dataset")
    if name in reg:
        opts = reg.get(name).options
        if "resolution" not in opts and "size" in opts:
            return "size"
    return "resolution"


# ------------------------------------------------------------------ gantk train
# Its options are derived from the config (gantk/config.py: help, flag, default text);
# the few below are the CLI's own conveniences.
_CONFIG_TYPES = typing.get_type_hints(TrainConfig)


def _plain(tp: Any) -> type:
    """``int | None`` → int; a tuple or anything else parsed from text → str."""
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) is not tuple else []
    t = args[0] if len(args) == 1 else tp
    return t if t in (str, int, float, bool) else str


#: the flags that name a registered component: their help lists what is registered now
_REGISTERED = {"data": "dataset", "model": "model", "loss": "loss", "lipschitz": "lipschitz"}


def _registered_names(kind: str) -> str:
    try:
        return ", ".join(get_registry(kind).names())
    except GantkError:  # a broken built-in: the command itself will say so
        return "see `gantk plugins`"


def _metavar(tp: Any) -> str:
    """Typer's and Click's spelling of a value (TEXT, INTEGER, ...); none for a flag."""
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    return {str: "TEXT", int: "INTEGER", float: "FLOAT", Path: "PATH", bool: ""}.get(tp, "TEXT")


def _config_param(f: dataclasses.Field) -> inspect.Parameter:
    opt = option(f.name)
    names = flag_of(f.name) + (f"/{opt.off_flag}" if opt.off_flag else "")
    text = opt.help
    if f.name in _REGISTERED:
        text += f" Registered: {_registered_names(_REGISTERED[f.name])}."
    tp = _plain(_CONFIG_TYPES[f.name])
    ann = Annotated[Optional[tp],
                    typer.Option(names, help=text, metavar=opt.metavar or _metavar(tp), show_default=opt.default or False,
                                 rich_help_panel=panel_of(f.name))]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)


def _extra_param(name: str) -> inspect.Parameter:
    tp, opt = EXTRA_OPTIONS[name]
    ann = Annotated[Optional[tp], typer.Option(*opt.flag.split(",") if opt.flag else [flag_of(name)], help=opt.help,
                                               metavar=opt.metavar or _metavar(tp), show_default=opt.default or False,
                                               rich_help_panel=panel_of(name))]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)


def _config_fields(given: dict[str, Any], opts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The config values given on the command line (None: not given), betas parsed."""
    fields = {f.name: given.get(f.name) for f in cli_fields()}
    for name, value in list(fields.items()):
        parse = option(name).parse
        if parse is not None and value is not None:
            try:
                fields[name] = parse(value)
            except ValueError:
                raise typer.BadParameter(f"{value!r}: expected two numbers like 0,0.9",
                                         param_hint=flag_of(name)) from None
    for kind in ("data", "model", "loss", "lipschitz"):
        if opts[kind]:
            fields[f"{kind}_options"] = opts[kind]
    return fields


def train(**kw: Any) -> None:
    """Train a GAN; writes a run folder with checkpoints, metrics.jsonl and pictures."""
    with _handle_errors():
        for name in EXTRA_OPTIONS:
            msg = check_value(name, kw[name])
            if msg:
                raise typer.BadParameter(msg, param_hint=flag_of(name))
        if kw["threads"] is not None:
            torch.set_num_threads(kw["threads"])
        opts = _parse_options(kw["option"])
        if kw["lambda_"] is not None:
            opts["lipschitz"]["lambda"] = kw["lambda_"]
        if kw["clip"] is not None:
            opts["lipschitz"]["c"] = kw["clip"]
        _load_plugins()
        if kw["resolution"] is not None:
            opts["data"][_resolution_key(kw["data"], kw["preset"])] = kw["resolution"]
        if kw["channels"] is not None:
            opts["data"]["channels"] = kw["channels"]
        for kind, param in (("loss", "--loss"), ("lipschitz", "--lipschitz"), ("model", "--model")):
            _check_name(kind, kw[kind], param)
        if kw["preset"] is not None and kw["preset"] not in PRESETS:
            raise typer.BadParameter(str(UnknownComponentError("preset", kw["preset"], PRESETS)), param_hint="--preset")
        for name in kw["logger"] or []:
            _check_name("logger", name, "--logger")
        loggers = [get_registry("logger").get(name)(**opts["logger"]) for name in kw["logger"] or []]
        fields = _config_fields(kw, opts)
        fields, origins = _with_config_file(fields, kw["config"], kw["resume"])
        if kw["print_config"]:
            if kw["resume"] is not None:
                raise typer.BadParameter("prints a new run's settings; a resumed run's are in its config.json",
                                         param_hint="--print-config")
            preset = fields.pop("preset")
            _print_config(make_config(preset, origins=origins, **fields))
            return
        result = _run_training(fields, kw["resume"], kw["eval_every"], loggers, origins)
    if is_main():  # under torchrun only rank 0 reports
        _print_result(result, kw["eval_every"] is not None)


def _with_config_file(fields: dict[str, Any], path: Path | None, resume: Path | None
                      ) -> tuple[dict[str, Any], dict[str, str]]:
    """The flags over the settings of ``--config`` (options merged key by key), and
    where each given value came from."""
    origins = {k: "flag" for k, v in fields.items() if v is not None}
    if path is None:
        return fields, origins
    if resume is not None:
        raise typer.BadParameter("cannot be combined with --resume (a run resumes with its own config)",
                                 param_hint="--config")
    from_file = read_config_file(path)
    merged = dict(fields)
    for key, value in from_file.items():
        if key.endswith("_options"):
            merged[key] = {**value, **(fields.get(key) or {})}
            for opt in value:
                if opt not in (fields.get(key) or {}):
                    origins[f"{key[: -len('_options')]}.{opt}"] = f"file {path}"
        elif fields.get(key) is None:
            merged[key] = value
            origins[key] = f"file {path}"
    return merged, origins


def _print_config(cfg: TrainConfig) -> None:
    """Every setting of the resolved config, its value and where the value came from."""
    table = Table(title="gantk train: the resolved settings (nothing was created)")
    for col in ("setting", "value", "from"):
        table.add_column(col)
    values = json.loads(cfg.to_json())
    for key, value in values.items():
        if key.endswith("_options"):
            for opt, v in value.items():
                name = f"{key[: -len('_options')]}.{opt}"
                table.add_row(name, json.dumps(v), cfg.sources.get(name, "component default"))
        else:
            table.add_row(key, json.dumps(value), cfg.sources.get(key, "default"))
    out.print(table)


_PARAMS = {f.name: _config_param(f) for f in cli_fields()} | {name: _extra_param(name) for name in EXTRA_OPTIONS}
train.__signature__ = inspect.Signature(  # grouped as --help shows them
    sorted(_PARAMS.values(), key=lambda p: [*PANELS, "Other"].index(panel_of(p.name))))
app.command()(train)


def _run_training(fields: dict[str, Any], resume: Path | None, eval_every: int | None,
                  loggers: list, origins: dict[str, str]) -> TrainResult:
    progress = RichProgress(err)
    callbacks: list = [progress, *loggers]
    if eval_every is not None:
        callbacks.append(EvalCallback(eval_every))
    try:
        if resume is not None:
            preset = fields.pop("preset")
            if preset is not None:
                fields["preset"] = preset
            return training.resume(resume, fields, callbacks=callbacks)
        preset = fields.pop("preset")
        return training.Trainer(make_config(preset, origins=origins, **fields), callbacks=callbacks).train()
    finally:
        progress.stop()


def _print_result(result: TrainResult, evaluated: bool) -> None:
    out.print(f"trained {result.step} steps in {result.seconds:.1f} s", highlight=False)
    out.print(f"run:        {result.run_dir}", highlight=False)
    out.print(f"checkpoint: {result.checkpoint}", highlight=False)
    if result.image:
        out.print(f"picture:    {result.image}", highlight=False)
    if evaluated:
        out.print(f"eval:       {result.run_dir / 'eval.jsonl'}", highlight=False)
    if result.metrics:
        out.print(f"final:      {format_metrics(result.metrics)}", highlight=False)


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file or a run folder (its newest checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 1000,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file: .safetensors (samples, latents, metadata), .npz (samples under arr_0; images as uint8 NHWC) or .png (scatter or grid); with --each, a folder.", show_default="samples.safetensors, or the folder samples with --each")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latents; same checkpoint + seed = same samples.")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    each: Annotated[bool, typer.Option("--each", help="Image runs: write every sample as its own PNG (native size) into the folder -o (new or empty).")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average the run kept (--ema).")] = False,
    truncation: Annotated[float, typer.Option("--truncation", metavar="PSI", help="The truncation trick: latents drawn closer to their mean (z ← ψ·z), trading variety for fidelity; 1 is off.")] = 1.0,
    cls: Annotated[Optional[str], typer.Option("--class", metavar="CLASS", help="Conditional runs: draw this class only (its name or index); without it the classes take turns and a .png has one row per class.")] = None,
) -> None:
    """Draw samples from a trained generator."""
    with _handle_errors():
        if n < 1:
            raise typer.BadParameter(f"must be >= 1, got {n}", param_hint="-n")
        if output is None:
            output = Path("samples" if each else "samples.safetensors")
        if each:
            if output.suffix.lower() in SAMPLE_SUFFIXES:
                raise typer.BadParameter(f"{output.name!r}: with --each, -o names a folder", param_hint="--output")
        elif output.suffix.lower() not in SAMPLE_SUFFIXES:
            raise typer.BadParameter(f"{output.name!r}: must end in {', '.join(SAMPLE_SUFFIXES)}",
                                     param_hint="--output")
        if not 0 < truncation <= 1:
            raise typer.BadParameter(f"must lie in (0, 1], got {truncation}", param_hint="--truncation")
        _load_plugins()
        res = draw_samples(checkpoint, n, output, seed=seed, device=device, each=each, raw=raw,
                           truncation=truncation, cls=cls)
    what = "PNG files" if each else "samples"
    what += f" of class {res.cls}" if res.cls is not None else ""
    avg = " (weight average)" if res.weights == "ema" else ""
    out.print(f"wrote {res.n} {what} of shape {res.shape} from step {res.step}{avg} to {res.path}", highlight=False)


@app.command()
def interpolate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file or a run folder (its newest checkpoint).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The grid, a .png: one row per pair of latents.")
                      ] = Path("interpolation.png"),
    rows: Annotated[int, typer.Option(help="Pairs of latents (rows).")] = 4,
    steps: Annotated[int, typer.Option(help="Images along each path (columns).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the latents.")] = 0,
    linear: Annotated[bool, typer.Option("--linear", help="Straight lines between latents instead of the "
                                         "spherical path.")] = False,
    gif: Annotated[Optional[Path], typer.Option(help="Also an animated GIF walking every row along its path.")
                   ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average.")
                   ] = False,
) -> None:
    """A grid of latent interpolations of an image run (and an animated GIF)."""
    with _handle_errors():
        _load_plugins()
        path = draw_interpolation(checkpoint, output, rows=rows, steps=steps, seed=seed, spherical=not linear,
                                  gif=gif, raw=raw)
    out.print(f"wrote {path}" + (f" and {gif}" if gif else ""), highlight=False)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file or a run folder (its newest checkpoint).")],
    output: Annotated[Path, typer.Option("-o", "--output", help=".pt2 (torch.export; torch.export.load(path)"
                                         ".module()) or .pt (TorchScript; torch.jit.load).")] = Path("generator.pt2"),
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average.")
                   ] = False,
) -> None:
    """Write the generator as a file that loads with torch alone, without gantk."""
    with _handle_errors():
        _load_plugins()
        res = export_generator(checkpoint, output, raw=raw)
    labels = f" and (B,) class indices 0..{res.num_classes - 1}" if res.num_classes else ""
    out.print(f"wrote {res.path} ({res.format}; input (B, {res.latent_dim}) latents{labels}, output (B, "
              f"{', '.join(map(str, res.shape))}) samples; step {res.step})", highlight=False)


@app.command("eval")
def eval_(
    run_or_checkpoint: Annotated[Optional[Path], typer.Argument(
        help="A run folder (its newest checkpoint) or a checkpoint file (or none, with --real and --fake).")] = None,
    n: Annotated[Optional[int], typer.Option("-n", "--num", help="Generated samples (and real ones: W1 pairs N with "
                                             "N). Default 2500; image data 10,000, or all real images when fewer.",
                                             show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latents (the real samples follow from it too).")] = 0,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    draws: Annotated[int, typer.Option(help="Toy sets: average W1 over this many generated sets of N "
                                              "(each against fresh real samples); W1/floor is known to about ±0.1 "
                                              "at 5 on the toy mixtures, ±0.04 at 40 (w1_over_floor_se).")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Use the generator's own weights, not the weight average the run kept (--ema).")] = False,
    real: Annotated[Optional[str], typer.Option("--real", help="Compare two image sets instead of a run: the real "
                                                "one (a folder, a tensor file or a data set's name).")] = None,
    fake: Annotated[Optional[str], typer.Option("--fake", help="The generated image set to compare with --real.")] = None,
    features: Annotated[Optional[str], typer.Option("--features", help="Feature extractor for FID, KID and "
                                                    "precision/recall (default inception; see `gantk plugins`).")] = None,
    features_weights: Annotated[Optional[Path], typer.Option(
        "--features-weights", help="Its weights file (default: $GANTK_FEATURES_WEIGHTS, then the known places; "
        "gantk downloads nothing).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass of the feature extractor "
                                            "(the numbers do not depend on it).")] = 50,
) -> None:
    """Score a trained generator: W1, its real-vs-real floor and mode coverage on the toy
    sets; FD, KID, class histogram and precision/recall/density/coverage on digits (plus
    Inception FID and KID when a weights file is found); FID, KID, precision/recall and
    density/coverage on Inception features for other image data. With --real A --fake B,
    compare two image folders or tensor files directly."""
    with _handle_errors():
        _check_eval_args(run_or_checkpoint, n, draws, real, fake, batch_size)
        _load_plugins()
        if features is not None and features not in get_registry("extractor"):
            raise typer.BadParameter(str(UnknownComponentError("extractor", features, get_registry("extractor").names())),
                                     param_hint="--features")
        what = f"{real} against {fake}" if run_or_checkpoint is None else str(run_or_checkpoint)
        with err.status(f"evaluating {what} ..."):
            if run_or_checkpoint is None:
                res = compare_sets(real, fake, n=n, seed=seed, features=features, features_weights=features_weights,
                                   device=device, batch_size=batch_size)
            else:
                res = evaluate(run_or_checkpoint, n=n, seed=seed, device=device, draws=draws, raw=raw,
                               features=features or "auto", features_weights=features_weights,
                               batch_size=batch_size)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    _print_eval_table(res)


def _check_eval_args(run_or_checkpoint: Path | None, n: int | None, draws: int, real: str | None,
                     fake: str | None, batch_size: int) -> None:
    if n is not None and n < MIN_N:
        raise typer.BadParameter(f"must be >= {MIN_N}, got {n}", param_hint="-n")
    if draws < 1:
        raise typer.BadParameter(f"must be >= 1, got {draws}", param_hint="--draws")
    if batch_size < 1:
        raise typer.BadParameter(f"must be >= 1, got {batch_size}", param_hint="--batch-size")
    if run_or_checkpoint is not None and (real or fake):
        raise typer.BadParameter("give a run or --real and --fake, not both", param_hint="--real")
    if run_or_checkpoint is None and not (real and fake):
        raise typer.BadParameter("give a run folder or checkpoint, or both --real and --fake",
                                 param_hint="RUN_OR_CHECKPOINT")


def _eval_note(key: str) -> str:
    if key in METRIC_NOTES:
        return METRIC_NOTES[key]
    head, _, rest = key.partition("_")
    return f"{head}: {METRIC_NOTES[rest]}" if rest in METRIC_NOTES else ""


def _print_eval_table(res: dict[str, Any]) -> None:
    avg = ", weight average (--ema)" if res.get("weights") == "ema" else ""
    if "step" in res:
        title = f"{res['data']} ({res['protocol']} protocol), step {res['step']}{avg}, n = {res['n']}, seed {res['seed']}"
    else:
        title = f"{res['fake']} against {res['real']} ({res['protocol']} protocol), seed {res['seed']}"
    table = Table(title=title)
    for col in ("metric", "value", "meaning"):
        table.add_column(col)
    for key, value in res.items():
        if key in ("protocol", "data", "step", "checkpoint", "weights", "n", "seed", "n_modes", "real", "fake"):
            continue
        if key == "modes_covered":
            text = f"{value} / {res['n_modes']}"
        elif isinstance(value, float):
            text = f"{value:.4g}" if key != "seconds" else f"{value:.1f}"
        elif isinstance(value, list):
            text = " ".join(str(v) for v in value)
        else:
            text = str(value)
        table.add_row(key, text, _eval_note(key))
    out.print(table)
    if "checkpoint" in res:
        out.print(f"checkpoint: {res['checkpoint']}", highlight=False)


@app.command()
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every component: description, options "
                                          "(type and default), the plugin and version providing it.")] = False,
) -> None:
    """List plugins, their versions and what each registered (refused names and failures
    too)."""
    with _handle_errors():
        infos = plugin_infos()
        comps = describe_all() if verbose or as_json else []
        problems = plugin_problems()
    if as_json:
        rows = [{"name": i.name, "version": i.version, "builtin": i.builtin, "registered": i.registered,
                 "refused": i.refused, "error": i.error} for i in infos]
        print(json.dumps(rows if not verbose else {"plugins": rows, "components": comps, "problems": problems},
                         indent=2, default=str))
        return
    table = Table(title="gantk plugins")
    for col in ("plugin", "version", "registered"):
        table.add_column(col)
    for i in infos:
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(i.registered.items())) or "-"
        if i.refused:
            what += "; [yellow]refused (name taken): " + ", ".join(
                f"{k} {', '.join(v)}" for k, v in sorted(i.refused.items())) + "[/]"
        if i.error:
            what = f"[red]failed: {i.error}[/]"
        table.add_row(i.name + (" (built-in)" if i.builtin else ""), i.version or "?", what)
    out.print(table)
    if verbose:
        _print_components(comps)
    for line in problems:
        err.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)


def _print_components(comps: list[dict[str, Any]]) -> None:
    table = Table(title="components")
    for col in ("kind", "name", "description", "options (type = default)", "plugin"):
        table.add_column(col)
    for c in comps:
        opts = ", ".join(f"{o['name']} ({o['type']}) = {o['default']!r}" for o in c["options"]) or "-"
        table.add_row(c["kind"], c["name"], c["description"], opts, f"{c['plugin']} {c['version'] or ''}".strip())
    out.print(table)


@app.command()
def describe(
    kind: Annotated[str, typer.Argument(help="model, loss, lipschitz, dataset or protocol.")],
    name: Annotated[str, typer.Argument(help="The registered name, e.g. gp.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show one component: its description, options (type and default) and the plugin
    that provides it."""
    with _handle_errors():
        _load_plugins()
        regs = registries()
        kind = {"enforcer": "lipschitz", "data": "dataset"}.get(kind, kind)
        if kind not in regs:
            raise typer.BadParameter(str(UnknownComponentError("kind", kind, regs)), param_hint="KIND")
        try:
            info = describe_component(kind, name)
        except UnknownComponentError as exc:
            raise typer.BadParameter(str(exc), param_hint="NAME") from None
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    out.print(f"{info['kind']} {info['name']}: {info['description'] or '(no description)'}", highlight=False)
    where = "built-in" if info["builtin"] else "third-party"
    out.print(f"plugin:  {info['plugin']} {info['version'] or ''} ({where})", highlight=False)
    for key in ("protocol", "modality"):
        if key in info:
            out.print(f"{key + ':':<9}{info[key]}", highlight=False)
    if not info["options"]:
        out.print("options: none", highlight=False)
    for o in info["options"]:
        out.print(f"  -O {'data' if kind == 'dataset' else kind}.{o['name']}=...  {o['type']}, default "
                  f"{o['default']!r}", highlight=False)


@ext_app.command("status")
def ext_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show whether the fused kernels are available, and why not."""
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
    B = benchmarking
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


add_commands(app)  # plugins' subcommands (the register_commands hook)


def main() -> None:
    """Run the app (the console script enters through gantk/entry.py)."""
    for stream in (sys.stdout, sys.stderr):  # a path that is not UTF-8 prints escaped, never raises
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app()
    except GantkError as exc:  # raised outside a command's handler
        if _debug():
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
