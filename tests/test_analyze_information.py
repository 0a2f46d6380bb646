"""The I-MMSE estimator of seed 001 §3.2 against mutual information known in closed form:
Gaussian data with its Bayes denoiser, and a 2-D Gaussian mixture with its exact posterior
mean (MI by numerical integration of the entropies on a grid)."""

import math

import numpy as np
import pytest
import torch

from difftk.analysis.denoiser_mmse import measure_mmse, per_dimension_variance
from difftk.analysis.information import gaussian_mutual_information
from difftk.analysis.information_from_mmse import INFORMATION_TARGETS, information_from_mmse
from difftk.diffusion.levels import Levels


def vp_levels_at(log_snr: float, n: int) -> Levels:
    alpha = math.sqrt(1 / (1 + math.exp(-log_snr)))
    sigma = math.sqrt(1 / (1 + math.exp(log_snr)))
    return Levels(alpha=torch.full((n,), alpha), sigma=torch.full((n,), sigma))


class GaussianBayes:
    """E[x0 | x_t] for x0 ~ N(0, s^2 I): s^2 alpha / (alpha^2 s^2 + sigma^2) x_t."""

    def __init__(self, s: float):
        self.s = s

    def x0_and_extra(self, x_t, levels, labels=None):  # the Denoiser's x0 form
        a, b = levels.alpha.double()[:, None], levels.sigma.double()[:, None]
        return (self.s**2 * a / (a**2 * self.s**2 + b**2) * x_t.double()).float(), None


class MixtureBayes:
    """E[x0 | x_t] for x0 ~ sum_k w_k N(m_k, s_k^2 I) in 2-D (per-component posteriors,
    weighted by the responsibilities of x_t)."""

    def __init__(self, w, m, s):
        self.w = torch.tensor(w, dtype=torch.float64)
        self.m = torch.tensor(m, dtype=torch.float64)
        self.s = torch.tensor(s, dtype=torch.float64)

    def x0_and_extra(self, x_t, levels, labels=None):  # the Denoiser's x0 form
        a, b = levels.alpha.double()[:, None], levels.sigma.double()[:, None]
        x = x_t.double()
        var = a**2 * self.s[None] ** 2 + b**2  # [B, K]
        diff = x[:, None, :] - a[:, :, None] * self.m[None]
        log_r = torch.log(self.w)[None] - (diff**2).sum(-1) / (2 * var) - torch.log(var)
        post = self.m[None] + (self.s[None, :, None] ** 2 * a[:, :, None] / var[:, :, None]) * diff
        return (torch.softmax(log_r, 1)[:, :, None] * post).sum(1).float(), None

    def sample(self, n, gen):
        k = torch.multinomial(self.w, n, replacement=True, generator=gen)
        return (self.m[k] + self.s[k, None] * torch.randn(n, 2, generator=gen,
                                                          dtype=torch.float64)).float()

    def entropy(self, scale: float, noise: float) -> float:
        """Differential entropy (nats) of scale * x0 + noise * N(0, I), on a 2-D grid."""
        std = torch.sqrt(scale**2 * self.s**2 + noise**2)
        half = float((scale * self.m).abs().max() + 8 * std.max())
        h = float(std.min()) / 12
        g = torch.arange(-half, half + h, h, dtype=torch.float64)
        xx, yy = torch.meshgrid(g, g, indexing="ij")
        p = torch.zeros_like(xx)
        for w, m, sd in zip(self.w, self.m, std, strict=True):
            r2 = (xx - scale * m[0]) ** 2 + (yy - scale * m[1]) ** 2
            p += w * torch.exp(-r2 / (2 * sd**2)) / (2 * math.pi * sd**2)
        return float(-(p * torch.log(p.clamp(min=1e-300))).sum() * h * h)


def test_exact_gaussian_mmse_integrates_to_the_closed_forms():
    s = 0.5
    log_snr = np.linspace(-10, 10, 81)
    mmse = s**2 / (1 + s**2 * np.exp(log_snr))
    curves = information_from_mmse(log_snr, mmse, s**2)
    lam = torch.tensor(log_snr)
    a, b = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    for target in INFORMATION_TARGETS:
        exact = gaussian_mutual_information(target, a, b, s).numpy()
        assert np.abs(curves.information[target] - exact).max() < 2e-3, target
    # the seed's shapes: x0 rises, eps falls, score equals eps, v is an arch
    assert np.all(np.diff(curves.information["x0"]) > 0)
    assert np.all(np.diff(curves.information["eps"]) < 0)
    v = curves.information["v"]
    assert 0 < v.argmax() < len(v) - 1 and v[0] < 0.05 and v[-1] < 0.05


def test_monte_carlo_mmse_of_the_bayes_denoiser_recovers_gaussian_information():
    s, gen = 0.5, torch.Generator().manual_seed(0)
    x0 = s * torch.randn(4000, 4, generator=gen)
    log_snr = np.linspace(-9, 9, 37)
    mmse = measure_mmse(GaussianBayes(s), x0, log_snr, vp_levels_at, seed=1, batch_size=4000)
    exact_mmse = s**2 / (1 + s**2 * np.exp(log_snr))
    assert np.abs(mmse / exact_mmse - 1).max() < 0.06
    curves = information_from_mmse(log_snr, mmse, per_dimension_variance(x0))
    lam = torch.tensor(log_snr)
    a, b = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    for target in INFORMATION_TARGETS:
        exact = gaussian_mutual_information(target, a, b, s).numpy()
        assert np.abs(curves.information[target] - exact).max() < 0.03, target


@pytest.fixture(scope="module")
def mixture():
    return MixtureBayes((0.3, 0.5, 0.2), ((-1.5, 0.0), (1.2, 0.8), (0.5, -1.4)), (0.3, 0.4, 0.25))


def test_estimator_matches_numerically_integrated_mixture_information(mixture):
    gen = torch.Generator().manual_seed(0)
    x0 = mixture.sample(20000, gen)
    log_snr = np.linspace(-12, 12, 49)
    mmse = measure_mmse(mixture, x0, log_snr, vp_levels_at, seed=2, batch_size=20000)
    curves = information_from_mmse(log_snr, mmse, per_dimension_variance(x0))
    h_x0 = mixture.entropy(1.0, 1e-3)
    h_eps = math.log(2 * math.pi * math.e)  # 2-D standard normal
    for lam in (-4.0, -1.0, 0.0, 2.0, 5.0):
        a, b = math.sqrt(1 / (1 + math.exp(-lam))), math.sqrt(1 / (1 + math.exp(lam)))
        h_xt = mixture.entropy(a, b)
        exact = {"x0": h_xt - math.log(2 * math.pi * math.e * b**2),
                 "eps": h_xt - h_x0 - 2 * math.log(a),
                 # (x_t, v) is a rotation of (x0, eps); v = a eps - b x0 is the mixture seen
                 # through scale b with noise a.
                 "v": h_xt + mixture.entropy(b, a) - h_x0 - h_eps}
        exact["score"] = exact["eps"]
        i = int(np.argmin(np.abs(log_snr - lam)))
        for target, value in exact.items():
            got = curves.information[target][i]
            assert abs(got - value / 2) < 0.03, (target, lam, got, value / 2)
    # non-Gaussian data: v carries information about x_t (seed 001 §3.2.3)
    assert curves.information["v"].max() > 0.1


def test_v_information_of_a_gaussian_peaks_at_log_snr_zero():
    """For x0 ~ N(0, s^2) on a variance-preserving path, cov(v, x_t) = alpha sigma (1 - s^2):
    I(v; x_t) peaks at logSNR 0 at ln((1 + s^2) / (2 s)), 0.134 nats/dim for Fashion-MNIST's
    per-dimension variance 0.347 (docs/reproductions.md), and is zero for s = 1."""
    log_snr = torch.linspace(-15, 15, 30_001, dtype=torch.float64)
    a, b = torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()
    for s2 in (0.347, 0.1, 2.0):
        s = math.sqrt(s2)
        mi = gaussian_mutual_information("v", a, b, s)
        assert float(mi.max()) == pytest.approx(math.log((1 + s2) / (2 * s)), rel=1e-6)
        assert abs(float(log_snr[int(mi.argmax())])) < 1e-3
    assert float(gaussian_mutual_information("v", a, b, 0.347 ** 0.5).max()) == \
        pytest.approx(0.134, abs=5e-4)
    assert float(gaussian_mutual_information("v", a, b, 1.0).abs().max()) < 1e-12
