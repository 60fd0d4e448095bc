"""Assertions shared by the CLI tests (importable because pytest puts tests/ on sys.path
for its conftest.py)."""


def assert_clean_error(res, code, *needles):
    """A CliRunner result failed with ``code``, printed exactly one ``error:`` line holding
    every needle, and no traceback."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errs = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errs) == 1, res.output
    for n in needles:
        assert n in errs[0], errs[0]


import contextlib  # noqa: E402

import gantk  # noqa: E402
from torch import nn  # noqa: E402


class BNModel(gantk.GANModel):
    """A tiny 2-D model whose critic has BatchNorm (which couples a batch's samples)."""

    name = "bn-mlp"
    description = "test model whose critic has BatchNorm"

    def build_generator(self, data_shape, latent_dim):
        return nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, 2))

    def build_critic(self, data_shape):
        return nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1), nn.Flatten(0))


@contextlib.contextmanager
def registered_models(*models, name="test-models"):
    """Register model classes through a temporary plugin (the same hook third-party
    plugins use) for the duration of the block."""
    from gantk.markers import hookimpl
    from gantk.plugins import register_plugin, unregister_plugin

    class Plugin:
        @hookimpl
        def register_models(register):
            for m in models:
                register(m)

    plugin = register_plugin(Plugin, name=name)
    try:
        yield
    finally:
        unregister_plugin(plugin)


def load_script(path, name):
    """Import a benchmark script (not a package module) from its file, as module ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
