"""EDM2 (Karras et al. 2024b): magnitude-preserving layers and the learned loss weighting.

The layers are checked against EDM2's equations written out here (training/networks_edm2.py
of the EDM2 code base, transcribed); the learned weighting against the optimum of
l / e^u + u, which is u = ln E[l | sigma].
"""

import math

import numpy as np
import pytest
import torch

from difftk.diffusion.levels import Levels
from difftk.nn.loss_uncertainty import LossUncertainty
from difftk.nn.magnitude_preserving import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize


def _edm2_normalize(x, eps=1e-4):  # EDM2's normalize, in numpy
    dim = tuple(range(1, x.ndim))
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=dim, keepdims=True))
    norm = eps + norm * np.sqrt(norm.size / x.size)
    return x / norm


def test_layers_equal_edm2s_equations():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 10, generator=g)
    # eq. 88: mp_sum
    t = 0.3
    assert torch.allclose(mp_sum(a, a.flip(0), t),
                          ((1 - t) * a + t * a.flip(0)) / math.sqrt((1 - t) ** 2 + t**2))
    # eq. 103: mp_cat
    c = math.sqrt(16 / ((1 - t) ** 2 + t**2))
    expected = torch.cat([c / math.sqrt(6) * (1 - t) * a, c / math.sqrt(10) * t * b], dim=1)
    assert torch.allclose(mp_cat(a, b, t=t), expected)
    # eq. 81: mp_silu
    assert torch.allclose(mp_silu(a), torch.nn.functional.silu(a) / 0.596)
    w = torch.randn(3, 5, 3, 3, generator=g)
    assert np.allclose(normalize(w).numpy(), _edm2_normalize(w.numpy()), rtol=1e-6)


@torch.no_grad()
def test_layers_preserve_unit_magnitude():
    """Unit-variance inputs stay unit-variance (the conv away from its zero-padded border)."""
    torch.manual_seed(0)
    x = torch.randn(4096, 64)
    y = MPConv(64, 32, kernel=())(x)
    assert float(y.std()) == pytest.approx(1.0, rel=0.05)
    assert float(mp_silu(torch.randn(200_000)).pow(2).mean().sqrt()) == pytest.approx(1.0,
                                                                                      rel=0.01)
    assert float(mp_sum(torch.randn(200_000), torch.randn(200_000)).std()) == pytest.approx(
        1.0, rel=0.01)
    feats = MPFourier(256)(torch.randn(4096))
    assert float(feats.pow(2).mean()) == pytest.approx(1.0, rel=0.05)
    image = torch.randn(8, 16, 12, 12)
    inner = MPConv(16, 16, kernel=(3, 3))(image)[:, :, 1:-1, 1:-1]
    assert float(inner.std()) == pytest.approx(1.0, rel=0.05)


def test_forced_weight_normalization_happens_in_training_only():
    """§3.6: each training forward rescales every output row of the stored weight to
    unit-variance entries, ||w_i|| = sqrt(fan_in); evaluation leaves the weight as it is."""
    layer = MPConv(8, 4, kernel=(3, 3))
    with torch.no_grad():
        layer.weight.mul_(5.0)
    layer.eval()
    layer(torch.randn(2, 8, 5, 5))
    norms = layer.weight.detach().flatten(1).norm(dim=1)
    assert float(norms.min()) > 5.0  # eval leaves it
    layer.train()
    layer(torch.randn(2, 8, 5, 5))
    norms = layer.weight.detach().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full((4,), math.sqrt(72.0)), rtol=1e-3)


def test_objective_trains_loss_over_exp_u_plus_u():
    """The per-sample loss is l e^-u + u with u the head's output at the sample's level."""
    from difftk.diffusion.denoiser import Denoiser
    from difftk.diffusion.objective import Objective
    from difftk.plugins.losses import MSE
    from difftk.plugins.noise_sampling import LogNormal
    from difftk.plugins.schedules import EDM
    from difftk.plugins.targets import EDMPrecond
    from difftk.plugins.variance import FixedSmall
    from difftk.plugins.weights import EDM2Uncertainty, EDMWeight

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, noise, labels=None):
            return self.lin(x)

    head = EDM2Uncertainty(sigma_data=0.5).uncertainty_network()
    learned = Denoiser(Net(), EDM(), EDMPrecond(sigma_data=0.5), FixedSmall(), head)
    fixed = Denoiser(learned.net, EDM(), EDMPrecond(sigma_data=0.5), FixedSmall())
    x0 = torch.randn(16, 3)
    args = dict(x0=x0, labels=None)

    def losses(denoiser, weighting):
        objective = Objective.for_denoiser(denoiser, weighting, LogNormal(), MSE())
        return objective(denoiser, generator=torch.Generator().manual_seed(1), **args)

    plain, levels = losses(fixed, EDMWeight(sigma_data=0.5))
    with_u, _ = losses(learned, EDM2Uncertainty(sigma_data=0.5))
    u = head(levels)
    assert torch.allclose(with_u, plain * torch.exp(-u) + u, rtol=1e-5, atol=1e-6)
    assert "uncertainty.linear.weight" in learned.state_dict()


def test_learned_log_variance_reaches_the_log_of_the_expected_loss():
    """min over u of E[l e^-u + u | sigma] is at u = ln E[l | sigma]: trained on losses whose
    mean is 1 + sigma^2 (exponential draws), u(sigma) learns ln(1 + sigma^2)."""
    torch.manual_seed(0)
    head = LossUncertainty(64)
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        sigma = torch.exp(torch.randn(512, generator=g) * 1.2 - 1.2)
        loss = (1 + sigma**2) * torch.empty(512).exponential_(generator=g)
        u = head(Levels(alpha=torch.ones(512), sigma=sigma))
        (loss * torch.exp(-u) + u).mean().backward()
        opt.step()
        opt.zero_grad()
    head.eval()
    sigma = torch.tensor([0.1, 0.3, 1.0, 3.0])
    u = head(Levels(alpha=torch.ones(4), sigma=sigma))
    assert torch.allclose(u, torch.log1p(sigma**2), atol=0.15), u


def test_edm2_weighting_trains_and_reloads_from_the_cli(root, tmp_path):
    """A run with weight = edm2_uncertainty saves u's parameters with the model, and the
    sampler rebuilds the denoiser around them."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    args = ["train", str(root / "recipes/edm.toml"), "--no-progress"]
    for item in ["train.steps=6", "train.batch_size=16", "model.channels=8",
                 "model.channel_mult=[1]", "log.val_every=0", "log.sample_every=0",
                 "log.checkpoint_every=6", 'precision.name="fp32"', f'run.out_dir="{tmp_path}"',
                 'weight.name="edm2_uncertainty"', "weight.channels=16"]:
        args += ["--set", item]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    run = tmp_path / "edm"
    weights = load_file(str(run / "checkpoints/latest/model.safetensors"))
    assert weights["uncertainty.linear.weight"].shape == (1, 16)
    out = runner.invoke(app, ["sample", str(run), "-n", "2", "--steps", "2", "-o",
                              str(tmp_path / "s.png")])
    assert out.exit_code == 0, out.output
