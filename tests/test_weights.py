"""Every built-in weighting against its formula, its limits and conventions; the ELBO weight
against the closed-form KL of seed 003; the weights figure and its CSV."""

import csv
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence
from typer.testing import CliRunner

from difftk.cli import app
from difftk.diffusion.levels import Levels
from difftk.plugins.schedules import Linear
from difftk.plugins.targets import X0, Eps, V
from difftk.plugins.weights import (
    ELBO,
    P2,
    EDMWeight,
    LogSNR,
    MaxSNR,
    MinSNR,
    SNRClip,
    SNRPow,
    SNRWeight,
    Uniform,
)

SNRS = [1e-4, 1e-2, 1.0, 1e2, 1e4]

FORMULAS = [
    (Uniform(), lambda s: 1.0),
    (SNRWeight(), lambda s: s),
    (SNRPow(gamma=0.5), lambda s: math.sqrt(s)),
    (SNRPow(gamma=2.0), lambda s: s**2),
    (LogSNR(), lambda s: math.log(1 + s)),
    (MinSNR(gamma=5.0), lambda s: min(s, 5.0)),
    (MaxSNR(gamma=1.0), lambda s: max(s, 1.0)),
    (SNRClip(tau_min=0.1, tau_max=20.0), lambda s: min(max(s, 0.1), 20.0)),
    (P2(kappa=1.0, gamma=0.5), lambda s: 1 / (1 + s) ** 0.5),
    (P2(kappa=0.3, gamma=1.0), lambda s: 1 / (0.3 + s)),
    # EDM: (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 with sigma^2 = 1 / SNR.
    (EDMWeight(sigma_data=0.5), lambda s: (1 / s + 0.25) / (0.25 / s)),
]


@pytest.mark.parametrize("snr", SNRS)
@pytest.mark.parametrize("weighting, formula", FORMULAS,
                         ids=[f"{w.name}-{i}" for i, (w, _) in enumerate(FORMULAS)])
def test_weight_against_its_formula(weighting, formula, snr):
    w = weighting(torch.tensor([snr], dtype=torch.float64))
    assert float(w) == pytest.approx(formula(snr), rel=1e-12)


def test_paper_defaults_and_conventions():
    """Defaults reproduce the papers; the convention sits in each docstring."""
    assert (MinSNR().gamma, MinSNR().relative_to) == (5.0, "x0")  # Hang et al. 2023
    assert (MaxSNR().gamma, MaxSNR().relative_to) == (1.0, "x0")  # Salimans & Ho 2022
    assert (P2().kappa, P2().gamma, P2().relative_to) == (1.0, 0.5, "target")  # Choi et al.
    assert (SNRClip().tau_min, SNRClip().tau_max) == (1.0, 5.0)
    assert EDMWeight().relative_to == "x0" and ELBO().relative_to == "x0"
    for cls in (Uniform, SNRWeight, SNRPow, LogSNR, MinSNR, MaxSNR, SNRClip, P2, EDMWeight, ELBO):
        assert "relative_to" in (cls.__doc__ or ""), cls.name


def test_p2_limits():
    s = torch.tensor([1e-14, 1e14], dtype=torch.float64)
    for kappa, gamma in ((1.0, 0.5), (0.5, 1.0), (2.0, 2.0)):
        w = P2(kappa=kappa, gamma=gamma)(s)
        assert float(w[0]) == pytest.approx(kappa ** -gamma, rel=1e-10)  # SNR -> 0
        assert float(w[1] * s[1] ** gamma) == pytest.approx(1.0, rel=1e-10)  # ~ SNR^-gamma
    assert float(P2(gamma=0.0)(s)[1]) == 1.0  # gamma = 0 is uniform


def test_snr_clip_limits_and_order():
    clip = SNRClip(tau_min=0.5, tau_max=8.0)
    s = torch.logspace(-12, 12, 97, dtype=torch.float64)
    w = clip(s)
    assert torch.all(w[s < 0.5] == 0.5) and torch.all(w[s > 8.0] == 8.0)
    inside = (s >= 0.5) & (s <= 8.0)
    assert torch.equal(w[inside], s[inside])
    # The trapezoid is max_snr's floor then min_snr's cap.
    assert torch.equal(w, MinSNR(gamma=8.0)(MaxSNR(gamma=0.5)(s)))
    with pytest.raises(ValueError, match="tau_min must not exceed tau_max"):
        SNRClip(tau_min=10.0, tau_max=1.0)


def _vp_levels(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_snr = torch.empty(n, dtype=torch.float64).uniform_(-8, 8, generator=g)
    return Levels(alpha=torch.sigmoid(log_snr).sqrt(), sigma=torch.sigmoid(-log_snr).sqrt())


def test_min_snr_relative_to_eps_and_v_is_diffusers_formula():
    """diffusers' train_text_to_image.py: stack([snr, gamma]).min(1)[0], then / snr for eps
    and / (snr + 1) for v_prediction."""
    levels = _vp_levels()
    snr = levels.snr
    base = torch.stack([snr, 5.0 * torch.ones_like(snr)], dim=1).min(dim=1)[0]
    w = MinSNR(gamma=5.0)
    assert torch.allclose(w.on_target(levels, Eps()).double(), base / snr, rtol=1e-6)
    assert torch.allclose(w.on_target(levels, V()).double(), base / (snr + 1), rtol=1e-6)
    assert torch.allclose(w.on_target(levels, X0()).double(), base, rtol=1e-6)
    # relative_to = "target" applies min(SNR, gamma) to the eps-MSE as written.
    assert torch.allclose(MinSNR(relative_to="target").on_target(levels, Eps()).double(), base,
                          rtol=1e-6)


def test_snr_on_x0_is_l_simple_of_an_eps_model():
    """||eps err||^2 = SNR ||x0 err||^2 (seed 003 eq. 5.7): SNR on the x0-MSE is the unweighted
    eps-MSE, and the unweighted x0-MSE is the eps-MSE divided by SNR."""
    levels = _vp_levels()
    ones = torch.ones(len(levels), dtype=torch.float64)
    assert torch.allclose(SNRWeight(relative_to="x0").on_target(levels, Eps()).double(), ones,
                          rtol=1e-6)
    assert torch.allclose(Uniform(relative_to="x0").on_target(levels, Eps()).double(),
                          1 / levels.snr, rtol=1e-6)
    assert torch.allclose(SNRWeight().on_target(levels, Eps()).double(), levels.snr, rtol=1e-6)


# ------------------------------------------------------------------ ELBO
def _step(schedule, t, seed=0, dim=5):
    """x0, eps, x_t, a perturbed eps estimate, and the posterior of each step t (float64)."""
    g = torch.Generator().manual_seed(seed)
    n = t.shape[0]
    tab = schedule.table
    x0 = torch.randn(n, dim, generator=g, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=g, dtype=torch.float64)
    eps_hat = eps + 0.3 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    ab = tab["alpha_bar"][t][:, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    c_x0, c_xt = tab["posterior_c_x0"][t][:, None], tab["posterior_c_xt"][t][:, None]
    x0_hat = (x_t - (1 - ab).sqrt() * eps_hat) / ab.sqrt()
    mu_tilde = c_x0 * x0 + c_xt * x_t  # q(x_{t-1} | x_t, x0), seed 003 eq. 2.26
    mu_theta = c_x0 * x0_hat + c_xt * x_t
    return eps, eps_hat, mu_tilde, mu_theta


def test_elbo_weighted_eps_mse_is_the_kl_term_per_sample():
    """sum_d KL(q(x_{t-1}|x_t,x0) || N(mu_theta, beta_tilde_t)) / D = w_t mean_d (eps - eps_hat)^2
    (seed 003 eq. 4.6 with the eps form of eq. 5.7), per sample, t = 2..T."""
    schedule = Linear()
    t = torch.tensor([2, 3, 10, 57, 250, 500, 999, 1000])
    eps, eps_hat, mu_tilde, mu_theta = _step(schedule, t)
    std = schedule.table["posterior_variance"][t][:, None].sqrt().expand_as(mu_tilde)
    kl = kl_divergence(Normal(mu_tilde, std), Normal(mu_theta, std)).mean(1)
    levels = schedule.levels_at(t)
    w = ELBO().on_target(levels, Eps(), schedule).double()
    weighted = w * (eps - eps_hat).square().mean(1)
    assert torch.allclose(weighted, kl, rtol=1e-6, atol=0), (weighted / kl - 1).abs().max()


def test_elbo_with_beta_variance_is_ho_et_al_eq_12():
    """s_t^2 = beta_t: w_eps = beta_t / (2 alpha_t (1 - alpha_bar_t)) (Ho et al. 2020 eq. 12),
    and it is the theta-dependent part of the KL to N(mu_theta, beta_t)."""
    schedule = Linear()
    t = torch.tensor([2, 40, 700, 1000])
    tab = schedule.table
    beta, ab = tab["betas"][t - 1], tab["alpha_bar"][t]
    w = ELBO(variance="fixed_large").on_target(schedule.levels_at(t), Eps(), schedule).double()
    assert torch.allclose(w, beta / (2 * (1 - beta) * (1 - ab)), rtol=1e-6)
    eps, eps_hat, mu_tilde, mu_theta = _step(schedule, t, seed=1)
    q = Normal(mu_tilde, tab["posterior_variance"][t][:, None].sqrt().expand_as(mu_tilde))
    p_std = beta[:, None].sqrt().expand_as(mu_tilde)
    kl = kl_divergence(q, Normal(mu_theta, p_std)).mean(1)
    kl_exact_mean = kl_divergence(q, Normal(mu_tilde, p_std)).mean(1)
    assert torch.allclose(w * (eps - eps_hat).square().mean(1), kl - kl_exact_mean, rtol=1e-6)


def test_elbo_is_half_the_snr_drop_on_x0_and_the_same_bound_for_every_target():
    """With the posterior variance, w on the x0-MSE is (SNR_{t-1} - SNR_t) / 2 (seed 003 eq.
    5.3), and relative_to = "x0" gives every target the same bound."""
    schedule = Linear()
    t = torch.arange(2, 1001)
    levels = schedule.levels_at(t)
    w_x0 = ELBO().at(levels, schedule)
    snr = schedule.table["alpha_bar"] / (1 - schedule.table["alpha_bar"])
    assert torch.allclose(w_x0, (snr[t - 1] - snr[t]) / 2, rtol=1e-9)
    for target in (Eps(), V()):
        k = target.x0_error_factor(levels).double()
        assert torch.allclose(ELBO().on_target(levels, target, schedule).double() * k, w_x0,
                              rtol=1e-5)


def test_elbo_at_t1_is_the_gaussian_decoder_and_interpolates_between_steps():
    schedule = Linear()
    beta1 = float(schedule.table["betas"][0])
    w1 = ELBO(variance="fixed_large").at(schedule.levels_at(torch.tensor([1])), schedule)
    assert float(w1) == pytest.approx(1 / (2 * beta1), rel=1e-12)  # -log N(x0; x0_hat, beta_1)
    levels = schedule.levels_at(torch.tensor([10.0, 10.5, 11.0]))
    w = ELBO().at(levels, schedule)
    assert float(w[1]) == pytest.approx(math.sqrt(float(w[0] * w[2])), rel=1e-9)
    # Without t the level is located in the table through its logSNR.
    no_t = Levels(alpha=levels.alpha, sigma=levels.sigma)
    assert torch.allclose(ELBO().at(no_t, schedule), w, rtol=1e-3)


def test_elbo_needs_a_table_and_matches_the_recipe_variance(root):
    from difftk.errors import RecipeError
    from difftk.recipe import load_recipe

    with pytest.raises(RecipeError, match="elbo weighting is defined by the steps of a table"):
        load_recipe(root / "recipes/toy2d.toml", ["weight.name=elbo"], warn=False)
    with pytest.raises(RecipeError, match='needs variance = "fixed_large"'):
        load_recipe(root / "recipes/ddpm.toml", ['weight.name="elbo"',
                                                 'variance.name="fixed_large"'], warn=False)
    r = load_recipe(root / "recipes/ddpm.toml", ['weight.name="elbo"', 'variance.name="fixed_large"',
                                                 'weight.variance="fixed_large"'], warn=False)
    assert r.parts["weight"].variance == "fixed_large"
    with pytest.raises(TypeError, match="not a function of SNR alone"):
        ELBO()(torch.ones(1))


def test_objective_gives_the_weighting_its_schedule():
    """The training objective evaluates elbo on its own schedule (one table lookup per sample)."""
    from difftk.diffusion.denoiser import Prediction
    from difftk.diffusion.objective import Objective
    from difftk.plugins.losses import MSE
    from difftk.plugins.noise_sampling import UniformT
    from difftk.plugins.variance import FixedSmall

    schedule = Linear()
    objective = Objective(schedule, Eps().bind(schedule), FixedSmall(), ELBO(), UniformT(), MSE())
    delta = 0.1

    def denoiser(x_t, levels, labels):  # eps estimate off by delta everywhere
        return Prediction(pred=torch.zeros_like(x_t) + delta, extra=None)

    x0 = torch.zeros(16, 3)
    per_sample, levels = objective(denoiser, x0, None, torch.Generator().manual_seed(0))
    # Replay the objective's draws: levels first, then eps. With x0 = 0 the eps error is
    # delta - eps, and the loss is the ELBO weight of each sample's own t times its mean square.
    replay = torch.Generator().manual_seed(0)
    UniformT().sample(16, schedule, replay, "cpu")
    eps = torch.randn(x0.shape, generator=replay)
    w = ELBO().on_target(levels, Eps(), schedule)
    assert len(set(levels.t.tolist())) > 8  # many different steps in one batch
    assert torch.allclose(per_sample, w * (delta - eps).square().mean(1), rtol=1e-5)


# ------------------------------------------------------------------ figure and CSV
def test_plot_weights_writes_png_and_csv(tmp_path):
    png, table = tmp_path / "w.png", tmp_path / "w.csv"
    out = CliRunner().invoke(app, ["plot", "weights", "min_snr", "p2:gamma=1", "elbo", "-o", str(png),
                                   "--csv", str(table), "--target", "eps", "--target", "v"])
    assert out.exit_code == 0, out.output
    assert png.stat().st_size > 5000
    rows = list(csv.DictReader(table.open()))
    assert set(rows[0]) == {"name", "relative_to", "log_snr", "t", "w", "x0_weight_eps",
                            "x0_weight_v"}
    assert {r["name"] for r in rows} == {"min_snr", "p2:gamma=1", "elbo"}
    assert sum(r["name"] == "elbo" for r in rows) == 1000  # the linear table's t = 1..T
    for r in rows:
        snr, w = math.exp(float(r["log_snr"])), float(r["w"])
        if r["name"] == "min_snr":  # on x0: the effective x0 weight is w itself for every target
            assert w == pytest.approx(min(snr, 5.0), rel=1e-4)
            assert float(r["x0_weight_eps"]) == pytest.approx(w, rel=1e-6)
        elif r["name"] == "p2:gamma=1":  # on the target: x0 weight = w k (k = SNR, SNR + 1)
            assert w == pytest.approx(1 / (1 + snr), rel=1e-4)
            assert float(r["x0_weight_eps"]) == pytest.approx(w * snr, rel=1e-4)
            assert float(r["x0_weight_v"]) == pytest.approx(w * (snr + 1), rel=1e-4)


def test_plot_weights_errors_are_one_sentence(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["plot", "weights", "elbo", "--schedule", "edm", "-o",
                              str(tmp_path / "x.png")])
    assert out.exit_code == 1 and "t-space schedule" in out.output
    out = runner.invoke(app, ["plot", "weights", "min_snr:gamma=-1", "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 2 and "greater than 0" in out.output
    out = runner.invoke(app, ["plot", "weights", "min_snrr", "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 2 and 'did you mean "min_snr"' in out.output


def test_run_figure_of_the_weighting(root):
    from difftk.analysis.run_figures import RUN_FIGURES
    from difftk.analysis.weight_figures import run_weight_figure
    from difftk.recipe import load_recipe

    assert run_weight_figure in RUN_FIGURES
    for recipe, sets in (("ddpm", ['weight.name="elbo"']), ("toy2d", ["weight.sigma_data=0.5",
                                                                      "target.sigma_data=0.5"])):
        r = load_recipe(root / f"recipes/{recipe}.toml", sets, warn=False)
        [(tag, image)] = run_weight_figure(r)
        assert tag == "weight" and image.ndim == 3 and image.shape[2] == 3 and image.std() > 0


def test_p2_on_the_eps_mse_is_the_papers_weight_whatever_the_target():
    """Choi et al. 2022 eq. 8 weights an eps-model's eps-MSE by 1 / (k + SNR)^gamma. With
    relative_to = "eps" an x0-model or a v-model gets the same loss: its own MSE times the
    weight that makes it w ||eps err||^2 (||eps err||^2 = SNR ||x0 err||^2)."""
    levels = _vp_levels()
    snr = levels.snr.double()
    paper = (1.0 + snr).pow(-0.5)
    p2 = P2(relative_to="eps")
    assert torch.allclose(p2.on_target(levels, Eps()).double(), paper, rtol=1e-6)
    x0_err, v_err = torch.rand(len(levels), dtype=torch.float64), None
    eps_err = snr * x0_err                      # ||eps err||^2 for the same x0 error
    v_err = (snr + 1) * x0_err                  # ||v err||^2 = (SNR + 1) ||x0 err||^2
    for target, own_err in ((X0(), x0_err), (V(), v_err)):
        assert torch.allclose(p2.on_target(levels, target).double() * own_err, paper * eps_err,
                              rtol=1e-5), target.name
    assert torch.allclose(p2.on_x0(levels, X0()), paper * snr, rtol=1e-12)
