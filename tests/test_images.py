"""Image GANs: the dcgan and resnet models, the digits and image-folder data sets,
channels-last tensor files, sample grids and `gantk sample --each`.

The registry-generated test trains every registered image model with every loss and
enforcer, so an image-model plugin gets these tests automatically."""
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn.utils import parametrize
from typer.testing import CliRunner

import gantk
from gantk.cli import app
from gantk.resolve import make_config
from gantk.data import resolve_dataset, to_float
from gantk.errors import ConfigError, DataError, UsageError
from gantk.plugins import get_registry
from gantk.errors import GantkNote, GantkWarning
from gantk.training import Trainer

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


from _helpers import assert_clean_error as _assert_clean_error  # noqa: E402


def _is_image_model(cls) -> bool:
    """An image model: builds for (C, H, W) images but refuses 2-D points."""
    m = cls()
    return m.supports((1, 16, 16)) is None and m.supports((2,)) is not None


IMAGE_MODELS = [e.name for e in get_registry("model") if _is_image_model(e.obj)]
LOSSES = get_registry("loss").names()
ENFORCERS = get_registry("lipschitz").names()


def _tiny(name: str) -> dict:
    opts = get_registry("model").get(name).options
    return {"width": 4} if "width" in opts else {}


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png"))


needs_sklearn = pytest.mark.skipif(
    __import__("importlib").util.find_spec("sklearn") is None, reason="digits needs scikit-learn")

DIGITS = ["--data", "digits", "--batch-size", "16", "--n-critic", "1", "--device", "cpu",
          "--log-every", "1", "--checkpoint-every", "0"]


def test_builtin_image_models_are_registered_through_hooks():
    from gantk.plugins import plugin_infos

    assert {"dcgan", "resnet"} <= set(IMAGE_MODELS)

    infos = {i.name: i for i in plugin_infos()}
    assert infos["gantk.default_plugins.image_models"].registered["model"] == ["dcgan", "resnet"]
    assert infos["gantk.default_plugins.image_data"].registered["dataset"] == ["digits", "imagefolder"]


# ------------------------------------------------------------------ the models


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_generator_and_critic_shapes(name, side, channels):
    model = gantk.create_model(name, **({"width": 2} if "width" in get_registry("model").get(name).options else {}))
    shape = (channels, side, side)
    assert model.supports(shape) is None
    torch.manual_seed(0)
    G, D = model.build_generator(shape, 8), model.build_critic(shape)
    G.eval()
    with torch.no_grad():
        x = G(torch.randn(3, 8) * 3)
        assert x.shape == (3, channels, side, side)
        assert x.min() >= -1 and x.max() <= 1  # tanh
        out = D(x)
    assert out.shape in ((3,), (3, 1))


@pytest.mark.parametrize("shape,needle", [
    ((3, 12, 12), "power of two"), ((3, 16, 32), "square"), ((4, 16, 16), "channels"),
    ((2, 16, 16), "channels"), ((3, 4, 4), "power of two"), ((16,), "rank"), ((2,), "rank"),
])
@pytest.mark.parametrize("name", ["dcgan", "resnet"])
def test_unsupported_shapes_give_a_reason(name, shape, needle):
    model = gantk.create_model(name)
    reason = model.supports(shape)
    assert isinstance(reason, str) and needle in reason
    with pytest.raises(ConfigError, match=needle):
        model.build_critic(shape)


def test_dcgan_is_limited_to_128_and_resnet_is_not():
    assert "128" in gantk.create_model("dcgan").supports((3, 256, 256))
    assert gantk.create_model("resnet").supports((3, 256, 256)) is None


def test_dcgan_layout():
    m = gantk.create_model("dcgan")  # width 64
    G, D = m.build_generator((3, 64, 64), 100), m.build_critic((3, 64, 64))
    convs = [mod.out_channels for mod in G.modules() if isinstance(mod, nn.ConvTranspose2d)]
    assert convs == [256, 128, 64, 3]  # after 512 channels at 4x4, as in DCGAN
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in G.modules())
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in D.modules())
    assert sum(isinstance(mod, nn.GroupNorm) for mod in D.modules()) == 3  # layer norm, not after conv 1
    plain = gantk.create_model("dcgan", critic_norm="none", generator_norm="none")
    for net in (plain.build_generator((1, 16, 16), 8), plain.build_critic((1, 16, 16))):
        assert not any(isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)) for mod in net.modules())
    bn = gantk.create_model("dcgan", critic_norm="batch").build_critic((1, 16, 16))
    assert any(isinstance(mod, nn.BatchNorm2d) for mod in bn.modules())


def test_layer_norm_keeps_samples_independent():
    """The gradient penalty needs per-sample critics: a sample's score must not depend
    on the rest of the batch (it would with batch norm)."""
    D = gantk.create_model("dcgan", width=4).build_critic((1, 16, 16)).train()
    x = torch.randn(6, 1, 16, 16)
    torch.testing.assert_close(D(x)[:2], D(x[:2]))


def test_resnet_matches_the_wgan_gp_cifar_model():
    m = gantk.create_model("resnet")  # width 128
    G, D = m.build_generator((3, 32, 32), 128), m.build_critic((3, 32, 32))
    assert len(G.blocks) == 3 and len(D.blocks) == 4  # 3 up; first (down), down, 2 plain
    assert {mod.out_channels for mod in D.modules() if isinstance(mod, nn.Conv2d)} == {128}
    assert not any(isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)) for mod in D.modules())
    ln = gantk.create_model("resnet", critic_norm="layer").build_critic((3, 32, 32))
    assert any(isinstance(mod, nn.GroupNorm) for mod in ln.modules())
    with pytest.raises(UsageError, match="critic_norm"):
        gantk.create_model("resnet", critic_norm="batch")


@pytest.mark.parametrize("opts,needle", [({"critic_norm": "lyer"}, "critic_norm"), ({"width": 0}, "width"),
                                         ({"generator_norm": "layer"}, "generator_norm")])
def test_bad_model_options(opts, needle):
    with pytest.raises(UsageError, match=needle):
        gantk.create_model("dcgan", **opts)


# ---------------------------------------------- registry-generated training tests


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    """64 grayscale 8x8 'images' (bars at random places) as a uint8 .npy file."""
    rng = np.random.default_rng(0)
    x = np.zeros((64, 1, 8, 8), dtype=np.uint8)
    for i in range(64):
        x[i, 0, :, rng.integers(0, 8)] = 255
    path = tmp_path_factory.mktemp("img") / "bars.npy"
    np.save(path, x)
    return path


@pytest.mark.parametrize("enforcer", ENFORCERS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_every_image_model_with_every_loss_and_enforcer(image_file, tmp_path, model, loss, enforcer):
    cfg = make_config(
        data=str(image_file), model=model, model_options=_tiny(model), loss=loss, lipschitz=enforcer,
        optimizer="rmsprop" if enforcer == "clip" else "adam", steps=2, batch_size=8, n_critic=2,
        out=str(tmp_path), log_every=1, checkpoint_every=0, image_every=0, device="cpu",
    )
    tr = Trainer(cfg)
    before = [p.detach().clone() for p in tr.G.parameters()]
    res = tr.train()
    assert res.step == 2
    assert all(math.isfinite(v) for v in res.metrics.values()), res.metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters())), "generator did not move"
    if enforcer == "clip":
        c = tr.c.enforcer.opts["c"]
        assert all(p.abs().max() <= c + 1e-7 for p in tr.D.parameters())
    if enforcer == "sn":
        layers = [m for m in tr.D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    if enforcer in ("gp", "lp"):
        assert "grad_norm" in res.metrics


def test_batchnorm_critic_refused_under_gp(tmp_path):
    np.save(tmp_path / "x16.npy", np.zeros((16, 1, 16, 16), dtype=np.uint8))  # 8x8 critics have no norm layer
    kw = dict(data=str(tmp_path / "x16.npy"), model="dcgan", model_options={"width": 4, "critic_norm": "batch"},
              steps=1, batch_size=8, out=str(tmp_path), device="cpu", image_every=0)
    with pytest.raises(ConfigError, match="BatchNorm"):
        Trainer(make_config(**kw))
    assert Trainer(make_config(**kw, allow_batchnorm=True)).train().step == 1


# ------------------------------------------------------------------ digits


@needs_sklearn
def test_digits_data():
    x = gantk.create_dataset("digits").load()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    big = gantk.create_dataset("digits", size=16).load()
    assert big.shape == (1797, 1, 16, 16) and big.min() >= -1 and big.max() <= 1
    # upscaled, not padded: the border is not constant background everywhere
    assert big[:, :, 0].max() > -1 or big[:, :, :, 0].max() > -1
    assert gantk.create_dataset("digits", size=32).load().shape == (1797, 1, 32, 32)
    with pytest.raises(UsageError, match="8, 16 or 32"):
        gantk.create_dataset("digits", size=12)


@needs_sklearn
@pytest.mark.parametrize("enforcer", ["gp", "sn", "clip"])
def test_cli_trains_dcgan_on_digits_and_writes_grids(tmp_path, enforcer):
    res = run("train", *DIGITS, "--model", "dcgan", "--loss", "wasserstein", "--lipschitz", enforcer,
              "-O", "model.width=4", "--steps", "2", "--image-every", "1", "--out", tmp_path, "--name", "r")
    assert res.exit_code == 0, res.output
    images = tmp_path / "r" / "images"
    assert _pngs(images) == ["step-0000001.png", "step-0000002.png"]
    with Image.open(images / "step-0000002.png") as im:
        # 64 fixed latents in an 8x8 grid; 8x8 digits upscaled 4x to 32 px cells, 2 px gaps
        assert im.size == (8 * 34 + 2, 8 * 34 + 2) and im.mode == "RGB"
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"] == "dcgan" and cfg["lipschitz"] == enforcer


@needs_sklearn
def test_grids_use_fixed_latents(tmp_path):
    """The same seed gives the same first grid; the grid changes as training goes on."""
    for name in ("a", "b"):
        res = run("train", *DIGITS, "-O", "model.width=4", "--steps", "2", "--image-every", "1",
                  "--out", tmp_path, "--name", name)
        assert res.exit_code == 0, res.output
    a1, a2, b1 = (np.asarray(Image.open(tmp_path / r / "images" / f"step-000000{s}.png"))
                  for r, s in (("a", 1), ("a", 2), ("b", 1)))
    assert np.array_equal(a1, b1) and not np.array_equal(a1, a2)


@needs_sklearn
def test_cli_trains_resnet_at_32(tmp_path):
    res = run("train", *DIGITS, "--model", "resnet", "-O", "model.width=4", "--resolution", "32",
              "--steps", "2", "--image-every", "2", "--out", tmp_path, "--name", "r")
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["data_options"] == {"size": 32} and cfg["model"] == "resnet"
    with Image.open(tmp_path / "r" / "images" / "step-0000002.png") as im:
        assert im.size == (8 * 34 + 2, 8 * 34 + 2)


@needs_sklearn
def test_image_data_picks_dcgan_by_default(tmp_path):
    res = run("train", *DIGITS, "-O", "model.width=4", "--steps", "1", "--out", tmp_path, "--name", "r")
    assert res.exit_code == 0, res.output
    ck = gantk.checkpoint.load_checkpoint(next((tmp_path / "r" / "checkpoints").glob("*.safetensors")))
    assert ck.meta["extra"]["model"] == "dcgan" and ck.meta["extra"]["latent_dim"] == 64


@needs_sklearn
def test_digits_preset(tmp_path):
    cfg = make_config("digits")
    assert (cfg.data, cfg.model, cfg.loss, cfg.lipschitz, cfg.batch_size) == ("digits", "dcgan", "wasserstein", "gp", 32)
    assert cfg.data_options == {"size": 16}
    # --resolution maps to the digits' size option, also when the data set comes from the preset
    res = run("train", "--preset", "digits", "--resolution", "8", "-O", "model.width=4", "--steps", "1",
              "--device", "cpu", "--out", tmp_path, "--name", "p")
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    assert saved["preset"] == "digits" and saved["data_options"] == {"size": 8}


def test_channels_flag_on_data_without_it_is_refused(tmp_path):
    res = run("train", "--data", "8gaussians", "--channels", "1", "--steps", "1", "--out", tmp_path)
    _assert_clean_error(res, 2, "no option data.channels")


# ------------------------------------------------------------------ sample --each


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, image_file):
    out = tmp_path_factory.mktemp("runs")
    res = run("train", "--data", image_file, "-O", "model.width=4", "--batch-size", "8", "--n-critic", "1",
              "--steps", "1", "--device", "cpu", "--out", out, "--name", "r")
    assert res.exit_code == 0, res.output
    return out / "r"


def test_sample_each_writes_one_png_per_sample(image_run, tmp_path):
    folder = tmp_path / "each"
    res = run("sample", image_run, "-n", 5, "-o", folder, "--each", "--seed", 3)
    assert res.exit_code == 0, res.output
    assert _pngs(folder) == [f"sample-{i:05d}.png" for i in range(5)]
    with Image.open(folder / "sample-00004.png") as im:
        assert im.size == (8, 8) and im.mode == "L"
        got = np.asarray(im)
    # the same samples as the .safetensors output of the same seed
    res = run("sample", image_run, "-n", 5, "-o", tmp_path / "s.safetensors", "--seed", 3)
    from safetensors.torch import load_file

    x = load_file(tmp_path / "s.safetensors")["samples"][4, 0]
    assert np.array_equal(got, x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).numpy())
    # a non-empty folder is refused; so is a file name
    _assert_clean_error(run("sample", image_run, "-n", 2, "-o", folder, "--each"), 1, "not empty")
    _assert_clean_error(run("sample", image_run, "-n", 2, "-o", tmp_path / "x.png", "--each"), 2, "folder")


def test_sample_each_refuses_point_runs(tmp_path):
    res = run("train", "--data", "8gaussians", "-O", "data.n=64", "-O", "model.width=8", "--batch-size", "16",
              "--steps", "1", "--device", "cpu", "--out", tmp_path, "--name", "p")
    assert res.exit_code == 0, res.output
    _assert_clean_error(run("sample", tmp_path / "p", "-o", tmp_path / "e", "--each"), 2, "not images")
    assert not (tmp_path / "e").exists()


def test_sample_grid_png_for_image_runs(image_run, tmp_path):
    res = run("sample", image_run, "-n", 10, "-o", tmp_path / "g.png")
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (4 * 34 + 2, 3 * 34 + 2)  # 10 images: 4 per row, 3 rows


# ------------------------------------------------------- channels-last tensor files


@pytest.mark.parametrize("shape,expect", [
    ((6, 8, 8, 3), (6, 3, 8, 8)),
    ((6, 16, 12, 1), (6, 1, 16, 12)),
    ((6, 8, 8, 4), (6, 4, 8, 8)),
    ((6, 4, 4, 3), (6, 3, 4, 4)),
    ((6, 3, 8, 8), (6, 3, 8, 8)),     # already (N, C, H, W)
    ((6, 3, 4, 4), (6, 3, 4, 4)),     # both readings fit: channels-first wins
    ((6, 4, 4, 4), (6, 4, 4, 4)),
    ((6, 8, 40, 3), (6, 8, 40, 3)),   # not square-ish: left alone
    ((6, 2, 8, 3), (6, 2, 8, 3)),
    ((6, 8, 8, 2), (6, 8, 8, 2)),
    ((6, 8, 8), (6, 8, 8)),
])
def test_channels_last_detection(tmp_path, shape, expect):
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = resolve_dataset(str(tmp_path / "x.npy")).load()
    assert t.shape == expect
    moved = t.shape != tuple(shape)
    ref = torch.from_numpy(x)  # uint8 pixels are kept as they are
    assert t.dtype == torch.uint8 and torch.equal(t, ref.permute(0, 3, 1, 2) if moved else ref)
    notes = [w for w in caught if issubclass(w.category, GantkNote) and "channels-last" in str(w.message)]
    assert len(notes) == int(moved)


def test_channels_last_float_safetensors_trains(tmp_path):
    from safetensors.torch import save_file

    x = torch.rand(16, 8, 8, 3) * 2 - 1
    save_file({"images": x}, str(tmp_path / "x.safetensors"))
    res = run("train", "--data", tmp_path / "x.safetensors", "--model", "dcgan", "-O", "model.width=4",
              "--batch-size", "8", "--n-critic", "1", "--steps", "1", "--device", "cpu", "--out", tmp_path / "o",
              "--name", "r")
    assert res.exit_code == 0, res.output
    assert "note:" in res.output and "channels-last" in res.output
    ck = gantk.checkpoint.load_checkpoint(next((tmp_path / "o" / "r" / "checkpoints").glob("*")))
    assert ck.meta["extra"]["data_shape"] == [3, 8, 8]


# ------------------------------------------------------------------ image folders


def _solid(mode, size, color):
    return Image.new(mode, size, color)


@pytest.fixture
def folder(tmp_path):
    """A folder of assorted image files, some nested, some broken."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    _solid("RGB", (40, 30), (255, 0, 0)).save(root / "red.png")
    _solid("L", (20, 50), 0).save(root / "black.jpg", quality=95)
    _solid("RGBA", (16, 16), (0, 0, 255, 0)).save(root / "clear.png")  # fully transparent
    pal = _solid("RGB", (9, 9), (0, 255, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(root / "sub" / "palette.png")
    _solid("RGB", (7, 13), (0, 0, 255)).save(root / "sub" / "odd.bmp")
    _solid("RGB", (33, 21), (255, 255, 0)).save(root / "sub" / "deeper" / "yellow.webp", lossless=True)
    good = (root / "red.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "sub" / "text.jpg").write_text("this is not a jpeg")
    (root / "notes.txt").write_text("not an image, and not named like one: ignored")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def _load_folder(path, **opts):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = to_float(resolve_dataset(str(path), opts).load())  # the uint8 cache, as training sees it
    return x, caught


def test_image_folder_reads_every_kind_and_skips_broken_files_with_one_warning(folder):
    x, caught = _load_folder(folder, resolution=8)
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    # files in sorted order, sub-folders walked after the top-level files
    colours = [tuple(x[i, :, 4, 4].round(decimals=2).tolist()) for i in range(6)]
    assert colours == [
        (-1.0, -1.0, -1.0),  # black.jpg (grayscale, as RGB)
        (1.0, 1.0, 1.0),     # clear.png: transparent over white
        (1.0, -1.0, -1.0),   # red.png
        (-1.0, -1.0, 1.0),   # sub/odd.bmp
        (-1.0, 1.0, -1.0),   # sub/palette.png
        (1.0, 1.0, -1.0),    # sub/deeper/yellow.webp
    ]
    warns = [w for w in caught if issubclass(w.category, GantkWarning)]
    assert len(warns) == 1
    assert "skipped 2 of 8 image files" in str(warns[0].message)
    notes = [str(w.message) for w in caught if issubclass(w.category, GantkNote)]
    assert len(notes) == 3
    assert "converted 3 images" in notes[0] and "to RGB (1 L, 1 P, 1 RGBA)" in notes[0]
    assert "1 images of" in notes[1] and "smaller than 8x8 and were upscaled" in notes[1]  # sub/odd.bmp, 7x13
    assert "decoded 6 images" in notes[2] and "MiB as uint8" in notes[2]
    # a second load reads the cache, and says the same about the files
    y, again = _load_folder(folder, resolution=8)
    assert torch.equal(x, y)
    assert [str(w.message).split(" (first")[0] for w in again if issubclass(w.category, GantkWarning)] == \
        [str(warns[0].message).split(" (first")[0]]
    assert "read the cache of 6 images" in str(again[-1].message)


def test_image_folder_grayscale(folder):
    x, _ = _load_folder(folder, resolution=8, channels=1)
    assert x.shape == (6, 1, 8, 8)
    red_luma = round(0.299 * 255) / 127.5 - 1  # ITU-R 601-2 luma, Pillow's RGB -> L
    assert x[2, 0, 4, 4].item() == pytest.approx(red_luma, abs=1 / 127.5)


def test_image_folder_centre_crop(tmp_path):
    """A wide image is scaled to the resolution on its short side and cropped in the
    middle: of red | green | blue thirds, only green remains."""
    im = Image.new("RGB", (60, 20))
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        im.paste(c, (20 * i, 0, 20 * i + 20, 20))
    (tmp_path / "d").mkdir()
    im.save(tmp_path / "d" / "wide.png")
    x, _ = _load_folder(tmp_path / "d", resolution=8)
    assert x.shape == (1, 3, 8, 8)
    mid = x[0, :, :, 1:7]
    assert (mid[1] > 0.9).all() and (mid[0] < -0.9).all() and (mid[2] < -0.9).all()


def test_image_folder_16_bit_grayscale_is_scaled(tmp_path):
    (tmp_path / "d").mkdir()
    arr = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d" / "deep.png")
    x, _ = _load_folder(tmp_path / "d", resolution=8, channels=1)
    assert x.abs().max() < 0.02  # mid-grey, not clipped to white


def test_image_folder_trains_from_the_cli(folder, tmp_path):
    res = run("train", "--data", folder, "--resolution", "8", "--channels", "1", "-O", "model.width=4",
              "--batch-size", "4", "--n-critic", "1", "--steps", "2", "--device", "cpu",
              "--out", tmp_path / "runs", "--name", "r")
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "skipped 2 of 8" in res.output
    assert "note:" in res.output and "decoded 6 images" in res.output
    assert "Traceback" not in res.output
    cfg = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert cfg["data_options"] == {"resolution": 8, "channels": 1}
    assert _pngs(tmp_path / "runs" / "r" / "images") == ["step-0000002.png"]


@pytest.mark.parametrize("kind", ["empty", "only_text", "only_broken"])
def test_image_folder_without_readable_images_is_a_clean_error(tmp_path, kind):
    root = tmp_path / "f"
    root.mkdir()
    if kind == "only_text":
        (root / "readme.md").write_text("hello")
    elif kind == "only_broken":
        (root / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError):
        resolve_dataset(str(root)).load()
    res = run("train", "--data", root, "--steps", "1", "--out", tmp_path / "runs")
    _assert_clean_error(res, 1, str(root))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_image_folder_size_the_model_cannot_use(folder, tmp_path):
    res = run("train", "--data", folder, "--resolution", "12", "--steps", "1", "--out", tmp_path / "runs")
    _assert_clean_error(res, 2, "'dcgan' cannot handle", "power of two")


@pytest.mark.parametrize("opts,needle", [({"channels": 2}, "channels"), ({"resolution": 2}, "resolution")])
def test_image_folder_bad_options(folder, opts, needle):
    with pytest.raises(UsageError, match=needle):
        resolve_dataset(str(folder), opts)


# ------------------------------------------------------------------ picture grid


def test_image_grid_layout():
    from gantk.plots import image_grid

    x = torch.zeros(10, 1, 8, 8)
    x[3] = 1.0
    g = image_grid(x)
    assert g.shape == (3 * 34 + 2, 4 * 34 + 2, 3) and g.dtype == np.uint8
    # image 3 is the last of the first row: white cell (values 1 -> 255), gaps white too
    assert (g[2:34, 2 + 3 * 34: 2 + 3 * 34 + 32] == 255).all()
    assert (g[2:34, 2:34] == 128).all()  # 0 -> mid grey
    big = image_grid(torch.zeros(4, 3, 64, 64))
    assert big.shape == (2 * 66 + 2, 2 * 66 + 2, 3)  # large images are not upscaled
