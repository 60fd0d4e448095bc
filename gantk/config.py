"""The run configuration and the presets from the papers."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, UnknownComponentError, UsageError

#: Presets (explicit flags override). Optimizer settings follow each paper:
#: GAN — DCGAN's Adam 2e-4, β = (0.5, 0.999); WGAN — RMSProp 5e-5, n_critic 5, c = 0.01;
#: WGAN-GP — Algorithm 1: Adam 1e-4, β = (0, 0.9), λ = 10, n_critic 5;
#: SN-GAN — hinge loss, Adam 2e-4, β = (0, 0.9), n_critic 5.
PRESETS: dict[str, dict[str, Any]] = {
    "gan": {"loss": "minimax", "lipschitz": "none", "optimizer": "adam", "lr": 2e-4,
            "betas": (0.5, 0.999), "n_critic": 1},
    "wgan": {"loss": "wasserstein", "lipschitz": "clip", "optimizer": "rmsprop", "lr": 5e-5,
             "betas": (0.5, 0.999), "n_critic": 5},
    "wgan-gp": {"loss": "wasserstein", "lipschitz": "gp", "optimizer": "adam", "lr": 1e-4,
                "betas": (0.0, 0.9), "n_critic": 5},
    "sngan": {"loss": "hinge", "lipschitz": "sn", "optimizer": "adam", "lr": 2e-4,
              "betas": (0.0, 0.9), "n_critic": 5},
    # WGAN-GP on scikit-learn's 8x8 digits upscaled to 16x16 with a small DCGAN (width 32,
    # batch 32, Adam 2e-4, beta = (0.5, 0.9)): about 9 minutes on a shared 2-core CPU with
    # one torch thread, digits of every class (docs/images/digits-wgan-gp.png).
    "digits": {"data": "digits", "data_options": {"size": 16}, "model": "dcgan",
               "model_options": {"width": 32}, "loss": "wasserstein", "lipschitz": "gp",
               "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.9), "n_critic": 5,
               "batch_size": 32, "steps": 3000, "image_every": 500, "checkpoint_every": 500},
}
DEFAULT_PRESET = "wgan-gp"
LR_DECAYS = ("none", "linear")
OPTIMIZERS = ("adam", "rmsprop", "sgd")


def infer_preset(loss: str | None, lipschitz: str | None) -> str:
    """The preset whose (loss, enforcer) pair matches what the user chose; the default
    preset's optimizer settings otherwise."""
    if loss is None and lipschitz is None:
        return DEFAULT_PRESET
    for name, p in PRESETS.items():
        if (loss in (None, p["loss"])) and (lipschitz in (None, p["lipschitz"])):
            return name
    if lipschitz in ("gp", "lp") or (lipschitz is None and loss == "wasserstein"):
        return "wgan-gp"
    if lipschitz == "clip":
        return "wgan"
    if lipschitz == "sn":
        return "sngan"
    if loss in ("minimax", "ns", "lsgan") and lipschitz in (None, "none"):
        return "gan"
    return DEFAULT_PRESET


@dataclass
class TrainConfig:
    """Everything that defines a run; stored as JSON in every checkpoint."""

    data: str = "25gaussians"
    data_options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    loss: str = "wasserstein"
    loss_options: dict[str, Any] = field(default_factory=dict)
    lipschitz: str = "gp"
    lipschitz_options: dict[str, Any] = field(default_factory=dict)
    preset: str = DEFAULT_PRESET
    steps: int = 1000
    batch_size: int = 256
    n_critic: int = 5
    optimizer: str = "adam"
    lr: float = 1e-4
    #: learning-rate schedule of both optimizers: "none" (constant) or "linear" (from lr
    #: at step 0 down to 0 at the last step, as the WGAN-GP authors' CIFAR-10 code does;
    #: recommended for the toy sets, where it is what sharpens the modes)
    lr_decay: str = "none"
    #: the linear decay stops at this fraction of lr and holds it to the end (0: down to
    #: 0 at the last step)
    lr_floor: float = 0.0
    betas: tuple[float, float] = (0.0, 0.9)
    latent_dim: int | None = None
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    name: str | None = None
    log_every: int = 50
    checkpoint_every: int = 500
    image_every: int = 500
    keep: int = 3
    allow_batchnorm: bool = False
    #: compute the Lipschitz penalty on every k-th critic step only, multiplied by k so its
    #: expected weight is unchanged (StyleGAN2's lazy regularization; see Trainer.critic_step)
    penalty_every: int = 1
    #: score real and fake samples in one batched critic forward (critics without
    #: BatchNorm only; the per-sample scores are the same as with two forwards; under
    #: spectral norm, sigma's power iteration then runs once per critic step, not twice)
    joint_forward: bool = True
    #: mixed precision: "bf16" runs the networks' forward passes under torch.autocast in
    #: bfloat16 (weights and optimizer state stay float32, and so does the arithmetic of
    #: the penalty's norms; the input gradient itself is taken through the bf16 critic)
    amp: str = "off"
    #: store image batches and conv weights channels-last (NHWC), the layout cuDNN's and
    #: oneDNN's fastest convolutions use
    channels_last: bool = False
    #: an exponential moving average of the generator's weights, updated after every
    #: generator step with this decay (0 = off); checkpoints store it beside the weights,
    #: and sampling, evaluation and the pictures use it (``--raw`` for the weights
    #: themselves). The first updates use min(decay, (1 + t) / (10 + t)) so the
    #: average soon forgets the initial weights.
    ema: float = 0.0

    def validate(self) -> None:
        def bad(msg):
            raise UsageError(msg)

        if self.preset not in PRESETS:
            raise UnknownComponentError("preset", self.preset, PRESETS)
        if not self.steps >= 1:
            bad(f"--steps must be >= 1, got {self.steps}")
        if not self.batch_size >= 1:
            bad(f"--batch-size must be >= 1, got {self.batch_size}")
        if not self.n_critic >= 1:
            bad(f"--n-critic must be >= 1, got {self.n_critic}")
        if not (self.lr > 0) or self.lr != self.lr or self.lr == float("inf"):
            bad(f"--lr must be > 0, got {self.lr}")
        if self.lr_decay not in LR_DECAYS:
            bad(f"--lr-decay must be {' or '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise UnknownComponentError("optimizer", self.optimizer, OPTIMIZERS)
        b1, b2 = self.betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            bad(f"--betas must lie in [0, 1), got {self.betas}")
        if self.latent_dim is not None and self.latent_dim < 1:
            bad(f"--latent-dim must be >= 1, got {self.latent_dim}")
        for k in ("log_every", "checkpoint_every", "image_every"):
            if getattr(self, k) < 0:
                bad(f"--{k.replace('_', '-')} must be >= 0")
        if self.penalty_every < 1:
            bad(f"--penalty-every must be >= 1, got {self.penalty_every}")
        if self.amp not in ("off", "bf16"):
            bad(f"--amp must be off or bf16, got {self.amp!r}")
        if not (0 <= self.lr_floor < 1):
            bad(f"--lr-floor must lie in [0, 1), got {self.lr_floor}")
        if not (0 <= self.ema < 1):
            bad(f"--ema must lie in [0, 1) (0 = off), got {self.ema}")
        if self.keep < 1:
            bad(f"--keep must be >= 1, got {self.keep}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad(f"--device must be auto, cpu or cuda, got {self.device!r}")

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"run config is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise ConfigError("run config is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"run config has unknown keys: {', '.join(sorted(unknown))}")
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        # runs saved before the joint real+fake forward existed scored them separately
        d.setdefault("joint_forward", False)
        return cls(**d)


def make_config(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """Build a config from a preset (inferred from loss/lipschitz when not given) and
    explicit overrides (``None`` values mean "not given")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    explicit_preset = preset is not None
    if preset is None:
        preset = infer_preset(given.get("loss"), given.get("lipschitz"))
    if preset not in PRESETS:
        raise UnknownComponentError("preset", preset, PRESETS)
    import copy

    base = copy.deepcopy(PRESETS[preset])
    base["preset"] = preset
    for key, value in given.items():
        if key.endswith("_options") and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}  # -O merges into a preset's options
        else:
            base[key] = value
    notes = [] if explicit_preset else _apply_data_recommendations(base, given)
    if "betas" in base:
        base["betas"] = tuple(base["betas"])
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(base) - names
    if unknown:
        raise UsageError(f"unknown config keys: {', '.join(sorted(unknown))}")
    cfg = TrainConfig(**base)
    cfg.validate()
    cfg.notes = notes  # shown by the Trainer (rank 0): what the data set chose
    return cfg


def _apply_data_recommendations(base: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Apply the settings the data set recommends to the keys the user did not give:
    ``Dataset.recommended`` for every method, then ``Dataset.tuned[preset]`` for the
    run's (inferred) preset only and ``Dataset.tuned["preset+enforcer"]`` for that
    preset with that Lipschitz enforcer only, so that settings tuned for one method
    never replace another method's paper settings. Model options are recommended as a
    set: none applies when the user gave any model option (``-O model.width=64`` means
    both networks 64 wide, not a 64-wide critic beside a recommended 512-wide
    generator). Only used when no preset was named: ``--preset wgan-gp`` always means
    the paper's settings. Returns one note per applied setting."""
    from .plugins import get_registry

    data = base.get("data", TrainConfig.data)
    reg = get_registry("dataset")
    if not isinstance(data, str) or data not in reg:
        return []
    ds = reg.get(data)
    preset = base.get("preset")
    notes = []
    scoped = [(key, value, f"{data}") for key, value in ds.recommended.items()]
    scoped += [(key, value, f"{data} with {preset}") for key, value in (ds.tuned.get(preset) or {}).items()]
    enforcer = base.get("lipschitz")
    scoped += [(key, value, f"{data} with {preset} and {enforcer}")
               for key, value in (ds.tuned.get(f"{preset}+{enforcer}") or {}).items()]
    chosen: dict[str, tuple[Any, str]] = {}
    for key, value, why in scoped:  # the narrower scope wins, with one note per key
        chosen.pop(key, None)
        chosen[key] = (value, why)
    for key, (value, why) in chosen.items():
        if "." in key:
            kind, opt = key.split(".", 1)
            name = base.get(kind)
            if kind == "model" and not name:  # the model chosen for this data when none is named
                from .train import default_model_for

                name = default_model_for(ds.modality)
            kreg = get_registry(kind)
            if not name or name not in kreg or opt not in kreg.get(name).options:
                continue
            if opt in given.get(f"{kind}_options", {}) or opt in base.get(f"{kind}_options", {}):
                continue
            if kind == "model" and given.get("model_options"):
                continue  # the network's shape is one choice: the user made it
            base[f"{kind}_options"] = {**base.get(f"{kind}_options", {}), opt: value}
            notes.append(f"{kind} option {opt} = {value} (recommended for {why}; -O {kind}.{opt}=... overrides)")
        elif key not in given:
            base[key] = value
            flag = "--" + key.replace("_", "-")
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            notes.append(f"{key} = {shown} (recommended for {why}; {flag} overrides, --preset uses the paper's)")
    return notes
