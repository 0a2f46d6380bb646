"""Samplers against denoisers that are exact in closed form (Gaussian data, a 2-D mixture).

For Gaussian data N(mu, s^2 I) the probability-flow ODE in EDM coordinates x = x0 +
sigma eps is solved exactly by x(sigma) - mu = sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma0^2)
(x(sigma0) - mu), so a deterministic sampler started at x = sigma0 z must return
mu + s (sigma0 z - mu) / sqrt(s^2 + sigma0^2), sample by sample.
"""

import math

import pytest
import torch

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.grids import karras_sigmas, make_grid, table_timesteps
from difftk.diffusion.table_rule import table_problems
from difftk.plugins.samplers import DDIM, DDPM, DPMpp2M, Euler, EulerAncestral, Heun
from difftk.plugins.schedules import EDM, Linear
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedLarge, FixedSmall, LearnedRange
from difftk.testing.denoisers import GaussianIdealNet, gaussian_denoiser, mixture_denoiser

MU, S = 0.5, 0.3


def _noise(n, dim, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _draw(sampler, schedule, n=2000, seed=0, denoiser=None, dim=4, labels=None, gen_seed=None):
    noise = _noise(n, dim, seed)
    g = torch.Generator().manual_seed(seed if gen_seed is None else gen_seed)
    return sampler.sample(denoiser or gaussian_denoiser(schedule, MU, S), noise, g, labels)


def _exact_ode(sampler, schedule, noise):
    sigma0 = float(sampler.noise_levels(schedule).sigma_edm[0])
    return MU + S * (sigma0 * noise.double() - MU) / math.sqrt(S**2 + sigma0**2)


def _assert_matches_gaussian(x):
    n = x.numel()
    assert float(x.mean()) == pytest.approx(MU, abs=4 * S / math.sqrt(n))
    assert float(x.std()) == pytest.approx(S, rel=0.03)


# ---------------------------------------------------------------- grids
def test_karras_grid_is_eq_5():
    sig = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert sig.shape == (19,) and sig[-1] == 0
    assert float(sig[0]) == pytest.approx(80.0, rel=1e-12)
    assert float(sig[17]) == pytest.approx(0.002, rel=1e-12)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(sig[i]) == pytest.approx(expected, rel=1e-12)


def test_table_spacings_are_diffusers_plus_one():
    """diffusers (research/diffusers_notes.md §1.8), T = 1000, 10 steps, 0-based:
    linspace 999, 888, ..., 0; leading 900, ..., 0; trailing 999, 899, ..., 99."""
    lin = table_timesteps("linspace", 1000, 10)
    assert lin.tolist() == [1000.0, 889.0, 778.0, 667.0, 556.0, 445.0, 334.0, 223.0, 112.0, 1.0]
    assert table_timesteps("leading", 1000, 10).tolist() == [901.0 - 100 * k for k in range(10)]
    assert table_timesteps("trailing", 1000, 10).tolist() == [1000.0 - 100 * k for k in range(10)]


@pytest.mark.parametrize("kind", ["karras", "uniform_t", "log_sigma", "linspace", "leading",
                                  "trailing"])
def test_every_grid_decreases_to_the_clean_end_in_both_coordinates(kind):
    schedule = Linear()
    grid = make_grid(kind, schedule, 12)
    assert len(grid) == 13 and grid.sigma[-1] == 0 and grid.sigma_edm[-1] == 0
    assert torch.all(grid.sigma_edm[1:] < grid.sigma_edm[:-1])
    assert torch.allclose(grid.sigma, grid.alpha * grid.sigma_edm, rtol=1e-6)
    assert torch.allclose(grid.alpha**2 + grid.sigma**2, torch.ones(13, dtype=torch.float64),
                          atol=1e-6)  # the linear schedule is variance preserving
    if kind == "log_sigma":
        steps = torch.diff(torch.log(grid.sigma_edm[:-1]))
        assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-9)
    if kind in ("uniform_t", "linspace", "trailing"):
        assert float(grid.t[0]) == 1000.0  # these start at the process's true end
    if kind in ("linspace", "leading", "trailing"):
        ab = schedule.table["alpha_bar"][grid.t[:-1].long()]
        assert torch.allclose(grid.alpha[:-1], ab.sqrt(), rtol=1e-12)


def test_table_spacing_on_a_schedule_without_table_fails_validation_with_a_sentence():
    (path, msg), = table_problems({"sampler": DDIM(grid="trailing"), "schedule": EDM()})
    assert path == "sampler.grid" and "has none" in msg
    assert table_problems({"sampler": DDIM(grid="karras"), "schedule": EDM()}) == []
    assert table_problems({"sampler": DDPM(), "schedule": EDM()})[0][0] == "sampler.name"


# ---------------------------------------------------------------- every sampler
DETERMINISTIC = [
    (Euler(steps=512), 512), (Heun(steps=48), 95), (DPMpp2M(steps=64), 64),
    (DDIM(steps=512, grid="log_sigma"), 512),
]


@pytest.mark.parametrize("schedule", [EDM(), Linear()], ids=["edm", "linear"])
@pytest.mark.parametrize("sampler,nfe", DETERMINISTIC, ids=[s.name for s, _ in DETERMINISTIC])
def test_deterministic_samplers_solve_the_gaussian_ode_sample_by_sample(sampler, nfe, schedule):
    noise = _noise(500, 4)
    result = sampler.sample(gaussian_denoiser(schedule, MU, S), noise, torch.Generator())
    assert result.nfe == nfe
    exact = _exact_ode(sampler, schedule, noise)
    assert float((result.x.double() - exact).abs().max()) < 0.01
    _assert_matches_gaussian(result.x)


@pytest.mark.parametrize("sampler", [Euler(steps=8), Heun(steps=8), DPMpp2M(steps=8),
                                     DDIM(steps=8)], ids=lambda s: s.name)
def test_deterministic_samplers_ignore_the_generator(sampler):
    a = _draw(sampler, Linear(), n=64, gen_seed=1).x
    b = _draw(sampler, Linear(), n=64, gen_seed=2).x
    assert torch.equal(a, b)


STOCHASTIC = [
    (EulerAncestral(steps=400), 400), (DDIM(steps=400, eta=1.0, grid="log_sigma"), 400),
    (DDPM(steps=400, grid="log_sigma"), 400), (Heun(steps=100, S_churn=10), 199)]


@pytest.mark.parametrize("sampler,nfe", STOCHASTIC, ids=[s.name for s, _ in STOCHASTIC])
def test_stochastic_samplers_recover_the_gaussian_and_use_the_generator(sampler, nfe):
    """Ancestral steps omit Var(x0 | x_t) from the step's variance, so they need finer
    grids than the ODE samplers to keep the spread (400 levels here)."""
    result = _draw(sampler, Linear())
    assert result.nfe == nfe
    _assert_matches_gaussian(result.x)
    other = _draw(sampler, Linear(), n=64, gen_seed=7).x
    assert not torch.equal(other, _draw(sampler, Linear(), n=64).x)


def test_ddpm_on_all_T_steps_recovers_the_gaussian():
    result = _draw(DDPM(), Linear(), n=1000)
    _assert_matches_gaussian(result.x)
    assert result.nfe == 1000


def test_zero_terminal_snr_starts_at_alpha_zero_and_every_sampler_stays_finite():
    schedule = Linear(zero_terminal_snr=True)
    for sampler in (DDIM(steps=100, grid="uniform_t"), DPMpp2M(steps=100, grid="uniform_t"),
                    DDPM(steps=100, grid="trailing"), Heun(steps=64, grid="uniform_t")):
        grid = sampler.noise_levels(schedule)
        assert grid.alpha[0] == 0 and math.isinf(grid.sigma_edm[0])
        x = _draw(sampler, schedule, n=1000).x
        assert torch.isfinite(x).all(), sampler.name
        assert float(x.mean()) == pytest.approx(MU, abs=0.02), sampler.name
        assert float(x.std()) == pytest.approx(S, rel=0.08), sampler.name


def test_orders_of_accuracy_euler_one_heun_and_dpmpp_2m_two():
    """Doubling the steps divides Euler's (and DDIM's) error by ~2, Heun's and DPM++(2M)'s
    by ~4; the error is measured against the exact ODE solution."""
    schedule, noise = EDM(), _noise(256, 4)
    denoiser = gaussian_denoiser(schedule, MU, S)

    def order(cls, **kw):
        errs = []
        for steps in (32, 64):
            sampler = cls(steps=steps, **kw)
            x = sampler.sample(denoiser, noise, torch.Generator()).x.double()
            errs.append(float((x - _exact_ode(sampler, schedule, noise)).abs().max()))
        return math.log2(errs[0] / errs[1])

    assert 0.8 < order(Euler) < 1.3
    assert 0.8 < order(DDIM, grid="karras") < 1.3
    assert 1.7 < order(Heun) < 2.6
    assert 1.7 < order(DPMpp2M) < 2.6


# ---------------------------------------------------------------- variance at sampling
def test_fixed_large_is_exact_for_standard_normal_data_on_respaced_steps():
    """Ho et al. 2020 §3.2: sigma^2 = beta_t is optimal for x0 ~ N(0, I), beta_tilde_t for a
    point mass. On 20 respaced steps fixed_large keeps unit variance; fixed_small loses it."""
    schedule = Linear()
    large = Denoiser(GaussianIdealNet(schedule, 0.0, 1.0), schedule, X0(), FixedLarge())
    small = Denoiser(GaussianIdealNet(schedule, 0.0, 1.0), schedule, X0(), FixedSmall())
    x_large = _draw(DDPM(steps=20), schedule, denoiser=large).x
    x_small = _draw(DDPM(steps=20), schedule, denoiser=small).x
    assert float(x_large.std()) == pytest.approx(1.0, rel=0.02)
    assert float(x_small.std()) < 0.95


class _WithVarianceChannels(torch.nn.Module):
    """The Gaussian ideal net plus constant variance channels (as a learned-variance net)."""

    def __init__(self, net, value):
        super().__init__()
        self.net, self.value = net, value

    def forward(self, x, time, labels=None):
        out = self.net(x, time, labels)
        return torch.cat([out, torch.full_like(out, self.value)], dim=1)


@pytest.mark.parametrize("value,fixed", [(1.0, FixedLarge()), (-1.0, FixedSmall())])
def test_learned_variance_channels_reach_the_respaced_step(value, fixed):
    """learned_range interpolates log beta (out = 1) and log beta_tilde (out = -1) of the
    respaced step (seed 003 eq. 6.3-6.4), so at the ends it samples as the fixed ones."""
    schedule = Linear()
    net = _WithVarianceChannels(GaussianIdealNet(schedule, MU, S), value)
    learned = Denoiser(net, schedule, X0(), LearnedRange(squash=False))
    reference = Denoiser(GaussianIdealNet(schedule, MU, S), schedule, X0(), fixed)
    a = _draw(DDPM(steps=25), schedule, n=200, denoiser=learned).x
    b = _draw(DDPM(steps=25), schedule, n=200, denoiser=reference).x
    assert torch.allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------- the 2-D mixture
@pytest.mark.parametrize("sampler", [DDPM(steps=100), Heun(steps=24), DPMpp2M(steps=24),
                                     DDIM(steps=50), EulerAncestral(steps=100)],
                         ids=lambda s: s.name)
def test_samplers_recover_the_mixture_weights(sampler):
    """30 % of the mass at (-1.5, 0), 70 % at (1.5, 0) with std 0.35: the share of samples
    left of 0 must be 0.30 within 3 percentage points (Monte Carlo std: 0.7 points)."""
    schedule = Linear()
    x = _draw(sampler, schedule, n=4000, dim=2, denoiser=mixture_denoiser(schedule)).x
    assert float((x[:, 0] < 0).float().mean()) == pytest.approx(0.30, abs=0.03)


def test_each_sampler_lists_only_the_knobs_it_uses():
    """The Karras grid's range and rho belong to samplers whose default grid is in EDM's sigma;
    DDPM and DDIM (table spacings by default) use Karras et al.'s values on a karras grid."""
    for cls in (Heun, Euler, EulerAncestral, DPMpp2M):
        assert {"sigma_min", "sigma_max", "rho"} <= set(cls.model_fields), cls.name
    for cls in (DDPM, DDIM):
        assert not {"sigma_min", "sigma_max", "rho"} & set(cls.model_fields), cls.name
    on_edm = DDIM(grid="karras").noise_levels(EDM())
    assert torch.allclose(on_edm.sigma_edm, Heun(steps=50).noise_levels(EDM()).sigma_edm)


def test_a_float64_model_samples_in_float64_equal_to_edms_sampler():
    """A network held in float64 sees its input and noise level in float64, so difftk's Heun
    equals EDM's ``edm_sampler`` (generate.py, transcribed below in float64) to rounding,
    where float32 noise levels leave errors near 1e-7."""
    from difftk.diffusion.denoiser import Denoiser
    from difftk.diffusion.sampler_model import GuidedModel
    from difftk.plugins.samplers import Heun
    from difftk.plugins.schedules import EDM
    from difftk.plugins.targets import EDMPrecond
    from difftk.plugins.variance import FixedSmall

    class Net(torch.nn.Module):  # a smooth float64 function of (c_in x, c_noise)
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(0.37, dtype=torch.float64))

        def forward(self, x, noise, labels=None):
            assert x.dtype == noise.dtype == torch.float64
            return torch.tanh(self.w * x + noise.view(-1, 1, 1, 1))

    schedule, target = EDM(), EDMPrecond(sigma_data=0.5)
    den = Denoiser(Net(), schedule, target, FixedSmall())

    def edm_net(x, sigma):  # EDM's EDMPrecond around the same F, float64
        sd = 0.5
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2) ** 0.5
        c_in = 1 / (sd**2 + sigma**2) ** 0.5
        c_noise = torch.log(sigma) / 4
        return c_skip * x + c_out * torch.tanh(0.37 * (c_in * x) + c_noise)

    n, sigma_min, sigma_max, rho = 18, 0.002, 80.0, 7.0
    i = torch.arange(n, dtype=torch.float64)
    t_steps = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho)
                                                        - sigma_max ** (1 / rho))) ** rho
    t_steps = torch.cat([t_steps, torch.zeros_like(t_steps[:1])])
    latents = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0),
                          dtype=torch.float64)
    x_next = latents * t_steps[0]
    for k, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:], strict=True)):
        x_cur = x_next
        d_cur = (x_cur - edm_net(x_cur, t_cur)) / t_cur
        x_next = x_cur + (t_next - t_cur) * d_cur
        if k < n - 1:
            d_prime = (x_next - edm_net(x_next, t_next)) / t_next
            x_next = x_cur + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
    sampler = Heun(steps=n, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    with torch.no_grad():
        ours = sampler.solve(GuidedModel(den, None), latents, sampler.noise_levels(schedule),
                             torch.Generator().manual_seed(1))
    assert ours.dtype == torch.float64
    # relative to the sample's scale; float32 noise levels left 3e-7 here
    assert float((ours - x_next).abs().max() / x_next.abs().max()) < 1e-13
