"""The exact likelihood of the probability-flow ODE, in bits per dimension (Song et al. 2021,
§4.3 and Appendix D.2; Chen et al. 2018's instantaneous change of variables; Grathwohl et al.
2019's Hutchinson estimator), for flow and diffusion models alike.

Along the ODE dx/du = v(x, u) (diffusion/probability_flow.py) the log-density obeys
d log p_u(x_u) / du = -div v, so log p_0(x_0) = log p_1(x_1) + int_0^1 div v du: integrate
the image and the running divergence together from the data end of the axis to its noise
end with Dormand-Prince (diffusion/ode_solver.py), then score x_1 under the prior N(0,
sigma_1^2 I) (exact where alpha_1 = 0, a flow path; otherwise the approximation Song et
al. make at sigma_max). The divergence is Hutchinson's z^T (dv/dx) z with one Rademacher z
per image for the whole path (one vector-Jacobian product per evaluation), or exact for
small data (one per dimension).

Images: each pixel is dequantised uniformly within its 8-bit bin, whose width in the
network's coordinates is 1 / (255 std) per channel (data.std; 2 / 255 for [-1, 1] data), so
bits/dim = -(log p(x) + sum log width) / (D ln 2) bounds the discrete likelihood.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difftk.diffusion.grids import Level
from difftk.diffusion.ode_solver import dopri5
from difftk.diffusion.probability_flow import axis_ends, flow_velocity


def ode_log_likelihood(denoiser, x0: Tensor, *, generator: torch.Generator,
                       labels: Tensor | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                       start: float = 1e-3, exact_divergence: bool = False
                       ) -> tuple[Tensor, int]:
    """(log p(x0) in nats per sample [B], network evaluations per sample)."""
    schedule = denoiser.schedule
    hi, lo = axis_ends(schedule, start)
    b, shape = x0.shape[0], x0.shape[1:]
    dims = int(math.prod(shape))
    z = (torch.randint(0, 2, x0.shape, generator=generator, device=generator.device)
         .to(x0.device, torch.float64) * 2 - 1)
    calls = [0]

    def x0_of(x, level: Level):
        calls[0] += 1
        return denoiser.x0_and_extra(x.float(), level.batch(b, x.device), labels)[0].double()

    def f(u: float, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x = y[:, :dims].reshape(b, *shape).detach().requires_grad_(True)
            v = flow_velocity(schedule, x0_of, u, x)
            if exact_divergence:
                div = torch.zeros(b, dtype=torch.float64, device=x.device)
                for i in range(dims):
                    basis = torch.zeros_like(x).flatten(1)
                    basis[:, i] = 1
                    (g,) = torch.autograd.grad(v, x, basis.view_as(x), retain_graph=True)
                    div += g.flatten(1)[:, i]
            else:
                (g,) = torch.autograd.grad(v, x, z)
                div = (g * z).flatten(1).sum(1)
        return torch.cat([v.detach().flatten(1), div.detach()[:, None]], dim=1)

    y0 = torch.cat([x0.double().flatten(1), torch.zeros(b, 1, dtype=torch.float64,
                                                        device=x0.device)], dim=1)
    solution = dopri5(f, y0, lo, hi, rtol=rtol, atol=atol)
    x1, integral = solution.y[:, :dims], solution.y[:, dims]
    _, sigma1 = (float(v) for v in schedule.alpha_sigma(torch.tensor([hi], dtype=torch.float64)))
    prior = -0.5 * (x1 / sigma1).pow(2).sum(1) - dims * (math.log(sigma1)
                                                         + 0.5 * math.log(2 * math.pi))
    return prior + integral, calls[0]


@torch.no_grad()
def ode_nll_bits_per_dim(denoiser, x0: Tensor, *, bin_width: Tensor | None, batch_size: int,
                         generator: torch.Generator, rtol: float = 1e-5, atol: float = 1e-5,
                         start: float = 1e-3, exact_divergence: bool = False
                         ) -> dict[str, float]:
    """Mean bits/dim of ``x0`` (images dequantised in bins of ``bin_width`` per channel), or
    nats/dim of continuous data (``bin_width`` None); and the evaluations per sample."""
    total, count, nfe = 0.0, 0, 0
    dims = int(math.prod(x0.shape[1:]))
    log_width = 0.0
    if bin_width is not None:
        per_channel = torch.as_tensor(bin_width, dtype=torch.float64).reshape(-1)
        pixels = dims // x0.shape[1]
        log_width = float(per_channel.log().sum()) * pixels if per_channel.numel() > 1 else \
            float(per_channel.log()) * dims
    for i in range(0, x0.shape[0], batch_size):
        xb = x0[i:i + batch_size].double()
        if bin_width is not None:
            width = torch.as_tensor(bin_width, dtype=torch.float64, device=xb.device)
            width = width.reshape(1, -1, *[1] * (xb.dim() - 2)) if width.numel() > 1 else width
            u = torch.rand(xb.shape, generator=generator, device=generator.device,
                           dtype=torch.float64).to(xb.device)
            xb = xb + (u - 0.5) * width
        logp, calls = ode_log_likelihood(denoiser, xb, generator=generator, rtol=rtol,
                                         atol=atol, start=start,
                                         exact_divergence=exact_divergence)
        total += float((logp + log_width).sum())
        count += xb.shape[0]
        nfe = max(nfe, calls)
    mean = -total / count / dims
    if bin_width is None:
        return {"nll_nats_per_dim": mean, "nll_nfe": nfe}
    return {"nll_bpd": mean / math.log(2), "nll_nfe": nfe}
