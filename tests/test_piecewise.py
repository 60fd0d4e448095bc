"""The closed-form input gradient of piecewise-linear MLP critics (gantk.ops.piecewise):
which critics it takes, and that a penalty built on it gives autograd's numbers (float64)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gantk.ops import gradient_penalty, gradient_penalty_at, input_gradient, piecewise
from gantk.plugins import get_registry


def _closed(g: torch.Tensor) -> bool:
    """Whether g came out of the closed form (its node, or the node under a reshape)."""
    fn = g.grad_fn
    for _ in range(3):
        if fn is None:
            return False
        if "MLPInputGradient" in type(fn).__name__:
            return True
        fn = fn.next_functions[0][0] if fn.next_functions else None
    return False


def _run(critic, points, monkeypatch, force_ref: bool, **kw):
    """Penalty plus a loss on the scores at the points, backpropagated: the penalty, the
    scores, the parameters' and the points' gradients, and whether the closed form ran."""
    monkeypatch.setenv("GANTK_FORCE_REF", "1" if force_ref else "")
    critic.zero_grad(set_to_none=True)
    x = points.clone().requires_grad_(True)
    r = gradient_penalty_at(critic, x, impl="ref", **kw)
    (r.penalty + (r.scores.pow(3) * 0.1).sum()).backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in critic.parameters()]
    return r.penalty.detach(), r.scores.detach(), r.norms, grads, r.x_hat.grad.clone(), _closed(
        input_gradient(critic, points)[1])


CRITICS = {
    "toy 3x64 relu": (lambda: nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Flatten(0)), (40, 2)),
    "leaky, no bias, flattened images": (lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(12, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32, bias=False), nn.ReLU(),
        nn.Linear(32, 1)), (24, 3, 2, 2)),
    "one linear layer": (lambda: nn.Sequential(nn.Linear(5, 1)), (8, 5)),
    "identity and unflatten": (lambda: nn.Sequential(nn.Identity(), nn.Linear(3, 16), nn.LeakyReLU(0.01),
                                                     nn.Linear(16, 1), nn.Unflatten(1, (1, 1))), (16, 3)),
}


@pytest.mark.parametrize("name", sorted(CRITICS))
@pytest.mark.parametrize("form", [dict(), dict(one_sided=True), dict(target=0.0), dict(power=1.5)])
def test_closed_form_matches_autograd(name, form, monkeypatch):
    build, shape = CRITICS[name]
    torch.manual_seed(0)
    critic = build().double()
    points = torch.randn(*shape, dtype=torch.float64) * 2
    closed = _run(critic, points, monkeypatch, False, **form)
    auto = _run(critic, points, monkeypatch, True, **form)
    assert closed[-1] and not auto[-1]  # each path ran where it should
    for a, b in zip(closed[:3], auto[:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(closed[3], auto[3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(closed[4], auto[4], rtol=1e-10, atol=1e-12)


def test_a_kink_takes_autograds_mask(monkeypatch):
    """A pre-activation of exactly 0 (a zero input row and zero biases): the closed form
    takes ReLU's derivative there as PyTorch's backward does (0)."""
    torch.manual_seed(1)
    critic = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        critic[0].bias.zero_()
    points = torch.randn(6, 2, dtype=torch.float64)
    points[2] = 0
    closed = _run(critic, points, monkeypatch, False)
    auto = _run(critic, points, monkeypatch, True)
    assert closed[2][2] == 0 and auto[2][2] == 0  # the zero row's gradient norm
    for a, b in zip(closed[3], auto[3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_built_in_mlp_critic_takes_the_closed_form():
    critic = get_registry("model").get("mlp")().build_critic((2,))
    layers = piecewise.piecewise_layers(critic)
    assert layers is not None and len(layers.linears) == 4 and layers.slopes == [0.0, 0.0, 0.0]
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    g = input_gradient(critic, gradient_penalty(critic, real, fake).x_hat)[1]
    assert _closed(g)


def _hooked():
    c = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    c[0].register_forward_hook(lambda *a: None)
    return c


@pytest.mark.parametrize("critic", [
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)), id="tanh"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)), id="batchnorm"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU()), id="activation-last"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)), id="two-activations"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.LeakyReLU(-0.5), nn.Linear(4, 1)), id="negative-slope"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 1)), id="dropout"),
    pytest.param(lambda: nn.utils.parametrizations.spectral_norm(nn.Sequential(nn.Linear(2, 4), nn.ReLU(),
                                                                               nn.Linear(4, 1))[0]), id="not-sequential"),
    pytest.param(lambda: nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Linear(2, 4)), nn.ReLU(),
                                       nn.Linear(4, 1)), id="parametrized"),
    pytest.param(_hooked, id="hook"),
])
def test_other_critics_take_autograd(critic):
    c = critic()
    points = torch.randn(8, 2)
    assert piecewise.closed_form_applies(c, points) is None
    scores, g = input_gradient(c, points)
    assert not _closed(g) and g.shape == points.shape


def test_closed_form_refused_where_it_would_differ(monkeypatch):
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    points = torch.randn(8, 2)
    assert piecewise.closed_form_applies(critic, points) is not None
    assert piecewise.closed_form_applies(critic, points.double()) is None  # dtypes differ
    assert piecewise.closed_form_applies(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)), points) is None
    assert piecewise.closed_form_applies(critic, torch.randn(8, 3, 2)) is None  # Linear on the last dim
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert piecewise.closed_form_applies(critic, points) is None
    monkeypatch.setenv("GANTK_FORCE_REF", "1")
    assert piecewise.closed_form_applies(critic, points) is None


def test_a_global_hook_turns_it_off():
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert piecewise.piecewise_layers(critic) is None
    finally:
        handle.remove()
    assert piecewise.piecewise_layers(critic) is not None


def test_frozen_weights_get_no_gradient():
    critic = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    critic[0].weight.requires_grad_(False)
    r = gradient_penalty_at(critic, torch.randn(8, 2))
    r.penalty.backward()
    assert critic[0].weight.grad is None and critic[2].weight.grad is not None
