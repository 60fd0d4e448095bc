"""Files gantk writes get the mode a plain open() gives a new file (0o666 less the
umask), whether written atomically (config.json, checkpoints, pictures, samples) or
appended (metrics.jsonl)."""
import os
import stat
import warnings

import pytest

from gantk import fsutil


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o027], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _plain_mode(tmp_path) -> int:
    """What open() gives a new file under the current umask."""
    p = tmp_path / "plain-open"
    with open(p, "w") as f:
        f.write("x")
    return _mode(p)


def test_atomic_writes_match_plain_open(tmp_path, umask):
    want = _plain_mode(tmp_path)
    assert want == 0o666 & ~umask
    with fsutil.atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"a")
    fsutil.write_bytes_atomic(tmp_path / "sub" / "b.json", b"{}")
    fsutil.append_line(tmp_path / "c.jsonl", "{}")
    assert {name: _mode(tmp_path / name) for name in ("a.bin", "sub/b.json", "c.jsonl")} == dict.fromkeys(
        ("a.bin", "sub/b.json", "c.jsonl"), want
    )


def test_replacing_a_file_gives_the_new_file_mode(tmp_path, umask):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    target.chmod(0o600 if umask != 0o077 else 0o644)  # anything but the plain-open mode
    fsutil.write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == _plain_mode(tmp_path)


def test_a_writer_may_set_its_own_mode(tmp_path):
    with fsutil.atomic_path(tmp_path / "f") as tmp:
        tmp.write_bytes(b"x")
        tmp.chmod(0o640)
    assert _mode(tmp_path / "f") == 0o640


def test_umask_read_without_proc(tmp_path, umask, monkeypatch):
    """Where /proc/self/status cannot be read, the umask is set and restored."""
    real_open, real_umask, calls = open, os.umask, []

    def open_without_proc(file, *args, **kwargs):
        if str(file).startswith("/proc/"):
            raise FileNotFoundError(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(fsutil, "open", open_without_proc, raising=False)
    monkeypatch.setattr(os, "umask", lambda m: (calls.append(m), real_umask(m))[1])
    fsutil.write_bytes_atomic(tmp_path / "f", b"x")
    monkeypatch.undo()
    assert calls  # the fallback was taken
    assert os.umask(umask) == umask  # and left the umask as it was
    assert _mode(tmp_path / "f") == _plain_mode(tmp_path)


def test_training_run_files_are_world_readable(tmp_path, monkeypatch):
    import gantk  # the public API only; imported here so this module's other tests run alone

    monkeypatch.setenv("GANTK_FORCE_REF", "1")  # no extension build: the files are the point
    old = os.umask(0o022)
    try:
        cfg = gantk.make_config(
            data="8gaussians", steps=2, batch_size=16, n_critic=1, out=str(tmp_path), name="r",
            device="cpu", data_options={"n": 64}, log_every=1, checkpoint_every=1, image_every=2,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gantk.train(cfg)
    finally:
        os.umask(old)
    run = tmp_path / "r"
    files = [run / "config.json", run / "metrics.jsonl",
             *sorted((run / "checkpoints").glob("step-*.safetensors")),
             *sorted((run / "images").glob("step-*.png"))]
    assert any(p.parent.name == "checkpoints" for p in files)
    assert any(p.parent.name == "images" for p in files)
    assert {p.relative_to(run).as_posix(): oct(_mode(p)) for p in files} == {
        p.relative_to(run).as_posix(): oct(0o644) for p in files
    }
