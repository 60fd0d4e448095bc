"""The fused gradient-penalty kernels (csrc/) against the pure-PyTorch reference.

Outputs and gradients, per-dtype tolerances, layouts, zero rows, gradcheck in float64,
torch.library.opcheck on every operator, and the critic's parameter gradients through
the whole WGAN-GP double backward. The extension is built once by a module-scoped
fixture: a missing C++ compiler skips these tests, any other build failure fails them.
"""
import os
import platform
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import gantk.ops.penalty as P
from gantk.errors import ExtensionError
from gantk.ops import _ext, acc_dtype

ROOT = Path(__file__).resolve().parents[1]

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]

# Tolerances per data dtype: norms and penalty are accumulated and returned in float32
# (float64 for float64 data) on both paths, so only the summation order differs; the
# data-dtype outputs (x̂, ∂/∂g) differ by the rounding of the per-sample weight, which
# the reference rounds to the data dtype first.
STAT_TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=2e-5, atol=1e-5),
    torch.bfloat16: dict(rtol=2e-5, atol=1e-5),
    torch.float16: dict(rtol=2e-5, atol=1e-5),
}
DATA_TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-3),
    torch.float16: dict(rtol=4e-3, atol=1e-4),
}
# x̂ = ε·real + (1−ε)·fake: the reference rounds ε to the data dtype, an error of up to
# one unit in ε's last place times |real − fake| (~8 for standard normal data).
INTERP_TOL = {
    torch.float64: dict(rtol=1e-12, atol=1e-12),
    torch.float32: dict(rtol=1e-6, atol=2e-6),
    torch.bfloat16: dict(rtol=2e-2, atol=4e-2),
    torch.float16: dict(rtol=2e-3, atol=1e-2),
}

SHAPES = [(4, 2), (4, 1, 8, 8), (4, 3, 32, 32), (2, 3, 64, 64), (1, 3, 32, 32), (1, 2), (2048, 2), (512, 1, 8, 8)]
VARIANTS = {  # (target, one_sided, weight, norm_eps)
    "wgan-gp": (1.0, False, 10.0, 0.0),
    "k2-eps": (2.0, False, 3.0, 1e-6),
    "one-sided": (None, True, 10.0, 0.0),  # target None: the median norm, so half the rows are active
}


@pytest.fixture(scope="module")
def ext():
    """Build (or load) the extension once for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GANTK_FORCE_REF", raising=False)
        comp = _ext.compiler()
        if comp["path"] is None:
            pytest.skip(f"no C++ compiler ({comp['name']!r}) to build the extension with")
        try:
            _ext.build(verbose=False)
        except ExtensionError as e:
            pytest.fail(f"the extension failed to build although a compiler exists: {e}")
        yield _ext


@pytest.fixture(autouse=True)
def _no_force_ref(monkeypatch):
    monkeypatch.delenv("GANTK_FORCE_REF", raising=False)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(shape, dtype, device, seed=0, scale=1.0):
    return (torch.randn(shape, generator=_gen(seed), dtype=torch.float64) * scale).to(device=device, dtype=dtype)


def _penalty_and_grad(g, impl, target, one_sided, weight, norm_eps, inv_scale=None, grad_out=1.7):
    g = g.detach().clone().requires_grad_(True)
    pen, norms = P.gradient_norm_penalty(
        g, target=target, one_sided=one_sided, weight=weight, norm_eps=norm_eps, inv_scale=inv_scale, impl=impl
    )
    (pen * grad_out).backward()
    return pen.detach(), norms, g.grad


def _target_for(g, target):
    """``None``: a target between the two middle norms, so that about half the rows are
    active in the one-sided penalty and none sits on the kink at n = target."""
    if target is not None:
        return target
    s = g.detach().double().flatten(1).norm(dim=1).sort().values
    if len(s) == 1:
        return float(s[0]) * 0.5
    k = len(s) // 2
    return float(s[k - 1] + s[k]) / 2


# ---------------------------------------------------------------- norm penalty
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_norm_penalty_parity(ext, device, dtype, shape, variant):
    target, one_sided, weight, norm_eps = VARIANTS[variant]
    g = _randn(shape, dtype, device, scale=0.2)
    if target is None:  # spread the norms so that |n − target| is well away from 0
        spread = torch.linspace(0.5, 1.5, shape[0], dtype=torch.float64)[torch.randperm(shape[0], generator=_gen(9))]
        g = (g.double() * spread.to(device).view(-1, *[1] * (g.dim() - 1))).to(dtype)
    target = _target_for(g, target)
    pe, ne, ge = _penalty_and_grad(g, "ext", target, one_sided, weight, norm_eps)
    pr, nr, gr = _penalty_and_grad(g, "ref", target, one_sided, weight, norm_eps)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    assert pe.dtype == ne.dtype == acc and pe.shape == () and ne.shape == (shape[0],)
    assert ge.dtype == dtype and ge.shape == g.shape
    assert not ne.requires_grad
    assert_close(ne, nr, **STAT_TOL[dtype])
    assert_close(pe, pr, **STAT_TOL[dtype])
    assert_close(ge, gr, **DATA_TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced", "expanded"])
def test_norm_penalty_layouts(ext, device, layout):
    base = _randn((6, 3, 16, 16), torch.float32, device, scale=0.1)
    g = {
        "channels_last": base.to(memory_format=torch.channels_last),
        "transposed": base.transpose(2, 3),
        "sliced": base[:, :, ::2, 1:],
        "expanded": base[:, :1].expand(6, 3, 16, 16),
    }[layout]
    pe, ne, ge = _penalty_and_grad(g, "ext", 1.0, False, 10.0, 0.0)
    pr, nr, gr = _penalty_and_grad(g, "ref", 1.0, False, 10.0, 0.0)
    assert_close(ne, nr, **STAT_TOL[torch.float32])
    assert_close(pe, pr, **STAT_TOL[torch.float32])
    assert_close(ge, gr, **DATA_TOL[torch.float32])
    if layout == "channels_last":  # kept in place: ∂/∂g comes back channels_last
        assert ge.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("one_sided", [False, True])
def test_zero_rows_give_finite_values(ext, device, dtype, one_sided):
    g = _randn((5, 3, 8, 8), dtype, device)
    g[1] = 0
    g[4] = 0
    pe, ne, ge = _penalty_and_grad(g, "ext", 1.0 if not one_sided else 0.0, one_sided, 10.0, 0.0)
    pr, nr, gr = _penalty_and_grad(g, "ref", 1.0 if not one_sided else 0.0, one_sided, 10.0, 0.0)
    assert torch.isfinite(pe) and torch.isfinite(ne).all() and torch.isfinite(ge.float()).all()
    assert (ne[[1, 4]] == 0).all() and (ge[[1, 4]] == 0).all()
    assert_close(pe, pr, **STAT_TOL[dtype])
    assert_close(ge, gr, **DATA_TOL[dtype])
    # all zero: penalty = weight * target², no gradient
    z = torch.zeros(3, 2, dtype=dtype, device=device)
    pz, nz, gz = _penalty_and_grad(z, "ext", 1.0, False, 10.0, 0.0)
    assert_close(pz, torch.tensor(10.0, dtype=pz.dtype, device=device))
    assert (gz == 0).all() and (nz == 0).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_inv_scale_folding(ext, device, dtype):
    """Pre-scaled gradients with inv_scale = 1/S give the unscaled result (S a power
    of two, so the scaling itself is exact)."""
    S = 1024.0
    g = _randn((4, 3, 16, 16), dtype, device, scale=0.05)
    inv = torch.tensor([1.0 / S], device=device)
    ps, ns, gs = _penalty_and_grad(g * S, "ext", 1.0, False, 10.0, 0.0, inv_scale=inv)
    pu, nu, gu = _penalty_and_grad(g, "ext", 1.0, False, 10.0, 0.0)
    assert_close(ns, nu, **STAT_TOL[dtype])
    assert_close(ps, pu, **STAT_TOL[dtype])
    # ∂/∂(S·g) = (1/S) ∂/∂g
    assert_close(gs.double() * S, gu.double(), **DATA_TOL[dtype])
    pr, nr, gr = _penalty_and_grad(g * S, "ref", 1.0, False, 10.0, 0.0, inv_scale=inv)
    assert_close(ps, pr, **STAT_TOL[dtype])
    assert_close(gs, gr, **DATA_TOL[dtype])


def test_inv_scale_zero_dim_and_float64_tensor(ext):
    g = _randn((3, 5), torch.float32, "cpu")
    for inv in (torch.tensor(0.5), torch.tensor([0.5], dtype=torch.float64)):
        pe, ne, ge = _penalty_and_grad(g, "ext", 1.0, False, 10.0, 0.0, inv_scale=inv)
        pr, nr, gr = _penalty_and_grad(g, "ref", 1.0, False, 10.0, 0.0, inv_scale=inv)
        assert_close(ne, nr)
        assert_close(ge, gr)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(ext, device):
    g = _randn((3, 2, 4, 4), torch.float64, device, scale=0.3).requires_grad_(True)
    target = _target_for(g, None)
    inv = torch.tensor([0.7], dtype=torch.float64, device=device)
    for kw in (
        dict(target=1.0, one_sided=False, weight=10.0, norm_eps=0.0, inv_scale=None),
        dict(target=target, one_sided=True, weight=2.0, norm_eps=1e-3, inv_scale=inv),
        dict(target=0.0, one_sided=False, weight=1.0, norm_eps=0.0, inv_scale=inv),
    ):
        assert torch.autograd.gradcheck(lambda x: P.gradient_norm_penalty(x, impl="ext", **kw)[0], (g,))
    r = _randn((3, 2, 4, 4), torch.float64, device, seed=1).requires_grad_(True)
    f = _randn((3, 2, 4, 4), torch.float64, device, seed=2).requires_grad_(True)
    e = torch.rand(3, generator=_gen(3), dtype=torch.float64).to(device).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: torch.ops.gantk.interpolate(a, b, c), (r, f, e))


# ---------------------------------------------------------------- interpolate
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_interpolate_parity(ext, device, dtype, shape):
    real, fake = _randn(shape, dtype, device, seed=1), _randn(shape, dtype, device, seed=2)
    eps = torch.rand(shape[0], generator=_gen(3), dtype=acc_dtype(dtype)).to(device)
    eps[0] = 0.0  # endpoints are exact
    if shape[0] > 1:
        eps[1] = 1.0
    xe, _ = P.interpolate(real, fake, eps=eps, impl="ext")
    xr, _ = P.interpolate(real, fake, eps=eps, impl="ref")
    assert xe.dtype == dtype and xe.shape == real.shape
    assert_close(xe, xr, **INTERP_TOL[dtype])
    assert torch.equal(xe[0], fake[0])
    if shape[0] > 1:
        assert torch.equal(xe[1], real[1])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="exact float rounding checked on x86-64")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_reduced_precision_conversions_are_exact(ext, dtype):
    """Every finite float16/bfloat16 value widens exactly, and the float result of
    ε·real + (1−ε)·fake narrows exactly as torch rounds it (to nearest even; subnormals,
    overflow to inf included)."""
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)
    fin = bits[torch.isfinite(bits.float())]
    n = fin.numel()
    same = torch.ops.gantk.interpolate(fin.view(1, -1), torch.zeros(1, n, dtype=dtype), torch.ones(1))
    assert torch.equal(same.view(-1).float(), fin.float())
    gen = _gen(5)
    m = (n // 16) * 16
    for eps in (torch.full((16,), 0.5), torch.full((16,), 1e5), torch.rand(16, generator=gen) * 3.0 - 1.0):
        r = fin[torch.randperm(n, generator=gen)[:m]].view(16, -1)
        f = fin[torch.randperm(n, generator=gen)[:m]].view(16, -1)
        out = torch.ops.gantk.interpolate(r, f, eps)
        w = eps.view(-1, 1)
        expect = (w * r.float() + (1 - w) * f.float()).to(dtype)
        o, x = out.float(), expect.float()
        differ = (out.view(torch.int16) != expect.view(torch.int16)) & ~(o.isnan() & x.isnan()) & ~((o == 0) & (x == 0))
        assert not differ.any(), (o[differ][:5], x[differ][:5])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "mixed", "transposed"])
def test_interpolate_layouts_and_gradients(ext, device, layout):
    real, fake = _randn((4, 3, 8, 8), torch.float32, device, 1), _randn((4, 3, 8, 8), torch.float32, device, 2)
    if layout == "channels_last":
        real, fake = real.to(memory_format=torch.channels_last), fake.to(memory_format=torch.channels_last)
    elif layout == "mixed":
        real = real.to(memory_format=torch.channels_last)
    else:
        real, fake = real.transpose(1, 3), fake.transpose(1, 3)
    eps = torch.rand(4, generator=_gen(4)).to(device)
    w = _randn(real.shape, torch.float32, device, 5)
    out = {}
    for impl in ("ext", "ref"):
        r, f, e = (t.detach().clone().requires_grad_(True) for t in (real, fake, eps))
        x, _ = P.interpolate(r, f, eps=e, impl=impl)
        (x * w).sum().backward()
        out[impl] = (x.detach(), r.grad, f.grad, e.grad)
    for a, b in zip(out["ext"], out["ref"]):
        assert_close(a, b, rtol=1e-5, atol=1e-5)
    if layout == "channels_last":  # the layout the critic sees is the one it was given
        assert out["ext"][0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_same_epsilon_for_same_seed(ext, device):
    real, fake = _randn((8, 3, 4, 4), torch.float32, device, 1), _randn((8, 3, 4, 4), torch.float32, device, 2)

    def gen():
        return torch.Generator(device=device).manual_seed(1234)

    xe, ee = P.interpolate(real, fake, generator=gen(), impl="ext")
    xr, er = P.interpolate(real, fake, generator=gen(), impl="ref")
    assert torch.equal(ee, er)
    assert_close(xe, xr, **INTERP_TOL[torch.float32])


# ---------------------------------------------------------------- whole penalty
class MLPCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, x):
        return self.net(x)


class ConvCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, 1),
        )

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mlp", "conv", "conv-channels_last"])
@pytest.mark.parametrize("one_sided", [False, True])
def test_critic_parameter_gradients_match(ext, device, kind, one_sided):
    torch.manual_seed(0)
    critic = (MLPCritic() if kind == "mlp" else ConvCritic()).to(device)
    shape = (16, 2) if kind == "mlp" else (8, 3, 16, 16)
    real, fake = _randn(shape, torch.float32, device, 1), _randn(shape, torch.float32, device, 2)
    if kind == "conv-channels_last":
        critic = critic.to(memory_format=torch.channels_last)
        real, fake = real.to(memory_format=torch.channels_last), fake.to(memory_format=torch.channels_last)
    results = {}
    for impl in ("ext", "ref"):
        critic.zero_grad(set_to_none=True)
        gp = P.gradient_penalty(critic, real, fake, weight=10.0, one_sided=one_sided,
                                generator=torch.Generator(device=device).manual_seed(7), impl=impl)
        loss = critic(fake).mean() - critic(real).mean() + gp.penalty
        loss.backward()
        results[impl] = (gp.penalty.detach(), gp.norms, [p.grad.clone() for p in critic.parameters()])
    (pe, ne, ge), (pr, nr, gr) = results["ext"], results["ref"]
    assert_close(pe, pr, rtol=1e-5, atol=1e-6)
    assert_close(ne, nr, rtol=1e-5, atol=1e-6)
    for a, b in zip(ge, gr):
        assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_auto_uses_the_extension_without_warning(ext):
    g = _randn((4, 3, 8, 8), torch.float32, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pa, na = P.gradient_norm_penalty(g, impl="auto")
    pe, ne = P.gradient_norm_penalty(g, impl="ext")
    assert torch.equal(pa, pe) and torch.equal(na, ne)
    assert ext.status()["backends"]["cpu"]["backend"] == "ext"


# ---------------------------------------------------------------- operator registration
def _op_cases(device):
    g = _randn((3, 2, 5, 5), torch.float32, device).requires_grad_(True)
    gcl = _randn((3, 4, 5, 5), torch.float32, device).to(memory_format=torch.channels_last).requires_grad_(True)
    r, f = _randn((3, 2, 5, 5), torch.float32, device, 1), _randn((3, 2, 5, 5), torch.float32, device, 2)
    e = torch.rand(3, generator=_gen(1)).to(device)
    norms = g.detach().flatten(1).norm(dim=1)
    inv = torch.tensor([0.25], device=device)
    ops = torch.ops.gantk
    return [
        (ops.interpolate.default, (r.requires_grad_(True), f.requires_grad_(True), e.requires_grad_(True))),
        (ops.interpolate.default, (r.detach().to(memory_format=torch.channels_last),
                                   f.detach().to(memory_format=torch.channels_last), e.detach())),
        (ops.interpolate.default, (r.detach().to(memory_format=torch.channels_last), f.detach(), e.detach())),
        (ops.norm_penalty.default, (g, 1.0, False, 10.0, 0.0, None)),
        (ops.norm_penalty.default, (gcl, 0.5, True, 2.0, 1e-6, inv)),
        (ops.norm_penalty.default, (g.detach().to(torch.bfloat16).requires_grad_(True), 1.0, False, 10.0, 0.0, None)),
        (ops.norm_penalty_backward.default, (torch.tensor(1.5, device=device), g.detach(), norms, 1.0, False, 10.0, None)),
        (ops.norm_penalty_backward.default, (torch.tensor(1.0, device=device), gcl.detach(), gcl.detach().flatten(1).norm(dim=1), 1.0, True, 10.0, inv)),
    ]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", range(8))
def test_opcheck(ext, device, case):
    op, args = _op_cases(device)[case]
    torch.library.opcheck(op, args)


def test_torch_compile_sees_the_ops(ext):
    def head(g):
        pen, norms = torch.ops.gantk.norm_penalty(g, 1.0, False, 10.0, 0.0, None)
        return pen + norms.sum() * 0

    g = _randn((4, 3, 8, 8), torch.float32, "cpu").requires_grad_(True)
    compiled = torch.compile(head, backend="aot_eager", fullgraph=True)
    pc = compiled(g)
    pc.backward()
    gc = g.grad.clone()
    g.grad = None
    pe = head(g)
    pe.backward()
    assert_close(pc, pe)
    assert_close(gc, g.grad)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: torch.ops.gantk.interpolate(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2)), "eps must have shape"),
        (lambda: torch.ops.gantk.interpolate(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3)), "fake must have real's shape"),
        (lambda: torch.ops.gantk.interpolate(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3)), "fake must have real's dtype"),
        (lambda: torch.ops.gantk.interpolate(torch.zeros(3, 2, dtype=torch.int32), torch.zeros(3, 2, dtype=torch.int32), torch.zeros(3)), "real must be float64"),
        (lambda: torch.ops.gantk.norm_penalty(torch.zeros(3, 2, dtype=torch.int64), 1.0, False, 1.0, 0.0, None), "g must be float64"),
        (lambda: torch.ops.gantk.norm_penalty(torch.zeros(0, 2), 1.0, False, 1.0, 0.0, None), "g needs a non-empty batch"),
        (lambda: torch.ops.gantk.norm_penalty(torch.zeros(()), 1.0, False, 1.0, 0.0, None), "g needs a batch dimension"),
        (lambda: torch.ops.gantk.norm_penalty(torch.zeros(3, 2), 1.0, False, 1.0, -1.0, None), "norm_eps must be"),
        (lambda: torch.ops.gantk.norm_penalty(torch.zeros(3, 2), 1.0, False, 1.0, 0.0, torch.ones(2)), "inv_scale must hold exactly one"),
        (lambda: torch.ops.gantk.norm_penalty_backward(torch.ones(()), torch.zeros(3, 2), torch.ones(2), 1.0, False, 1.0, None), "norms must have shape"),
        (lambda: torch.ops.gantk.norm_penalty_backward(torch.ones(2), torch.zeros(3, 2), torch.ones(3), 1.0, False, 1.0, None), "grad_penalty must hold exactly one"),
    ],
)
def test_inputs_are_checked_with_named_arguments(ext, call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


# ---------------------------------------------------------------- loader
def test_failed_build_is_reported_once_and_not_retried(monkeypatch, tmp_path):
    """A fresh loader state, an empty cache and no compiler: 'auto' falls back with
    the reason, 'ext' raises it, and the build is tried once only."""
    monkeypatch.setattr(_ext, "_state", _ext._State())
    monkeypatch.setattr(_ext, "_warned", set())
    monkeypatch.setenv("GANTK_EXT_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    calls = []
    real_try = _ext._try
    monkeypatch.setattr(_ext, "_try", lambda *a, **k: (calls.append(1), real_try(*a, **k)))
    ok, reason = _ext.available("cpu")
    assert not ok and "no C++ compiler" in reason
    assert _ext.available("cpu") == (False, reason) and len(calls) == 1
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        P.gradient_norm_penalty(torch.ones(2, 3), impl="auto")
    with warnings.catch_warnings():  # once per device
        warnings.simplefilter("error", RuntimeWarning)
        P.gradient_norm_penalty(torch.ones(2, 3), impl="auto")
    with pytest.raises(ExtensionError, match="no C\\+\\+ compiler"):
        P.gradient_norm_penalty(torch.ones(2, 3), impl="ext")
    assert len(calls) == 1
    st = _ext.status()
    assert st["backends"]["cpu"]["backend"] == "ref" and "no C++ compiler" in st["backends"]["cpu"]["reason"]


def test_autobuild_off_uses_built_extension_only(monkeypatch, tmp_path):
    monkeypatch.setattr(_ext, "_state", _ext._State())
    monkeypatch.setenv("GANTK_EXT_DIR", str(tmp_path))
    monkeypatch.setenv("GANTK_EXT_AUTOBUILD", "0")
    ok, reason = _ext.available("cpu")
    assert not ok and "gantk ext build" in reason
    assert not any(tmp_path.iterdir())  # nothing was built


def test_unsupported_devices_and_cuda_reason(ext):
    ok, reason = _ext.available("meta")
    assert not ok and "meta" in reason
    if not torch.cuda.is_available():
        ok, reason = _ext.available("cuda")
        assert not ok and "without CUDA" in reason
        assert _ext.status()["backends"]["cuda"]["backend"] == "none"


def test_force_ref(ext, monkeypatch):
    monkeypatch.setenv("GANTK_FORCE_REF", "1")
    with pytest.raises(ExtensionError, match="GANTK_FORCE_REF"):
        P.gradient_norm_penalty(torch.ones(2, 3), impl="ext")
    assert _ext.status()["backends"]["cpu"]["backend"] == "ref"


def test_cache_key_changes_with_sources(ext, tmp_path):
    src = _ext._csrc_dir()
    copy = tmp_path / "csrc"
    copy.mkdir()
    for f in (*_ext._CPU_SOURCES, *_ext._HEADERS, *_ext._CUDA_SOURCES):
        (copy / f).write_bytes((src / f).read_bytes())
    assert _ext._key(copy, False) == _ext._key(src, False)
    (copy / "gp_cpu.cpp").write_text((src / "gp_cpu.cpp").read_text() + "\n// changed\n")
    assert _ext._key(copy, False) != _ext._key(src, False)
    assert _ext._key(src, True) != _ext._key(src, False)


@pytest.mark.slow
def test_concurrent_first_builds_share_one_cache(tmp_path):
    """Three processes start at once on an empty cache: one builds, the others wait on
    the lock and load the same library."""
    script = textwrap.dedent(
        """
        import json, sys, torch
        from gantk.ops import _ext, penalty
        ok, reason = _ext.available("cpu")
        g = torch.ones(2, 3)
        p, n = penalty.gradient_norm_penalty(g, impl="ext")
        print(json.dumps({"ok": ok, "reason": reason, "lib": _ext.status()["library"], "p": p.item()}))
        """
    )
    env = dict(os.environ, GANTK_EXT_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("GANTK_FORCE_REF", None)
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    import json

    results = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["ok"] for r in results), results
    assert len({r["lib"] for r in results}) == 1
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenMP flags are set for Linux builds")
@pytest.mark.skipif(bool(os.environ.get("OMP_THREAD_LIMIT") or os.environ.get("OMP_DYNAMIC")),
                    reason="OpenMP thread limits set in the environment")
def test_cpu_kernels_run_on_torchs_threads(ext):
    """at::parallel_for is serial in code built without OpenMP: the build must pass it."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch.ops.gantk._cpu_threads_used(64) == 2
        torch.set_num_threads(1)
        assert torch.ops.gantk._cpu_threads_used(64) == 1
    finally:
        torch.set_num_threads(threads)


def test_cpu_results_do_not_depend_on_the_thread_count(ext):
    """The work split depends on the shapes only, so 1 and 2 threads agree bit for bit."""
    gen = torch.Generator().manual_seed(0)
    real, fake, g = (torch.randn(16, 3, 64, 64, generator=gen) for _ in range(3))
    g.requires_grad_(True)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            x_hat, _ = P.interpolate(real, fake, generator=torch.Generator().manual_seed(1), impl="ext")
            pen, norms = P.gradient_norm_penalty(g, impl="ext")
            (dg,) = torch.autograd.grad(pen, g)
            outs.append((x_hat, pen, norms, dg))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the libstdc++ link flag is set for Linux builds")
def test_library_uses_the_shared_cpp_runtime(ext):
    """The extension must share libtorch's C++ runtime, or a TORCH_CHECK failure thrown in
    it and caught in libtorch can crash the process. A toolchain that links libstdc++
    statically by default did exactly that (SIGSEGV on every bad input, torch 2.11 with a
    g++ 13 wrapper); the build names the shared library explicitly."""
    import shutil
    import subprocess

    flags = _ext._ldflags()
    assert any(f.endswith("libstdc++.so.6") for f in flags)
    lib = _ext.status()["library"]
    if shutil.which("ldd") is None or not lib:
        pytest.skip("no ldd to read the library's dependencies")
    deps = subprocess.run(["ldd", lib], capture_output=True, text=True).stdout
    assert "libstdc++.so.6 =>" in deps


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the ISA copies are x86-64 only")
def test_cpu_loops_use_the_widest_vectors_the_cpu_has(ext):
    """-1 asks for the best level; it must match what the CPU reports (GCC builds)."""
    best = torch.ops.gantk._cpu_set_isa(-1)
    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo")
    want = 1 if "avx2" in flags else 0
    clang = "clang" in (_ext.compiler().get("version") or "").lower()  # AVX-512 copy is GCC-only
    if want and {"avx512f", "avx512bw", "avx512vl"} <= flags and not clang:
        want = 2
    assert best == want
    assert torch.ops.gantk._cpu_set_isa(99) == best  # capped at what the CPU has


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_cpu_results_do_not_depend_on_the_instruction_set(ext, dtype):
    """The baseline, AVX2 and AVX-512 copies of the loops agree bit for bit (no FMA
    contraction; fixed partial sums), on lengths that are no multiple of any vector width."""
    best = torch.ops.gantk._cpu_set_isa(-1)
    gen = torch.Generator().manual_seed(0)
    shape = (5, 3, 37, 29)
    real, fake, g = (torch.randn(shape, generator=gen).mul(3).to(dtype) for _ in range(3))
    g.requires_grad_(True)
    outs = []
    try:
        for level in range(best + 1):
            assert torch.ops.gantk._cpu_set_isa(level) == level
            x_hat, _ = P.interpolate(real, fake, generator=torch.Generator().manual_seed(1), impl="ext")
            pen, norms = P.gradient_norm_penalty(g, impl="ext", one_sided=False)
            (dg,) = torch.autograd.grad(pen, g)
            outs.append((x_hat, pen, norms, dg))
    finally:
        torch.ops.gantk._cpu_set_isa(-1)
    if len(outs) < 2:
        pytest.skip("one instruction-set level on this CPU")
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)
