"""Image collections: the uint8 cache (reuse, rebuild on change, a killed build), class
labels, zip archives, and the batch samplers (uint8 = float, streaming = in memory,
exact resume across the streaming path)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gantk
from gantk.cachefile import open_cache
from gantk.checkpoint import load_checkpoint
from gantk.data import BatchSampler, StreamingBatchSampler, is_mapped, load_samples, to_float
from gantk.errors import GantkNote
from gantk.training import Trainer, distributed


def _shapes(root: Path, n: int, size: int = 12, classes: tuple[str, ...] = ()) -> Path:
    """n small RGB pictures of a coloured rectangle on a background, distinct from each
    other; spread over the class sub-folders when given."""
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / classes[i % len(classes)] if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        arr = np.empty((size, size, 3), dtype=np.uint8)
        arr[:] = rng.integers(0, 256, 3)
        y, x = rng.integers(0, size // 2, 2)
        arr[y : y + size // 2, x : x + size // 2] = rng.integers(0, 256, 3)
        Image.fromarray(arr).save(folder / f"img{i:03d}.png")
    return root


def _load(path, cache_dir, **opts):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds, x = load_samples(str(path), {"resolution": 8, **opts}, keep_uint8=True, cache_dir=str(cache_dir))
    notes = [str(w.message) for w in caught if issubclass(w.category, GantkNote)]
    return ds, x, notes


# ------------------------------------------------------------------ the cache
def test_the_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path):
    root = _shapes(tmp_path / "imgs", 6)
    _, x, notes = _load(root, tmp_path / "cache")
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 8, 8) and is_mapped(x)
    assert "decoded 6 images" in notes[-1]
    _, y, notes = _load(root, tmp_path / "cache")
    assert "read the cache of 6 images" in notes[-1] and torch.equal(x, y)
    # one file changes (new pixels, new mtime): a new cache with the new pixels
    Image.new("RGB", (12, 12), (255, 255, 255)).save(root / "img002.png")
    os.utime(root / "img002.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    _, z, notes = _load(root, tmp_path / "cache")
    assert "decoded 6 images" in notes[-1]
    assert (z[2] == 255).all() and torch.equal(z[[0, 1, 3, 4, 5]], x[[0, 1, 3, 4, 5]])
    # a file added, and another resolution: caches of their own
    _shapes(tmp_path / "more", 1)
    (tmp_path / "more" / "img000.png").rename(root / "zz.png")
    assert _load(root, tmp_path / "cache")[1].shape[0] == 7
    assert _load(root, tmp_path / "cache", resolution=4)[1].shape == (7, 3, 4, 4)
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_a_cache_that_does_not_hold_its_rows_is_not_trusted(tmp_path):
    root = _shapes(tmp_path / "imgs", 4)
    _load(root, tmp_path / "cache")
    (folder,) = (tmp_path / "cache").iterdir()
    with open(folder / "samples.u8", "r+b") as f:
        f.truncate(100)
    assert open_cache(folder) is None
    _, x, notes = _load(root, tmp_path / "cache")
    assert "decoded 4 images" in notes[-1] and x.shape[0] == 4


_SLOW_BUILD = """
import time, warnings
from gantk.default_plugins import image_data
from gantk.data import load_samples
read = image_data._Source.read
def slow(self, *a):
    time.sleep(0.2)
    return read(self, *a)
image_data._Source.read = slow
warnings.simplefilter("ignore")
load_samples({root!r}, {{"resolution": 8}}, keep_uint8=True, cache_dir={cache!r})
"""


def test_a_build_killed_with_sigkill_leaves_nothing_trusted(tmp_path):
    root = _shapes(tmp_path / "imgs", 40)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD.format(root=str(root), cache=str(cache))],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.monotonic() + 60
    while not list(cache.glob(".*/samples.u8")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some rows written
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(cache.glob(".*/samples.u8")), "the build never started"
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == []  # no key folder: nothing to trust
    _, x, notes = _load(root, cache)
    assert "decoded 40 images" in notes[-1] and x.shape[0] == 40
    ref = np.asarray(Image.open(root / "img039.png").resize((8, 8), Image.Resampling.LANCZOS))
    assert np.abs(x[39].permute(1, 2, 0).numpy().astype(int) - ref.astype(int)).max() <= 1


def test_class_subfolders_give_labels_and_class_names(tmp_path):
    root = _shapes(tmp_path / "pets", 9, classes=("dog", "cat", "bird"))
    ds, x, notes = _load(root, tmp_path / "cache")
    assert ds.class_names == ("bird", "cat", "dog")
    # files in sorted order: bird/img002, img005, img008, cat/img001, ... dog/img000, ...
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.labels.dtype == torch.int64
    assert "3 classes" in notes[-1]
    ds2, _, _ = _load(root, tmp_path / "cache")  # from the cache: the same labels
    assert torch.equal(ds2.labels, ds.labels) and ds2.class_names == ds.class_names
    # images at the top level too: no classes
    _shapes(tmp_path / "pets", 1)
    ds3, _, _ = _load(root, tmp_path / "cache")
    assert ds3.labels is None and ds3.class_names is None


def test_a_zip_archive_reads_like_its_folder(tmp_path):
    root = _shapes(tmp_path / "pets", 6, classes=("a", "b"))
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, p.relative_to(root).as_posix())
        z.writestr("__MACOSX/a/._img000.png", b"resource fork")
        z.writestr("a/broken.png", b"not a png")
    ds_f, x_f, _ = _load(root, tmp_path / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds_z, x_z = load_samples(str(archive), {"resolution": 8}, keep_uint8=True, cache_dir=str(tmp_path / "cache"))
    assert any("skipped 1 of 7 image files" in str(w.message) for w in caught)
    assert torch.equal(x_f, x_z) and torch.equal(ds_f.labels, ds_z.labels) and ds_z.class_names == ("a", "b")


# ------------------------------------------------------------------ samplers
def test_uint8_and_float_paths_give_the_same_batches(tmp_path):
    _, x, _ = _load(_shapes(tmp_path / "imgs", 20), tmp_path / "cache")
    labels = torch.arange(20) % 3
    a = BatchSampler(x.clone(), 6, torch.Generator().manual_seed(5), labels=labels)
    b = BatchSampler(to_float(x.clone()), 6, torch.Generator().manual_seed(5), labels=labels)
    for _ in range(7):  # across epochs (3 batches each)
        (xa, ya), (xb, yb) = a.next_with_labels(), b.next_with_labels()
        assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.min() >= -1 and xa.max() <= 1


def test_the_sampler_state_is_a_seed_and_a_position(tmp_path):
    data = torch.arange(50)[:, None]
    s = BatchSampler(data, 8, torch.Generator().manual_seed(1))
    drawn = [s.next() for _ in range(9)]
    st = s.state()
    assert set(st) == {"seed", "pos"} and int(st["pos"]) == 9 and all(v.numel() == 1 for v in st.values())
    later = [s.next() for _ in range(10)]
    t = BatchSampler(data, 8, 12345)  # another seed, then the saved state
    t.load_state(st)
    assert all(torch.equal(a, t.next()) for a in later)
    epoch = torch.cat(drawn[:6]).flatten()  # 6 batches of 8 in an epoch of 50: no repeats
    assert epoch.unique().numel() == 48


def test_streaming_gives_the_batches_of_the_in_memory_sampler(tmp_path):
    ds, x, _ = _load(_shapes(tmp_path / "pets", 18, classes=("a", "b", "c")), tmp_path / "cache")
    mem = BatchSampler(x.clone(), 4, torch.Generator().manual_seed(2), labels=ds.labels)
    stream = StreamingBatchSampler(x, 4, torch.Generator().manual_seed(2), labels=ds.labels, workers=1)
    for _ in range(6):
        (xa, ya), (xb, yb) = mem.next_with_labels(), stream.next_with_labels()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    st = stream.state()
    assert int(st["pos"]) == 6  # batches taken, not the ones prefetched
    again = StreamingBatchSampler(x, 4, 99, labels=ds.labels, workers=0)
    again.load_state(st)
    for _ in range(3):
        assert torch.equal(mem.next(), again.next())
    # DDP: each rank's slice of the global batch, labels with their samples
    ranks = [StreamingBatchSampler(x, 4, torch.Generator().manual_seed(2), labels=ds.labels, workers=0,
                                   shard=lambda i, r=r: distributed.shard(i, distributed.Context(rank=r, world_size=2)))
             for r in range(2)]
    whole = BatchSampler(x.clone(), 4, torch.Generator().manual_seed(2), labels=ds.labels)
    for _ in range(4):
        parts = [r.next_with_labels() for r in ranks]
        wx, wy = whole.next_with_labels()
        assert torch.equal(torch.cat([p[0] for p in parts]), wx) and torch.equal(torch.cat([p[1] for p in parts]), wy)


def _cfg(root, out, name, **kw):
    return gantk.make_config(data=str(root), data_options={"resolution": 8}, model_options={"width": 4},
                             batch_size=4, n_critic=2, steps=4, device="cpu", out=str(out), name=name,
                             log_every=1, checkpoint_every=2, image_every=0, keep=5, cache_dir=str(out / "cache"),
                             **kw)


def test_streaming_training_matches_in_memory_and_resumes_exactly(tmp_path):
    root = _shapes(tmp_path / "imgs", 24)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = Trainer(_cfg(root, tmp_path, "mem"))
        assert not tm.c.streamed and not is_mapped(tm.c.data)
        mem = tm.train()
        ts = Trainer(_cfg(root, tmp_path, "stream", data_memory="1KB"))
        assert ts.c.streamed and isinstance(ts.sampler, StreamingBatchSampler)
        stream = ts.train()
        ck_mem, ck_stream = load_checkpoint(mem.checkpoint), load_checkpoint(stream.checkpoint)
        for k, v in ck_mem.tensors.items():
            assert torch.equal(v, ck_stream.tensors[k]), k
        # resume the streaming run from step 2: the same step 4
        (tmp_path / "stream" / "checkpoints" / "step-0000004.safetensors").unlink()
        res = gantk.resume(tmp_path / "stream", {"steps": 4})
    ck_res = load_checkpoint(res.checkpoint)
    for k, v in ck_stream.tensors.items():
        assert torch.equal(v, ck_res.tensors[k]), k
