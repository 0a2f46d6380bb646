"""Flow matching in difftk's coordinates: the paths, the velocity target, the flow samplers.

Closed forms: rectified flow alpha = 1 - t, sigma = t (Liu et al. 2023), SiT's GVP path
(cos, sin) (Ma et al. 2024), SD3's shift t = s u / (1 + (s - 1) u) (Esser et al. 2024 eq. 23).
The samplers are checked on Gaussian data, whose probability-flow ODE maps noise z to
exactly s z + mu (x_t is Gaussian at every t, and the flow is linear), and against the
installed diffusers' FlowMatchEulerDiscreteScheduler.
"""

import math

import pytest
import torch

from difftk.diffusion.grids import Grid, make_grid
from difftk.diffusion.levels import Levels
from difftk.diffusion.table_rule import table_problems
from difftk.plugins.flow_samplers import FlowEuler, FlowHeun, FlowSDE, diffusion_coefficient, flow_ode_sample
from difftk.plugins.noise_sampling import CosMap, LogitNormal, UniformT
from difftk.plugins.samplers import DDIM, Euler
from difftk.plugins.schedules import EDM, GVP, Cosine, RectifiedFlow
from difftk.plugins.targets import V, Velocity
from difftk.testing.denoisers import gaussian_denoiser

MU, S = 0.5, 0.3
PATHS = [RectifiedFlow(), RectifiedFlow(shift=3.0), GVP(), GVP(shift=2.0)]


def _ids(schedules):
    return [f"{s.name}-shift{s.shift:g}" for s in schedules]


def test_paths_are_their_closed_forms():
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    alpha, sigma = RectifiedFlow().alpha_sigma(u)
    assert torch.equal(alpha, 1 - u) and torch.equal(sigma, u)
    alpha, sigma = GVP().alpha_sigma(u)
    assert torch.allclose(alpha, torch.cos(math.pi * u / 2), atol=1e-15)
    assert torch.allclose(sigma, torch.sin(math.pi * u / 2), atol=1e-15)
    assert alpha[-1] == 0 and sigma[0] == 0 and alpha[0] == 1 and sigma[-1] == 1
    # SD3's shift: t = s u / (1 + (s - 1) u); on the linear path sigma_edm is multiplied by s.
    shifted = RectifiedFlow(shift=3.0).alpha_sigma(u)[1]
    assert torch.allclose(shifted, 3 * u / (1 + 2 * u), rtol=1e-15)
    ratio = RectifiedFlow(shift=3.0).levels_at_time(u[1:-1]).sigma_edm.double()
    assert torch.allclose(ratio, 3 * u[1:-1] / (1 - u[1:-1]), rtol=1e-5)


def test_shift_equals_diffusers_flow_match_scheduler():
    """diffusers' FlowMatchEulerDiscreteScheduler(shift=3) trains on shift-mapped sigmas of
    t / 1000, t = 1..1000: the same as difftk's shifted rectified flow at u = t / 1000."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    u = torch.arange(1000, 0, -1, dtype=torch.float64) / 1000
    ours = RectifiedFlow(shift=3.0).alpha_sigma(u)[1]
    assert torch.allclose(ours.float(), reference.sigmas.float(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("schedule", PATHS, ids=_ids(PATHS))
def test_time_maps_round_trip(schedule):
    u = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    levels = schedule.levels_at_time(u)
    assert torch.allclose(schedule.time_from_log_snr(levels.log_snr.double()), u, rtol=1e-5)
    path_t = schedule.shifted(u)
    assert torch.allclose(schedule.time_input(levels).double(), 1000 * path_t, rtol=1e-5)
    back = schedule.levels_from_sigma_edm(levels.sigma_edm.double())
    assert torch.allclose(back.sigma.double(), levels.sigma.double(), rtol=1e-5)


@pytest.mark.parametrize("schedule", PATHS, ids=_ids(PATHS))
def test_path_rates_are_the_derivative(schedule):
    """The closed-form rates equal a central difference of the path in its own time."""
    t = torch.linspace(0.1, 0.9, 9, dtype=torch.float64)
    h = 1e-6
    a_hi, s_hi = schedule.path(t + h)
    a_lo, s_lo = schedule.path(t - h)
    rate = schedule.path_derivative(Levels(*schedule.path(t)))
    assert torch.allclose(rate.t, t, rtol=1e-12)
    assert torch.allclose(rate.d_alpha, (a_hi - a_lo) / (2 * h), atol=1e-8)
    assert torch.allclose(rate.d_sigma, (s_hi - s_lo) / (2 * h), atol=1e-8)


def test_default_path_derivative_differentiates_any_schedule():
    """Schedules that are not flow paths get d/du by autograd (EDM: alpha = 1, sigma' = range)."""
    edm = EDM()
    levels = edm.levels_at_time(torch.tensor([0.3, 0.7], dtype=torch.float64))
    rate = edm.path_derivative(levels)
    assert torch.allclose(rate.d_alpha, torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(rate.d_sigma, torch.full((2,), 80 - 0.002, dtype=torch.float64),
                          rtol=1e-5)


def test_velocity_target_is_eps_minus_x0_on_rectified_flow_and_scaled_v_on_gvp():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    for shift in (1.0, 3.0):
        schedule = RectifiedFlow(shift=shift)
        levels = schedule.levels_at_time(torch.linspace(0.1, 0.9, 6, dtype=torch.float64))
        velocity = Velocity().bind(schedule)
        assert torch.allclose(velocity.value(x0, eps, levels), eps - x0, atol=1e-6)
        t = schedule.path_time_of(levels)
        assert torch.allclose(velocity.x0_error_factor(levels).double(), 1 / t**2, rtol=1e-5)
    schedule = GVP()
    levels = schedule.levels_at_time(torch.linspace(0.1, 0.9, 6, dtype=torch.float64))
    v = V().value(x0, eps, levels)
    assert torch.allclose(Velocity().bind(schedule).value(x0, eps, levels), math.pi / 2 * v,
                          atol=1e-5)


@pytest.mark.parametrize("schedule", PATHS, ids=_ids(PATHS))
def test_velocity_prediction_converts_back_to_x0_and_eps(schedule):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    levels = schedule.levels_at_time(torch.linspace(0.05, 1.0, 5, dtype=torch.float64))
    x_t = levels.alpha[:, None] * x0 + levels.sigma[:, None] * eps
    target = Velocity().bind(schedule)
    pred = target.value(x0, eps, levels)
    assert torch.allclose(target.to_x0(pred, x_t, levels), x0, atol=1e-4)
    assert torch.allclose(target.to_eps(pred, x_t, levels), eps, atol=1e-4)


def test_flow_euler_is_ddim_and_edm_euler_on_rectified_flow():
    """docs/flow_matching.md: an Euler step of dx/dt = eps_hat - x0_hat from t to t' lands on
    (1 - t') x0_hat + t' eps_hat, DDIM's step, which is EDM's Euler step in x / alpha."""
    schedule = RectifiedFlow()
    denoiser = gaussian_denoiser(schedule, MU, S)
    noise = torch.randn(64, 3, generator=torch.Generator().manual_seed(2))
    ours = FlowEuler(steps=12).sample(denoiser, noise, torch.Generator()).x
    ddim = DDIM(steps=12, grid="uniform_t").sample(denoiser, noise, torch.Generator()).x
    edm = Euler(steps=12, grid="uniform_t").sample(denoiser, noise, torch.Generator()).x
    assert torch.allclose(ours, ddim, atol=1e-5) and torch.allclose(ours, edm, atol=1e-5)


@pytest.mark.parametrize("schedule", [RectifiedFlow(), GVP()], ids=["rectified_flow", "gvp"])
def test_flow_ode_samplers_converge_at_their_order(schedule):
    """Gaussian data: the exact flow maps z to mu + s z. Euler's error halves with the steps,
    Heun's falls fourfold; Heun's NFE is 2N - 1."""
    denoiser = gaussian_denoiser(schedule, MU, S)
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    exact = MU + S * noise

    def error(cls, n):
        result = cls(steps=n).sample(denoiser, noise, torch.Generator())
        return float((result.x - exact).abs().max()), result.nfe

    for cls, order, nfe in ((FlowEuler, 1, lambda n: n), (FlowHeun, 2, lambda n: 2 * n - 1)):
        (e1, n1), (e2, n2) = error(cls, 16), error(cls, 32)
        assert (n1, n2) == (nfe(16), nfe(32))
        assert 2**order * 0.8 < e1 / e2 < 2**order * 1.25, (cls.name, e1, e2)
    assert error(FlowHeun, 32)[0] < 0.01


def test_flow_euler_step_equals_diffusers_flow_match_euler():
    """The same velocity model stepped by diffusers' FlowMatchEulerDiscreteScheduler and by
    flow_euler on diffusers' own sigmas (shift 3) gives the same sample."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    schedule = RectifiedFlow(shift=3.0)
    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    reference.set_timesteps(8)
    sigmas = reference.sigmas.double()

    def velocity(x, t):  # a smooth, x-dependent velocity field, t in [0, 1]
        return torch.sin(3 * x) * (1 + t) - 0.5 * x

    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = x.clone()
    for i, timestep in enumerate(reference.timesteps):
        ref = reference.step(velocity(ref, float(sigmas[i])), timestep, ref).prev_sample

    class VelocityModel:  # answers x0 as a velocity network would: x0 = x_t - t v
        def __call__(self, x_t, level):
            from difftk.diffusion.sampler_model import Denoised
            t = level.sigma / (level.alpha + level.sigma)
            return Denoised(x_t - t * velocity(x_t, t), None, None)

    alpha, sigma = schedule.path(sigmas)
    grid = Grid(alpha=alpha, sigma=sigma, sigma_edm=sigma / alpha, t=None, schedule=schedule)
    ours = flow_ode_sample(VelocityModel(), x, grid, heun=False)
    assert torch.allclose(ours, ref.double(), atol=1e-5)


@pytest.mark.parametrize("form, norm", [("constant", 0.02), ("sigma", 1.0), ("linear", 1.0),
                                        ("decreasing", 1.0), ("increasing-decreasing", 1.0),
                                        ("SBDM", 1.0)])
def test_flow_sde_keeps_the_marginals(form, norm):
    """Every diffusion coefficient D gives an SDE with the ODE's marginals (Ma et al. 2024
    eq. 7): with Gaussian data, the samples at t = 0.04 have the data's mean and, after
    Tweedie's last step, the standard deviation of E[x0 | x_t] there. (A constant D is stiff
    for Euler-Maruyama near t = 0, where the score term is D / sigma^2: 200 steps hold only
    for small D.)"""
    schedule = RectifiedFlow()
    sampler = FlowSDE(steps=200, diffusion_form=form, diffusion_norm=norm, last_step="tweedie",
                      start=0.999 if form == "SBDM" else 1.0)
    assert sampler.check({"schedule": schedule}) == []
    noise = torch.randn(8000, 2, generator=torch.Generator().manual_seed(5))
    result = sampler.sample(gaussian_denoiser(schedule, MU, S), noise,
                            torch.Generator().manual_seed(6))
    assert result.nfe == 200
    a, sg = 0.96, 0.04
    tweedie_std = S * math.sqrt(a**2 * S**2 / (a**2 * S**2 + sg**2))
    assert float(result.x.mean()) == pytest.approx(MU, abs=0.015)
    assert float(result.x.std()) == pytest.approx(tweedie_std, rel=0.03)


def test_sbdm_diffusion_is_the_reverse_sde_of_the_path():
    """SBDM's D = g^2 / 2 with g^2 = d(sigma^2)/dt - 2 (alpha' / alpha) sigma^2 the forward
    SDE's squared diffusion (Song et al. 2021; Kingma et al. 2021 eq. 4): t / (1 - t) on the
    linear path, and the score-based model's beta(t) sigma^2-free form on GVP."""
    for t in (0.1, 0.5, 0.9):
        d = diffusion_coefficient("SBDM", 1.0, t, 1 - t, t, -1.0, 1.0)
        assert d == pytest.approx(t / (1 - t), rel=1e-12)
        h = math.pi / 2
        a, s = math.cos(h * t), math.sin(h * t)
        d = diffusion_coefficient("SBDM", 1.0, t, a, s, -h * s, h * a)
        assert d == pytest.approx(h * math.tan(h * t), rel=1e-12)  # = (1/2) beta(t), VP
    assert math.isinf(diffusion_coefficient("SBDM", 1.0, 1.0, 0.0, 1.0, -1.0, 1.0))
    problems = FlowSDE(diffusion_form="SBDM").check({"schedule": RectifiedFlow()})
    assert problems and problems[0][0] == "start" and "infinite" in problems[0][1]


def test_flow_samplers_refuse_schedules_that_never_reach_the_data():
    for sampler in (FlowEuler(), FlowHeun(), FlowSDE()):
        assert sampler.check({"schedule": RectifiedFlow()}) == []
        for schedule in (EDM(), Cosine()):
            (field, sentence), = sampler.check({"schedule": schedule})
            assert field == "name" and "euler / heun" in sentence
    assert table_problems({"schedule": RectifiedFlow(), "sampler": FlowEuler()}) == []


def test_uniform_grid_on_a_flow_path_is_sits():
    """SiT's ODE grid linspace(0, 1, N + 1) in its time: t = 1, 1 - 1/N, ..., 1/N, then 0."""
    grid = make_grid("uniform_t", RectifiedFlow(), 4)
    assert torch.allclose(grid.sigma, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0],
                                                   dtype=torch.float64))
    assert grid.alpha[0] == 0 and math.isinf(float(grid.sigma_edm[0]))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_logit_normal_draws_sd3_times_on_a_flow_schedule(shift):
    """t = shift(sigmoid(m + s z)) on a shifted rectified flow, and the stated density of
    logSNR integrates to one and matches the draws."""
    schedule = RectifiedFlow(shift=shift)
    sampler = LogitNormal(m=0.3, s=0.8)
    levels = sampler.sample(50_000, schedule, torch.Generator().manual_seed(7), "cpu")
    t = schedule.path_time_of(levels)
    u = t / (shift - (shift - 1) * t)
    logit = torch.logit(u)
    assert float(logit.mean()) == pytest.approx(0.3, abs=0.02)
    assert float(logit.std()) == pytest.approx(0.8, rel=0.02)
    grid = torch.linspace(-25, 25, 20_001, dtype=torch.float64)
    density = sampler.log_snr_density(grid, schedule)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    ls = levels.log_snr.double()
    inside = ((ls > -1) & (ls < 1)).double().mean()
    mass = torch.trapezoid(density[(grid > -1) & (grid < 1)], grid[(grid > -1) & (grid < 1)])
    assert float(inside) == pytest.approx(float(mass), abs=0.01)


def test_logit_normal_keeps_edm_sigma_semantics_off_flow_schedules():
    """On EDM's schedule the draw stays exp(m + s z) in EDM's sigma (the shipped recipes)."""
    levels = LogitNormal(m=0.5, s=0.8).sample(20_000, EDM(sigma_max=1e9),
                                              torch.Generator().manual_seed(8), "cpu")
    log_sigma = levels.sigma_edm.double().log()
    assert float(log_sigma.mean()) == pytest.approx(0.5, abs=0.02)
    assert float(log_sigma.std()) == pytest.approx(0.8, rel=0.02)


def test_cosmap_density_is_sd3s():
    """SD3 eq. 21: t = 1 - 1 / (tan(pi x / 2) + 1) has density 2 / (pi (1 - 2 t + 2 t^2))."""
    schedule = RectifiedFlow()
    levels = CosMap().sample(50_000, schedule, torch.Generator().manual_seed(9), "cpu")
    t = schedule.path_time_of(levels)
    edges = torch.linspace(0, 1, 11, dtype=torch.float64)
    counts = torch.histc(t, bins=10, min=0, max=1) / t.numel()
    fine = torch.linspace(0, 1, 10_001, dtype=torch.float64)
    pdf = 2 / (math.pi * (1 - 2 * fine + 2 * fine**2))
    for i in range(10):
        inside = (fine >= edges[i]) & (fine <= edges[i + 1])
        assert float(counts[i]) == pytest.approx(float(torch.trapezoid(pdf[inside], fine[inside])),
                                                 abs=0.006)
    # importance weights against uniform t on the path have mean one
    weighted = CosMap(importance=True).sample(50_000, schedule, torch.Generator().manual_seed(10),
                                              "cpu")
    assert float(weighted.weight.double().mean()) == pytest.approx(1.0, abs=0.02)
    assert UniformT().sample(4, schedule, torch.Generator(), "cpu").alpha.shape == (4,)


def test_sd3_weightings_equal_diffusers():
    """diffusers.training_utils.compute_loss_weighting_for_sd3 at the rectified-flow sigmas."""
    from diffusers.training_utils import compute_loss_weighting_for_sd3

    from difftk.plugins.weights import SD3CosMap, SD3SigmaSqrt

    schedule = RectifiedFlow()
    levels = schedule.levels_at_time(torch.linspace(0.05, 0.95, 10, dtype=torch.float64))
    sigmas = levels.sigma.double()
    for ours, scheme in ((SD3SigmaSqrt(), "sigma_sqrt"), (SD3CosMap(), "cosmap")):
        reference = compute_loss_weighting_for_sd3(scheme, sigmas=sigmas)
        assert torch.allclose(ours.at(levels), reference.double(), rtol=1e-5), scheme


def test_sit_velocity_weight_makes_a_noise_loss_the_velocity_loss():
    """SiT: (D / sigma)^2 ||eps err||^2 = ||velocity err||^2 on the linear path, and the
    likelihood weight is D / sigma^2 = 1 / (t (1 - t)) on the eps-MSE."""
    from difftk.plugins.targets import Eps
    from difftk.plugins.weights import SiTLikelihood, SiTVelocity

    schedule = RectifiedFlow()
    t = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64)
    levels = schedule.levels_at_time(t)
    g = torch.Generator().manual_seed(11)
    x0, eps, err = (torch.randn(3, 4, generator=g) for _ in range(3))
    x_t = levels.alpha[:, None] * x0 + levels.sigma[:, None] * eps
    eps_t, vel = Eps().bind(schedule), Velocity().bind(schedule)
    eps_hat = eps + 0.1 * err  # an eps model's error, and the velocity it implies
    v_hat = vel.value(eps_t.to_x0(eps_hat, x_t, levels), eps_hat, levels)
    w = SiTVelocity().on_target(levels, eps_t, schedule).double()
    eps_loss = w * (eps_hat - eps).double().pow(2).sum(1)
    vel_loss = (v_hat - vel.value(x0, eps, levels)).double().pow(2).sum(1)
    assert torch.allclose(eps_loss, vel_loss, rtol=1e-4)
    likelihood = SiTLikelihood().on_target(levels, eps_t, schedule).double()
    assert torch.allclose(likelihood, 1 / (t * (1 - t)), rtol=1e-5)
