"""The run configuration: one source for every option of ``gantk train``. It is longer
than most modules because every option's help, flag, checks and resume rule live here,
beside the type checks and the config-file reader that apply them.

Each :class:`TrainConfig` field carries an :class:`Option` in its metadata: the help
text, the CLI flag, the valid values and whether ``--resume`` may change it. The CLI's
parameters (gantk/cli.py), :meth:`TrainConfig.validate`, the resume rules
(:data:`RESUME_OVERRIDABLE`) and the README's option table (:func:`options_markdown`)
are all derived from it; :data:`EXTRA_OPTIONS` describes the few ``gantk train``
options that are not run settings. Presets and tuned settings are data in
:mod:`gantk.presets`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import reprlib
import stat
import tomllib
import types
import typing
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownComponentError, UsageError
from .presets import DEFAULT_PRESET, PRESETS

LR_DECAYS = ("none", "linear")
OPTIMIZERS = ("adam", "rmsprop", "sgd")
#: ``fp32`` is another name of ``off``; ``auto`` is resolved when the run starts
#: (gantk.training.amp) and the run stores what it resolved to
AMP_MODES = ("auto", "off", "fp32", "bf16", "fp16")
#: what a run's config.json holds beside the config: the plugins that provide its
#: components, and a conditional run's classes
RECORD_KEYS = ("components", "num_classes", "class_names")


@dataclass(frozen=True)
class Option:
    """What ``gantk train`` knows of one config field.

    ``flag``: the long flag (default ``--field-name``), ``""`` for a field set only
    through ``-O`` or a preset; ``off_flag``: the negative flag of a boolean;
    ``default``: what the help shows as the default (presets and data sets choose
    many values); ``ge``/``gt``/``lt``/``le``: numeric bounds; ``choices``: valid values;
    ``unknown``: report a bad choice as an unknown component named so; ``check``: a
    callable returning an error message or None; ``resume``: may change on ``--resume``;
    ``metavar`` and ``parse``: the CLI's spelling of a value that is not a plain type
    (betas: ``"0,0.9"``)."""

    help: str
    flag: str | None = None
    off_flag: str | None = None
    default: str = ""
    ge: float | None = None
    gt: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    unknown: str | None = None
    check: Callable[[Any], str | None] | None = None
    resume: bool = False
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    note: str = ""
    #: the group of ``gantk train --help`` it is listed in (set from PANELS below)
    panel: str = ""


def _opt(default: Any, option: Option, factory: Callable[[], Any] | None = None):
    if factory is not None:
        return field(default_factory=factory, metadata={"option": option})
    return field(default=default, metadata={"option": option})


def parse_betas(text: str) -> tuple[float, float]:
    """``"0,0.9"`` → (0.0, 0.9); ValueError for anything else."""
    b1, b2 = (float(x) for x in text.replace(" ", "").split(","))
    return (b1, b2)


def _check_betas(betas: Any) -> str | None:
    ok = isinstance(betas, (tuple, list)) and len(betas) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    return None if ok else f"must lie in [0, 1), got {tuple(betas) if isinstance(betas, list) else betas}"


def _check_device(device: Any) -> str | None:
    if isinstance(device, str) and (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d{1,3}", device)):
        return None
    return f"must be auto, cpu, cuda or cuda:N, got {device!r}"


def _check_name(name: Any) -> str | None:
    """A run folder's name: one path component inside --out."""
    if not isinstance(name, str) or not name or name in (".", "..") or "\0" in name:
        return f"must be a folder name, got {name!r}"
    if "/" in name or "\\" in name or Path(name).is_absolute():
        return f"must be one folder name inside --out, not a path ({name!r})"
    return None


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int | None:
    """``"256MB"`` → 256·10⁶, ``"4GiB"`` → 4·2³⁰; ``"auto"`` → None; ValueError otherwise."""
    t = text.strip().lower().replace(" ", "")
    if t == "auto":
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]*)", t)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(text)
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _check_bytes(value: Any) -> str | None:
    try:
        parse_bytes(value) if isinstance(value, str) else int("x")
    except ValueError:
        return f"must be a size such as 256MB or 4GB, or auto, got {value!r}"
    return None


def _check_names(value: Any) -> str | None:
    """A comma-separated list of names (which are registered is checked when the run is built)."""
    if not isinstance(value, str):
        return f"must be names separated by commas, got {value!r}"
    names = [n.strip() for n in value.split(",")] if value.strip() else []
    if any(not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", n) for n in names):
        return f"must be names separated by commas, got {value!r}"
    return None


@dataclass
class TrainConfig:
    """Everything that defines a run; stored as JSON in every checkpoint."""

    data: str = _opt("25gaussians", Option(
        "Data set: a registered name, a tensor file (.safetensors, .npy, .npz) or an image folder.",
        default="25gaussians"))
    data_options: dict[str, Any] = _opt(None, Option("Options of the data set (-O data.KEY=VALUE).", flag=""),
                                        dict)
    model: str | None = _opt(None, Option("Model family (a registered name).", default="mlp for points, dcgan for images"))
    model_options: dict[str, Any] = _opt(None, Option("Options of the model (-O model.KEY=VALUE).", flag=""), dict)
    conditional: bool = _opt(False, Option(
        "Class-conditional GAN on labelled data (digits; .safetensors/.npz with a labels array; image folders "
        "with class subfolders): the generator draws a given class, the critic has a projection head.",
        default="off"))
    loss: str = _opt("wasserstein", Option(
        "Adversarial loss (a registered name).", default="from the preset"))
    loss_options: dict[str, Any] = _opt(None, Option("Options of the loss (-O loss.KEY=VALUE).", flag=""), dict)
    lipschitz: str = _opt("gp", Option(
        "Lipschitz enforcer (a registered name).", default="from the preset"))
    lipschitz_options: dict[str, Any] = _opt(None, Option(
        "Options of the enforcer (-O lipschitz.KEY=VALUE).", flag=""), dict)
    preset: str = _opt(DEFAULT_PRESET, Option(
        "Loss, enforcer and optimizer settings from a paper (gan, wgan, wgan-gp, sngan) or the digits "
        "run (digits); flags override.", default="inferred from --loss/--lipschitz, else wgan-gp",
        choices=tuple(PRESETS), unknown="preset"))
    steps: int = _opt(1000, Option("Generator updates (total, also when resuming).", default="1000", ge=1,
                                   le=10**9, resume=True))
    batch_size: int = _opt(256, Option("Samples per batch.", default="256", ge=1, le=2**20))
    n_critic: int = _opt(5, Option("Critic updates per generator update.", default="from the preset", ge=1,
                                   le=1000))
    optimizer: str = _opt("adam", Option("adam, rmsprop or sgd.", default="from the preset", choices=OPTIMIZERS,
                                         unknown="optimizer"))
    lr: float = _opt(1e-4, Option("Learning rate of both networks.", default="from the preset", gt=0))
    lr_decay: str = _opt("none", Option(
        "Learning-rate schedule: none, or linear (lr down to 0 at the last step, as in the WGAN-GP authors' "
        "CIFAR-10 code, or to --lr-floor).", default="linear for the toy sets, else none", choices=LR_DECAYS))
    lr_floor: float = _opt(0.0, Option(
        "With --lr-decay linear: stop the decay at this fraction of --lr and hold it.",
        default="0 (down to 0); 0.3 for WGAN-GP on the toy mixtures", ge=0, lt=1))
    betas: tuple[float, float] = _opt((0.0, 0.9), Option(
        "Adam betas, e.g. 0,0.9.", default="from the preset", check=_check_betas, metavar="B1,B2",
        parse=parse_betas))
    latent_dim: int | None = _opt(None, Option("Latent size.", default="2 for 2-D toy data, else the model's",
                                               ge=1, le=2**16))
    seed: int = _opt(0, Option("Random seed (data, initialisation, noise).", default="0", ge=0, lt=2**63))
    device: str = _opt("auto", Option("auto, cpu or cuda (cuda:N).", default="auto", check=_check_device,
                                      resume=True))
    out: str = _opt("runs", Option("Folder that receives run folders.", default="runs"))
    name: str | None = _opt(None, Option("Run folder name (one folder inside --out).", default="DATA-LOSS-ENFORCER-TIME",
                                         check=_check_name))
    log_every: int = _opt(50, Option("Write metrics.jsonl every N steps (0: at the end only).", default="50",
                                     ge=0, le=10**9, resume=True))
    checkpoint_every: int = _opt(500, Option("Checkpoint every N steps (and at the end).", default="500", ge=0,
                                             le=10**9, resume=True))
    image_every: int = _opt(500, Option("Picture every N steps (and at the end).", default="500", ge=0,
                                        le=10**9, resume=True))
    keep: int = _opt(3, Option("Checkpoints kept.", default="3", ge=1, le=10**6, resume=True))
    allow_batchnorm: bool = _opt(False, Option(
        "Allow a BatchNorm critic under gp/lp (wrong per-sample penalty; not recommended).", default="off"))
    #: see Trainer.critic_step for how the lazy penalty is weighted
    penalty_every: int = _opt(1, Option(
        "Lazy regularization: the Lipschitz penalty on every k-th critic step only, weighted k times "
        "(StyleGAN2).", default="1 (every step); 4 for WGAN-GP on the toy mixtures", ge=1, le=10**6))
    #: the per-sample scores are the same as with two forwards; under spectral norm,
    #: sigma's power iteration then runs once per critic step, not twice
    joint_forward: bool = _opt(True, Option(
        "Score real and fake in one batched critic forward (critics without BatchNorm).",
        off_flag="--separate-forward", default="joint"))
    amp: str = _opt("off", Option(
        "Mixed precision: off (or fp32); bf16 (autocast forward passes); fp16 (autocast with loss scaling, the "
        "penalty's input gradient unscaled inside its norm); auto: bf16 where the device has bfloat16 matrix "
        "units (CUDA, or a CPU with AVX512-BF16 or AMX), else off. Weights, optimizer state and the penalty's "
        "norm arithmetic stay float32.", default="off", choices=AMP_MODES, resume=True))
    channels_last: bool = _opt(False, Option(
        "Channels-last (NHWC) images and conv weights, the fast layout of cuDNN and oneDNN convolutions.",
        default="off", resume=True))
    ema: float = _opt(0.0, Option(
        "Keep an exponential moving average of the generator's weights with this decay per step; samples, "
        "pictures and evaluations use it (sample/eval --raw: the weights themselves).",
        default="0 (off); 0.99 for WGAN-GP on the toy mixtures", ge=0, lt=1, note=" (0 = off)"))
    augment: str = _opt("", Option(
        "Augmentations, comma-separated registered names: flip (x-flip of real images as drawn), and "
        "DiffAugment's color, translation, cutout (on real and fake before every critic call).",
        default="none", check=lambda v: _check_names(v), metavar="NAME[,NAME]"))
    augment_p: float | None = _opt(None, Option(
        "Probability that each image is augmented, for every augmentation in --augment.",
        default="each augmentation's own: flip 0.5, DiffAugment 1", ge=0, le=1))
    data_memory: str = _opt("auto", Option(
        "Memory budget for the training set: a cached image collection larger than this is streamed from its "
        "cache through DataLoader workers, a smaller one is held in memory (e.g. 256MB, 4GB).",
        default="auto (a quarter of the memory available at start)", check=lambda v: _check_bytes(v),
        metavar="SIZE", resume=True))
    cache_dir: str | None = _opt(None, Option(
        "Folder for the preprocessed caches of image folders and zip archives.",
        default="the user cache (~/.cache/gantk/datasets)", resume=True))

    def validate(self) -> None:
        """Check every field's type (from its annotation) and value (its :class:`Option`);
        raises :class:`UsageError` (or :class:`UnknownComponentError` for a preset or
        optimizer nobody knows)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            msg = check_value(f.name, value)
            if msg:
                opt = option(f.name)
                if opt.unknown and opt.choices is not None and isinstance(value, str):
                    raise UnknownComponentError(opt.unknown, value, opt.choices)
                raise UsageError(f"{_label(f.name)} {msg}")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"run config is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise ConfigError("run config is not a JSON object")
        for key in RECORD_KEYS:  # config.json's record of the plugins that provide them, and the classes
            d.pop(key, None)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"run config has unknown keys: {', '.join(_REPR.repr(k) for k in sorted(unknown)[:5])}")
        if "betas" in d:
            d["betas"] = tuple(d["betas"]) if isinstance(d["betas"], list) else d["betas"]
        # runs saved before the joint real+fake forward existed scored them separately
        d.setdefault("joint_forward", False)
        for name, value in d.items():
            msg = check_type(name, value)
            if msg:
                raise ConfigError(f"run config: {_label(name)} {msg}")
        return cls(**d)


def option(name: str) -> Option:
    """The :class:`Option` of config field ``name``."""
    return _OPTIONS[name]


def flag_of(name: str) -> str:
    """The CLI flag of field (or extra option) ``name`` (``--batch-size``)."""
    opt = _OPTIONS[name] if name in _OPTIONS else EXTRA_OPTIONS[name][1]
    return (opt.flag or "--" + name.replace("_", "-")).split(",")[0]


def check_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for field (or extra option) ``name`` (the text after
    the flag), or None: its type (config fields: from the annotation, see
    :func:`check_type`), then its value."""
    opt = _OPTIONS[name] if name in _OPTIONS else EXTRA_OPTIONS[name][1]
    if name in _OPTIONS:
        msg = check_type(name, value)
        if msg:
            return msg
    if value is None:
        return None
    if opt.choices is not None and value not in opt.choices:
        return f"must be {' or '.join(opt.choices)}, got {value!r}"
    if opt.check is not None:
        return opt.check(value)
    if opt.ge is not None or opt.gt is not None or opt.lt is not None or opt.le is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        bad = (isinstance(value, float) and not math.isfinite(value)) or (
            (opt.ge is not None and value < opt.ge) or (opt.gt is not None and value <= opt.gt)
            or (opt.lt is not None and value >= opt.lt) or (opt.le is not None and value > opt.le))
        if bad:
            lo = _num(opt.ge if opt.ge is not None else opt.gt)
            if opt.lt is not None:
                return f"must lie in [{lo}, {_num(opt.lt)}){opt.note}, got {_REPR.repr(value)}"
            if opt.le is not None and value > opt.le:  # (below the lower bound: "must be >= 1")
                return f"must lie in [{lo}, {_num(opt.le)}]{opt.note}, got {_REPR.repr(value)}"
            return f"must be {'>=' if opt.ge is not None else '>'} {lo}, got {_REPR.repr(value)}"
    return None


#: the Python types a config may hold, from its annotations (JSON's types)
_SCALARS = (type(None), bool, int, float, str)
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 2


def check_type(name: str, value: Any) -> str | None:
    """Why ``value`` is not of config field ``name``'s annotated type (the text after
    the flag), or None. ``bool`` is not an ``int`` here; an ``int`` is a ``float``;
    ``tuple[float, float]`` may be a list of two numbers (JSON); ``dict[str, Any]``
    (component options) maps names to JSON scalars: finite numbers, integers within
    64 bits, strings, booleans or null."""
    tp = _TYPES[name]
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    origin, short = typing.get_origin(tp), _REPR.repr(value)
    if origin is dict:
        return _options_problem(value)
    if origin is tuple:  # tuple[float, float]: betas
        ok = isinstance(value, (tuple, list)) and len(value) == len(typing.get_args(tp)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        return None if ok else f"must be a pair of numbers, got {short}"
    if tp is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {short}"
    if tp is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else f"must be an integer, got {short}"
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"must be a number, got {short}"
    if tp is str:
        if not isinstance(value, str):
            return f"must be a string, got {short}"
        return f"must not contain control characters, got {short}" if _has_control(value) else None
    return None


def _has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline would split a one-line
    error message that quotes it)."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def _options_problem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a table of names and values, got {_REPR.repr(value)}"
    for key, v in value.items():
        if not isinstance(key, str) or not key or _has_control(key):
            return f"must have option names as keys, got {_REPR.repr(key)}"
        key = key if len(key) <= 40 else key[:40] + "..."
        if isinstance(v, str) and _has_control(v):
            return f"has {key}={_REPR.repr(v)}, expected text without control characters"
        if not isinstance(v, _SCALARS):
            return f"has {key}={_REPR.repr(v)}, expected a number, a string or a boolean"
        if isinstance(v, float) and not math.isfinite(v):
            return f"has {key}={v}, expected a finite number"
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            return f"has {key}={_REPR.repr(v)}, expected an integer within 64 bits"
    return None


def _label(name: str) -> str:
    """How messages name config field ``name``: its flag, or for component options
    ``model options (-O model.KEY=VALUE)``."""
    if name in _OPTIONS and _OPTIONS[name].flag == "":
        kind = name.removesuffix("_options")
        return f"{kind} options (-O {kind}.KEY=VALUE)"
    return flag_of(name)


def _num(x: float | int) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


#: the groups of ``gantk train --help``, in order, and the options in each
PANELS: dict[str, tuple[str, ...]] = {
    "Data and model": ("data", "model", "conditional", "latent_dim", "resolution", "channels", "augment", "augment_p",
                       "option", "data_memory", "cache_dir"),
    "Loss and Lipschitz": ("loss", "lipschitz", "preset", "lambda_", "clip", "allow_batchnorm", "penalty_every"),
    "Optimisation": ("steps", "batch_size", "n_critic", "optimizer", "lr", "lr_decay", "lr_floor", "betas", "ema",
                     "seed"),
    "Speed": ("device", "amp", "channels_last", "joint_forward", "threads"),
    "Output and logging": ("out", "name", "log_every", "checkpoint_every", "image_every", "keep", "eval_every",
                           "logger", "resume", "config", "print_config"),
}


def panel_of(name: str) -> str:
    """The ``--help`` group of option ``name``."""
    return next((panel for panel, names in PANELS.items() if name in names), "Other")


_OPTIONS: dict[str, Option] = {f.name: f.metadata["option"] for f in dataclasses.fields(TrainConfig)}
_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)

#: The fields ``--resume`` may change (the others would make a different run).
RESUME_OVERRIDABLE: tuple[str, ...] = tuple(n for n, o in _OPTIONS.items() if o.resume)


#: ``gantk train`` options that are not config fields: shorthands for component options
#: and settings of the process, not of the run. name → (type, Option); ``flag`` may hold
#: a short alias after a comma.
EXTRA_OPTIONS: dict[str, tuple[type, Option]] = {
    "lambda_": (float, Option("Penalty weight λ of gp/lp (same as -O lipschitz.lambda=...).", flag="--lambda",
                              default="10")),
    "clip": (float, Option("Clipping bound c of clip (same as -O lipschitz.c=...).", default="0.01")),
    "option": (list[str], Option("Component option KIND.KEY=VALUE (KIND: data, model, loss, lipschitz, logger); "
                                 "repeatable, e.g. -O lipschitz.k=0 -O model.width=256.", flag="--option,-O")),
    "resume": (Path, Option("Continue the run in this folder (or from this checkpoint) with its stored config; "
                            f"only {', '.join(flag_of(k) for k in RESUME_OVERRIDABLE)} may change.")),
    "eval_every": (int, Option("Evaluate the generator every K steps (and at the end) with 1000 samples, as "
                               "`gantk eval` does; appends to eval.jsonl in the run folder.", default="off", ge=1)),
    "resolution": (int, Option("Image side in pixels for image data (-O data.resolution=..., or data.size=... "
                               "for digits).", default="the data set's")),
    "channels": (int, Option("Image channels for image folders: 3 (RGB) or 1 (grayscale) (-O data.channels=...).",
                             default="3")),
    "config": (Path, Option("Read the run's settings from a TOML file (keys as in this table: lr = 2e-4, "
                            "[lipschitz_options] lambda = 5) or a run's config.json; flags override them.")),
    "print_config": (bool, Option("Resolve every setting, print it with where it came from (default, preset, "
                                  "data set, component, file, flag) and exit without creating anything.",
                                  flag="--print-config")),
    "logger": (list[str], Option("Training logger by name (repeatable; see `gantk plugins`); metrics.jsonl is "
                                 "always written. Logger options: -O logger.KEY=VALUE.", default="none")),
    "threads": (int, Option("CPU threads for torch (1 is often fastest on a busy machine).",
                            default="torch's choice", ge=1)),
}


def cli_fields() -> list[dataclasses.Field]:
    """The fields that have a flag of their own, in definition order."""
    return [f for f in dataclasses.fields(TrainConfig) if _OPTIONS[f.name].flag != ""]


def options_markdown() -> str:
    """The README's table of ``gantk train`` options, generated from the config."""
    rows = ["| flag | meaning | default | may change on `--resume` |", "|---|---|---|---|"]
    named = [(f.name, _OPTIONS[f.name]) for f in cli_fields()] + [(k, o) for k, (_, o) in EXTRA_OPTIONS.items()]
    for name, opt in named:
        flags = [flag_of(name)] + ([opt.off_flag] if opt.off_flag else []) + (opt.flag or "").split(",")[1:]
        resume = "yes" if opt.resume else ("-" if name in EXTRA_OPTIONS else "no")
        rows.append(f"| {' / '.join(f'`{f}`' for f in flags)} | {opt.help.replace('|', '/')} | "
                    f"{opt.default or '-'} | {resume} |")
    return "\n".join(rows) + "\n"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a TOML file (keys as the config's fields: ``lr = 2e-4``,
    ``[lipschitz_options]`` tables) or a run's ``config.json``. Unknown keys and values
    that fail the options' checks are one-line :class:`UsageError`s; the values are
    checked again with the flags that override them."""
    p = Path(path)
    try:
        if not stat.S_ISREG(p.stat().st_mode):
            raise UsageError(f"--config {p}: not a regular file")
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"--config {p}: {exc.strerror or exc}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as exc:
        raise UsageError(f"--config {p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {p}: expected a table of settings")
    for key in RECORD_KEYS:  # a run's config.json records its plugins and classes there
        data.pop(key, None)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in data:
        if key not in names:
            raise UnknownComponentError(f"setting in {p}:", key, names)
    if isinstance(data.get("betas"), list):
        data["betas"] = tuple(data["betas"])
    for key, value in data.items():
        msg = check_type(key, value) or check_value(key, value)
        if msg:
            raise UsageError(f"--config {p}: {key} {msg}")
    return data
