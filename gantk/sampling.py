"""Drawing samples from a trained generator: safetensors or PNG."""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save
from torch import nn

from . import checkpoint as ckpt_mod
from . import memory, plots
from .data import modality_of
from .errors import CheckpointError, DataError, OutputError, UsageError
from .fsutil import atomic_folder, atomic_path, path_text
from .plugins import get_registry, require_components
from .training import resolve_device

SUFFIXES = (".safetensors", ".png", ".npz")


@dataclass
class SampleResult:
    path: Path
    n: int
    step: int
    checkpoint: Path
    shape: tuple[int, ...]
    weights: str = "raw"  # "ema": the run's weight average (--ema)
    cls: str | None = None  # the class drawn (--class), by name


def load_generator(checkpoint: str | Path, device: str | torch.device = "cpu", *, raw: bool = False):
    """Rebuild the generator of a checkpoint (or a run's newest checkpoint) from its
    stored config: its weight average when the run kept one (``--ema``), unless ``raw``
    asks for the weights themselves. Returns ``(generator, checkpoint, data_shape,
    latent_dim)``; :func:`weights_used` says which weights it holds.

    Nothing large is allocated before it is known to fit: the generator is first built
    on the meta device and refused (:class:`CheckpointError`, "needs about X GB") when
    its weights are more than the machine has available; its tensors are checked
    against the checkpoint's (names, shapes, dtypes, finite values) before loading."""
    path = ckpt_mod.resolve_checkpoint(checkpoint)
    ck = ckpt_mod.load_checkpoint(path)
    require_components(ck.meta.get("extra", {}).get("components"))  # "this run needs plugin ..."
    cfg = ck.config
    prefix = "generator_ema" if not raw and has_average(ck) else "generator"
    meta = ck.meta.get("extra", {})
    data_shape = tuple(meta.get("data_shape") or ())
    latent = meta.get("latent_dim")
    if not data_shape or not latent:
        raise CheckpointError(f"{path}: checkpoint lacks the data shape or latent size")
    model_name = meta.get("model") or cfg.model or "mlp"
    model = get_registry("model").get(model_name)(**cfg.model_options)
    G = _build_generator(path, model, data_shape, latent, num_classes_of(ck))
    ckpt_mod.check_module_state(ck, prefix, G)
    try:
        G.load_state_dict(ck.module_state(prefix))
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: generator weights do not match model {model_name!r} ({str(exc).splitlines()[0]})") from None
    return G.to(device).eval(), ck, data_shape, latent


def _build_generator(path: Path, model, data_shape: tuple[int, ...], latent: int, num_classes: int = 0) -> nn.Module:
    """The model's generator, built for real only after its meta-device twin showed
    that its weights fit in memory."""
    def build() -> nn.Module:
        return model.make_generator(data_shape, latent, num_classes)

    reason = model.supports(data_shape)
    if reason:
        raise CheckpointError(f"{path}: model {model.name!r} cannot handle its data shape {data_shape}: {reason}")
    memory.check_fits(memory.module_bytes(build), f"the generator of {path}", CheckpointError)
    torch.manual_seed(0)
    try:
        return build()
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:  # options the model's code cannot take
        raise CheckpointError(f"{path}: cannot build the generator of model {model.name!r} from its config "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def num_classes_of(ck: ckpt_mod.Checkpoint) -> int:
    """The classes a checkpoint's generator is conditioned on (0: unconditional)."""
    return int(ck.meta.get("extra", {}).get("num_classes") or 0)


def resolve_class(ck: ckpt_mod.Checkpoint, text: str | int) -> int:
    """``--class`` (a class name, or an index 0..K−1) → the class index; one-line
    :class:`UsageError` for an unconditional run or a class it does not have."""
    k = num_classes_of(ck)
    if not k:
        raise UsageError(f"--class needs a class-conditional run (--conditional); {ck.path} is unconditional")
    names = ckpt_mod.class_names_of(ck)
    text = str(text)
    if text in names:
        return names.index(text)
    if text.isdigit() and int(text) < k:
        return int(text)
    shown = ", ".join(names[:20]) + (", ..." if k > 20 else "")
    raise UsageError(f"--class {text!r}: this run has no such class (its {k} classes: {shown})")


def class_labels(n: int, num_classes: int, cls: int | None = None) -> torch.Tensor | None:
    """Labels for ``n`` samples of a conditional generator: all ``cls`` when given,
    else the classes in turn (0, 1, ..., K−1, 0, ...), so every class gets n/K of them;
    None for an unconditional one."""
    if not num_classes:
        return None
    if cls is not None:
        return torch.full((n,), cls, dtype=torch.long)
    return torch.arange(n) % num_classes


def has_average(ck: ckpt_mod.Checkpoint) -> bool:
    """Whether the checkpoint holds a weight average of its generator (``--ema``)."""
    return any(k.startswith("generator_ema.") for k in ck.tensors)


def weights_used(ck: ckpt_mod.Checkpoint, raw: bool = False) -> str:
    """``"ema"`` when :func:`load_generator` gave the weight average, else ``"raw"``."""
    return "ema" if has_average(ck) and not raw else "raw"


def latents(n: int, latent_dim: int, seed: int) -> torch.Tensor:
    """``n`` latents z ~ N(0, I) drawn with ``seed`` on the CPU, so the same seed gives
    the same latents on every device."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def run_generator(generator: nn.Module, z: torch.Tensor, device=None, batch_size: int = 1024,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's samples for latents ``z`` (and, for a conditional generator,
    their ``labels``) as float32 on the CPU, in chunks of ``batch_size``, in eval mode;
    the module's mode is restored afterwards."""
    device = device if device is not None else next(iter(generator.parameters()), torch.empty(0)).device
    was = generator.training
    generator.eval()
    try:
        if labels is None:
            xs = [generator(chunk.to(device)).float().cpu() for chunk in z.split(batch_size)]
        else:
            xs = [generator(chunk.to(device), y.to(device)).float().cpu()
                  for chunk, y in zip(z.split(batch_size), labels.split(batch_size))]
    finally:
        generator.train(was)
    return torch.cat(xs)


def generate(generator: nn.Module, latent_dim: int, n: int, seed: int, device=None,
             batch_size: int = 1024, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` samples from the latents :func:`latents` draws with ``seed`` (and the
    ``labels`` of a conditional generator, see :func:`class_labels`)."""
    return run_generator(generator, latents(n, latent_dim, seed), device, batch_size, labels)


@torch.no_grad()
def sample(
    checkpoint: str | Path,
    n: int,
    output: str | Path,
    *,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 4096,
    each: bool = False,
    raw: bool = False,
    truncation: float = 1.0,
    cls: str | int | None = None,
) -> SampleResult:
    """Draw ``n`` samples with latents from ``seed`` and write them to ``output``
    (``.safetensors``: samples, latents, metadata; ``.npz``: the samples under
    ``arr_0``, images as uint8 (N, H, W, C) as the ADM and StudioGAN evaluators read
    them, other samples as float32; ``.png``: a scatter for 2-D points, a grid for
    images, one row per class for a conditional run). ``cls`` (a class name or index of a
    conditional run) draws that class only; otherwise a conditional run's samples take
    the classes in turn, and ``.safetensors`` / ``.npz`` store their ``labels``.
    ``truncation`` ψ < 1 draws the latents closer to their mean (the truncation
    trick: z ← ψ·z for z ~ N(0, I), trading variety for fidelity). ``each=True`` (image runs only) makes ``output`` a folder (new
    or empty) that receives one PNG per sample at the native resolution,
    ``sample-00000.png``, ... The same checkpoint and seed give identical output."""
    if n < 1:
        raise UsageError(f"-n must be >= 1, got {n}")
    if not 0 < truncation <= 1:
        raise UsageError(f"--truncation must lie in (0, 1], got {truncation}")
    out = Path(output)
    _refuse_run_files(out)
    if each:
        _check_each_folder(out)
    else:
        if out.suffix.lower() not in SUFFIXES:
            raise UsageError(f"output must end in {' or '.join(SUFFIXES)}, got {out.name!r}")
        if out.is_dir():
            raise OutputError(f"cannot write {out}: it is a folder")
        if out.parent and not out.parent.exists():
            raise OutputError(f"cannot write {out}: folder {out.parent} does not exist")
    dev = resolve_device(device)
    G, ck, shape, latent = load_generator(checkpoint, dev, raw=raw)
    k = num_classes_of(ck)
    labels = class_labels(n, k, None if cls is None else resolve_class(ck, cls))
    if each and modality_of(shape) != "image":
        raise UsageError(f"--each writes one PNG per image, but this run's samples have shape {tuple(shape)} "
                         "(not images); write a .png or .safetensors file instead")
    # the latents, the samples and the output's copy of them
    memory.check_fits(4 * n * (latent + 2 * math.prod(shape)), f"{n} samples of shape {tuple(shape)}", UsageError)
    z = latents(n, latent, seed) * truncation if truncation != 1 else latents(n, latent, seed)
    x = run_generator(G, z, dev, batch_size, labels)
    if not torch.isfinite(x).all():
        raise DataError(f"the generator of {ck.path} (step {ck.step}) produced NaN or infinite samples; "
                        "nothing written")
    if each:
        save_each(out, x)
    elif out.suffix.lower() == ".npz":
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            arrays = {"arr_0": _npz_array(x, modality_of(shape))}
            if labels is not None:
                arrays["labels"] = labels.numpy()
            np.savez(f, **arrays)
    elif out.suffix.lower() == ".safetensors":
        meta = {"checkpoint": path_text(ck.path), "step": str(ck.step), "seed": str(seed),
                "weights": weights_used(ck, raw), "truncation": str(truncation),
                "config": ck.config.to_json(), "format": "gantk-samples-1"}
        tensors = {"samples": x.contiguous(), "latents": z.contiguous()}
        if labels is not None:
            tensors["labels"] = labels
            meta["class_names"] = json.dumps(ckpt_mod.class_names_of(ck))
        with atomic_path(out) as tmp:
            tmp.write_bytes(save(tensors, metadata=meta))
    else:
        title = f"{n} samples, {ck.path.parent.parent.name} step {ck.step}, seed {seed}"
        if labels is not None and cls is None and modality_of(shape) == "image":  # one row per class
            plots.save_class_grid(out, x, labels, k, title=title)
        else:
            plots.save_samples_picture(out, x, modality_of(shape), title=title)
    return SampleResult(out, n, ck.step, ck.path, tuple(shape), weights_used(ck, raw),
                        None if cls is None else ckpt_mod.class_names_of(ck)[int(labels[0])])


def _npz_array(x: torch.Tensor, modality: str) -> np.ndarray:
    """Images as uint8 (N, H, W, C) in 0..255 (the evaluators' convention); other
    samples as float32 as they are."""
    if modality != "image":
        return x.numpy().astype(np.float32)
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _refuse_run_files(out: Path) -> None:
    """Samples never land in a run's ``checkpoints/`` folder or over a checkpoint."""
    target = out.resolve()
    for folder in (target, *target.parents):
        if folder.name == ckpt_mod.CKPT_DIR and (folder.parent / "config.json").is_file():
            raise OutputError(f"refusing to write {out}: it is inside the checkpoints folder of run {folder.parent}")
    if target.is_file() and ckpt_mod.is_checkpoint_file(target):
        raise OutputError(f"refusing to write {out}: it is a gantk checkpoint")


def _check_each_folder(out: Path) -> None:
    if out.suffix.lower() in SUFFIXES:
        raise UsageError(f"with --each, the output names a folder, not a {out.suffix} file ({out.name!r})")
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot write into {out}: it is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(f"cannot write into {out}: the folder is not empty (choose a new or empty one)")
    if not out.exists() and not out.parent.exists():
        raise OutputError(f"cannot create {out}: folder {out.parent} does not exist")


def save_each(folder: str | Path, images: torch.Tensor) -> list[Path]:
    """Write (N, C, H, W) images in [−1, 1] as ``sample-00000.png``, ... (C = 1, 2, 3, 4:
    grayscale, grayscale + alpha, RGB, RGBA) at their own size into ``folder`` (new or
    empty). The files are written into a hidden temporary folder beside it that is
    renamed into place at the end, so a failure (a full disk) leaves no partial set and
    a retry can use the same name."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        paths = _write_pngs(tmp, images)
    return [folder / p.name for p in paths]


def _write_pngs(folder: Path, images: torch.Tensor) -> list[Path]:
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    x = x.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    digits = max(5, len(str(len(x) - 1)))
    paths = []
    for i, arr in enumerate(x):
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)  # L, LA, RGB or RGBA
        path = folder / f"sample-{i:0{digits}d}.png"
        try:
            img.save(path, format="PNG")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        paths.append(path)
    return paths


@dataclass
class ExportResult:
    path: Path
    step: int
    latent_dim: int
    shape: tuple[int, ...]
    format: str  # "torch.export" or "torchscript"
    num_classes: int = 0  # a conditional generator's classes: it takes (z, y)


def export_generator(checkpoint: str | Path, output: str | Path, *, raw: bool = False) -> ExportResult:
    """Write the run's generator (its weight average unless ``raw``) as a file that
    loads without gantk: ``.pt2`` with :func:`torch.export.export` (load it with
    ``torch.export.load(path).module()``), ``.pt`` as TorchScript (``torch.jit.load``).
    The batch size is dynamic; the file carries ``gantk.json`` (latent size, sample
    shape, step; a conditional run's ``num_classes`` and ``class_names``) as extra
    data. Input: latents z ~ N(0, I) of shape (B, latent), and for a conditional run
    the class indices y of shape (B,), int64; output: samples in the data's range (images in [−1, 1])."""
    out = Path(output)
    suffix = out.suffix.lower()
    if suffix not in (".pt2", ".pt"):
        raise UsageError(f"export writes .pt2 (torch.export) or .pt (TorchScript), got {out.name!r}")
    _refuse_run_files(out)
    G, ck, shape, latent = load_generator(checkpoint, "cpu", raw=raw)
    k = num_classes_of(ck)
    meta = json.dumps({"latent_dim": latent, "data_shape": list(shape), "step": ck.step,
                       "weights": weights_used(ck, raw), "gantk_checkpoint": path_text(ck.path),
                       **ckpt_mod.class_record(k, tuple(ckpt_mod.class_names_of(ck)) if k else None)})
    # a conditional generator takes (z, y): y a (B,) int64 tensor of class indices
    example: tuple[torch.Tensor, ...] = (torch.randn(2, latent, generator=torch.Generator().manual_seed(0)),)
    if k:
        example += (torch.arange(2) % k,)
    try:
        if suffix == ".pt2":
            batch = torch.export.Dim("batch", min=1, max=1 << 20)
            program = torch.export.export(G, example, dynamic_shapes=tuple({0: batch} for _ in example))
            buf = io.BytesIO()
            torch.export.save(program, buf, extra_files={"gantk.json": meta})
        else:
            buf = io.BytesIO()
            torch.jit.save(torch.jit.trace(G, example, check_trace=False), buf, _extra_files={"gantk.json": meta})
        with atomic_path(out) as tmp:
            tmp.write_bytes(buf.getvalue())
    except OutputError:
        raise
    except Exception as exc:  # a model torch cannot export: say which format to try
        other = ".pt (TorchScript)" if suffix == ".pt2" else ".pt2 (torch.export)"
        raise OutputError(f"cannot export this generator as {suffix} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); try {other}") from None
    return ExportResult(out, ck.step, latent, tuple(shape), "torch.export" if suffix == ".pt2" else "torchscript", k)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents (rows of ``a`` and ``b``): the path a
    Gaussian latent's norm stays typical along, unlike the straight line."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(checkpoint: str | Path, output: str | Path, *, rows: int = 4, steps: int = 8, seed: int = 0,
                spherical: bool = True, gif: str | Path | None = None, raw: bool = False) -> Path:
    """A grid of latent interpolations of an image run: ``rows`` pairs of latents drawn
    with ``seed``, each row going from one to the other in ``steps`` images (spherical
    by default, ``spherical=False`` for straight lines), as a PNG; with ``gif``, also an
    animated GIF whose frames walk every row along its path and back."""
    out = Path(output)
    if out.suffix.lower() != ".png":
        raise UsageError(f"the interpolation grid is a .png, got {out.name!r}")
    if gif is not None and Path(gif).suffix.lower() != ".gif":
        raise UsageError(f"--gif names a .gif file, got {Path(gif).name!r}")
    if not (1 <= rows <= 64 and 2 <= steps <= 64):
        raise UsageError(f"rows must lie in [1, 64] and steps in [2, 64], got {rows} and {steps}")
    for p in (out, *([Path(gif)] if gif is not None else [])):
        _refuse_run_files(p)
    G, ck, shape, latent = load_generator(checkpoint, "cpu", raw=raw)
    if modality_of(shape) != "image":
        raise UsageError(f"interpolate draws images, but this run's samples have shape {tuple(shape)}")
    ends = latents(2 * rows, latent, seed)
    a, b = ends[:rows], ends[rows:]
    path = [slerp(a, b, t) if spherical else torch.lerp(a, b, t) for t in torch.linspace(0, 1, steps).tolist()]
    z = torch.stack(path, 1).reshape(rows * steps, latent)  # row-major: row r, step s
    k = num_classes_of(ck)  # a conditional run: row r draws class r mod K
    x = run_generator(G, z, labels=(torch.arange(rows) % k).repeat_interleave(steps) if k else None)
    if not torch.isfinite(x).all():
        raise DataError(f"the generator of {ck.path} produced NaN or infinite samples; nothing written")
    with atomic_path(out) as tmp:
        Image.fromarray(plots.image_grid(x, nrow=steps)).save(tmp, format="PNG")
    if gif is not None:
        frames_x = x.reshape(rows, steps, *x.shape[1:])
        order = list(range(steps)) + list(range(steps - 2, 0, -1))
        frames = [Image.fromarray(plots.image_grid(frames_x[:, s], nrow=rows)) for s in order]
        with atomic_path(gif) as tmp:
            frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return out
