"""Pictures: the WGAN-GP toy figure (critic contours, real and generated points) and
image grids."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .fsutil import atomic_path


def _plt():
    # matplotlib loads on the first picture, not with gantk (start-up time), and the
    # Agg backend must be chosen before pyplot is imported
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def plot_points(
    path: str | Path,
    fake: torch.Tensor,
    real: torch.Tensor | None = None,
    critic: torch.nn.Module | None = None,
    title: str | None = None,
    grid: int = 128,
) -> Path:
    """Scatter of real (orange) and generated (green) 2-D points over contours of the
    critic's value, as in the WGAN-GP paper's toy figure."""
    plt = _plt()
    fake = fake.detach().float().cpu().numpy()
    pts = [fake] + ([real.detach().float().cpu().numpy()] if real is not None else [])
    allp = np.concatenate(pts)
    lo, hi = np.percentile(allp, 0.5, axis=0), np.percentile(allp, 99.5, axis=0)
    pad = 0.15 * (hi - lo).max() + 1e-3
    lo, hi = lo - pad, hi + pad
    side = (hi - lo).max()
    c = (hi + lo) / 2
    lo, hi = c - side / 2, c + side / 2
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    if critic is not None:
        xs = np.linspace(lo[0], hi[0], grid)
        ys = np.linspace(lo[1], hi[1], grid)
        xx, yy = np.meshgrid(xs, ys)
        p = next(critic.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
        dt = p.dtype if p is not None and p.is_floating_point() else torch.float32
        inp = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1)).to(dev, dt)
        was = critic.training
        critic.eval()
        vals = torch.cat([critic(chunk).reshape(-1) for chunk in inp.split(8192)]).float().cpu().numpy()
        critic.train(was)
        cs = ax.contourf(xx, yy, vals.reshape(grid, grid), levels=20, cmap="viridis", alpha=0.55)
        fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.04, label="critic D(x)")
    if real is not None:
        r = pts[1]
        ax.scatter(r[:, 0], r[:, 1], s=2, c="orange", alpha=0.5, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="#1a9850", alpha=0.6, label="generated")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_cell: int = 32) -> np.ndarray:
    """(N, C, H, W) in [−1, 1] → an (H', W', 3) uint8 grid; tiny images are upscaled
    with nearest-neighbour so each cell is at least ``min_cell`` pixels."""
    x = images.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    elif c == 2:
        x = torch.cat([x, x[:, :1]], 1)
    elif c >= 4:
        x = x[:, :3]
    k = max(1, math.ceil(min_cell / max(h, w)))
    if k > 1:
        x = x.repeat_interleave(k, 2).repeat_interleave(k, 3)
        h, w = h * k, w * k
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    out = torch.full((3, ncol * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + col * (w + pad): pad + col * (w + pad) + w] = x[i]
    return out.permute(1, 2, 0).numpy()


def save_image_grid(path: str | Path, images: torch.Tensor, nrow: int | None = None) -> Path:
    arr = image_grid(images, nrow)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def plot_tensor_samples(path: str | Path, samples: torch.Tensor, title: str | None = None) -> Path:
    """Fallback picture for data that is neither 2-D points nor images: histograms of
    the first few flattened coordinates."""
    plt = _plt()
    flat = samples.detach().float().cpu().reshape(samples.shape[0], -1).numpy()
    k = min(4, flat.shape[1])
    fig, axes = plt.subplots(1, k, figsize=(3 * k, 3), dpi=100, squeeze=False)
    for i in range(k):
        axes[0, i].hist(flat[:, i], bins=50, color="#1a9850")
        axes[0, i].set_title(f"coordinate {i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def save_samples_picture(path: str | Path, samples: torch.Tensor, modality: str, *, title: str | None = None,
                         real: torch.Tensor | None = None, critic: torch.nn.Module | None = None) -> Path:
    """The picture of generated samples for their modality: a scatter (with ``real``
    points and the ``critic``'s contours when given) for 2-D points, a grid for images,
    coordinate histograms for anything else."""
    if modality == "points":
        return plot_points(path, samples, real, critic, title=title)
    if modality == "image":
        return save_image_grid(path, samples)
    return plot_tensor_samples(path, samples, title=title)


def class_rows(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int]:
    """Images arranged for a grid with one row per class (class 0 on top), each row
    as long as the largest class's count; short rows are filled with blank (white)
    cells. Returns (images in grid order, row length)."""
    labels = labels.cpu()
    per_row = max(1, int(torch.bincount(labels, minlength=num_classes).max()))
    blank = torch.ones_like(images[:1])
    cells = []
    for c in range(num_classes):
        row = images[(labels == c).nonzero().flatten()]
        cells += [row, blank.expand(per_row - row.shape[0], *images.shape[1:])]
    return torch.cat(cells), per_row


def save_class_grid(path: str | Path, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                    title: str | None = None) -> Path:
    """A grid of (N, C, H, W) images with one row per class of ``labels``."""
    grid, per_row = class_rows(images.detach().float().cpu(), labels, num_classes)
    return save_image_grid(path, grid, nrow=per_row)
