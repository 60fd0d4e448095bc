"""Hostile checkpoint metadata (issue 19): a checkpoint whose config, step, optimizer
metadata, ``extra`` or tensors are not what gantk writes is refused with one
:class:`CheckpointError` line before anything is built from it: no traceback, no
unbounded allocation, no hang, no silent cast or fresh optimizer. The fuzz test at the
end mutates a real checkpoint and drives sample, evaluate and resume in a subprocess
whose address space is capped, so a large allocation fails the test instead of
swapping."""
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

import gantk
from _helpers import assert_clean_error
from gantk import memory
from gantk.checkpoint import load_checkpoint
from gantk.cli import app
from gantk.components import Loss, coerce_option
from gantk.config import TrainConfig
from gantk.errors import CheckpointError, ConfigError, GantkError, GantkNote, UsageError
from gantk.eval import evaluate
from gantk.plugins import get_registry
from gantk.sampling import load_generator
from gantk.sampling import sample as sample_to
from gantk.training import resume

CKPT = "checkpoints/step-0000002.safetensors"
#: address space the fuzz process may use beyond what it holds after its imports
FUZZ_HEADROOM = int(1.5 * 2**30)


def _train_tiny(out: Path) -> Path:
    cfg = gantk.make_config(data="8gaussians", steps=2, batch_size=16, n_critic=1, data_options={"n": 64},
                            model_options={"width": 16, "depth": 2}, out=str(out), name="r", device="cpu",
                            log_every=1, checkpoint_every=1, image_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gantk.train(cfg).run_dir


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTK_FORCE_REF", "1")
        return _train_tiny(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(autouse=True)
def _reference_ops(monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")


@pytest.fixture
def run(good_run, tmp_path):
    """A fresh copy of the tiny run (resume writes into it)."""
    dst = tmp_path / "r"
    shutil.copytree(good_run, dst)
    return dst


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def rewrite(run: Path, meta: dict | None = None, tensors: dict | None = None, config: dict | None = None) -> Path:
    """Rewrite the run's checkpoint: metadata entries replaced (None: removed), config
    fields replaced (also in the run's config.json, as a hostile run folder would
    have them), tensors replaced (None: removed)."""
    path = run / CKPT
    md, ts = _read(path)
    if config is not None:
        d = json.loads(md["config"])
        d.update(config)
        md["config"] = json.dumps(d)
        (run / "config.json").write_text(md["config"])
    for k, v in (meta or {}).items():
        if v is None:
            md.pop(k, None)
        else:
            md[k] = v
    for k, v in (tensors or {}).items():
        if v is None:
            ts.pop(k, None)
        else:
            ts[k] = v
    save_file(ts, str(path), metadata=md)
    return path


def refused(fn, *needles) -> str:
    with pytest.raises(CheckpointError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


def _resume(run: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return resume(run, {"steps": 3})


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ---------------------------------------------------------------- 1. the config
@pytest.mark.parametrize("change,needle", [
    ({"n_critic": 10**12}, "--n-critic must lie in [1, 1000], got 1000000000000"),
    ({"steps": 10**12}, "--steps must lie in [1, 1000000000]"),
    ({"seed": 2**70}, "--seed must lie in"),
    ({"latent_dim": 10**9}, "--latent-dim must lie in [1, 65536]"),
    ({"batch_size": "16"}, "--batch-size must be an integer"),
    ({"allow_batchnorm": 1}, "--allow-batchnorm must be true or false"),
    ({"steps": True}, "--steps must be an integer"),
    ({"betas": [0.5]}, "--betas must be a pair of numbers"),
    ({"lr": float("nan")}, "--lr must be > 0"),
    ({"model_options": {"width": [16]}}, "model options (-O model.KEY=VALUE) has width=[16]"),
    ({"model_options": "wide"}, "model options (-O model.KEY=VALUE) must be a table"),
    ({"lipschitz_options": {"lambda": float("inf")}}, "has lambda=inf, expected a finite number"),
    ({"data": ["8gaussians"]}, "--data must be a string"),
])
def test_config_is_validated_when_loaded(run, change, needle):
    path = rewrite(run, config=change)
    refused(lambda: load_checkpoint(path), "corrupt checkpoint metadata (run config: ", needle)


def test_config_types_and_bounds_are_the_cli_checks(tmp_path):
    with pytest.raises(UsageError, match="--steps must be an integer, got True"):
        TrainConfig(steps=True).validate()
    with pytest.raises(ConfigError, match="--keep must be an integer"):
        TrainConfig.from_json(json.dumps({"keep": "3"}))
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--n-critic", "5000"])
    assert_clean_error(res, 2, "--n-critic must lie in [1, 1000], got 5000")
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--penalty-every", "2000000"])
    assert_clean_error(res, 2, "--penalty-every must lie in [1, 1000000]")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["opt_g", "opt_d", "extra", "config", "header"])
def test_deeply_nested_json_is_refused(run, where):
    path = run / CKPT
    if where == "header":  # the safetensors header itself
        blob = path.read_bytes()
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        text = json.dumps(header)[:-1] + ', "deep": ' + _nested(100_000) + "}"
        hb = text.encode()
        path.write_bytes(len(hb).to_bytes(8, "little") + hb + blob[8 + n:])
    else:
        rewrite(run, meta={where: _nested(100_000)})
    refused(lambda: load_checkpoint(path), str(path))


# ---------------------------------------------------------------- 2. extra, step, optimizer metadata, files
@pytest.mark.parametrize("extra,needle", [
    ({"data_shape": "2"}, "data_shape must be"),
    ({"data_shape": [0]}, "data_shape must be"),
    ({"data_shape": [2.0]}, "data_shape must be"),
    ({"data_shape": [True]}, "data_shape must be"),
    ({"data_shape": [100_000]}, "data_shape must be"),
    ({"data_shape": [4096, 4096, 4096]}, "values per sample"),
    ({"data_shape": [[2]]}, "data_shape must be"),
    ({"latent_dim": "2"}, "latent_dim must be"),
    ({"latent_dim": 10**9}, "latent_dim must be"),
    ({"latent_dim": True}, "latent_dim must be"),
    ({"model": 5}, "model must be a string"),
    ([], "extra: must be an object"),
])
def test_bad_extra_is_refused(run, extra, needle):
    md, _ = _read(run / CKPT)
    value = {**json.loads(md["extra"]), **extra} if isinstance(extra, dict) else extra
    rewrite(run, meta={"extra": json.dumps(value)})
    refused(lambda: load_generator(run), needle)


def test_latent_dim_must_match_the_config(run):
    md, _ = _read(run / CKPT)
    rewrite(run, meta={"extra": json.dumps({**json.loads(md["extra"]), "latent_dim": 3})}, config={"latent_dim": 2})
    refused(lambda: load_generator(run), "latent_dim 3 differs from the config's latent_dim 2")


@pytest.mark.parametrize("step", ["-1", "1e3", str(2**70), " 2", "2.0", "", "٣", "10000000000000"])
def test_bad_step_is_refused(run, step):
    rewrite(run, meta={"step": step})
    refused(lambda: _resume(run), "step must be an integer in [0, 1000000000000]")


@pytest.mark.parametrize("opt,needle", [
    ({"param_groups": 5}, "opt_g: must be an object"),
    ([], "opt_g: must be an object"),
    ({"param_groups": []}, "1 to 1000 groups"),
    ({"param_groups": [{"params": "abc"}]}, "list params"),
    ({"param_groups": [{"params": [0, 0, 1, 2, 3, 4]}]}, "distinct parameter indices"),
    ({"param_groups": [{"params": [0, 1, 2, 3, 4, 5], "lr": "abc"}]}, "lr must be a finite number"),
    ({"param_groups": [{"params": [0, 1, 2, 3, 4, 5], "lr": float("nan")}]}, "lr must be a finite number"),
    ({"param_groups": [{"params": [0, 1, 2, 3, 4, 5], "betas": {"a": 1}}]}, "betas must be"),
    ({"param_groups": [{"params": [0, 1, 2, 3, 4, 5]}], "scalars": {"9": {"step": 1}}}, "scalars"),
    ({"param_groups": [{"params": [0, 1, 2, 3, 4, 5]}], "scalars": {"0": {"step": [1]}}}, "scalars"),
])
def test_bad_optimizer_metadata_is_refused(run, opt, needle):
    rewrite(run, meta={"opt_g": json.dumps(opt)})
    refused(lambda: load_checkpoint(run / CKPT), needle)


@pytest.mark.parametrize("key,value,needle", [
    ("betas", [0.5, 0.99], "betas is [0.5, 0.99], the run's is (0.5, 0.9)"),
    ("capturable", True, "capturable is True"),
    ("eps", 1e300, "eps is 1e+300"),
    ("foreach", 1, "foreach is 1, the run's is None"),
])
def test_optimizer_settings_must_be_the_runs(run, key, value, needle):
    md, _ = _read(run / CKPT)
    opt = json.loads(md["opt_g"])
    opt["param_groups"][0][key] = value
    rewrite(run, meta={"opt_g": json.dumps(opt)})
    refused(lambda: _resume(run), "optimizer state opt_g does not fit", needle)


def test_a_fifo_named_like_a_checkpoint_does_not_hang(run):
    fifo = run / "checkpoints" / "step-0000009.safetensors"
    os.mkfifo(fifo)
    result: list = []

    def load():
        try:
            load_checkpoint(fifo)
        except CheckpointError as exc:
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    try:
        assert not t.is_alive(), "load_checkpoint blocked on a FIFO"
        assert result and "not a regular file" in str(result[0])
        # the newest "checkpoint" of the run is the FIFO: resume refuses it too
        refused(lambda: _resume(run), "not a regular file")
    finally:
        if t.is_alive():  # unblock the reader
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# ---------------------------------------------------------------- tensors: modules, optimizer, random states
@pytest.mark.parametrize("key", ["generator.0.weight", "generator_ema.0.weight", "critic.1.weight"])
def test_weights_of_another_dtype_are_refused(run, key):
    _, ts = _read(run / CKPT)
    rewrite(run, tensors={key: ts[key].long()})  # a plain load_state_dict would cast them silently
    refused(lambda: load_checkpoint(run / CKPT), f"tensor {key} is int64", "the model expects float32")


def test_non_finite_weights_are_refused_before_sampling(run, tmp_path):
    _, ts = _read(run / CKPT)
    w = ts["generator_ema.2.weight"].clone()
    w[0, 0] = float("nan")
    rewrite(run, tensors={"generator_ema.2.weight": w})
    out = tmp_path / "s.safetensors"
    refused(lambda: sample_to(run, 8, out), "generator_ema.2.weight holds NaN or infinite values")
    assert not out.exists()


def test_missing_weights_are_named(run):
    rewrite(run, tensors={"generator.4.bias": None})
    refused(lambda: load_generator(run, raw=True), "missing generator tensors: 4.bias")


def test_missing_optimizer_state_is_not_a_fresh_start(run):
    _, ts = _read(run / CKPT)
    rewrite(run, tensors={k: None for k in ts if k.startswith("opt_g.state.")})
    refused(lambda: _resume(run), "optimizer state opt_g lacks exp_avg, exp_avg_sq, step of parameter 0",
            "restart Adam")


@pytest.mark.parametrize("key,make,needle", [
    ("opt_d.state.2.exp_avg", lambda t: t.long(), "is int64 (16, 16), its parameter is float32 (16, 16)"),
    ("opt_d.state.2.exp_avg", lambda t: t[:3], "its parameter is float32 (16, 16)"),
    ("opt_d.state.2.exp_avg_sq", lambda t: t - 1, "holds negative values"),
    ("opt_d.state.2.exp_avg", lambda t: t * float("inf"), "holds NaN or infinite values"),
    ("opt_d.state.2.step", lambda t: torch.zeros(3), "must be one number"),
])
def test_bad_optimizer_tensors_are_refused(run, key, make, needle):
    _, ts = _read(run / CKPT)
    rewrite(run, tensors={key: make(ts[key])})
    refused(lambda: _resume(run), needle)


@pytest.mark.parametrize("key,make,needle", [
    ("rng.sampler_seed", lambda t: t.float(), "rng.sampler_seed must be one int64 >= 0"),
    ("rng.sampler_seed", lambda t: torch.tensor([1, 2]), "rng.sampler_seed must be one int64 >= 0"),
    ("rng.sampler_seed", None, "missing the batch sampler's state"),
    ("rng.sampler_pos", lambda t: torch.tensor(-1), "rng.sampler_pos must be one int64 >= 0, got int64 () = -1"),
    ("rng.sampler_pos", lambda t: t.double(), "rng.sampler_pos must be one int64 >= 0"),
    ("rng.data", lambda t: t[:100], "expected uint8"),
    ("rng.torch", lambda t: t.float(), "expected uint8"),
    ("rng.noise", None, "missing random state rng.noise"),
])
def test_bad_random_states_are_refused(run, key, make, needle):
    _, ts = _read(run / CKPT)
    rewrite(run, tensors={key: make(ts[key]) if make else None})
    refused(lambda: _resume(run), needle)


def _legacy(run: Path, perm: torch.Tensor, pos: int) -> None:
    """The sampler state an older gantk wrote: the permutation and a position in it."""
    rewrite(run, tensors={"rng.sampler_seed": None, "rng.sampler_perm": perm, "rng.sampler_pos": torch.tensor(pos)})


def test_an_older_checkpoints_permutation_resumes_with_a_note(run):
    _legacy(run, torch.randperm(64), 16)
    with pytest.warns(GantkNote, match="batch order of an older gantk"):
        result = resume(run, {"steps": 3})
    _, ts = _read(result.checkpoint)
    assert result.step == 3 and "rng.sampler_perm" not in ts
    assert int(ts["rng.sampler_pos"]) == 1  # one critic step since the restart, on the new order


@pytest.mark.parametrize("perm,pos,needle", [
    (torch.zeros(64, dtype=torch.long), 0, "is not a permutation of the run's 64 samples"),
    (torch.arange(10), 0, "expected int64 (64,)"),
    (torch.randperm(64), 65, "must be one int64 in [0, 64]"),
])
def test_an_older_checkpoints_bad_permutation_is_refused(run, perm, pos, needle):
    _legacy(run, perm, pos)
    refused(lambda: _resume(run), needle)


# ---------------------------------------------------------------- 3. memory
def test_a_huge_model_is_refused_with_an_estimate(run):
    rewrite(run, config={"model_options": {"width": 10**6, "depth": 2}})
    refused(lambda: load_generator(run), "needs about", "GB, the machine has", "GB available")


def test_a_huge_data_set_is_refused_on_resume(run):
    rewrite(run, config={"data_options": {"n": 10**12}})
    with pytest.raises(GantkError, match="needs about .* GB, the machine has .* GB available") as info:
        _resume(run)
    assert "\n" not in str(info.value)


def test_load_generator_estimates_before_building(run, monkeypatch):
    monkeypatch.setattr(memory, "module_bytes", lambda build: 10**15)  # the meta-device estimate
    refused(lambda: load_generator(run), "the generator of", "needs about 1,000,000 GB, the machine has")


def test_memory_helpers():
    assert memory.module_bytes(lambda: nn.Linear(10**5, 10**5)) == 4 * (10**10 + 10**5)  # 40 GB, not allocated
    assert memory.module_bytes(lambda: nn.Linear(2, 3).to(torch.float64)) == 8 * 9

    def fails():
        raise RuntimeError("needs real tensors")

    assert memory.module_bytes(fails) == 0
    assert memory.available_bytes() > 0
    with pytest.raises(CheckpointError, match=r"^the net needs about 8 GB, the machine has 2 GB available$"):
        memory.check_fits(8 * 10**9, "the net", CheckpointError, available=2 * 10**9)
    memory.check_fits(10, "a little", CheckpointError, available=11)
    state = torch.get_rng_state()
    memory.meta_module(lambda: nn.Linear(4, 4))
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------- 4. float options
def _float_options():
    for kind in ("loss", "lipschitz", "model", "dataset"):
        for name in get_registry(kind).names():
            cls = get_registry(kind).get(name)
            for key, default in cls.options.items():
                if isinstance(default, float):
                    yield kind, name, key


@pytest.mark.parametrize("kind,name,key", list(_float_options()))
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", float("nan"), float("inf")])
def test_every_float_option_refuses_non_finite_values(kind, name, key, value):
    with pytest.raises(UsageError, match="expected a finite number"):
        get_registry(kind).get(name)(**{key: value})


def test_a_plugins_float_option_refuses_non_finite_values():
    class Tempered(Loss):
        name = "tempered"
        options = {"tau": 0.5}

    with pytest.raises(UsageError, match=r"option loss.tau='inf': expected a finite number"):
        Tempered(tau="inf")
    assert coerce_option("0.25", 0.5, "loss.tau") == 0.25


@pytest.mark.parametrize("args", [["--lambda", "inf"], ["-O", "lipschitz.lambda=nan"], ["--clip", "-inf",
                                                                                        "--lipschitz", "clip"]])
def test_cli_refuses_non_finite_component_options(tmp_path, args):
    res = CliRunner().invoke(app, ["train", "--data", "8gaussians", "--out", str(tmp_path), "--steps", "1",
                                   "--device", "cpu", *args])
    assert_clean_error(res, 2, "expected a finite number")


# ---------------------------------------------------------------- 5. fuzz: sample, evaluate, resume
_CONFIG_WORDS = ["8gaussians", "25gaussians", "swissroll", "hinge", "sn", "clip", "lp", "wgan", "sgd", "rmsprop",
                 "linear", "bf16", "cuda", "mlp", "dcgan", "x"]
_SIZES = [-1, 0, 1, 3, 17, 2**16 + 1, 10**6, 10**9, 10**12, 2**63, 2**70]


def _scalars():
    return st.one_of(st.none(), st.booleans(), st.sampled_from(_SIZES), st.integers(-3, 70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                     st.sampled_from(_CONFIG_WORDS))


def _values():
    """Hostile JSON values; ``DEEP`` stands for nesting deeper than the JSON parser goes."""
    return st.one_of(_scalars(), st.lists(_scalars(), max_size=4), st.dictionaries(st.text(max_size=3), _scalars(),
                                                                                     max_size=3),
                     st.just("DEEP"))


def _dumps(d) -> str:
    return json.dumps(d).replace('"DEEP"', _nested(50_000))


def _mutate_json(data, d: dict, keys: list[str]) -> tuple[object, str]:
    """Replace, remove or add one (possibly nested) entry of ``d``; returns the new
    value and what was done."""
    action = data.draw(st.sampled_from(["set", "set", "set", "remove", "add", "whole"]))
    if action == "whole":
        value = data.draw(_values())
        return value, f"whole = {value!r}"
    key = data.draw(st.sampled_from(keys))
    if action == "remove":
        d.pop(key, None)
        return d, f"removed {key}"
    if action == "add":
        key, value = data.draw(st.text(max_size=6)), data.draw(_values())
        d[key] = value
    elif isinstance(d.get(key), dict) and d[key] and data.draw(st.booleans()):
        # a component option; sizes for widths and the data's n, not a model's depth: a
        # network of 10^9 layers takes as long to size on the meta device as to build
        inner = data.draw(st.sampled_from(sorted(d[key]) + ["width", "g_width", "n", "lambda"]))
        small = _values().filter(lambda v: not isinstance(v, int) or isinstance(v, bool) or -3 <= v <= 70)
        value = data.draw(st.sampled_from(_SIZES) if inner in ("width", "g_width", "n") and data.draw(st.booleans())
                          else small)
        d[key][inner] = value
        key = f"{key}.{inner}"
    elif isinstance(d.get(key), list) and d[key] and isinstance(d[key][0], dict):  # param_groups
        inner, value = data.draw(st.sampled_from(sorted(d[key][0]))), data.draw(_values())
        d[key][0][inner] = value
        key = f"{key}[0].{inner}"
    else:
        value = data.draw(_values())
        d[key] = value
    return d, f"{key} = {value!r}"


def _mutate(data, run: Path) -> str:
    """Mutate the run's checkpoint (and config.json with its config); returns what was done."""
    path = run / CKPT
    md, ts = _read(path)
    target = data.draw(st.sampled_from(["config", "extra", "step", "opt_g", "opt_d", "dtype", "drop", "value",
                                        "rename", "meta"]))
    what = target
    if target in ("config", "extra", "opt_g", "opt_d"):
        d = json.loads(md[target])
        d, what = _mutate_json(data, d, sorted(d) or ["x"])
        md[target] = _dumps(d)
        what = f"{target}: {what}"
        if target == "config":
            (run / "config.json").write_text(md[target])
    elif target == "step":
        md["step"] = what = data.draw(st.one_of(st.text(max_size=6), st.sampled_from(["-1", "0", "1", "3", str(2**70),
                                                                                "99999999999999", "1e3"])))
    elif target == "meta":
        what = md.pop(data.draw(st.sampled_from(sorted(md))))
    else:
        key = data.draw(st.sampled_from(sorted(ts)))
        if target == "rename":
            new = data.draw(st.sampled_from(["generator.", "critic.", "opt_g.state.", "opt_d.state.0.", "rng."]))
            new += data.draw(st.text(max_size=6))
            ts[new], what = ts.pop(key), f"{key} renamed {new!r}"
        elif target == "drop":
            prefix = data.draw(st.sampled_from([key, "opt_g.", "opt_d.", "rng.", "generator_ema.", "critic."]))
            ts = {k: v for k, v in ts.items() if not k.startswith(prefix)}
            what = f"dropped {prefix}*"
        elif target == "dtype":
            dtype = data.draw(st.sampled_from([torch.int64, torch.float64, torch.float16, torch.bfloat16,
                                               torch.uint8, torch.int32, torch.bool]))
            ts[key], what = ts[key].to(dtype), f"{key} as {dtype}"
        else:
            t = ts[key].clone()
            if t.numel():
                fills = [float("nan"), float("inf"), -1.0, 1e30] if t.is_floating_point() else [-1, 7, 10**6]
                fill = data.draw(st.sampled_from(fills))
                t.view(-1)[data.draw(st.integers(0, t.numel() - 1))] = fill % 256 if t.dtype == torch.uint8 else fill
                what = f"{key} holds {fill}"
            ts[key] = t
    save_file(ts, str(path), metadata=md)
    return str(what)[:300]


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def _drive(run: Path, out: Path, outcomes: Counter) -> None:
    """sample, evaluate and resume one run folder; only GantkErrors of one line may leave."""
    for name, step in (("sample", lambda: sample_to(run, 16, out / "s.safetensors")),
                       ("evaluate", lambda: evaluate(run, n=100, draws=1)),
                       ("resume", lambda: _resume(run))):
        try:
            step()
            outcomes[f"{name} ran"] += 1
        except GantkError as exc:
            assert "\n" not in str(exc), str(exc)
            outcomes[f"{name} {type(exc).__name__}"] += 1


def fuzz_main(good_run: str, work: str, examples: int) -> None:
    """The fuzz loop, run in a subprocess by the test below: warm up on the good run,
    cap the address space at what the process holds + FUZZ_HEADROOM, then mutate."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    work_dir = Path(work)
    counter = iter(range(10**9))

    def fresh() -> Path:
        run = work_dir / f"r{next(counter)}"
        shutil.copytree(good_run, run)
        return run

    outcomes: Counter = Counter()
    _drive(fresh(), work_dir, outcomes)  # every import and lazy initialisation happens here
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + FUZZ_HEADROOM, hard))

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def fuzz(data):
        run = fresh()
        what = _mutate(data, run)
        try:
            _drive(run, run, outcomes)
        except BaseException:
            print("mutation:", what, flush=True)
            raise
        finally:
            shutil.rmtree(run, ignore_errors=True)

    fuzz()
    print("fuzz: ok", dict(sorted(outcomes.items())), flush=True)


def test_fuzz_hostile_metadata_in_capped_memory(good_run, tmp_path):
    env = {**os.environ, "GANTK_FORCE_REF": "1", "GANTK_LOAD_PLUGINS": "", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    code = (f"import test_hostile_checkpoints as t; t.fuzz_main({str(good_run)!r}, {str(tmp_path)!r}, "
            f"{int(os.environ.get('GANTK_FUZZ_EXAMPLES', '100'))})")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "fuzz: ok" in res.stdout, (res.stdout[-3000:] + res.stderr[-6000:])
