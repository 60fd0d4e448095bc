"""The plugin system: in-process plugins, pip-installed entry-point plugins, failures."""
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import gantk
from gantk import hookimpl
from gantk.cli import app
from gantk.errors import DuplicateComponentError
from gantk.plugins import get_registry, plugin_infos, register_plugin, unregister_plugin

runner = CliRunner()


class HalfLoss(gantk.Loss):
    name = "half-wasserstein"
    description = "test loss: half the Wasserstein loss"

    def critic_loss(self, real_out, fake_out):
        return 0.5 * (fake_out.mean() - real_out.mean())

    def generator_loss(self, fake_out):
        return -0.5 * fake_out.mean()


class CountingEnforcer(gantk.LipschitzEnforcer):
    name = "counting"
    description = "test enforcer: a tiny penalty and a call counter"
    options = {"weight": 0.1}
    calls = 0

    def penalty(self, critic, real, fake, *, generator=None):
        type(self).calls += 1
        return gantk.PenaltyOutput(self.opts["weight"] * critic(real).pow(2).mean())


class InProcessPlugin:
    @hookimpl
    def register_losses(register):
        register(HalfLoss)

    @hookimpl
    def register_lipschitz(register):
        register(CountingEnforcer)


@pytest.fixture
def in_process_plugin():
    name = register_plugin(InProcessPlugin, name="test-inprocess", version="9.9")
    yield name
    unregister_plugin(name)


def test_builtins_use_the_same_hooks():
    infos = {i.name: i for i in plugin_infos()}
    assert infos["gantk.default_plugins.losses"].registered["loss"] == ["minimax", "ns", "wasserstein", "hinge", "lsgan"]
    assert set(infos["gantk.default_plugins.lipschitz"].registered["lipschitz"]) == {"none", "clip", "gp", "lp", "sn"}


def test_in_process_plugin_shows_and_trains(in_process_plugin, tmp_path):
    assert "half-wasserstein" in get_registry("loss")
    res = runner.invoke(app, ["plugins", "--json"])
    assert res.exit_code == 0
    data = {p["name"]: p for p in json.loads(res.stdout)}
    assert data["test-inprocess"]["version"] == "9.9"
    assert data["test-inprocess"]["registered"] == {"loss": ["half-wasserstein"], "lipschitz": ["counting"]}
    CountingEnforcer.calls = 0
    res = runner.invoke(app, [
        "train", "--loss", "half-wasserstein", "--lipschitz", "counting", "--data", "8gaussians",
        "-O", "data.n=256", "-O", "model.width=16", "-O", "lipschitz.weight=0.5",
        "--steps", "2", "--n-critic", "2", "--batch-size", "16", "--out", str(tmp_path), "--device", "cpu",
    ])
    assert res.exit_code == 0, res.output
    assert CountingEnforcer.calls == 4
    assert "trained 2 steps" in res.stdout


def test_duplicate_name_names_both_plugins(in_process_plugin):
    class Dup:
        @hookimpl
        def register_losses(register):
            register(HalfLoss)

    # register_plugin refuses at once; the registries and the first owner are unharmed
    with pytest.raises(DuplicateComponentError) as ei:
        register_plugin(Dup, name="test-dup")
    assert "test-inprocess" in str(ei.value) and "test-dup" in str(ei.value)
    assert "half-wasserstein" in get_registry("loss")
    assert "test-dup" not in {i.name for i in plugin_infos()}


def test_misspelt_hook_fails_loudly():
    class Bad:
        @hookimpl
        def register_loses(register):  # typo
            pass

    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError):
        register_plugin(Bad, name="test-typo")
    from gantk.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if pm.has_plugin("test-typo"):
        pm.unregister(name="test-typo")


def test_registering_a_non_component_is_an_error():
    class Wrong:
        @hookimpl
        def register_models(register):
            register(HalfLoss)  # a loss handed to the model hook

    with pytest.raises(gantk.PluginError, match="not a subclass of GANModel"):
        register_plugin(Wrong, name="test-wrong")
    assert "mlp" in get_registry("model")


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"

[project.entry-points.gantk]
{ep} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]
"""

GOOD_MODULE = '''
import gantk
from gantk import hookimpl

class Doubled(gantk.Loss):
    name = "doubled"
    description = "twice the Wasserstein loss"
    def critic_loss(self, real_out, fake_out):
        return 2 * (fake_out.mean() - real_out.mean())
    def generator_loss(self, fake_out):
        return -2 * fake_out.mean()

class Nudge(gantk.LipschitzEnforcer):
    name = "nudge"
    description = "penalty on the critic's squared outputs"
    def penalty(self, critic, real, fake, *, generator=None):
        return gantk.PenaltyOutput(1e-3 * critic(real).pow(2).mean())

@hookimpl
def register_losses(register):
    register(Doubled)

@hookimpl
def register_lipschitz(register):
    register(Nudge)
'''


def _make_pkg(root, name, module, source, version="1.2.3"):
    d = root / name
    d.mkdir()
    (d / "pyproject.toml").write_text(PLUGIN_PYPROJECT.format(name=name, version=version, ep=name, module=module))
    (d / f"{module}.py").write_text(source)
    return d


CLASH_MODULE = '''
import gantk
from gantk import hookimpl

class MyGP(gantk.LipschitzEnforcer):  # the name of a built-in
    name = "gp"
    def penalty(self, critic, real, fake, *, generator=None):
        return gantk.PenaltyOutput(critic(real).pow(2).mean())

class Shared(gantk.Loss):  # a new name {which} plugin registers too
    name = "shared-loss"
    description = "from {which}"
    def critic_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()
    def generator_loss(self, fake_out):
        return -fake_out.mean()

class Own(gantk.Loss):
    name = "own-{which}"
    def critic_loss(self, real_out, fake_out):
        return fake_out.mean() - real_out.mean()
    def generator_loss(self, fake_out):
        return -fake_out.mean()

@hookimpl
def register_lipschitz(register):
    register(MyGP)

@hookimpl
def register_losses(register):
    register(Shared)
    register(Own)
'''


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory):
    """Plugin packages pip-installed (into a private folder) through their entry points:
    a good one, one that fails to import, and two that clash (with a built-in name and
    with each other)."""
    root = tmp_path_factory.mktemp("plugins")
    good = _make_pkg(root, "gantk-test-good", "gantk_test_good", GOOD_MODULE)
    bad = _make_pkg(root, "gantk-test-broken", "gantk_test_broken", "raise ImportError('needs libfoo')\n", "0.0.1")
    clash_a = _make_pkg(root, "gantk-test-clash-a", "gantk_test_clash_a", CLASH_MODULE.replace("{which}", "a"))
    clash_b = _make_pkg(root, "gantk-test-clash-b", "gantk_test_clash_b", CLASH_MODULE.replace("{which}", "b"))
    site = root / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(good), str(bad), str(clash_a), str(clash_b)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return site


def _gantk(site, *args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "GANTK_LOAD_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "gantk", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_pip_installed_plugin_is_found_and_broken_one_skipped(installed_plugins, tmp_path):
    p = _gantk(installed_plugins, "plugins", "--json")
    assert p.returncode == 0, p.stderr
    data = {d["name"]: d for d in json.loads(p.stdout)}
    assert data["gantk-test-good"]["version"] == "1.2.3"
    assert data["gantk-test-good"]["registered"] == {"loss": ["doubled"], "lipschitz": ["nudge"]}
    assert "needs libfoo" in data["gantk-test-broken"]["error"]
    p = _gantk(installed_plugins, "train", "--loss", "doubled", "--lipschitz", "nudge", "--data", "8gaussians",
               "-O", "data.n=256", "-O", "model.width=16", "--steps", "2", "--batch-size", "16",
               "--out", str(tmp_path), "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert "trained 2 steps" in p.stdout
    # the broken plugin is reported once, by name and reason, and training went on
    assert p.stderr.count("gantk-test-broken") == 1 and "needs libfoo" in p.stderr
    assert "Traceback" not in p.stderr


def test_env_var_limits_third_party_plugins(installed_plugins):
    p = _gantk(installed_plugins, "plugins", "--json", env_extra={"GANTK_LOAD_PLUGINS": "gantk-test-good"})
    names = {d["name"] for d in json.loads(p.stdout)}
    assert "gantk-test-good" in names and "gantk-test-broken" not in names
    p = _gantk(installed_plugins, "plugins", "--json", env_extra={"GANTK_LOAD_PLUGINS": ""})
    names = {d["name"] for d in json.loads(p.stdout)}
    assert not any(n.startswith("gantk-test") for n in names)
    p = _gantk(installed_plugins, "train", "--loss", "doubled", "--steps", "1", env_extra={"GANTK_LOAD_PLUGINS": ""})
    assert p.returncode == 2
    assert "unknown loss 'doubled'" in p.stderr and "plugin" in p.stderr


def test_clashing_plugins_are_refused_and_everything_else_works(installed_plugins, tmp_path):
    p = _gantk(installed_plugins, "plugins", "--json")
    assert p.returncode == 0, p.stderr
    data = {d["name"]: d for d in json.loads(p.stdout)}
    # built-ins win; between two third-party plugins the first loaded keeps the name
    assert data["gantk-test-clash-a"]["refused"] == {"lipschitz": ["gp"]}
    assert data["gantk-test-clash-a"]["registered"] == {"loss": ["shared-loss", "own-a"]}
    assert data["gantk-test-clash-b"]["refused"] == {"lipschitz": ["gp"], "loss": ["shared-loss"]}
    assert data["gantk-test-clash-b"]["registered"] == {"loss": ["own-b"]}
    assert "gantk.default_plugins.lipschitz" in data and "gp" in data["gantk.default_plugins.lipschitz"]["registered"]["lipschitz"]
    # the problems are reported (table view), naming both plugins and how to choose
    p = _gantk(installed_plugins, "plugins")
    assert p.returncode == 0
    assert "'shared-loss' of plugin 'gantk-test-clash-b' was refused: plugin 'gantk-test-clash-a'" in p.stderr
    assert "GANTK_LOAD_PLUGINS" in p.stderr
    # an unrelated training works, and uses the built-in gp
    p = _gantk(installed_plugins, "train", "--lipschitz", "gp", "--data", "8gaussians", "-O", "data.n=256",
               "-O", "model.width=16", "--steps", "2", "--batch-size", "16", "--out", str(tmp_path), "--device", "cpu")
    assert p.returncode == 0, p.stderr
    assert "pen " in p.stdout and "Traceback" not in p.stderr
    assert p.stderr.count("was refused") == 3  # reported once each


def test_describe_and_verbose_show_every_component(installed_plugins):
    p = _gantk(installed_plugins, "plugins", "--json", "--verbose")
    comps = {(c["kind"], c["name"]): c for c in json.loads(p.stdout)["components"]}
    gp = comps[("lipschitz", "gp")]
    assert gp["builtin"] and gp["plugin"] == "gantk.default_plugins.lipschitz" and gp["description"]
    assert {o["name"]: (o["type"], o["default"]) for o in gp["options"]}["lambda"] == ("float", 10.0)
    doubled = comps[("loss", "doubled")]
    assert doubled["plugin"] == "gantk-test-good" and doubled["version"] == "1.2.3" and not doubled["builtin"]
    p = _gantk(installed_plugins, "describe", "loss", "doubled")
    assert p.returncode == 0 and "twice the Wasserstein loss" in p.stdout and "gantk-test-good 1.2.3" in p.stdout
    p = _gantk(installed_plugins, "describe", "loss", "doubeld")
    assert p.returncode == 2 and "did you mean 'doubled'" in p.stderr


def test_env_var_names_that_match_nothing_are_reported(installed_plugins):
    p = _gantk(installed_plugins, "plugins", "--json", env_extra={"GANTK_LOAD_PLUGINS": "gantk-test-Good,nosuch"})
    assert p.returncode == 0
    p = _gantk(installed_plugins, "plugins", env_extra={"GANTK_LOAD_PLUGINS": "gantk-test-Good,nosuch"})
    assert "'gantk-test-Good', which matches no installed plugin; did you mean 'gantk-test-good'" in p.stderr
    assert "'nosuch', which matches no installed plugin" in p.stderr


def test_a_run_names_the_plugin_it_needs(installed_plugins, tmp_path):
    p = _gantk(installed_plugins, "train", "--loss", "doubled", "--data", "8gaussians", "-O", "data.n=256",
               "-O", "model.width=16", "--steps", "1", "--batch-size", "16", "--out", str(tmp_path), "--name", "r",
               "--device", "cpu")
    assert p.returncode == 0, p.stderr
    rec = json.loads((tmp_path / "r" / "config.json").read_text())["components"]
    assert rec["loss"] == {"name": "doubled", "plugin": "gantk-test-good", "version": "1.2.3"}
    for args in (["sample", str(tmp_path / "r"), "-o", str(tmp_path / "s.safetensors")],
                 ["eval", str(tmp_path / "r")], ["train", "--resume", str(tmp_path / "r"), "--steps", "2"]):
        p = _gantk(installed_plugins, *args, env_extra={"GANTK_LOAD_PLUGINS": ""})
        assert p.returncode == 1 and "this run needs plugin gantk-test-good 1.2.3" in p.stderr, (args, p.stderr)
