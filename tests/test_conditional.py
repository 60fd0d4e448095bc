"""Class labels and class-conditional GANs (``--conditional``): labels from each source,
the samplers carrying them, the conditional models and projection critics, the
penalty with the label held fixed, every loss and enforcer training conditionally,
per-class sampling, the classes kept in checkpoints and on resume, and the digits
protocol's class accuracy."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import gantk
from _helpers import assert_clean_error
from gantk.checkpoint import load_checkpoint
from gantk.cli import app
from gantk.data import BatchSampler
from gantk.errors import CheckpointError, DataError, UsageError
from gantk.eval.protocols import class_accuracy
from gantk.plots import class_rows
from gantk.plugins import get_registry
from gantk.sampling import load_generator, sample
from gantk.testing import check_dataset, check_model, check_trains
from gantk.training import Trainer, distributed
from gantk.training.labels import FixedLabelCritic

runner = CliRunner()


def _points_file(path: Path, n: int = 256, k: int = 4, names=None, fmt: str = "safetensors") -> Path:
    """2-D points in k clusters with their cluster index as the label."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    centres = torch.tensor([[np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, k, endpoint=False)])
    x = (centres[y] + 0.05 * torch.randn(n, 2, generator=g)).float()
    if fmt == "npz":
        np.savez(path, samples=x.numpy(), labels=y.numpy())
    else:
        save_file({"samples": x, "labels": y}, str(path),
                  metadata={"class_names": json.dumps(names)} if names else None)
    return path


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")
    return ctx


# ------------------------------------------------------------------ labels in the data
def test_digits_have_their_labels():
    pytest.importorskip("sklearn")
    ds = gantk.create_dataset("digits")
    x = check_dataset(ds)
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (x.shape[0],)
    assert ds.class_names == tuple("0123456789")
    assert torch.equal(torch.bincount(ds.labels) > 150, torch.ones(10, dtype=torch.bool))  # ~180 of each


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_tensor_files_read_labels_beside_the_samples(tmp_path, fmt):
    p = _points_file(tmp_path / f"pts.{fmt}", fmt=fmt, names=["a", "b", "c", "d"] if fmt == "safetensors" else None)
    ds = gantk.create_dataset("tensorfile", path=str(p))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the labels are not "another tensor" to choose from
        x = check_dataset(ds)
    assert x.shape == (256, 2)
    assert torch.equal(ds.labels, torch.arange(256) % 4)
    assert ds.class_names == (("a", "b", "c", "d") if fmt == "safetensors" else None)


def test_unlabelled_files_have_no_labels(tmp_path):
    save_file({"x": torch.randn(8, 2)}, str(tmp_path / "u.safetensors"))
    ds = gantk.create_dataset("tensorfile", path=str(tmp_path / "u.safetensors"))
    ds.load()
    assert ds.labels is None and ds.class_names is None


@pytest.mark.parametrize("labels, needle", [
    (torch.arange(7), "do not match the 8 samples"),
    (torch.tensor([0, 1, 2, -1, 0, 1, 2, 0]), "class indices in"),
    (torch.tensor([0.0, 1.5, 2, 1, 0, 1, 2, 0]), "whole class indices"),
    (torch.ones(8, dtype=torch.bool), "not class indices"),
])
def test_bad_labels_are_one_line_data_errors(tmp_path, labels, needle):
    p = tmp_path / "bad.safetensors"
    save_file({"samples": torch.randn(8, 2), "labels": labels}, str(p))
    with pytest.raises(DataError, match=needle):
        gantk.create_dataset("tensorfile", path=str(p)).load()


def test_bad_class_names_are_refused(tmp_path):
    p = _points_file(tmp_path / "n.safetensors", names=["a", "a", "b", "c"])
    with pytest.raises(DataError, match="distinct names"):
        gantk.create_dataset("tensorfile", path=str(p)).load()


def test_check_dataset_checks_labels():
    class Bad(gantk.Dataset):
        name = "bad-labels"

        def load(self, seed=0):
            self.labels = torch.zeros(3, dtype=torch.int32)
            return torch.zeros(4, 2)

    with pytest.raises(AssertionError, match="1-D int64 tensor of 4"):
        check_dataset(Bad)


def test_conditional_on_unlabelled_data_is_one_line_error(tmp_path):
    res = runner.invoke(app, ["train", "--data", "8gaussians", "--conditional", "--steps", "1", "-O", "data.n=64",
                              "--batch-size", "16", "--out", str(tmp_path)])
    assert_clean_error(res, 1, "--conditional needs labelled data")
    assert not any(tmp_path.iterdir())  # nothing left behind


# ------------------------------------------------------------------ samplers
def test_batch_sampler_gives_each_sample_its_label():
    data = torch.arange(20.0).view(20, 1) * 10
    labels = torch.arange(20)
    s = BatchSampler(data, 6, torch.Generator().manual_seed(1), labels=labels)
    plain = BatchSampler(data, 6, torch.Generator().manual_seed(1))
    for _ in range(5):  # across epochs
        x, y = s.next_with_labels()
        assert torch.equal(x[:, 0], y * 10.0)
        assert torch.equal(x, plain.next())  # the same draws as next()
    assert BatchSampler(data, 6, torch.Generator()).next_with_labels()[1] is None


def test_sharded_sampler_shards_labels_with_their_samples():
    data = torch.arange(40.0).view(20, 2)
    labels = torch.arange(20) % 7
    single = BatchSampler(data, 8, torch.Generator().manual_seed(3), labels=labels)
    shards = [distributed.ShardedBatchSampler(data, 8, torch.Generator().manual_seed(3),
                                              distributed.Context(rank=r, world_size=2), labels=labels)
              for r in range(2)]
    for _ in range(5):
        parts = [s.next_with_labels() for s in shards]
        x, y = single.next_with_labels()
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        for px, py in parts:  # each rank's labels belong to its own samples
            assert torch.equal(labels[(px[:, 0] / 2).long()], py)


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("name, shape, latent, opts", [
    ("mlp", (2,), 2, {"width": 16}),
    ("dcgan", (1, 16, 16), 16, {"width": 8}),
    ("dcgan", (3, 8, 8), 16, {"width": 8, "generator_norm": "none"}),
    ("resnet", (1, 16, 16), 16, {"width": 8}),
    ("resnet", (3, 8, 8), 16, {"width": 8, "generator_norm": "none"}),
])
def test_conditional_models_depend_on_the_label(name, shape, latent, opts):
    model = get_registry("model").get(name)(**opts)
    G, D = check_model(model, shape, latent, num_classes=5)  # outputs change with the label
    x = torch.randn(4, *shape)
    y = torch.tensor([0, 1, 2, 3])
    s, s2 = D(x, y), D(x, (y + 2) % 5)
    assert not torch.allclose(s, s2)
    # the projection head: the score for another label differs only by the embeddings' inner products
    assert s.shape == (4,)


def test_projection_critic_starts_near_its_unconditional_part():
    model = get_registry("model").get("dcgan")(width=8)
    torch.manual_seed(0)
    D = model.make_critic((1, 16, 16), 10)
    x = torch.randn(6, 1, 16, 16)
    base = D.head(D.trunk(x)).reshape(6)
    pooled = D.trunk(x).sum(dim=(2, 3))
    y = torch.arange(6)
    assert torch.allclose(D(x, y), base + (D.embed.weight[y] * pooled).sum(1), atol=1e-5)


def test_unconditional_networks_keep_their_weight_names():
    for name, shape in (("dcgan", (1, 16, 16)), ("resnet", (1, 16, 16)), ("mlp", (2,))):
        m = get_registry("model").get(name)()
        for make in (lambda: m.build_generator(shape, 8), lambda: m.build_critic(shape)):
            assert not any("embed" in k or "scale" in k for k in make().state_dict())
    g = get_registry("model").get("resnet")(width=8).build_generator((1, 16, 16), 8)
    assert "blocks.0.conv1.weight" in g.state_dict()


def test_check_model_catches_a_generator_that_ignores_the_label():
    from torch import nn

    class Deaf(gantk.GANModel):
        name = "deaf"
        conditional = True

        def build_generator(self, data_shape, latent_dim, num_classes=0):
            net = nn.Linear(latent_dim, 2)
            return type("G", (nn.Module,), {"__init__": lambda s: (nn.Module.__init__(s), setattr(s, "f", net))[0],
                                            "forward": lambda s, z, y=None: s.f(z)})()

        def build_critic(self, data_shape, num_classes=0):
            return get_registry("model").get("mlp")(width=8).build_critic(data_shape, num_classes=num_classes)

    with pytest.raises(AssertionError, match="do not depend on the label"):
        check_model(Deaf, (2,), 3, num_classes=4)


def test_exported_conditional_generator_takes_labels(cond_run, tmp_path):
    run, _ = cond_run
    res = runner.invoke(app, ["export", str(run), "-o", str(tmp_path / "g.pt")])
    assert res.exit_code == 0 and "class indices 0..3" in res.output
    g = torch.jit.load(str(tmp_path / "g.pt"))
    G, *_ = load_generator(run)
    z, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(g(z, y), G(z, y))


def test_a_model_without_conditional_form_is_refused():
    class Plain(gantk.GANModel):
        name = "plain"

    with pytest.raises(UsageError, match="no class-conditional form"):
        Plain().make_generator((2,), 2, 3)
    with pytest.raises(AssertionError, match="not conditional"):
        check_model(Plain, (2,), 2, num_classes=3)


# ------------------------------------------------------------------ the penalty
def test_penalty_takes_the_gradient_wrt_the_image_with_the_label_fixed():
    model = get_registry("model").get("dcgan")(width=8, critic_norm="layer")
    torch.manual_seed(0)
    D = model.make_critic((1, 16, 16), 10)
    real, fake = torch.randn(5, 1, 16, 16), torch.randn(5, 1, 16, 16)
    y = torch.tensor([3, 1, 4, 1, 5])
    y0 = y.clone()
    g = torch.Generator().manual_seed(7)
    out = gantk.gradient_penalty(FixedLabelCritic(D, y), real, fake, weight=10.0, generator=g, impl="ref")
    # by hand: the same ε, the gradient of D(x̂, y) w.r.t. x̂ alone, the norm over (C, H, W)
    eps = torch.rand(5, generator=torch.Generator().manual_seed(7)).view(5, 1, 1, 1)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat, y).sum(), x_hat)
    norms = grad.flatten(1).norm(dim=1)
    torch.testing.assert_close(out.norms.float(), norms, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.penalty, 10.0 * ((norms - 1) ** 2).mean(), rtol=1e-4, atol=1e-5)
    assert torch.equal(y, y0) and not y.requires_grad and y.grad is None  # the label gets no gradient
    out.penalty.backward()
    assert D.embed.weight.grad is not None  # the critic's own parameters (its class embedding too) do


# ------------------------------------------------------------------ training
@pytest.mark.parametrize("loss", ["wasserstein", "hinge", "minimax", "ns", "lsgan"])
def test_every_builtin_loss_trains_a_conditional_critic(tmp_path, loss):
    if loss not in get_registry("loss"):
        pytest.skip(f"no loss {loss}")
    p = _points_file(tmp_path / "pts.safetensors")
    lip = {"wasserstein": "gp", "hinge": "sn"}.get(loss, "none")
    res = check_trains(loss=loss, lipschitz=lip, data="tensorfile", data_options={"path": str(p)}, conditional=True)
    assert np.isfinite(res.metrics["w_estimate"])


@pytest.mark.parametrize("lipschitz", ["gp", "lp", "clip", "sn", "none"])
def test_every_builtin_enforcer_works_with_a_conditional_critic(tmp_path, lipschitz):
    p = _points_file(tmp_path / "pts.safetensors")
    check_trains(loss="wasserstein", lipschitz=lipschitz, data="tensorfile", data_options={"path": str(p)},
                 conditional=True)


def test_every_registered_loss_is_covered():
    assert set(get_registry("loss").names()) <= {"wasserstein", "hinge", "minimax", "ns", "lsgan"}


def _train(tmp_path, data, steps=2, **kw):
    cfg = gantk.make_config(data=data, conditional=True, steps=steps, batch_size=16, n_critic=1,
                            model_options={"width": 16, "depth": 2}, out=str(tmp_path), name="c", device="cpu",
                            log_every=1, checkpoint_every=1, image_every=0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gantk.train(cfg).run_dir


@pytest.fixture
def cond_run(tmp_path):
    p = _points_file(tmp_path / "pts.safetensors", names=["north", "west", "south", "east"])
    return _train(tmp_path / "runs", str(p)), p


def test_checkpoints_and_config_record_the_classes(cond_run):
    run, _ = cond_run
    ck = load_checkpoint(run / "checkpoints/step-0000002.safetensors")
    assert ck.meta["extra"]["num_classes"] == 4
    assert ck.meta["extra"]["class_names"] == ["north", "west", "south", "east"]
    rec = json.loads((run / "config.json").read_text())
    assert rec["conditional"] is True and rec["class_names"] == ["north", "west", "south", "east"]


def test_resume_keeps_the_class_list(cond_run):
    run, p = cond_run
    from gantk.training import resume as resume_run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = resume_run(run, {"steps": 3})
    ck = load_checkpoint(res.checkpoint)
    assert ck.step == 3 and ck.meta["extra"]["class_names"] == ["north", "west", "south", "east"]
    _points_file(p, names=["n", "w", "s", "e"])  # the data's classes renamed: not the same run
    with pytest.raises(CheckpointError, match="classes changed"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resume_run(run, {"steps": 4})


def test_hostile_class_metadata_is_refused(cond_run):
    run, _ = cond_run
    path = run / "checkpoints/step-0000002.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    for bad, needle in (({"num_classes": -1}, "num_classes must be"), ({"num_classes": 2**40}, "num_classes must be"),
                        ({"class_names": ["a", "b"]}, "class_names must be"),
                        ({"class_names": ["a\n", "b", "c", "d"]}, "class_names must be"),
                        ({"num_classes": 5, "class_names": None}, "embed"), ({"num_classes": None}, "missing")):
        extra = {**json.loads(meta["extra"]), **bad}
        if bad.get("num_classes", 0) is None:
            extra.pop("num_classes")
        save_file(tensors, str(path), metadata={**meta, "extra": json.dumps(extra)})
        with pytest.raises(CheckpointError, match=needle):
            load_generator(path)
    save_file(tensors, str(path), metadata=meta)
    load_generator(path)


# ------------------------------------------------------------------ sampling
def test_sampling_a_class_returns_that_class(cond_run, tmp_path):
    run, _ = cond_run
    out = tmp_path / "west.safetensors"
    res = sample(run, 12, out, cls="west")
    assert res.cls == "west"
    t = load_file(str(out))
    assert torch.equal(t["labels"], torch.full((12,), 1))
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["class_names"])[1] == "west"
    # by index, the same samples: the label, not the spelling, conditions the generator
    sample(run, 12, tmp_path / "one.safetensors", cls=1)
    assert torch.equal(load_file(str(tmp_path / "one.safetensors"))["samples"], t["samples"])
    sample(run, 12, tmp_path / "all.safetensors")
    both = load_file(str(tmp_path / "all.safetensors"))
    assert torch.equal(both["labels"], torch.arange(12) % 4)
    assert not torch.equal(both["samples"], t["samples"])


def test_sample_class_errors_are_one_line(cond_run, tmp_path):
    run, _ = cond_run
    res = runner.invoke(app, ["sample", str(run), "--class", "up", "-o", str(tmp_path / "x.safetensors")])
    assert_clean_error(res, 2, "no such class", "north")
    plain = tmp_path / "plain"
    cfg = gantk.make_config(data="8gaussians", data_options={"n": 64}, steps=1, batch_size=16, n_critic=1,
                            model_options={"width": 8, "depth": 1}, out=str(plain), name="u", device="cpu",
                            image_every=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_u = gantk.train(cfg).run_dir
    res = runner.invoke(app, ["sample", str(run_u), "--class", "1", "-o", str(tmp_path / "y.safetensors")])
    assert_clean_error(res, 2, "needs a class-conditional run")


def test_class_grid_has_one_row_per_class():
    images = torch.arange(7.0).view(7, 1, 1, 1).expand(7, 1, 2, 2)
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 0])
    grid, per_row = class_rows(images, labels, 3)
    assert per_row == 3 and grid.shape[0] == 9
    assert grid[:, 0, 0, 0].tolist() == [1, 4, 6, 3, 1, 1, 0, 2, 5]  # row 1: sample 3, then two blanks (1.0)


def test_image_run_pictures_and_png_are_class_grids(tmp_path):
    pytest.importorskip("sklearn")
    cfg = gantk.make_config(preset="digits", conditional=True, steps=1, n_critic=1, out=str(tmp_path), name="d",
                            device="cpu", image_every=1, model_options={"width": 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(cfg)
        res = tr.train()
    from PIL import Image

    assert tr.y_fixed.tolist() == torch.arange(10).repeat_interleave(8).tolist()
    pic = Image.open(res.image)
    cell = 32 + 2  # 16 px upscaled to the 32 px minimum cell, 2 px padding
    assert pic.size == (8 * cell + 2, 10 * cell + 2)  # 8 columns, one row per digit
    sample(res.run_dir, 25, tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").size == (3 * cell + 2, 10 * cell + 2)


# ------------------------------------------------------------------ evaluation
def test_class_accuracy_is_per_class_share_labelled_as_asked():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    predicted = np.array([0, 1, 1, 0, 1, 2, 5, 1, 2, 0])
    out = class_accuracy(predicted, labels)
    assert out["class_accuracy_per_class"] == [0.75, 1.0, 2 / 3]
    assert out["class_accuracy_min"] == pytest.approx(2 / 3)
    assert out["class_accuracy"] == pytest.approx((0.75 + 1 + 2 / 3) / 3)


def test_example_plugins_loss_and_penalties_work_conditionally(tmp_path):
    pytest.importorskip("gantk_r1")
    pytest.importorskip("gantk_relativistic")
    from gantk.testing import use_plugins

    p = _points_file(tmp_path / "pts.safetensors")
    with use_plugins("gantk-r1", "gantk-relativistic"):
        for loss, lip in (("ragan", "r1"), ("wasserstein", "dragan"), ("wasserstein", "wgan-div")):
            check_trains(loss=loss, lipschitz=lip, data="tensorfile", data_options={"path": str(p)}, conditional=True)


def test_digits_protocol_scores_the_class_asked_for():
    pytest.importorskip("sklearn")
    import torch.nn.functional as F

    from gantk import eval as ev

    p = ev.DigitsProtocol(200, 0, size=16, epochs=1)
    x_train, y_train, _, _ = ev.digits_split()
    real16 = F.interpolate(x_train[:400], size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)
    right = p.score(real16, labels=y_train[:400])
    wrong = p.score(real16, labels=(y_train[:400] + 1) % 10)  # every digit "drawn" for the next class
    assert right["class_accuracy"] > 0.5 > wrong["class_accuracy"]
    assert len(right["class_accuracy_per_class"]) == 10 and len(right["fd_per_class"]) == 10
    assert right["fd"] == wrong["fd"]  # the overall FD ignores the labels
    assert np.mean(right["fd_per_class"]) < np.mean(wrong["fd_per_class"])
    assert "class_accuracy" not in p.score(real16)


def test_conditional_digits_run_is_evaluated_per_class(tmp_path):
    pytest.importorskip("sklearn")
    from gantk import eval as ev

    cfg = gantk.make_config(preset="digits", conditional=True, steps=1, n_critic=1, out=str(tmp_path), name="d",
                            device="cpu", image_every=0, checkpoint_every=0, log_every=1, model_options={"width": 4})
    cb = ev.EvalCallback(every=1, n=60, classifier_epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = Trainer(cfg, callbacks=[cb]).train()
    rec = json.loads((res.run_dir / "eval.jsonl").read_text())
    assert len(rec["class_accuracy_per_class"]) == 10 and "critic_w" in rec
    d = ev.evaluate(res.run_dir, n=60, classifier_epochs=1, features=None)
    assert 0 <= d["class_accuracy_min"] <= d["class_accuracy"] <= 1
