"""Each clipping rule against its formula (seed 001 §10) on hand-made gradients."""

import torch
from torch import nn

from difftk.plugins.clipping import AGC, GlobalNorm, NoClipping, PerLayer, Value


def model_with_grads() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    scales = [10.0, 0.01, 0.5, 3.0]  # layers whose gradients differ by orders of magnitude
    for p, s in zip(model.parameters(), scales, strict=True):
        p.grad = torch.randn_like(p) * s
    return model


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_none_reports_the_global_norm_and_changes_nothing():
    model = model_with_grads()
    g = grads(model)
    before, after = NoClipping().clip_model(model)
    expected = torch.sqrt(sum((x**2).sum() for x in g))
    assert torch.allclose(before, expected) and torch.allclose(after, expected)
    assert all(torch.equal(a, b) for a, b in zip(g, grads(model), strict=True))


def test_global_norm_rescales_all_gradients_by_tau_over_norm():
    model = model_with_grads()
    g = grads(model)
    norm = torch.sqrt(sum((x**2).sum() for x in g))
    tau = float(norm) / 7
    before, after = GlobalNorm(max_norm=tau).clip_model(model)
    assert torch.allclose(before, norm)
    assert torch.allclose(after, torch.tensor(tau), rtol=1e-5)
    for old, new in zip(g, grads(model), strict=True):
        assert torch.allclose(new, old * tau / norm, rtol=1e-5)


def test_per_layer_clips_each_parameter_on_its_own():
    model = model_with_grads()
    g = grads(model)
    tau = 1.0
    PerLayer(max_norm=tau).clip_model(model)
    for old, new in zip(g, grads(model), strict=True):
        expected = old * tau / max(tau, float(old.norm()))
        assert torch.allclose(new, expected, rtol=1e-5)
    # the small layer (norm < tau) is untouched, the large ones end at norm tau exactly
    norms = [float(x.norm()) for x in grads(model)]
    assert norms[1] == float(g[1].norm()) and abs(norms[0] - tau) < 1e-5


def test_per_layer_by_module_clips_weight_and_bias_together():
    model = model_with_grads()
    g = grads(model)
    tau = 1.0
    PerLayer(max_norm=tau, per="module").clip_model(model)
    new = grads(model)
    for i in (0, 2):  # (weight, bias) of each Linear
        joint = float(torch.sqrt(g[i].norm() ** 2 + g[i + 1].norm() ** 2))
        factor = tau / max(tau, joint)
        assert torch.allclose(new[i], g[i] * factor, rtol=1e-5)
        assert torch.allclose(new[i + 1], g[i + 1] * factor, rtol=1e-5)


def test_value_clamps_each_element():
    model = model_with_grads()
    g = grads(model)
    before, after = Value(clip_value=0.2).clip_model(model)
    for old, new in zip(g, grads(model), strict=True):
        assert torch.equal(new, old.clamp(-0.2, 0.2))
    assert after < before


def test_agc_bounds_each_unit_by_lambda_times_its_weight_norm():
    model = model_with_grads()
    g = grads(model)
    lam, eps = 0.05, 1e-3
    AGC(clipping=lam, eps=eps).clip_model(model)
    for p, old in zip(model.parameters(), g, strict=True):
        w = p.detach()
        if w.ndim == 2:  # each row (output unit) separately (Brock et al. 2021)
            w_norm = w.norm(dim=1, keepdim=True).clamp(min=eps)
            g_norm = old.norm(dim=1, keepdim=True)
        else:
            w_norm, g_norm = w.norm().clamp(min=eps), old.norm()
        limit = lam * w_norm
        expected = torch.where(g_norm > limit, old * limit / g_norm, old)
        assert torch.allclose(p.grad, expected, rtol=1e-5, atol=1e-8)
    assert any(not torch.equal(a, b) for a, b in zip(g, grads(model), strict=True))
