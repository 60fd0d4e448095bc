"""`gantk export` (a generator file that loads with torch alone) and `gantk interpolate`
(a grid of latent interpolations and an animated GIF)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gantk.cli import app
from gantk.resolve import make_config
from gantk.sampling import generate, load_generator
from gantk.training import Trainer

runner = CliRunner()

LOADER = """
import sys
sys.modules["gantk"] = None  # gantk cannot be imported here
import torch
path, zpath, outpath = sys.argv[1:]
m = torch.export.load(path).module() if path.endswith(".pt2") else torch.jit.load(path)
torch.save(m(torch.load(zpath)), outpath)
"""


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    x = (torch.rand(64, 1, 16, 16) * 2 - 1).numpy()
    np.save(d / "imgs.npy", x)
    cfg = make_config(data=str(d / "imgs.npy"), model="dcgan", model_options={"width": 8}, steps=1, batch_size=16,
                      n_critic=1, out=str(d), name="r", device="cpu", image_every=0, preset="wgan-gp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTK_FORCE_REF", "1")
        return Trainer(cfg).train().run_dir


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_export_loads_without_gantk_and_matches(image_run, tmp_path, suffix):
    out = tmp_path / f"g{suffix}"
    r = runner.invoke(app, ["export", str(image_run), "-o", str(out)])
    assert r.exit_code == 0, r.output
    G, _, shape, latent = load_generator(image_run)
    z = torch.randn(5, latent, generator=torch.Generator().manual_seed(1))
    torch.save(z, tmp_path / "z.pt")
    p = subprocess.run([sys.executable, "-c", LOADER, str(out), str(tmp_path / "z.pt"), str(tmp_path / "x.pt")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with torch.no_grad():
        expected = G(z)
    torch.testing.assert_close(torch.load(tmp_path / "x.pt"), expected, rtol=1e-5, atol=1e-6)


def test_export_refuses_other_suffixes(image_run, tmp_path):
    r = runner.invoke(app, ["export", str(image_run), "-o", str(tmp_path / "g.onnx")])
    assert r.exit_code == 2 and ".pt2" in r.output


def test_interpolation_grid_and_gif(image_run, tmp_path):
    r = runner.invoke(app, ["interpolate", str(image_run), "-o", str(tmp_path / "i.png"), "--rows", "3",
                            "--steps", "5", "--gif", str(tmp_path / "i.gif")])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "i.png") as im:
        w, h = im.size
    assert w > h  # 5 columns, 3 rows
    with Image.open(tmp_path / "i.gif") as gif:
        assert gif.n_frames == 5 + 3  # there and back
    # the ends of each row are the generator's samples of the drawn latents
    G, _, _, latent = load_generator(image_run)
    assert torch.isfinite(generate(G, latent, 6, 0)).all()


def test_slerp_keeps_the_ends_and_the_norm_typical():
    from gantk.sampling import slerp

    a, b = torch.randn(4, 64), torch.randn(4, 64)
    torch.testing.assert_close(slerp(a, b, 0.0), a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=1e-4, atol=1e-5)
    mid, lin = slerp(a, b, 0.5).norm(dim=1), torch.lerp(a, b, 0.5).norm(dim=1)
    assert (mid > lin).all()  # the straight line passes close to the origin


def test_interpolate_refuses_point_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")
    cfg = make_config(data="8gaussians", data_options={"n": 64}, steps=1, batch_size=16, n_critic=1,
                      out=str(tmp_path), name="p", device="cpu", image_every=0, preset="wgan-gp")
    run = Trainer(cfg).train().run_dir
    r = runner.invoke(app, ["interpolate", str(run), "-o", str(tmp_path / "i.png")])
    assert r.exit_code == 2 and "draws images" in r.output and not (tmp_path / "i.png").exists()
