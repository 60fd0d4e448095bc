"""The example plugin packages in plugins/ as a user meets them: pip-installed, found
through their entry points by the `gantk` CLI (run as `python -m gantk` subprocesses,
because tests/conftest.py turns third-party plugins off in this process).

CI installs both packages (.ci/run); without them these tests skip."""
import importlib.metadata as md
import json
import os
import subprocess
import sys

import pytest


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


def needs(dist: str):
    return pytest.mark.skipif(
        not _installed(dist),
        reason=f"{dist} is not installed (pip install --no-deps --no-build-isolation -e plugins/{dist})",
    )


TINY = ["--data", "8gaussians", "-O", "data.n=256", "-O", "model.width=16", "--steps", "2",
        "--batch-size", "16", "--device", "cpu"]


def gantk_cli(*args, load=None):
    """Run `python -m gantk ARGS`; ``load=None`` leaves GANTK_LOAD_PLUGINS unset (every
    installed plugin loads), else sets it."""
    env = {k: v for k, v in os.environ.items() if k != "GANTK_LOAD_PLUGINS"}
    if load is not None:
        env["GANTK_LOAD_PLUGINS"] = load
    # use the fused extension if it is already built, but do not build it here
    # (its own tests do); "auto" falls back to the reference otherwise
    env["GANTK_EXT_AUTOBUILD"] = "0"
    return subprocess.run([sys.executable, "-m", "gantk", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@needs("gantk-r1")
@needs("gantk-relativistic")
def test_plugins_json_lists_the_example_packages_with_versions():
    p = gantk_cli("plugins", "--json")
    assert p.returncode == 0, p.stderr
    data = {d["name"]: d for d in json.loads(p.stdout)}
    r1 = data["gantk-r1"]
    assert r1["version"] == md.version("gantk-r1") and r1["builtin"] is False and r1["error"] is None
    assert r1["registered"] == {"lipschitz": ["r1", "r2", "dragan", "wgan-div", "zc-gp"]}
    rel = data["gantk-relativistic"]
    assert rel["version"] == md.version("gantk-relativistic") and rel["error"] is None
    assert rel["registered"] == {"loss": ["ragan"]}


@needs("gantk-r1")
def test_train_with_r1_and_ns_loss(tmp_path):
    p = gantk_cli("train", "--lipschitz", "r1", "--loss", "ns", *TINY, "--out", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "trained 2 steps" in p.stdout and "Traceback" not in p.stderr
    (run,) = tmp_path.iterdir()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lipschitz"] == "r1" and cfg["loss"] == "ns"
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["penalty"] >= 0 and "grad_norm" in last


@needs("gantk-r1")
def test_train_with_dragan_when_named_in_the_env_var(tmp_path):
    p = gantk_cli("train", "--lipschitz", "dragan", "-O", "lipschitz.c=0.5", *TINY, "--out", str(tmp_path),
                  load="gantk-r1")
    assert p.returncode == 0, p.stderr
    assert "trained 2 steps" in p.stdout and "Traceback" not in p.stderr


@needs("gantk-relativistic")
def test_train_with_the_relativistic_loss(tmp_path):
    p = gantk_cli("train", "--loss", "ragan", "--lipschitz", "gp", *TINY, "--out", str(tmp_path),
                  load="gantk-relativistic")
    assert p.returncode == 0, p.stderr
    assert "trained 2 steps" in p.stdout


def test_without_the_package_r1_is_unknown_with_a_hint(tmp_path):
    # true whether or not gantk-r1 is installed: GANTK_LOAD_PLUGINS="" loads no third-party plugin
    p = gantk_cli("train", "--lipschitz", "r1", *TINY, "--out", str(tmp_path), load="")
    assert p.returncode == 2
    assert "unknown lipschitz enforcer 'r1'" in p.stderr
    assert "a plugin package may provide more" in p.stderr
    assert not any(tmp_path.iterdir())


@needs("gantk-csvlog")
def test_a_plugin_logger_and_command_through_the_cli(tmp_path):
    p = gantk_cli("train", *TINY, "--logger", "csv", "--log-every", "1", "--out", str(tmp_path), "--name", "r",
                  load="gantk-csvlog")
    assert p.returncode == 0, p.stderr
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    p = gantk_cli("csv-tail", str(tmp_path / "r"), "-n", "1", load="gantk-csvlog")
    assert p.returncode == 0 and p.stdout.splitlines()[1].startswith("2,")
    p = gantk_cli("--help", load="gantk-csvlog")
    assert "csv-tail" in p.stdout
    p = gantk_cli("train", *TINY, "--logger", "csv", "--out", str(tmp_path), load="")
    assert p.returncode == 2 and "unknown logger 'csv'" in p.stderr
