"""Two-dimensional toy distributions, generated from a seed (no files), with their density.

Each shape is a sampler and, for evaluation, the exact density of what it samples
(convolved with the optional Gaussian ``noise``): closed forms for the Gaussian mixtures
and the checkerboard (a box convolved with a Gaussian is a difference of normal CDFs);
for the curves (swiss roll, moons) the density is an integral over the curve parameter,
evaluated with a fine midpoint rule. A curve without noise has no density.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from difftk.data.dataset import DataBundle, Dataset
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

LOG_2PI = math.log(2 * math.pi)


def _swiss_roll(rng, n):
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    return np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0


def _swiss_roll_curve(u: Tensor) -> Tensor:
    """The roll's points for u ~ U(0, 1), as _swiss_roll draws them."""
    t = 1.5 * math.pi * (1 + 2 * u)
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], -1) / 5.0


def _moons(rng, n):
    a = math.pi * rng.random(n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(a), 1 - np.cos(a))
    y = np.where(upper, np.sin(a), 0.5 - np.sin(a))
    return np.stack([x - 0.5, y - 0.25], 1) * 1.5


def _moons_curve(u: Tensor) -> Tensor:
    """Both moons, each with probability 1/2: u in [0, 1/2) the upper, [1/2, 1) the lower."""
    upper = u < 0.5
    a = math.pi * torch.where(upper, 2 * u, 2 * u - 1)
    x = torch.where(upper, torch.cos(a), 1 - torch.cos(a))
    y = torch.where(upper, torch.sin(a), 0.5 - torch.sin(a))
    return torch.stack([x - 0.5, y - 0.25], -1) * 1.5


EIGHT_CENTRES = [(2.0 * math.cos(k * math.pi / 4), 2.0 * math.sin(k * math.pi / 4))
                 for k in range(8)]
EIGHT_STD = 0.1


def _eight_gaussians(rng, n):
    k = rng.integers(0, 8, n)
    centres = np.stack([np.cos(k * math.pi / 4), np.sin(k * math.pi / 4)], 1) * 2.0
    return centres + EIGHT_STD * rng.standard_normal((n, 2))


def _checkerboard(rng, n):
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1)


# The 8 unit squares (lower-left corners) _checkerboard fills, each with probability 1/8:
# x1's unit cell i in {-2, -1, 0, 1}, x2 in [p - 2b, p - 2b + 1) with p = i mod 2, b in {0, 1}.
CHECKER_SQUARES = [(i, i % 2 - 2 * b) for i in (-2, -1, 0, 1) for b in (0, 1)]

MIXTURE = [(0.3, (-1.5, 0.0)), (0.7, (1.5, 0.0))]
MIXTURE_STD = 0.35


def _mixture(rng, n):
    k = rng.random(n) < 0.3
    centres = np.where(k[:, None], np.array([[-1.5, 0.0]]), np.array([[1.5, 0.0]]))
    return centres + MIXTURE_STD * rng.standard_normal((n, 2))


SHAPES = {"swiss_roll": _swiss_roll, "moons": _moons, "eight_gaussians": _eight_gaussians,
          "checkerboard": _checkerboard, "mixture": _mixture}
CURVES = {"swiss_roll": _swiss_roll_curve, "moons": _moons_curve}


def gaussian_mixture_log_prob(x: Tensor, weights: list[float], centres: list[tuple[float, float]],
                              std: float) -> Tensor:
    """log sum_k w_k N(x; c_k, std^2 I) in 2-D."""
    c = torch.tensor(centres, dtype=x.dtype)
    log_w = torch.log(torch.tensor(weights, dtype=x.dtype))
    sq = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    return torch.logsumexp(log_w - sq / (2 * std**2), 1) - LOG_2PI - 2 * math.log(std)


def _checkerboard_log_prob(x: Tensor, noise: float) -> Tensor:
    """(1/8) sum over squares of the square's indicator convolved with N(0, noise^2 I):
    per axis Phi((x - a) / s) - Phi((x - a - 1) / s)."""
    p = torch.zeros(x.shape[0], dtype=x.dtype)
    for a, b in CHECKER_SQUARES:
        if noise == 0:
            inside = (x[:, 0] >= a) & (x[:, 0] < a + 1) & (x[:, 1] >= b) & (x[:, 1] < b + 1)
            p = p + inside.to(x.dtype)
        else:
            n = torch.distributions.Normal(torch.zeros((), dtype=x.dtype), noise)
            p = p + (n.cdf(x[:, 0] - a) - n.cdf(x[:, 0] - a - 1)) * \
                (n.cdf(x[:, 1] - b) - n.cdf(x[:, 1] - b - 1))
    return torch.log(p / 8)


def _curve_log_prob(x: Tensor, curve, noise: float, chunk: int = 4096) -> Tensor:
    """log of int_0^1 N(x; curve(u), noise^2 I) du by the midpoint rule, with nodes at most
    noise / 8 apart along the curve (the rule's error then falls like exp(-2 pi^2 64) for
    a Gaussian kernel: far below float64 rounding)."""
    dense = curve(torch.linspace(0, 1, 100001, dtype=x.dtype))
    length = float((dense[1:] - dense[:-1]).norm(dim=-1).sum())
    nodes = max(256, math.ceil(8 * length / noise))
    points = curve((torch.arange(nodes, dtype=x.dtype) + 0.5) / nodes)
    p2 = (points**2).sum(-1)
    out = []
    for part in x.split(chunk):
        sq = ((part**2).sum(-1, keepdim=True) + p2 - 2 * part @ points.T).clamp_min(0)
        out.append(torch.logsumexp(-sq / (2 * noise**2), 1) - math.log(nodes))
    return torch.cat(out) - LOG_2PI - 2 * math.log(noise)


class Toy2D(Dataset):
    """2-D toy data: swiss roll, two moons, eight Gaussians, checkerboard, a 30/70 mixture."""

    name = "toy2d"
    shape: Literal["swiss_roll", "moons", "eight_gaussians", "checkerboard", "mixture"] = Field(
        "swiss_roll", description="which distribution")
    n: int = Field(20000, ge=10, description="number of training points")
    heldout: int = Field(5000, ge=1, description="number of held-out points")
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise added to each point")
    seed: int = Field(0, description="seed of the generator that draws the points")

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """n fresh points from the distribution (a reference sample for evaluation)."""
        rng = np.random.default_rng(seed)
        x = SHAPES[self.shape](rng, n)
        if self.noise:
            x = x + self.noise * rng.standard_normal(x.shape)
        return torch.from_numpy(x).float()

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log density of ``sample``'s distribution at points x [N, 2] (float64)."""
        x = x.double()
        s2 = self.noise**2
        if self.shape == "eight_gaussians":
            return gaussian_mixture_log_prob(x, [1 / 8] * 8, EIGHT_CENTRES,
                                             math.sqrt(EIGHT_STD**2 + s2))
        if self.shape == "mixture":
            return gaussian_mixture_log_prob(x, [w for w, _ in MIXTURE], [c for _, c in MIXTURE],
                                             math.sqrt(MIXTURE_STD**2 + s2))
        if self.shape == "checkerboard":
            return _checkerboard_log_prob(x, self.noise)
        if self.noise == 0:
            raise DataError(f"toy2d {self.shape} without noise lies on a curve and has no "
                            f"density; set data.noise > 0")
        return _curve_log_prob(x, CURVES[self.shape], self.noise)

    def load(self) -> DataBundle:
        x = self.sample(self.n + self.heldout, self.seed)
        return DataBundle(train=x[: self.n], heldout=x[self.n:], kind="vector")


@hookimpl
def register_datasets(register):
    register(Toy2D)
