"""Write a folder of generated RGB PNG images for the data benchmarks: random shapes
(rectangles, ellipses, triangles in random colours on a random background, so the
images compress and decode like pictures, not like noise), ``--n`` of them at
``--size`` pixels, in sub-folders of 1,000 (``--classes K``: K class sub-folders
instead). Deterministic for a seed. Write it outside the repository:

    python benchmarks/make_image_folder.py /tmp/gantk-shapes-50k --n 50000 --size 64 --jobs 2
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def draw(i: int, size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng([seed, i])
    im = Image.new("RGB", (size, size), _colour(rng))
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = (int(v) for v in rng.integers(0, size - 4, 2))
        x1, y1 = x0 + int(rng.integers(4, size)), y0 + int(rng.integers(4, size))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            d.rectangle((x0, y0, x1, y1), fill=_colour(rng))
        elif kind == 1:
            d.ellipse((x0, y0, x1, y1), fill=_colour(rng))
        else:
            d.polygon([(x0, y1), (x1, y1), ((x0 + x1) // 2, y0)], fill=_colour(rng))
    return im


def write_range(root: str, start: int, stop: int, size: int, seed: int, classes: int) -> int:
    for i in range(start, stop):
        sub = f"class{i % classes:03d}" if classes else f"{i // 1000:05d}"
        folder = Path(root) / sub
        folder.mkdir(parents=True, exist_ok=True)
        draw(i, size, seed).save(folder / f"{i:07d}.png")
    return stop - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    chunk = 2000
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(write_range, args.out, s, min(s + chunk, args.n), args.size, args.seed, args.classes)
                   for s in range(0, args.n, chunk)]
        done = sum(f.result() for f in futures)
    print(f"wrote {done} images of {args.size}x{args.size} to {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
