"""Denoisers whose answer is known in closed form, so samplers, guidance and targets can be
tested without training anything.

For data x0 ~ N(mu, s^2 I) the ideal denoiser is E[x0 | x_t] = mu + s^2 alpha / (alpha^2 s^2
+ sigma^2) (x_t - alpha mu); for a mixture of isotropic Gaussians it is the responsibility-
weighted sum of the components' answers. Each network reads the noise level back from its
time input through the schedule (table time t, a flow path's scaled time, or EDM's c_noise =
ln(sigma_edm) / 4), and the
``*_denoiser`` helpers wrap it as an x0-predicting Denoiser with the posterior variance.
"""

from __future__ import annotations

import torch
from torch import nn

from difftk.diffusion.denoiser import Denoiser

MU, STD = 0.5, 0.3  # the Gaussian the contract checks sample


def _x0_denoiser(net: nn.Module, schedule) -> Denoiser:
    """``net`` as an x0-predicting Denoiser with the posterior (fixed small) variance."""
    from difftk.registry import default_registry

    registry = default_registry()
    target = registry.get("targets", "x0").cls()
    variance = registry.get("variance", "fixed_small").cls()
    return Denoiser(net, schedule, target, variance)


def _levels_from_time(schedule, time):
    """The (alpha, sigma) a denoiser's time input stands for, shaped [B, 1] (float64).

    Samplers call with one level per batch, so the schedule is asked once per distinct time.
    """
    from difftk.diffusion.flow_schedule import FlowSchedule

    times, index = torch.unique(time.double(), return_inverse=True)
    if schedule.has_table:
        levels = schedule.levels_at(times)
    elif isinstance(schedule, FlowSchedule):  # path time times time_scale
        alpha, sigma = schedule.path(times / schedule.time_scale)
        return alpha[index, None], sigma[index, None]
    else:
        levels = schedule.levels_from_sigma_edm(torch.exp(4 * times))
    return levels.alpha.double()[index, None], levels.sigma.double()[index, None]


class GaussianIdealNet(nn.Module):
    """The exact E[x0 | x_t] for data N(mu, s^2 I)."""

    def __init__(self, schedule, mu: float = MU, s: float = STD):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s

    def forward(self, x, time, labels=None):
        a, sg = _levels_from_time(self.schedule, time)
        a, sg = (v.view(-1, *[1] * (x.dim() - 1)) for v in (a, sg))
        gain = self.s**2 * a / (a**2 * self.s**2 + sg**2)
        return (self.mu + gain * (x.double() - a * self.mu)).float()


def gaussian_denoiser(schedule, mu: float = MU, s: float = STD) -> Denoiser:
    """A Denoiser around the ideal network for N(mu, s^2 I)."""
    return _x0_denoiser(GaussianIdealNet(schedule, mu, s), schedule)


class MixtureIdealNet(nn.Module):
    """For 2-D data sum_k w_k N(m_k, s_k^2 I) the ideal denoiser is closed form:
    x_t | k ~ N(alpha m_k, (alpha^2 s_k^2 + sigma^2) I), so with responsibilities
    r_k(x_t) proportional to w_k N(x_t; alpha m_k, (alpha^2 s_k^2 + sigma^2) I),
    E[x0 | x_t] = sum_k r_k (m_k + s_k^2 alpha / (alpha^2 s_k^2 + sigma^2) (x_t - alpha m_k)).

    A label k (0 <= k < K) conditions on the component; None or the null label K does not.
    """

    def __init__(self, schedule, weights, means, stds):
        super().__init__()
        self.schedule = schedule
        self.w = torch.tensor(weights, dtype=torch.float64)
        self.m = torch.tensor(means, dtype=torch.float64)  # [K, 2]
        self.s = torch.tensor(stds, dtype=torch.float64)  # [K]

    def forward(self, x, time, labels=None):
        a, sg = _levels_from_time(self.schedule, time)  # [B, 1]
        x = x.double()
        var = a**2 * self.s[None] ** 2 + sg**2  # [B, K]
        diff = x[:, None, :] - a[:, :, None] * self.m[None]  # [B, K, 2]
        log_r = torch.log(self.w)[None] - (diff**2).sum(-1) / (2 * var) - torch.log(var)
        post = self.m[None] + (self.s[None, :, None] ** 2 * a[:, :, None] / var[:, :, None]) * diff
        r = torch.softmax(log_r, dim=1)
        if labels is not None:
            k = len(self.w)
            chosen = torch.nn.functional.one_hot(labels.clamp(max=k - 1), k).double()
            r = torch.where((labels < k)[:, None], chosen, r)
        return (r[:, :, None] * post).sum(1).float()


def mixture_denoiser(schedule, weights=(0.3, 0.7), means=((-1.5, 0.0), (1.5, 0.0)),
                     stds=(0.35, 0.35)) -> Denoiser:
    """A Denoiser around the ideal network for a 2-D Gaussian mixture (class k = component k)."""
    return _x0_denoiser(MixtureIdealNet(schedule, weights, means, stds), schedule)
