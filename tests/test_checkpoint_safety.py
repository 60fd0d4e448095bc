"""Checkpoint files are safe to load whatever they hold, and writes never leave a
half-written file: fuzzing, a simulated full disk, and SIGKILL at random moments."""
import errno
import os
import random
import signal
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gantk.checkpoint import list_checkpoints, load_checkpoint
from gantk.errors import CheckpointError, OutputError
from gantk.fsutil import read_jsonl


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    from gantk.resolve import make_config
    from gantk.training import Trainer

    out = tmp_path_factory.mktemp("ck")
    cfg = make_config(None, data="8gaussians", data_options={"n": 256}, model_options={"width": 8, "depth": 1},
                      steps=2, batch_size=16, out=str(out), name="r", checkpoint_every=1, image_every=0, device="cpu")
    res = Trainer(cfg).train()
    return res.checkpoint.read_bytes()


def _load_bytes(tmp_path, data: bytes):
    p = tmp_path / "fuzz.safetensors"
    p.write_bytes(data)
    try:
        load_checkpoint(p)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return "error"
    return "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_checkpoint_errors(tmp_path, good_checkpoint, data):
    blob = bytearray(good_checkpoint)
    kind = data.draw(st.sampled_from(["truncate", "flip", "header_len", "header_json", "random"]))
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "header_len":
        blob[:8] = struct.pack("<Q", data.draw(st.integers(0, 2**64 - 1)))
    elif kind == "header_json":
        n = struct.unpack("<Q", bytes(blob[:8]))[0]
        i = data.draw(st.integers(8, 8 + n - 1))
        blob[i] = data.draw(st.sampled_from(list(b'{}[]":,0123456789 x')))
    else:
        blob = bytearray(data.draw(st.binary(max_size=512)))
    # either a clean gantk error or (for harmless flips in tensor data) a load
    assert _load_bytes(tmp_path, bytes(blob)) in ("ok", "error")


def test_wrong_shapes_are_refused(tmp_path, good_checkpoint):
    import json

    n = struct.unpack("<Q", good_checkpoint[:8])[0]
    header = json.loads(good_checkpoint[8 : 8 + n])
    name = next(k for k in header if k.startswith("generator."))
    header[name]["shape"] = [d * 2 + 1 for d in header[name]["shape"]]
    hb = json.dumps(header).encode()
    blob = struct.pack("<Q", len(hb)) + hb + good_checkpoint[8 + n :]
    assert _load_bytes(tmp_path, blob) == "error"


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    from gantk.resolve import make_config
    from gantk.training import Trainer

    cfg = make_config(None, data="8gaussians", data_options={"n": 256}, model_options={"width": 8, "depth": 1},
                      steps=3, batch_size=16, out=str(tmp_path), name="r", checkpoint_every=1, image_every=0,
                      device="cpu")
    tr = Trainer(cfg)
    tr.cfg.steps = 1
    tr.train()
    first = list_checkpoints(tr.run_dir)[-1][1]
    before = first.read_bytes()

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    tr.cfg.steps = 2
    with pytest.raises(OutputError, match="No space left"):
        tr.train()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert first.read_bytes() == before
    assert [s for s, _ in list_checkpoints(tr.run_dir)] == [1]
    assert not [p for p in (tr.run_dir / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    load_checkpoint(first)


def _kill_once(tmp_path, i, delay):
    env = {**os.environ, "GANTK_LOAD_PLUGINS": ""}
    run = tmp_path / f"r{i}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gantk", "train", "--data", "8gaussians", "-O", "data.n=256", "-O", "model.width=8",
         "-O", "model.depth=1", "--batch-size", "16", "--n-critic", "1", "--steps", "100000", "--log-every", "1",
         "--checkpoint-every", "1", "--keep", "2", "--image-every", "0", "--out", str(tmp_path), "--name", f"r{i}",
         "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not list_checkpoints(run):
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpts = list_checkpoints(run)
    assert ckpts, "no checkpoint before the kill"
    ck = load_checkpoint(ckpts[-1][1])
    recs = read_jsonl(run / "metrics.jsonl")
    assert recs and recs[-1]["step"] >= ck.step - 1
    return ck.step


def test_sigkill_at_random_moments_leaves_loadable_state(tmp_path):
    rng = random.Random(20)
    steps = [_kill_once(tmp_path, i, rng.uniform(0.0, 1.5)) for i in range(20)]
    assert all(s >= 1 for s in steps)
