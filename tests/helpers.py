"""Denoisers whose answer is known in closed form, so samplers can be tested without training."""

from __future__ import annotations

import torch
from torch import nn

from difftk.diffusion.denoiser import Denoiser
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedSmall


class GaussianIdealNet(nn.Module):
    """For data N(mu, s^2 I): E[x0 | x_t] = mu + s^2 alpha / (alpha^2 s^2 + sigma^2) (x_t - alpha mu).

    It reads the noise level back from the time input through the schedule.
    """

    def __init__(self, schedule, mu: float, s: float):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s

    def forward(self, x, time, labels=None):
        if self.schedule.has_table:
            levels = self.schedule.levels_at(time.double())
        else:
            levels = self.schedule.levels_from_sigma_edm(torch.exp(4 * time.double()))
        a = levels.alpha.double().view(-1, *[1] * (x.dim() - 1))
        sg = levels.sigma.double().view(-1, *[1] * (x.dim() - 1))
        gain = self.s**2 * a / (a**2 * self.s**2 + sg**2)
        return (self.mu + gain * (x.double() - a * self.mu)).float()


def gaussian_denoiser(schedule, mu=0.5, s=0.3) -> Denoiser:
    return Denoiser(GaussianIdealNet(schedule, mu, s), schedule, X0(), FixedSmall())
