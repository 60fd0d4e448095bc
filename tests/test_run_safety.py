"""Nothing a run wrote is lost or overwritten: resume only inside its run folder, a
branch when resuming from an older checkpoint, step logs cut at the checkpoint, samples
never written over checkpoints, a lock on every run folder, no half-step checkpoint, no
folder left by a failed start, and the console script's Ctrl-C handling."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from gantk.checkpoint import list_checkpoints, load_checkpoint
from gantk.cli import app
from gantk.errors import CheckpointError, OutputError, RunLockedError, TrainingError, TrainingInterrupted, UsageError
from gantk.fsutil import read_jsonl
from gantk.resolve import make_config
from gantk.training import Trainer, resume
from gantk.training.runlock import LOCK_NAME, RunLock

runner = CliRunner()


@pytest.fixture(autouse=True)
def _reference_penalty(monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")


def _cfg(tmp_path, **kw):
    opts = dict(data="8gaussians", data_options={"n": 128}, model_options={"width": 16, "depth": 2}, steps=4,
                batch_size=16, n_critic=1, out=str(tmp_path / "runs"), name="r", device="cpu", log_every=1,
                checkpoint_every=1, image_every=0, keep=10)
    opts.update(kw)
    return make_config(**opts)


def _train(tmp_path, **kw):
    return Trainer(_cfg(tmp_path, **kw)).train()


def _steps(path):
    return [r["step"] for r in read_jsonl(path)]


# ------------------------------------------------------------------ resume


def test_resume_from_a_checkpoint_outside_its_run_folder_is_refused(tmp_path):
    res = _train(tmp_path, steps=2)
    other = tmp_path / "elsewhere" / "sub"
    other.mkdir(parents=True)
    (tmp_path / "elsewhere" / "config.json").write_text('{"mine": true}')
    moved = other / "ckpt.safetensors"
    shutil.copy(res.checkpoint, moved)
    before = sorted(p.name for p in (tmp_path / "elsewhere").rglob("*"))
    with pytest.raises(CheckpointError, match="not inside a gantk run folder"):
        resume(moved, {"steps": 4})
    assert sorted(p.name for p in (tmp_path / "elsewhere").rglob("*")) == before
    assert (tmp_path / "elsewhere" / "config.json").read_text() == '{"mine": true}'
    # a run folder whose config.json belongs to another run
    run2 = _train(tmp_path, steps=2, name="r2", seed=5).run_dir
    shutil.copy(res.checkpoint, run2 / "checkpoints" / "step-0000009.safetensors")
    with pytest.raises(CheckpointError, match="describes another run"):
        resume(run2 / "checkpoints" / "step-0000009.safetensors", {"steps": 12})


def test_resume_from_an_older_checkpoint_starts_a_branch(tmp_path):
    res = _train(tmp_path, steps=4)
    run = res.run_dir
    first = run / "checkpoints" / "step-0000002.safetensors"
    newer = {p.name: p.read_bytes() for s, p in list_checkpoints(run) if s > 2}
    with pytest.warns(UserWarning, match="moved to"):
        out = resume(first, {"steps": 3, "keep": 1})
    assert out.step == 3
    # the run is one history again: checkpoints up to 3, metrics 1..3, nothing newer
    assert [s for s, _ in list_checkpoints(run)] == [3]  # --keep 1 rotates only this history
    assert _steps(run / "metrics.jsonl") == [1, 2, 3]
    branch = next((run / "branches").iterdir())
    moved = {p.name: p.read_bytes() for p in (branch / "checkpoints").iterdir()}
    assert moved == newer  # never deleted, byte for byte
    assert _steps(branch / "metrics.jsonl") == [3, 4]
    assert (branch / "config.json").is_file()


def test_metrics_are_one_increasing_series_after_a_kill_and_resume(tmp_path):
    res = _train(tmp_path, steps=2)
    metrics = res.run_dir / "metrics.jsonl"
    # what a process killed after its last checkpoint leaves: lines past step 2, a torn one
    with open(metrics, "a") as f:
        f.write(json.dumps({"step": 3, "critic_loss": 0.0}) + "\n" + '{"step": 4, "crit')
    with pytest.warns(UserWarning, match="dropped 2 log lines past step 2"):
        resume(res.run_dir, {"steps": 4})
    assert _steps(metrics) == [1, 2, 3, 4]


# ------------------------------------------------------------------ outputs


def test_samples_are_never_written_over_checkpoints(tmp_path):
    res = _train(tmp_path, steps=2)
    ck = res.checkpoint
    before = ck.read_bytes()
    for target in (ck, res.run_dir / "checkpoints" / "new.safetensors", res.run_dir / "checkpoints" / "x.png"):
        r = runner.invoke(app, ["sample", str(res.run_dir), "-o", str(target), "-n", "8"])
        assert r.exit_code == 1 and "refusing to write" in r.output, r.output
    copy = tmp_path / "copy.safetensors"
    shutil.copy(ck, copy)
    r = runner.invoke(app, ["sample", str(res.run_dir), "-o", str(copy), "-n", "8"])
    assert r.exit_code == 1 and "is a gantk checkpoint" in r.output
    assert ck.read_bytes() == before and not (res.run_dir / "checkpoints" / "x.png").exists()


def test_sample_each_leaves_no_partial_set(tmp_path, monkeypatch):
    from PIL import Image

    from gantk.sampling import save_each

    images = torch.rand(20, 3, 8, 8) * 2 - 1
    real_save = Image.Image.save
    written = {"n": 0}

    def full_disk(self, fp, *a, **kw):
        written["n"] += 1
        if written["n"] > 7:
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "pngs"
    with pytest.raises(OutputError, match="No space left"):
        save_each(out, images)
    assert list(tmp_path.iterdir()) == []  # no partial set, no temporary folder
    monkeypatch.setattr(Image.Image, "save", real_save)
    paths = save_each(out, images)  # the retry takes the same name
    assert len(paths) == 20 and sorted(p.name for p in out.iterdir()) == [p.name for p in paths]


def test_bad_run_names_are_refused(tmp_path):
    for name in ("../x", "a/b", str(tmp_path / "abs"), "..", ""):
        r = runner.invoke(app, ["train", "--out", str(tmp_path / "runs"), "--name", name, "--steps", "1"])
        assert r.exit_code == 2 and "--name" in r.output, (name, r.output)
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists()


# ------------------------------------------------------------------ lock


def test_a_run_folder_is_locked_and_the_lock_names_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".step-0000005.safetensors.abc123.tmp").write_bytes(b"x" * 100)  # a killed writer's leftover
    with RunLock(run):
        assert not (run / ".step-0000005.safetensors.abc123.tmp").exists()
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
            RunLock(run).acquire()
    RunLock(run).acquire().release()  # released


def test_a_second_process_is_refused_and_kill_9_frees_the_lock(tmp_path):
    res = _train(tmp_path, steps=1)
    run = res.run_dir
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gantk.training.runlock import RunLock; "
         "lock = RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = subprocess.run([sys.executable, "-m", "gantk", "train", "--resume", str(run), "--steps", "2"],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "GANTK_FORCE_REF": "1"})
        assert r.returncode == 1 and f"in use by process {holder.pid}" in r.stderr, r.stderr
        assert r.stderr.count("\n") <= 3 and "Traceback" not in r.stderr
        assert [s for s, _ in list_checkpoints(run)] == [1]  # nothing written by the refused process
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    out = resume(run, {"steps": 2})  # the kernel dropped the lock with the process
    assert out.step == 2


# ------------------------------------------------------------------ stops and failures


def test_a_second_signal_inside_a_step_saves_nothing(tmp_path):
    tr = Trainer(_cfg(tmp_path, steps=6, checkpoint_every=2))
    real_step = tr.critic_step
    calls = {"n": 0}

    def critic_step():
        calls["n"] += 1
        if calls["n"] == 4:  # inside step 4, after the checkpoint of step 2
            next(tr.D.parameters()).data.add_(1.0)  # the half-finished step has changed the critic
            raise KeyboardInterrupt
        return real_step()

    tr.critic_step = critic_step
    with pytest.raises(TrainingInterrupted, match="not saved: the last checkpoint stands") as exc:
        tr.train()
    assert exc.value.exit_code == 130
    assert [s for s, _ in list_checkpoints(tr.run_dir)] == [2]
    assert load_checkpoint(tr.run_dir / "checkpoints" / "step-0000002.safetensors").step == 2


def test_a_failed_start_leaves_no_run_folder(tmp_path):
    tr = Trainer(_cfg(tmp_path))
    run = tr.run_dir
    assert (run / "config.json").is_file()

    def diverge():
        raise TrainingError("training diverged at step 1")

    tr.critic_step = diverge
    with pytest.raises(TrainingError):
        tr.train()
    assert not run.exists()
    # a resumed run keeps its folder whatever happens
    res = _train(tmp_path, name="kept", steps=1)
    with pytest.raises(UsageError):
        resume(res.run_dir, {"steps": 1})
    assert res.run_dir.exists()


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sigint_ignored() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_at_any_moment_of_the_console_script_is_one_line(tmp_path):
    env = {**os.environ, "GANTK_FORCE_REF": "1"}
    cmd = [sys.executable, "-m", "gantk", "train", "--out", str(tmp_path / "runs"), "--steps", "100000",
           "--data", "8gaussians", "-O", "data.n=256", "--batch-size", "16"]
    # from 0.2 s: a signal inside the interpreter's own start-up (site, ~50 ms) is Python's to handle
    for delay in (0.2, 0.4, 0.8, 1.5, 4.0):
        # started as a shell starts a foreground command (SIGINT at its default), also when
        # these tests themselves run as a background job, whose children inherit it ignored
        p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                             preexec_fn=_sigint_default)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert "Traceback" not in err, (delay, err)
        assert p.returncode in (130, 0), (delay, p.returncode, err)


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """``nohup`` and a shell's background jobs start a program with SIGINT ignored: gantk
    leaves it so in start-up and in training alike (SIGTERM still stops the run
    cleanly), instead of dropping a SIGINT during start-up and acting on one later."""
    env = {**os.environ, "GANTK_FORCE_REF": "1"}
    cmd = [sys.executable, "-m", "gantk", "train", "--out", str(tmp_path / "runs"), "--steps", "100000",
           "--data", "8gaussians", "-O", "data.n=256", "--batch-size", "16", "--log-every", "1"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                         preexec_fn=_sigint_ignored)
    try:
        seen = ""
        while "step " not in seen:  # training has begun
            line = p.stderr.readline()
            assert line, "gantk train ended before training began"
            seen += line
        p.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=3)  # ignored: still training
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 143 and "SIGTERM" in err and "Traceback" not in err


def test_the_trainer_leaves_an_ignored_sigint_ignored(small_cfg):
    tr = Trainer(small_cfg(steps=1))
    step, seen = tr.critic_step, []
    tr.critic_step = lambda: (seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))),
                              step())[1]
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        tr.train()
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert all(i is signal.SIG_IGN and t == tr._request_stop for i, t in seen)
    assert after is signal.SIG_IGN


# ------------------------------------------------------------------ sizes and hostile flags


@pytest.mark.parametrize("args,needle", [
    (["-O", "model.width=1000000000"], "needs about"),
    (["-O", "data.n=10000000000"], "needs about"),
    (["--latent-dim", "1000000000"], "--latent-dim must lie in"),
    (["--seed", str(10**20)], "--seed must lie in"),
    (["--device", "cuda:abc"], "--device must be auto, cpu, cuda or cuda:N"),
    (["--lambda", "inf"], "expected a finite number"),
    (["-O", "lipschitz.lambda=nan"], "expected a finite number"),
])
def test_sizes_beyond_memory_and_hostile_flags_are_one_line_before_anything_is_created(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "gantk", "train", "--out", str(tmp_path / "runs"), "--steps", "1",
                        *args], capture_output=True, text=True, timeout=300, env={**os.environ, "GANTK_FORCE_REF": "1"})
    assert r.returncode in (1, 2) and needle in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in r.stderr and len(errors) == 1 and needle in errors[0], r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_sample_refuses_a_count_beyond_memory(tmp_path):
    res = _train(tmp_path, steps=1)
    r = runner.invoke(app, ["sample", str(res.run_dir), "-n", str(10**10), "-o", str(tmp_path / "s.safetensors")])
    assert r.exit_code == 2 and "needs about" in r.output and not (tmp_path / "s.safetensors").exists()


def test_non_finite_samples_are_an_error_for_every_output_format(tmp_path):
    from safetensors.torch import load_file, save_file

    res = _train(tmp_path, steps=1)
    ck = res.checkpoint
    tensors = load_file(str(ck))
    from gantk.checkpoint import load_checkpoint as _load

    meta = _load(ck).meta
    # finite weights whose products overflow float32: the samples come out infinite
    for k in list(tensors):
        if k.startswith(("generator.", "generator_ema.")) and tensors[k].is_floating_point():
            tensors[k] = torch.full_like(tensors[k], 1e30)
    raw = {k: v for k, v in meta.items() if isinstance(v, str)}
    raw.update({k: json.dumps(meta[k]) for k in ("opt_g", "opt_d", "extra")})
    save_file(tensors, str(ck), metadata=raw)
    for out in ("s.png", "s.safetensors"):  # (--each is for image runs; it writes after the same check)
        args = ["sample", str(res.run_dir), "-n", "8", "-o", str(tmp_path / out)] + (["--each"] if out == "each" else [])
        r = runner.invoke(app, args)
        assert r.exit_code != 0 and ("NaN or infinite" in r.output or "not finite" in r.output), (out, r.output)
        assert not (tmp_path / out).exists()


def test_a_run_folder_whose_name_is_not_utf8_works(tmp_path):
    out = os.fsdecode(bytes(tmp_path) + b"/runs")
    name = os.fsdecode(b"r\xff")
    res = Trainer(_cfg(tmp_path, out=out, name=name, steps=1)).train()
    env = {**os.environ, "GANTK_FORCE_REF": "1", "PYTHONIOENCODING": "utf-8"}
    target = os.fsdecode(bytes(tmp_path) + b"/s.safetensors")
    r = subprocess.run([sys.executable, "-m", "gantk", "sample", os.fsencode(str(res.run_dir)), "-n", "4",
                        "-o", os.fsencode(target)], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr and b"wrote 4 samples" in r.stdout
    from safetensors import safe_open

    with safe_open(target, framework="pt") as f:
        assert "\\xff" in f.metadata()["checkpoint"]


def test_npz_output_and_truncation(tmp_path):
    import numpy as np

    res = _train(tmp_path, steps=1)
    r = runner.invoke(app, ["sample", str(res.run_dir), "-n", "50", "-o", str(tmp_path / "s.npz"), "--seed", "3"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "s.npz") as z:
        assert z.files == ["arr_0"] and z["arr_0"].shape == (50, 2) and z["arr_0"].dtype == np.float32
        full = z["arr_0"]
    r = runner.invoke(app, ["sample", str(res.run_dir), "-n", "50", "-o", str(tmp_path / "t.npz"), "--seed", "3",
                            "--truncation", "0.5"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "t.npz") as z:
        trunc = z["arr_0"]
    # latents pulled to their mean: the samples spread less
    assert trunc.std(0).sum() < full.std(0).sum()
    r = runner.invoke(app, ["sample", str(res.run_dir), "-o", str(tmp_path / "u.npz"), "--truncation", "0"])
    assert r.exit_code == 2 and "--truncation" in r.output


def test_npz_images_are_uint8_nhwc(tmp_path):
    import numpy as np

    from gantk.sampling import _npz_array

    x = torch.rand(4, 3, 8, 8) * 2 - 1
    arr = _npz_array(x, "image")
    assert arr.dtype == np.uint8 and arr.shape == (4, 8, 8, 3)
    assert np.array_equal(arr[0, 2, 5], ((x[0, :, 2, 5] + 1) * 127.5).round().to(torch.uint8).numpy())
