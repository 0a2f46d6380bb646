"""Built-in training noise-level distributions (seed 001 §6, §8.2; Esser et al. 2024).

Distributions in t draw on the schedule's own time axis; distributions in sigma draw
EDM's sigma = sigma_t / alpha_t and let the schedule turn it into levels. Each states
its density of logSNR = -2 ln sigma_edm (see difftk.diffusion.noise_sampling).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from pydantic import Field, PrivateAttr
from torch import Tensor

from difftk.diffusion.levels import SigmaRange
from difftk.diffusion.noise_sampling import NoiseSampler, time_jacobian, uniform_time_density
from difftk.hookspecs import hookimpl


def _normal_pdf(x: Tensor, mean: float, std: float) -> Tensor:
    return torch.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


class UniformT(NoiseSampler):
    """t uniform over the schedule's time axis (Ho et al. 2020; seed 001 §5.1)."""

    name = "uniform_t"
    discrete: bool = Field(True, description="integer t in 1..T on t-space schedules (sigma-space "
                                             "schedules have a continuous axis)")

    def draw(self, n, schedule, generator, device):
        if self.discrete and schedule.has_table:
            t = torch.randint(1, schedule.num_steps + 1, (n,), generator=generator, device=device)
        else:
            lo, hi = schedule.time_range()
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            t = lo + (hi - lo) * u
        return schedule.levels_at_time(t), t

    def log_snr_density(self, log_snr, schedule):
        return uniform_time_density(schedule, log_snr)

    def importance_weight(self, drawn, schedule):
        return torch.ones(drawn.shape, dtype=torch.float64, device=drawn.device)  # q = p


class GaussianT(NoiseSampler):
    """t from a normal centred mid-way along the schedule's time axis, truncated to it, so the
    middle noise levels get more steps than the ends (seed 001 §6)."""

    name = "gaussian_t"
    mean: float = Field(0.5, ge=0, le=1, description="centre, as a fraction of the time axis")
    std: float = Field(0.25, gt=0, description="standard deviation, as a fraction of the time axis")
    discrete: bool = Field(True, description="integer t = ceil(f T) in 1..T on t-space schedules")

    def _cdf_ends(self) -> tuple[float, float]:
        a = 0.5 * math.erfc(self.mean / (self.std * math.sqrt(2)))
        b = 0.5 * math.erfc(-(1 - self.mean) / (self.std * math.sqrt(2)))
        return a, b

    def fraction_density(self, f: Tensor) -> Tensor:
        """The truncated normal density of f = (t - t_lo) / (t_hi - t_lo) on [0, 1]."""
        a, b = self._cdf_ends()
        pdf = _normal_pdf(f, self.mean, self.std) / (b - a)
        return torch.where((f >= 0) & (f <= 1), pdf, torch.zeros_like(pdf))

    def masses(self, T: int) -> Tensor:
        """P(t = k) for k = 1..T of the discrete version: the normal's mass on ((k-1)/T, k/T]."""
        a, b = self._cdf_ends()
        edges = torch.linspace(0, 1, T + 1, dtype=torch.float64)
        cdf = torch.special.ndtr((edges - self.mean) / self.std)
        return (cdf[1:] - cdf[:-1]) / (b - a)

    def draw(self, n, schedule, generator, device):
        a, b = self._cdf_ends()
        # Inverse-CDF draw of the truncated normal: exact, vectorised, one uniform per sample.
        u = a + (b - a) * torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        f = (self.mean + self.std * torch.special.ndtri(u)).clamp(0, 1)
        if self.discrete and schedule.has_table:
            T = schedule.num_steps
            t = torch.ceil(f * T).clamp(1, T).long()
        else:
            lo, hi = schedule.time_range()
            t = lo + (hi - lo) * f
        return schedule.levels_at_time(t), (t, f)

    def log_snr_density(self, log_snr, schedule):
        lo, hi = schedule.time_range()
        t, jac = time_jacobian(schedule, log_snr)
        return self.fraction_density((t - lo) / (hi - lo)) * jac / (hi - lo)

    def importance_weight(self, drawn, schedule):
        t, f = drawn
        if self.discrete and schedule.has_table:
            masses = self.masses(schedule.num_steps).to(t.device)
            return (1.0 / schedule.num_steps) / masses[t - 1]
        return 1.0 / self.fraction_density(f)


class _SigmaDistribution(NoiseSampler):
    """A distribution of EDM's sigma; the schedule maps each sigma to its levels."""

    def draw_sigma(self, n: int, generator: torch.Generator, device) -> Tensor:
        raise NotImplementedError

    def draw(self, n, schedule, generator, device):
        sigma = self.draw_sigma(n, generator, device)
        return schedule.levels_from_sigma_edm(sigma), -2.0 * torch.log(sigma)


class _SigmaRange(_SigmaDistribution, SigmaRange):
    """A distribution of EDM's sigma on [sigma_min, sigma_max]."""

    def log_snr_support(self, schedule):
        return -2 * math.log(self.sigma_max), -2 * math.log(self.sigma_min)

    def _inside(self, log_snr: Tensor) -> Tensor:
        lo, hi = self.log_snr_support(None)
        return (log_snr >= lo) & (log_snr <= hi)


class UniformSigma(_SigmaRange):
    """sigma uniform on [sigma_min, sigma_max]: the naive choice, almost all draws at high noise
    (seed 001 §8.2.1)."""

    name = "uniform_sigma"

    def draw_sigma(self, n, generator, device):
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return self.sigma_min + u * (self.sigma_max - self.sigma_min)

    def log_snr_density(self, log_snr, schedule):
        # p(sigma) = 1 / (sigma_max - sigma_min), |dsigma / dlogSNR| = sigma / 2.
        x = log_snr.to(torch.float64)
        p = torch.exp(-0.5 * x) / (2 * (self.sigma_max - self.sigma_min))
        return torch.where(self._inside(x), p, torch.zeros_like(p))


class LogUniformSigma(_SigmaRange):
    """ln sigma uniform on [ln sigma_min, ln sigma_max], every octave of noise equally often
    (seed 001 §8.2.2; EDM's VE training)."""

    name = "log_uniform_sigma"

    def draw_sigma(self, n, generator, device):
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** u

    def log_snr_density(self, log_snr, schedule):
        x = log_snr.to(torch.float64)
        p = torch.full_like(x, 1.0 / (2 * math.log(self.sigma_max / self.sigma_min)))
        return torch.where(self._inside(x), p, torch.zeros_like(p))


class _NormalLogSigma(_SigmaDistribution):
    """ln sigma ~ N(mu, s^2) in EDM's sigma, with (mu, s) from ``location_scale``."""

    def location_scale(self) -> tuple[float, float]:
        raise NotImplementedError

    def draw_sigma(self, n, generator, device):
        mu, s = self.location_scale()
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        return torch.exp(mu + s * z)

    def log_snr_density(self, log_snr, schedule):
        # logSNR = -2 ln sigma ~ N(-2 mu, (2 s)^2)
        mu, s = self.location_scale()
        return _normal_pdf(log_snr.to(torch.float64), -2 * mu, 2 * s)


class LogNormal(_NormalLogSigma):
    """ln sigma ~ N(P_mean, P_std^2) in EDM's sigma (Karras et al. 2022; seed 001 §8.2.3)."""

    name = "log_normal"
    P_mean: float = Field(-1.2, description="mean of ln sigma")
    P_std: float = Field(1.2, gt=0, description="standard deviation of ln sigma")

    def location_scale(self):
        return self.P_mean, self.P_std


class _LogitTime(NoiseSampler):
    """A distribution of the logit of a time in (0, 1), handed to the schedule's
    ``levels_at_logit_time``: on a flow schedule, its own time axis (shift included); on
    any other, rectified-flow time, whose logit is ln sigma_edm."""

    def draw_logit(self, n: int, generator: torch.Generator, device) -> Tensor:
        raise NotImplementedError

    def logit_density(self, logit: Tensor) -> Tensor:
        raise NotImplementedError

    def draw(self, n, schedule, generator, device):
        levels = schedule.levels_at_logit_time(self.draw_logit(n, generator, device))
        return levels, levels.log_snr.double()

    def log_snr_density(self, log_snr, schedule):
        x = log_snr.detach().to(torch.float64).requires_grad_(True)
        with torch.enable_grad():
            logit = schedule.logit_time_from_log_snr(x)
            (jac,) = torch.autograd.grad(logit.sum(), x)
        density = self.logit_density(logit.detach()) * jac.abs()
        return torch.nan_to_num(density, nan=0.0, posinf=0.0)


class LogitNormal(_LogitTime):
    """Time t = sigmoid(m + s z), z ~ N(0, 1), as Stable Diffusion 3 draws its training times
    (Esser et al. 2024, eq. 19 "lognorm(m, s)").

    On a flow schedule t is its own time (so a shifted rectified flow shifts the draw, as
    SD3 does); on any other schedule t is rectified-flow time, t / (1 - t) = sigma_edm =
    exp(m + s z): the log-normal of EDM's sigma with (m, s).
    """

    name = "logit_normal"
    m: float = Field(0.0, description="location: mean of logit(t)")
    s: float = Field(1.0, gt=0, description="scale: standard deviation of logit(t)")

    def draw_logit(self, n, generator, device):
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        return self.m + self.s * z

    def logit_density(self, logit):
        return _normal_pdf(logit, self.m, self.s)


class CosMap(_LogitTime):
    """SD3's "cosmap" times t = 1 - 1 / (tan(pi x / 2) + 1), x uniform on [0, 1] (Esser et al.
    2024, eq. 21; Nichol & Dhariwal's cosine schedule mapped to rectified flow), whose density
    2 / (pi (1 - 2 t + 2 t^2)) is SD3's cosmap weighting. logit(t) = ln tan(pi x / 2)."""

    name = "cosmap"

    def draw_logit(self, n, generator, device):
        x = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return torch.log(torch.tan(0.5 * math.pi * x))

    def logit_density(self, logit):
        # x = (2 / pi) atan(e^l), dx / dl = (1 / pi) sech(l)
        return 1.0 / (math.pi * torch.cosh(logit))


class LossSecondMoment(NoiseSampler):
    """improved-diffusion's loss-aware resampler (Nichol & Dhariwal 2021, §3.3,
    ``LossSecondMomentResampler``): bucket b of the time axis is drawn with probability
    proportional to sqrt(E[L_b^2]) over its last ``history`` losses, mixed with a uniform
    share, once every bucket has them (uniform until then); each draw is weighted by
    p_uniform / p_b, so the uniform-time objective stays unbiased at a lower variance.

    Buckets: the integer steps t = 1..T of a t-space schedule (as improved-diffusion), or
    ``buckets`` equal cells of a continuous time axis, uniform within. The history is the
    run's state (difftk.diffusion.loss_history), the same on every process, and saved with
    each checkpoint.
    """

    name = "loss_second_moment"
    importance: bool = Field(True, description="weight each draw by p_uniform / p_b (unbiased "
                             "for the uniform-t objective); false trains on the biased mix")
    history: int = Field(10, ge=1, le=1000, description="losses kept per bucket "
                         "(improved-diffusion's history_per_term)")
    uniform_share: float = Field(0.001, ge=0, le=1, description="share of the uniform "
                                 "distribution mixed in (improved-diffusion's uniform_prob)")
    buckets: int = Field(0, ge=0, le=100_000, description="time buckets; 0: one per integer "
                         "t of a t-space schedule, 100 on a continuous axis")

    def bucket_count(self, schedule) -> int:
        if self.buckets:
            return self.buckets
        return schedule.num_steps if schedule.has_table else 100

    def loss_history(self, schedule):
        from difftk.diffusion.loss_history import LossHistory

        return LossHistory(self.bucket_count(schedule), self.history)

    def _integer_steps(self, schedule) -> bool:
        return schedule.has_table and self.bucket_count(schedule) == schedule.num_steps

    def sample(self, n, schedule, generator, device, history=None):
        count = self.bucket_count(schedule)
        p = (torch.full((count,), 1.0 / count, dtype=torch.float64) if history is None
             else history.probabilities(self.uniform_share)).to(device)
        bucket = torch.multinomial(p, n, replacement=True, generator=generator)
        if self._integer_steps(schedule):
            t = (bucket + 1).double()
        else:
            lo, hi = schedule.time_range()
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            t = lo + (hi - lo) * (bucket.double() + u) / count
        levels = schedule.levels_at_time(t)
        if history is not None:
            history.pending = bucket.cpu()
        if self.importance:
            levels = replace(levels, weight=((1.0 / count) / p[bucket]).float())
        return levels

    def draw(self, n, schedule, generator, device):
        levels = self.sample(n, schedule, generator, device)
        return levels, None

    def log_snr_density(self, log_snr, schedule):
        return uniform_time_density(schedule, log_snr)  # its distribution before warm-up


class FromWeighting(NoiseSampler):
    """Noise levels drawn with density proportional to w(t) p(t), p uniform on the schedule's
    time axis and w the named weighting's formula: a loss weighting turned into a sampling
    distribution (seed 001 §5.2: E_p[w l] = E_q[(w p / q) l], the two views of one integrand).

    Train it with ``weight.name = "uniform"`` on the MSE the weighting names (its
    ``relative_to``). Each draw then carries the weight w p / q (``importance``, default on),
    which is the constant E_p[w] on a table's integer steps, and w(t) / w(t_i) E_p[w] in cell
    i of the ``cells`` equal cells of a continuous axis (uniform within a cell), so the
    expected loss, and gradient, are exactly those of uniform t with the weighting w; only
    their variance differs (docs/reproductions.md). Without ``importance`` the loss is the
    weighted objective divided by E_p[w].
    """

    name = "from_weighting"
    importance: bool = Field(True, description="weight each draw by w p / q, so the expected "
                             "loss is the w-weighted uniform-t objective itself")
    weighting: dict = Field(default_factory=lambda: {"name": "min_snr"},
                            description='the weighting whose mass it draws by, as a recipe '
                            'section: {name = "min_snr", gamma = 5}')
    cells: int = Field(4096, ge=2, le=1_000_000, description="cells of a continuous time axis")
    _tables: dict = PrivateAttr(default_factory=dict)

    def _weighting(self):
        """The named weighting, validated (an unknown name is the registry's sentence)."""
        from difftk.registry import default_registry

        params = dict(self.weighting)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ValueError('weighting needs a name, e.g. {name = "min_snr", gamma = 5}')
        return default_registry().get("weights", name).cls.model_validate(params)

    def check(self, parts):
        try:
            inner = self._weighting()
        except Exception as exc:  # an unknown name or a bad field: the recipe's sentence
            return [("weighting", str(exc))]
        outer = parts.get("weight")
        if outer is not None and (outer.name != "uniform" or outer.relative_to != inner.relative_to):
            return [("weighting", f'from_weighting draws by the {inner.name} weighting, so train '
                     f'with weight.name = "uniform" and weight.relative_to = '
                     f'"{inner.relative_to}" (the same MSE), or the weighting counts twice')]
        return []

    def _table(self, schedule) -> tuple[Tensor, Tensor]:
        """(times of the cells or steps, their weights w(t)) in float64, built once per
        schedule (every training step draws from it)."""
        key = (type(schedule).__name__, repr(schedule.params()))
        if self._tables.get("key") != key:
            self._tables = {"key": key, "table": self._build_table(schedule),
                            "inner": self._weighting()}
        return self._tables["table"]

    def _build_table(self, schedule) -> tuple[Tensor, Tensor]:
        inner = self._weighting()
        if schedule.has_table:
            t = torch.arange(1, schedule.num_steps + 1, dtype=torch.float64)
        else:
            lo, hi = schedule.time_range()
            t = lo + (hi - lo) * (torch.arange(self.cells, dtype=torch.float64) + 0.5) / self.cells
        w = inner.at(schedule.levels_at_time(t).to(dtype=torch.float64), schedule).double()
        w = torch.nan_to_num(w, nan=0.0, posinf=0.0).clamp(min=0)
        if float(w.sum()) <= 0:
            raise ValueError(f"the {inner.name} weighting is zero on the whole schedule")
        return t, w

    def sample(self, n, schedule, generator, device, history=None):
        t_grid, w = self._table(schedule)
        mass = (w / w.sum()).to(device)
        cell = torch.multinomial(mass, n, replacement=True, generator=generator)
        if schedule.has_table:
            t = t_grid.to(device)[cell]
        else:
            lo, hi = schedule.time_range()
            u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
            t = lo + (hi - lo) * (cell.double() + u) / self.cells
        levels = schedule.levels_at_time(t)
        if not self.importance:
            return levels
        mean_w = float(w.mean())  # E_p[w] on the grid
        if schedule.has_table:
            weight = torch.full((n,), mean_w, dtype=torch.float64, device=device)
        else:
            exact = self._tables["inner"].at(levels.to(dtype=torch.float64), schedule).double()
            weight = exact.to(device) / w.to(device)[cell] * mean_w
        return replace(levels, weight=weight.float())

    def draw(self, n, schedule, generator, device):
        return self.sample(n, schedule, generator, device), None

    def log_snr_density(self, log_snr, schedule):
        t_grid, w = self._table(schedule)
        lo, hi = schedule.time_range()
        t, jac = time_jacobian(schedule, log_snr)
        if schedule.has_table:
            # the continuous-t version: w of the nearest step, normalised over [1, T]
            index = t.round().long().clamp(1, schedule.num_steps) - 1
        else:
            index = ((t - lo) / (hi - lo) * self.cells).floor().long().clamp(0, self.cells - 1)
        density = w[index] / w.mean() / (hi - lo) * jac
        inside = (t >= lo) & (t <= hi)
        return torch.where(inside, density, torch.zeros_like(density))


@hookimpl
def register_noise_sampling(register):
    for cls in (UniformT, GaussianT, UniformSigma, LogUniformSigma, LogNormal, LogitNormal,
                CosMap, LossSecondMoment, FromWeighting):
        register(cls)
