"""Hostile or odd data files (issue 19): .npy / .npz headers that claim more data than the
file holds, samples with a zero-size dimension, files holding several arrays, FIFOs named
like data files, and empty data sets. Each is refused with one line (or, for the choice
of an array, explained with one note) before anything large is allocated or any run
folder is written."""
import io
import os
import struct
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import numpy.lib.format as npy_format
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

import gantk
from gantk.cli import app
from gantk.data import load_samples, resolve_dataset
from gantk.errors import DataError, GantkNote
from gantk import hookimpl
from gantk.plugins import register_plugin, unregister_plugin

from _helpers import assert_clean_error

runner = CliRunner()
TRAIN = ["-O", "model.width=8", "--batch-size", "4", "--steps", "1", "--device", "cpu",
         "--checkpoint-every", "0"]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _train(data, tmp_path, *extra):
    return run("train", "--data", data, *TRAIN, *extra, "--out", tmp_path / "runs")


def _no_run_written(tmp_path):
    out = tmp_path / "runs"
    return not out.exists() or not any(out.iterdir())


def _npy_bytes(shape, descr="<f8", data=b""):
    """An .npy file's bytes: a header claiming ``shape`` of ``descr``, then ``data``."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def _load(path, **opts):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = resolve_dataset(str(path), opts).load()
    return x, [str(w.message) for w in caught if issubclass(w.category, GantkNote)]


# ------------------------------------------------------------------ 1. headers vs sizes

def test_npy_header_claiming_terabytes_is_refused_before_reading(tmp_path):
    p = tmp_path / "huge.npy"
    p.write_bytes(_npy_bytes((10**6, 10**6), data=b"\0" * 16))
    size = p.stat().st_size
    res = _train(p, tmp_path)
    assert_clean_error(res, 1, str(p), "(1000000, 1000000)", "8,000,000,000,000 bytes", f"holds {size:,} bytes")
    assert _no_run_written(tmp_path)


def test_truncated_npy_is_refused_with_its_claim(tmp_path):
    p = tmp_path / "cut.npy"
    full = io.BytesIO()
    np.save(full, np.ones((100, 2)))
    p.write_bytes(full.getvalue()[:-8])
    with pytest.raises(DataError, match=r"claims shape \(100, 2\) of float64 \(1,600 bytes\)"):
        resolve_dataset(str(p)).load()


def test_npz_member_header_is_checked_against_its_uncompressed_size(tmp_path):
    p = tmp_path / "huge.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("samples.npy", _npy_bytes((10**6, 10**6), data=b"\0" * 16))
    res = _train(p, tmp_path)
    assert_clean_error(res, 1, str(p), "'samples'", "(1000000, 1000000)", "the member holds 144 bytes")
    assert _no_run_written(tmp_path)


def test_npz_member_lying_about_its_uncompressed_size_is_refused(tmp_path):
    """The zip's own size field is a claim too: more than deflate can expand to is refused."""
    p = tmp_path / "lying.npz"
    claim = 4 * 10**9
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("samples.npy", _npy_bytes((claim,), descr="|u1", data=b"\0" * 64))
    raw = bytearray(p.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", claim + 128)  # uncompressed size
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="more than its compression can give"):
        resolve_dataset(str(p)).load()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_object_dtype_is_refused_before_reading(tmp_path, suffix):
    payload = _npy_bytes((2,), descr="|O", data=b"\x80\x04 not read")
    p = tmp_path / f"o{suffix}"
    if suffix == ".npy":
        p.write_bytes(payload)
    else:
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("x.npy", payload)
    with pytest.raises(DataError, match="cannot read an array of Python objects"):
        resolve_dataset(str(p)).load()


def test_big_endian_and_fortran_order_npy_still_read(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=">f4").reshape(4, 3))
    np.save(tmp_path / "be.npy", x)
    t, _ = _load(tmp_path / "be.npy")
    torch.testing.assert_close(t, torch.arange(12.0).reshape(4, 3))


# ------------------------------------------------------------------ 2. zero-size samples

@pytest.mark.parametrize("shape,kind", [((500, 0), ".npy"), ((50, 3, 0, 4), ".npy"), ((500, 0), ".safetensors")])
def test_zero_size_sample_dimension_is_refused_at_load(tmp_path, shape, kind):
    p = tmp_path / f"z{kind}"
    if kind == ".npy":
        np.save(p, np.zeros(shape, dtype=np.float32))
    else:
        save_file({"samples": torch.zeros(shape)}, str(p))
    res = _train(p, tmp_path)
    assert_clean_error(res, 1, str(p), "zero-size dimension")
    assert _no_run_written(tmp_path)


class _ZeroWide(gantk.Dataset):
    name = "zero-wide"
    description = "test data set whose samples have a zero-size dimension"

    def load(self, seed=0):
        return torch.zeros(8, 3, 0)


def test_load_samples_refuses_zero_size_samples_from_any_data_set():
    class Plugin:
        @hookimpl
        def register_datasets(register):
            register(_ZeroWide)

    name = register_plugin(Plugin, name="zero-wide-data")
    try:
        with pytest.raises(DataError, match=r"zero-wide: samples of shape \(3, 0\) .*zero-size dimension"):
            load_samples("zero-wide")
    finally:
        unregister_plugin(name)


# ------------------------------------------------------------------ 3. which array

def _write(kind, path, **arrays):
    if kind == "npz":
        np.savez(path, **arrays)
    else:
        save_file({k: torch.from_numpy(v) for k, v in arrays.items()}, str(path))


POINTS = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
LABELS = np.arange(64, dtype=np.int64)


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_the_array_named_images_is_read_not_the_first_with_a_note(tmp_path, kind):
    p = tmp_path / f"d.{kind}"
    _write(kind, p, feats=POINTS * 0, images=POINTS)
    x, notes = _load(p)
    torch.testing.assert_close(x, torch.from_numpy(POINTS))
    assert len(notes) == 1 and "'images'" in notes[0] and "feats" in notes[0], notes
    res = _train(p, tmp_path)
    assert res.exit_code == 0, res.output
    assert "note:" in res.output and "reading the" in res.output and "'images'" in res.output


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_preferred_names_in_order_and_an_explicit_key_wins_silently(tmp_path, kind):
    p = tmp_path / f"d.{kind}"
    _write(kind, p, x=POINTS[:, :1].copy(), images=POINTS * 0, samples=POINTS)
    x, notes = _load(p)
    torch.testing.assert_close(x, torch.from_numpy(POINTS))
    assert len(notes) == 1 and "'samples'" in notes[0]
    x, notes = _load(p, key="x")
    assert x.shape == (64, 1) and notes == []


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_a_single_array_is_read_whatever_its_name(tmp_path, kind):
    p = tmp_path / f"d.{kind}"
    _write(kind, p, feats=POINTS)
    x, notes = _load(p)
    torch.testing.assert_close(x, torch.from_numpy(POINTS))
    assert notes == []


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_a_labels_array_is_never_read_as_the_samples(tmp_path, kind):
    """``labels`` is the class index of each sample (conditional GANs): beside one other
    array it is taken as the labels, silently; alone it is no data set."""
    p = tmp_path / f"d.{kind}"
    _write(kind, p, labels=LABELS, feats=POINTS)
    ds = resolve_dataset(str(p), {})
    torch.testing.assert_close(ds.load(), torch.from_numpy(POINTS))
    assert ds.labels.tolist() == LABELS.tolist()
    q = tmp_path / f"only.{kind}"
    _write(kind, q, labels=LABELS)
    with pytest.raises(DataError, match="holds no"):
        resolve_dataset(str(q), {}).load()


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_several_arrays_none_preferred_is_ambiguous(tmp_path, kind):
    p = tmp_path / f"d.{kind}"
    _write(kind, p, other=POINTS * 0, feats=POINTS)
    res = _train(p, tmp_path)
    assert_clean_error(res, 1, str(p), "several", "feats", "other", "-O data.key=NAME")
    assert _no_run_written(tmp_path)
    res = _train(p, tmp_path, "-O", "data.key=feats")
    assert res.exit_code == 0, res.output


# ------------------------------------------------------------------ 4. non-regular files

def _in_subprocess(code, timeout=120):
    """Run ``code`` in a fresh interpreter; a reader that blocks on a FIFO fails the test
    instead of hanging it."""
    env = dict(os.environ, GANTK_LOAD_PLUGINS="")
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the data reader blocked on a FIFO")


@needs_fifo
@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors"])
def test_fifo_named_like_a_tensor_file_is_refused_at_once(tmp_path, suffix):
    p = tmp_path / f"pipe{suffix}"
    os.mkfifo(p)
    code = (f"from gantk.data import load_samples\nfrom gantk.errors import DataError\n"
            f"try:\n    load_samples({str(p)!r})\nexcept DataError as e:\n    print('refused:', e)")
    proc = _in_subprocess(code)
    assert proc.returncode == 0, proc.stderr
    assert f"refused: data file cannot be read: {p} (not a regular file but a FIFO)" in proc.stdout


@needs_fifo
def test_fifo_in_the_cli_is_one_error_line(tmp_path):
    p = tmp_path / "pipe.npy"
    os.mkfifo(p)
    proc = subprocess.run([sys.executable, "-m", "gantk", "train", "--data", str(p), *TRAIN,
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, GANTK_LOAD_PLUGINS=""))
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "FIFO" in errors[0] and str(p) in errors[0], proc.stderr
    assert _no_run_written(tmp_path)


@needs_fifo
def test_fifo_in_an_image_folder_is_skipped_and_counted(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / f"{i}.png")
    os.mkfifo(root / "pipe.png")
    code = (f"import warnings\nfrom gantk.data import load_samples\nwarnings.simplefilter('always')\n"
            f"with warnings.catch_warnings(record=True) as w:\n"
            f"    warnings.simplefilter('always')\n"
            f"    _, x = load_samples({str(root)!r}, {{'resolution': 8}})\n"
            f"print(tuple(x.shape))\nprint('\\n'.join(str(m.message) for m in w))")
    proc = _in_subprocess(code)
    assert proc.returncode == 0, proc.stderr
    assert "(4, 3, 8, 8)" in proc.stdout
    assert "skipped 1 of 5 image files" in proc.stdout and "not a regular file but a FIFO" in proc.stdout


@needs_fifo
def test_image_folder_holding_only_a_fifo_is_refused(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    os.mkfifo(root / "pipe.png")
    code = (f"from gantk.data import load_samples\nfrom gantk.errors import DataError\n"
            f"try:\n    load_samples({str(root)!r})\nexcept DataError as e:\n    print('refused:', e)")
    proc = _in_subprocess(code)
    assert proc.returncode == 0, proc.stderr
    assert "refused:" in proc.stdout and "none of its 1 image files could be read" in proc.stdout
    assert "FIFO" in proc.stdout


# ------------------------------------------------------------------ 5. empty sets

@pytest.mark.parametrize("kind", ["empty_folder", "folder_of_hidden_and_other_files", "empty_npz",
                                  "npz_without_samples", "npy_without_samples", "empty_safetensors",
                                  "safetensors_without_samples"])
def test_empty_data_sets_are_refused(tmp_path, kind):
    if kind.endswith("folder") or kind.endswith("files"):
        p = tmp_path / "imgs"
        p.mkdir()
        if kind == "folder_of_hidden_and_other_files":
            Image.new("RGB", (8, 8)).save(p / ".hidden.png")
            (p / "notes.txt").write_text("not an image")
    elif "npz" in kind:
        p = tmp_path / "e.npz"
        np.savez(p) if kind == "empty_npz" else np.savez(p, samples=np.zeros((0, 2)))
    elif "npy" in kind:
        p = tmp_path / "e.npy"
        np.save(p, np.zeros((0, 2)))
    else:
        p = tmp_path / "e.safetensors"
        save_file({} if kind == "empty_safetensors" else {"samples": torch.zeros(0, 2)}, str(p))
    with pytest.raises(DataError):
        load_samples(str(p))
    assert_clean_error(_train(p, tmp_path), 1, str(p))
    assert _no_run_written(tmp_path)
