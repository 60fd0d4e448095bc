import os

# Tests never pick up third-party plugins that happen to be installed; a test that
# wants them sets GANTK_LOAD_PLUGINS itself (in a subprocess).
os.environ["GANTK_LOAD_PLUGINS"] = ""
os.environ.setdefault("MPLBACKEND", "Agg")
# Evaluation caches (the digits classifier, W1 floors) go to a folder of this test
# run, never the user's ~/.cache.
if "GANTK_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["GANTK_CACHE_DIR"] = tempfile.mkdtemp(prefix="gantk-test-cache-")

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    import torch

    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _environment_restored():
    """Every test leaves os.environ as it found it (a variable such as GANTK_FORCE_REF
    set by one test would otherwise switch paths in every test after it)."""
    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


@pytest.fixture
def small_cfg(tmp_path):
    """A tiny, fast config factory for training tests."""
    from gantk.resolve import make_config

    def make(**kw):
        base = dict(
            data="8gaussians", data_options={"n": 512}, model_options={"width": 32, "depth": 2},
            steps=3, batch_size=32, n_critic=2, out=str(tmp_path / "runs"), log_every=1,
            checkpoint_every=0, image_every=0, device="cpu",
        )
        base.update(kw)
        preset = base.pop("preset", None)
        return make_config(preset, **base)

    return make
