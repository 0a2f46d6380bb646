"""The baseline a user would write by hand: DDPM's training loop on the same network.

Ho et al. 2020, Algorithm 1: draw t uniformly from 1..T, noise eps, x_t = sqrt(abar_t) x0 +
sqrt(1 - abar_t) eps, regress the network's output on eps with a mean squared error, one
Adam step with the implementation difftk's optimizer runs (fused, foreach or the for-loop:
the same kernel, so the comparison times the loops, not two optimizers). Linear betas
1e-4..0.02, T = 1000. The network is a copy of difftk's (same layout, same initial weights),
called directly with the time t, under the recipe's autocast dtype (and torch.compile when
the recipe compiles); nothing else: no EMA,
no clipping, no NaN guard, no logging. Batches are random draws from the same data tensor.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from difftk.nn.auto_speed import maybe_compile

T = 1000


def ddpm_alpha_bar(device: torch.device) -> torch.Tensor:
    """abar_t for t = 1..T of DDPM's linear schedule (Ho et al. 2020, section 4)."""
    betas = torch.linspace(1e-4, 0.02, T, device=device)
    return torch.cumprod(1 - betas, 0)


class RawLoop:
    name = "raw"

    def __init__(self, difftk_loop, data_train: torch.Tensor, labels: torch.Tensor | None):
        self.device = difftk_loop.device
        self.batch = difftk_loop.batch
        self.net = copy.deepcopy(difftk_loop.model.net).train()  # channels_last kept
        self.forward = maybe_compile(self.net, difftk_loop.recipe.train.compile, self.device)
        self.channels = difftk_loop.spec.shape[0]
        # difftk's own optimizer's implementation (fused on plain CPU/CUDA tensors by default)
        defaults = difftk_loop.optimizer.defaults
        same = {k: defaults[k] for k in ("fused", "foreach") if defaults.get(k) is not None}
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=difftk_loop.lr, **same)
        self.autocast_dtype = difftk_loop.precision.autocast_dtype(self.device)
        self.x = data_train.to(self.device)
        self.labels = None if labels is None else labels.to(self.device)
        self.alpha_bar = ddpm_alpha_bar(self.device)
        self.generator = torch.Generator(self.device).manual_seed(0)

    def step(self) -> None:
        b, dev, gen = self.batch, self.device, self.generator
        idx = torch.randint(0, self.x.shape[0], (b,), device=dev, generator=gen)
        x0 = self.x[idx]
        labels = None if self.labels is None else self.labels[idx]
        t = torch.randint(0, T, (b,), device=dev, generator=gen)
        eps = torch.randn(x0.shape, device=dev, generator=gen)
        ab = self.alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        with torch.autocast(dev.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            out = self.forward(x_t, (t + 1).float(), labels)
        loss = F.mse_loss(out[:, :self.channels].float(), eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
