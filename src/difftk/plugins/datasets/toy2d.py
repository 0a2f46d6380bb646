"""Two-dimensional toy distributions, generated from a seed (no files)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from difftk.data.dataset import DataBundle, Dataset
from difftk.hookspecs import hookimpl


def _swiss_roll(rng, n):
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    return np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5.0


def _moons(rng, n):
    a = math.pi * rng.random(n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(a), 1 - np.cos(a))
    y = np.where(upper, np.sin(a), 0.5 - np.sin(a))
    return np.stack([x - 0.5, y - 0.25], 1) * 1.5


def _eight_gaussians(rng, n):
    k = rng.integers(0, 8, n)
    centres = np.stack([np.cos(k * math.pi / 4), np.sin(k * math.pi / 4)], 1) * 2.0
    return centres + 0.1 * rng.standard_normal((n, 2))


def _checkerboard(rng, n):
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1)


def _mixture(rng, n):
    k = rng.random(n) < 0.3
    centres = np.where(k[:, None], np.array([[-1.5, 0.0]]), np.array([[1.5, 0.0]]))
    return centres + 0.35 * rng.standard_normal((n, 2))


SHAPES = {"swiss_roll": _swiss_roll, "moons": _moons, "eight_gaussians": _eight_gaussians,
          "checkerboard": _checkerboard, "mixture": _mixture}


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

    def load(self) -> DataBundle:
        x = self.sample(self.n + self.heldout, self.seed)
        return DataBundle(train=x[: self.n], heldout=x[self.n:], kind="vector")


@hookimpl
def register_datasets(register):
    register(Toy2D)
