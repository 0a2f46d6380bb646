"""Seed 001 §5.2: a weighting and a noise-level distribution are two views of one integrand.
``from_weighting`` draws q proportional to w p; with its weights w p / q the expected loss and
gradient are those of uniform t with w."""

import pytest
import torch

from difftk.analysis.weighting_duality import compare_views
from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.objective import Objective
from difftk.plugins.losses import MSE
from difftk.plugins.noise_sampling import FromWeighting, UniformT
from difftk.plugins.schedules import EDM, Linear
from difftk.plugins.targets import Eps
from difftk.plugins.variance import FixedSmall
from difftk.plugins.weights import MinSNR, Uniform

MIN_SNR = {"name": "min_snr", "gamma": 5.0}


@pytest.mark.parametrize("schedule", [Linear(), EDM()], ids=["linear", "edm"])
def test_the_sampling_view_has_the_weighted_expectation(schedule):
    """E_q[(w p / q) f] = E_p[w f] for a smooth f of the level (Monte Carlo, 200,000 draws)."""
    sampler = FromWeighting(weighting=MIN_SNR)
    levels = sampler.sample(200_000, schedule, torch.Generator().manual_seed(0), "cpu")
    uniform = UniformT().sample(200_000, schedule, torch.Generator().manual_seed(1), "cpu")

    def f(lv):
        return torch.sin(lv.log_snr.double() / 3)

    w = MinSNR(gamma=5.0).at(uniform.to(dtype=torch.float64), schedule)
    sampled, weighted = levels.weight.double() * f(levels), w * f(uniform)
    se = ((sampled.var() + weighted.var()) / 200_000).sqrt()
    assert float((sampled.mean() - weighted.mean()).abs()) < 4 * float(se)
    grid = torch.linspace(-30, 30, 60_001, dtype=torch.float64)
    assert float(torch.trapezoid(sampler.log_snr_density(grid, schedule), grid)) == \
        pytest.approx(1.0, abs=2e-3)


def test_both_views_give_the_same_expected_gradient():
    """A small eps network on 2-D data: the mean minibatch gradients of min-SNR weighting
    under uniform t and of uniform weight under q ~ min-SNR agree within 4 standard errors."""
    torch.manual_seed(0)
    schedule = Linear(T=200)
    net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net

        def forward(self, x, time, labels=None):
            return self.body(torch.cat([x, time[:, None] / 200], 1))

    denoiser = Denoiser(Net(), schedule, Eps(), FixedSmall(), pixel_range=None)
    data = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.3
    weighting = Objective.for_denoiser(denoiser, MinSNR(gamma=5.0), UniformT(), MSE())
    sampling = Objective.for_denoiser(denoiser, Uniform(relative_to="x0"),
                                      FromWeighting(weighting=MIN_SNR), MSE())
    report = compare_views(denoiser, weighting, sampling, data, draws=150, batch=64)
    assert report.difference_in_standard_errors < 4, report
    assert report.relative_difference < 0.5, report
    assert report.variance_weighting > 0 and report.variance_sampling > 0


def test_from_weighting_asks_for_uniform_weight_on_the_same_mse():
    from difftk.plugins.weights import EDMWeight

    sampler = FromWeighting(weighting=MIN_SNR)
    assert sampler.check({"weight": Uniform(relative_to="x0")}) == []
    (field, sentence), = sampler.check({"weight": EDMWeight(sigma_data=0.5)})
    assert field == "weighting" and "counts twice" in sentence
    (field, sentence), = FromWeighting(weighting={"name": "min_snrr"}).check({})
    assert field == "weighting" and "min_snr" in sentence
