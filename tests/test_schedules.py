"""Noise schedules against seed 001 §6.2-6.3, seed 003 §1.2-1.3, EDM's VP/VE and published values."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from difftk.cli import app
from difftk.plugins.noise_sampling import UniformT
from difftk.plugins.schedules import (
    EDM,
    VE,
    VP,
    Cosine,
    Exponential,
    Linear,
    LinearSigma,
    LogLinear,
    ScaledLinear,
    Sigmoid,
)
from difftk.recipe import load_recipe

runner = CliRunner()
T_SPACE = (Linear, ScaledLinear, Cosine, Exponential, Sigmoid)
SIGMA_SPACE = (EDM, VP, VE, LogLinear, LinearSigma)


def _seed_betas(name: str, T: int = 1000) -> list[float]:
    """Seed 001 §6.3's formulas, written out term by term in plain Python."""
    out = []
    for t in range(1, T + 1):
        r = (t - 1) / (T - 1)
        if name == "linear":
            out.append(1e-4 + (t - 1) * (0.02 - 1e-4) / (T - 1))
        elif name == "scaled_linear":
            out.append((math.sqrt(0.00085) + r * (math.sqrt(0.012) - math.sqrt(0.00085))) ** 2)
        elif name == "exponential":
            out.append(1e-4 * (0.02 / 1e-4) ** r)
        elif name == "sigmoid":
            out.append(1 / (1 + math.exp(-(-6 + 12 * r))) * (0.02 - 1e-4) + 1e-4)
        elif name == "cosine":
            f = lambda x: math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
            out.append(min(1 - f(t / T) / f((t - 1) / T), 0.999))
    return out


# alpha_bar at t = 1, T/2, T for T = 1000, worked out by hand from the formulas above
# (cumulative products of 1 - beta_t), printed to 6 significant digits.
HAND = {
    "linear": (0.9999, 0.0785872, 4.03583e-05),
    "scaled_linear": (0.99915, 0.27767, 0.0046601),
    "cosine": (0.999959, 0.493844, 2.42877e-09),
    "exponential": (0.9999, 0.780408, 0.0227922),
    "sigmoid": (0.999851, 0.301931, 3.96818e-05),
}


@pytest.mark.parametrize("cls", T_SPACE)
def test_t_space_schedules_follow_the_seed_formula(cls):
    s = cls()
    betas = _seed_betas(cls.name)
    assert torch.allclose(s.betas(), torch.tensor(betas, dtype=torch.float64), rtol=1e-12, atol=0)
    for t, expected in zip((1, 500, 1000), HAND[cls.name], strict=True):
        got = float(s.alpha_bar(torch.tensor([t])))
        print(f"{cls.name}: alpha_bar_{t} = {got:.6g} (hand: {expected:.6g})")
        assert got == pytest.approx(math.prod(1 - b for b in betas[:t]), rel=1e-10)
        assert got == pytest.approx(expected, rel=1e-5)
    lv = s.levels_at(torch.arange(1, 1001))
    # alpha_t, beta_t and alpha_bar_t agree with each other.
    t = torch.tensor([1, 500, 1000])
    assert torch.allclose(s.alpha_t(t), 1 - s.beta(t))
    assert float(lv.alpha[499].double() ** 2) == pytest.approx(HAND[cls.name][1], rel=1e-5)


def test_published_reference_values():
    # diffusers 0.42.1: sigmoid beta_1 = 1.492e-4, beta_T = 0.019951; cosine beta_1 = 4.128e-5.
    sig = Sigmoid().betas()
    assert float(sig[0]) == pytest.approx(1.492e-4, rel=1e-3)
    assert float(sig[-1]) == pytest.approx(0.019951, rel=1e-4)
    assert float(Cosine().betas()[0]) == pytest.approx(4.128e-5, rel=1e-3)
    # EDM's iDDPM u-table (M = 1000, C_2 = 0.008): sigma_max = u_0 ~ 20291.17,
    # sigma_min = u_{M-1} ~ 0.0064254: the cosine schedule's EDM-sigma range.
    lo, hi = Cosine().sigma_edm_range()
    assert hi == pytest.approx(20291.17, rel=1e-6)
    assert lo == pytest.approx(0.0064254, rel=1e-4)


@pytest.mark.parametrize("cls", T_SPACE + SIGMA_SPACE)
def test_snr_falls_monotonically_and_vp_schedules_preserve_variance(cls):
    s = cls()
    _, alpha, sigma = s.curve(2000)
    log_snr = 2 * (alpha.log() - sigma.log())
    assert torch.all(log_snr[1:] < log_snr[:-1])
    if s.variance_preserving:
        assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(alpha), atol=1e-12)
    else:
        assert torch.all(alpha == 1)


@pytest.mark.parametrize("cls", T_SPACE)
def test_zero_terminal_snr_reaches_zero_and_keeps_the_first_step(cls):
    plain, zero = cls(), cls(zero_terminal_snr=True)
    assert float(zero.alpha_bar(torch.tensor([zero.T]))) == 0.0
    assert float(zero.alpha_bar(torch.tensor([1]))) == pytest.approx(
        float(plain.alpha_bar(torch.tensor([1]))), rel=1e-12)
    assert math.isinf(zero.sigma_edm_range()[1])
    lv = zero.levels_at(torch.tensor([zero.T]))
    assert float(lv.alpha) == 0.0 and float(lv.sigma) == 1.0
    # Between t = T - 1 and T alpha falls linearly to 0, and t is recovered from logSNR.
    t = torch.tensor([1.0, 2.5, 500.25, 999.5, 999.9, 1000.0], dtype=torch.float64)
    alpha, sigma = zero.alpha_sigma(t)
    assert torch.allclose(zero.time_from_log_snr(2 * (alpha.log() - sigma.log())), t, atol=1e-9)


def test_the_seeds_one_line_zero_snr_rescaling_does_not_reach_zero():
    """beta' = beta (1 - alpha_bar_1) / (1 - alpha_bar_T) (seed 001 §6.3) shrinks every beta."""
    s = Linear()
    ab = s.table["alpha_bar"]
    betas = s.betas() * (1 - ab[1]) / (1 - ab[-1])
    ab_T = float(torch.prod(1 - betas))
    print(f"seed's rescaling: alpha_bar_T = {ab_T:.4f}; Lin et al.: 0")
    assert ab_T > 0.99


def test_rescale_to_T_keeps_the_decay_profile():
    """Seed 003 eq. 1.25: T = 1000 -> T' = 4000 scales the beta range by 1/4 (iDDPM's linear
    schedule at T = 4000 is 2.5e-5 .. 0.005), and alpha_bar at the same t/T barely moves."""
    base, long = Linear(), Linear(rescale_to_T=4000)
    assert long.num_steps == 4000
    assert float(long.betas()[0]) == pytest.approx(2.5e-5, rel=1e-12)
    assert float(long.betas()[-1]) == pytest.approx(0.005, rel=1e-12)
    diff = (base.table["log_snr"][1:] - long.table["log_snr"][4::4]).abs()
    assert float(diff.max()) < 0.08
    # Cosine is already a function of t / T: rescaling only changes T.
    assert torch.allclose(Cosine(rescale_to_T=4000).betas(), Cosine(T=4000).betas())


def test_posterior_at_zero_terminal_snr():
    """Seed 004 Theory II at t = T with alpha_bar_T = 0: mean = sqrt(alpha_bar_{T-1}) x0."""
    from difftk.diffusion.vlb import posterior

    s = Cosine(zero_terminal_snr=True)
    post = posterior(s, torch.tensor([float(s.T)], dtype=torch.float64))
    c_x0, c_xt, var = post.c_x0, post.c_xt, post.variance
    ab_prev = s.table["alpha_bar"][s.T - 1]
    assert float(c_x0) == pytest.approx(float(ab_prev.sqrt()), rel=1e-12)
    assert float(c_xt) == pytest.approx(0.0, abs=1e-12)
    assert float(var) == pytest.approx(float(1 - ab_prev), rel=1e-12)


def test_vp_matches_edm_closed_forms():
    s = VP()
    t = torch.tensor([1e-5, 0.1, 0.5, 1.0], dtype=torch.float64)
    u = (t - s.epsilon_t) / (1 - s.epsilon_t)
    sigma = s.sigma_at(u)
    expected = torch.sqrt(torch.exp(0.5 * 19.9 * t**2 + 0.1 * t) - 1)
    assert torch.allclose(sigma, expected, rtol=1e-12)
    assert torch.allclose(s.u_from_sigma(sigma), u, atol=1e-12)
    # alpha = exp(-1/2 int_0^t beta(s) ds), beta(s) = beta_min + beta_d s.
    alpha, _ = s.alpha_sigma(u)
    assert torch.allclose(alpha, torch.exp(-0.25 * 19.9 * t**2 - 0.5 * 0.1 * t), rtol=1e-12)
    print(f"vp: sigma(1) = {float(sigma[-1]):.3f}")
    assert float(sigma[-1]) == pytest.approx(152.167, abs=1e-3)


def test_ve_variance_grows_linearly_in_time():
    """Seed 003 eq. 1.9: Var[x_t] = Var[x0] + t; sigma^2 is linear in u, without bound."""
    s = VE()
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    var = s.sigma_at(u) ** 2
    step = torch.full((10,), (100.0**2 - 0.02**2) / 10, dtype=torch.float64)
    assert torch.allclose(var[1:] - var[:-1], step, rtol=1e-12)


@pytest.mark.parametrize("cls", SIGMA_SPACE + T_SPACE)
def test_time_maps_round_trip(cls):
    """time_from_log_snr inverts levels_at_time, and the network's time input is the table's t
    (t-space) or EDM's c_noise = ln(sigma_edm) / 4 (sigma-space)."""
    s = cls()
    lo, hi = s.time_range()
    t = torch.linspace(lo, hi, 7, dtype=torch.float64)[1:-1]
    levels = s.levels_at_time(t)
    expected = t if s.has_table else 0.25 * torch.log(levels.sigma_edm.double())
    assert torch.allclose(s.time_input(levels).double(), expected, rtol=1e-4)
    assert torch.allclose(s.time_from_log_snr(levels.log_snr.double()), t, rtol=1e-4)


@pytest.mark.parametrize("cls, cdf", [
    (LinearSigma, lambda s: (s - 0.002) / (80 - 0.002)),
    (LogLinear, lambda s: (np.log(s) - math.log(0.002)) / math.log(80 / 0.002)),
])
def test_change_of_variables_uniform_t_gives_the_sigma_law(cls, cdf):
    """Seed 001 §6.2: uniform t on linear_sigma is uniform sigma; on log_linear, log-uniform."""
    g = torch.Generator().manual_seed(0)
    levels = UniformT(discrete=False).sample(100_000, cls(), g, "cpu")
    sigma = levels.sigma_edm.double().numpy()
    result = stats.kstest(sigma, cdf)
    print(f"{cls.name}: KS statistic {result.statistic:.4f}, p = {result.pvalue:.3f}")
    assert result.pvalue > 0.01
    # The same draws are far from the other law: the test can fail.
    other = LogLinear if cls is LinearSigma else LinearSigma
    assert stats.kstest(UniformT(discrete=False).sample(100_000, other(), g, "cpu")
                        .sigma_edm.double().numpy(), cdf).pvalue < 1e-6


@pytest.mark.parametrize("cls", T_SPACE + SIGMA_SPACE)
def test_recipes_validate_with_every_schedule(root, cls):
    target = "v" if cls in T_SPACE else "edm"
    r = load_recipe(root / "recipes/toy2d.toml", [f"schedule.name={cls.name}",
                                                   f"target.name={target}"], warn=False)
    assert r.parts["schedule"].name == cls.name


def test_validate_refuses_eps_prediction_at_zero_terminal_snr(root):
    out = runner.invoke(app, ["validate", str(root / "recipes/ddpm.toml"), "--set",
                              "schedule.zero_terminal_snr=true"])
    assert out.exit_code == 2
    assert "target.name" in out.stderr and "zero terminal SNR" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_refuses_betas_outside_zero_one(root):
    out = runner.invoke(app, ["validate", str(root / "recipes/ddpm.toml"), "--set",
                              "schedule.rescale_to_T=10"])
    assert out.exit_code == 2
    assert "schedule" in out.stderr and "betas must lie in (0, 1)" in out.stderr


def test_plot_schedules_writes_png_and_csv(tmp_path):
    png, table = tmp_path / "snr.png", tmp_path / "snr.csv"
    out = runner.invoke(app, ["plot", "schedules", "linear", "linear:T=200", "vp", "-o", str(png),
                              "--csv", str(table)])
    assert out.exit_code == 0, out.stderr
    assert png.stat().st_size > 10_000
    rows = table.read_text().splitlines()
    assert rows[0] == "schedule,variant,t,t_over_T,alpha,sigma,alpha_bar,log_snr"
    # linear: 1000 plain + 1000 zero-terminal rows, linear:T=200: 400, vp: 1000.
    assert len(rows) == 1 + 2000 + 400 + 1000
    last_zero = [r for r in rows if r.startswith("linear,zero_terminal_snr,1000,")]
    assert last_zero and last_zero[0].endswith(",-inf")
    bad = runner.invoke(app, ["plot", "schedules", "linaer", "-o", str(png)])
    assert bad.exit_code != 0 and 'did you mean "linear"' in bad.stderr
