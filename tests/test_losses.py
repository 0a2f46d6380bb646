"""Losses: the target's MSE and its seed factors, the VLB, mean matching, the hybrid's
gradient isolation, and the recipes that use them (seed 003 ch. 3-6, seed 004)."""

import math
from pathlib import Path

import pytest
import torch

from difftk.diffusion.levels import Levels
from difftk.diffusion.loss import LossInputs
from difftk.errors import RecipeError
from difftk.eval.nll import nll_bits_per_dim
from difftk.plugins.losses import MSE, VLB, Hybrid, MeanMatching
from difftk.plugins.schedules import Linear
from difftk.plugins.targets import X0, EDMPrecond, Eps, Mean, Score, V
from difftk.plugins.variance import FixedSmall, LearnedRange
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

SCHEDULE = Linear()
ROOT = Path(__file__).resolve().parent.parent
TARGETS = [X0(), Eps(), V(), Score(), Mean(), EDMPrecond(sigma_data=0.5, predict="eps")]


def _batch(n=32, seed=0, t_lo=2):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(t_lo, 1001, (n,), generator=g)
    levels = SCHEDULE.levels_at(t).to(dtype=torch.float64)
    x0 = torch.rand(n, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    x_t = levels.alpha.view(-1, 1, 1, 1) * x0 + levels.sigma.view(-1, 1, 1, 1) * eps
    return x0, eps, x_t, levels


def _inputs(target, pred, x0, eps, x_t, levels, variance=FixedSmall(), extra=None):
    target = target.bind(SCHEDULE)
    return LossInputs(pred=pred, target=target.value(x0, eps, levels),
                      weight=torch.ones(x0.shape[0], dtype=x0.dtype), x0=x0, x_t=x_t, eps=eps,
                      levels=levels, schedule=SCHEDULE, parameterization=target,
                      variance=variance, extra=extra)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_target_mse_is_the_x0_mse_times_the_seeds_factor(target):
    """A perfect x0 gives zero loss; an x0 error costs factor x as much in the target's MSE:
    SNR for eps (seed 003 eq. 5.7), C_0^2 for the posterior mean (eq. 5.3)."""
    x0, eps, x_t, levels = _batch()
    bound = target.bind(SCHEDULE)
    perfect = bound.value(x0, eps, levels)
    assert torch.allclose(MSE()(_inputs(target, perfect, x0, eps, x_t, levels)),
                          torch.zeros(32, dtype=torch.float64), atol=1e-18)
    x0_hat = x0 + 0.01 * torch.randn_like(x0)
    alpha, sigma = levels.alpha.view(-1, 1, 1, 1), levels.sigma.view(-1, 1, 1, 1)
    pred = bound.value(x0_hat, (x_t - alpha * x0_hat) / sigma, levels)
    loss = MSE()(_inputs(target, pred, x0, eps, x_t, levels))
    x0_loss = (x0_hat - x0).square().flatten(1).mean(1)
    factor = bound.x0_error_factor(levels)
    assert torch.allclose(loss, factor * x0_loss, rtol=1e-8)
    t = levels.t.long()
    ab, ab_prev = SCHEDULE.table["alpha_bar"][t], SCHEDULE.table["alpha_bar"][t - 1]
    beta = SCHEDULE.table["betas"][t - 1]
    seed_factor = {"eps": ab / (1 - ab), "mean": ab_prev * beta**2 / (1 - ab) ** 2}
    if target.name in seed_factor:
        assert torch.allclose(factor, seed_factor[target.name], rtol=1e-6)


def test_reduction_sum_is_the_pixel_count_times_mean():
    """Seed 004 Coding I.5: the sum over d pixels is d times the per-pixel mean."""
    x0, eps, x_t, levels = _batch()
    inputs = _inputs(Eps(), torch.zeros_like(eps), x0, eps, x_t, levels)
    assert torch.allclose(MSE(reduction="sum")(inputs), 16 * MSE()(inputs))
    assert torch.allclose(MeanMatching(reduction="sum", estimator="analytic")(inputs),
                          16 * MeanMatching(estimator="analytic")(inputs))


def test_mean_matching_sample_estimator_averages_to_the_analytic_one():
    """Theory II.2: E_{x_{t-1}}||x_{t-1} - mu||^2 = ||mu_tilde - mu||^2 + rho_t per pixel."""
    x0, eps, x_t, levels = _batch(n=4)
    x0, eps, x_t = (v.repeat(1, 1, 16, 16) for v in (x0, eps, x_t))
    pred = 0.3 * torch.ones_like(x0)
    inputs = _inputs(Eps(), pred, x0, eps, x_t, levels)
    torch.manual_seed(0)
    sampled = torch.stack([MeanMatching()(inputs) for _ in range(50)]).mean(0)
    assert torch.allclose(sampled, MeanMatching(estimator="analytic")(inputs), rtol=0.02)


def test_mean_matching_on_eps_is_the_elbo_weighted_eps_mse():
    """Theory II.4: ||mu_tilde - mu_theta||^2 / (2 (1 - alpha_t)) =
    (1 - alpha_t) / (2 alpha_t (1 - alpha_bar_t)) ||eps - eps_hat||^2."""
    x0, eps, x_t, levels = _batch()
    eps_hat = eps + 0.1 * torch.randn_like(eps)
    inputs = _inputs(Eps(), eps_hat, x0, eps, x_t, levels)
    t = levels.t.long()
    beta, ab = SCHEDULE.table["betas"][t - 1], SCHEDULE.table["alpha_bar"][t]
    rho = SCHEDULE.table["posterior_variance"][t]
    weight = beta / (2 * (1 - beta) * (1 - ab))
    expected = weight * (eps - eps_hat).square().flatten(1).mean(1) + rho / (2 * beta)
    assert torch.allclose(MeanMatching(estimator="analytic")(inputs), expected, rtol=1e-8)


def test_vlb_of_a_perfect_mean_with_fixed_variance_is_the_prior_term():
    x0, eps, x_t, levels = _batch()
    inputs = _inputs(X0(), x0.clone(), x0, eps, x_t, levels)
    ab_T = float(SCHEDULE.table["alpha_bar"][-1])
    expected = 0.5 * (-1 - math.log(1 - ab_T) + (1 - ab_T) + ab_T * x0.square()).flatten(1).mean(1)
    assert torch.allclose(VLB()(inputs), expected / math.log(2), rtol=1e-6)


def test_hybrid_sends_no_gradient_from_the_vlb_into_the_mean():
    """Seed 003 §6.1: the VLB term sees a detached mean and trains only the variance."""
    x0, eps, x_t, levels = _batch()
    x0, eps, x_t, levels = x0.float(), eps.float(), x_t.float(), levels.to(dtype=torch.float32)
    pred = torch.randn_like(eps).requires_grad_(True)
    extra = torch.randn_like(eps).requires_grad_(True)
    inputs = _inputs(Eps(), pred, x0, eps, x_t, levels, LearnedRange(), extra)
    vlb_part = Hybrid()(inputs).sum() - MSE()(inputs).sum()
    vlb_part.backward()
    assert pred.grad is None or float(pred.grad.abs().max()) == 0.0
    assert float(extra.grad.abs().max()) > 0.0
    # Without the stop-gradient (the plain VLB) the mean does receive gradient.
    VLB()(inputs).sum().backward()
    assert float(pred.grad.abs().max()) > 0.0


def test_vlb_is_refused_without_a_table_and_learned_variance_without_a_vlb(registry):
    from difftk.recipe import validate

    base = {"data": {"name": "digits"}, "model": {"name": "unet"}, "target": {"name": "eps"},
            "noise_sampling": {"name": "uniform_t"}, "sampler": {"name": "ddpm"}}
    with pytest.raises(RecipeError, match='the vlb loss is defined by the steps'):
        validate({**base, "schedule": {"name": "edm"}, "loss": {"name": "vlb"},
                  "sampler": {"name": "heun"}}, registry)
    with pytest.raises(RecipeError, match='variance.name: the loss "mse" sends no gradient'):
        validate({**base, "schedule": {"name": "linear"}, "variance": {"name": "learned_log"}},
                 registry)


RECIPES = sorted((ROOT / "recipes").glob("foundations/*.toml")) + sorted(
    (ROOT / "recipes").glob("final_project/*.toml"))


def test_the_seed_recipes_validate():
    assert len(RECIPES) == 12
    for path in RECIPES:
        load_recipe(path, warn=False)


def test_a_learned_variance_recipe_trains_samples_and_scores(tmp_path):
    """End to end at toy size: hybrid loss with learned_range variance (seed 003 §6.2)."""
    sets = [f'run.out_dir="{tmp_path}"', "train.steps=2", "train.batch_size=8",
            "log.val_every=0", "log.checkpoint_every=0", "log.num_samples=2", "log.every=1",
            "log.tensorboard=false", "model.channels=8", "schedule.T=10", "sampler.steps=3"]
    recipe = load_recipe(ROOT / "recipes/foundations/10_eps_learned_range_hybrid.toml", sets,
                         warn=False)
    trainer = Trainer(recipe, make_runtime("cpu"), progress=False)
    trainer.fit()
    assert trainer.spec.out_channels == 2
    x = trainer.monitor.draw_samples(2)
    assert x.shape == (2, 1, 8, 8) and bool(torch.isfinite(x).all())
    scores = nll_bits_per_dim(trainer.ema.module, trainer.data.heldout[:4], batch_size=4,
                              generator=torch.Generator().manual_seed(0))
    assert math.isfinite(scores["nll_bpd"]) and scores["nll_bpd"] > 0
    assert scores["mean_mse"] > 0


def test_levels_weight_scales_the_vlb():
    """The noise sampler's importance weight multiplies the per-sample loss in the objective,
    once, whatever the loss (the VLB does not read the weighting's weight)."""
    from difftk.diffusion.denoiser import Prediction
    from difftk.diffusion.objective import Objective
    from difftk.plugins.noise_sampling import UniformT
    from difftk.plugins.weights import Uniform

    x0, eps, x_t, levels = _batch()
    weighted = Levels(levels.alpha, levels.sigma, levels.t, torch.full((32,), 2.0,
                                                                       dtype=torch.float64))
    objective = Objective(SCHEDULE, Eps().bind(SCHEDULE), FixedSmall(), Uniform(), UniformT(),
                          VLB())

    def denoiser(x_t, levels, labels):  # an eps estimate, a tenth off the draw's scale
        return Prediction(pred=0.9 * x_t / levels.sigma.view(-1, 1, 1, 1), extra=None)

    a, _ = objective(denoiser, x0, None, torch.Generator().manual_seed(0), levels)
    b, _ = objective(denoiser, x0, None, torch.Generator().manual_seed(0), weighted)
    assert torch.allclose(b, 2 * a)
