"""The gradient a learned variance receives (analysis/variance_gradients.py) against seed 003's
closed forms: eq. 4.2 for the derivative with respect to sigma^2, eq. 4.4 with respect to
log sigma^2, through each parameterisation, and the seed's numerical example recomputed."""

import math

import pytest
import torch

from difftk.analysis.variance_gradients import HEAD, LOG_VARIANCE, VARIANCE, variance_gradients
from difftk.diffusion.levels import broadcast
from difftk.diffusion.vlb import normal_kl, posterior, vlb_term_bits
from difftk.plugins.schedules import Linear
from difftk.plugins.variance import Learned, LearnedLog, LearnedRange


def _batch(variance, seed=0):
    """A batch at steps t >= 2 (KL terms), a wrong x0 estimate, a variance head output, and
    the gradient of each sample's bound term (bits/dim) with respect to that output."""
    g = torch.Generator().manual_seed(seed)
    sch = Linear(T=50)
    t = torch.tensor([2, 10, 30, 50])
    levels = sch.levels_at(t)
    x0 = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = broadcast(levels.alpha.double(), x0) * x0 + broadcast(levels.sigma.double(), x0) * eps
    x0_hat = x0 + 0.3 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    post = posterior(sch, t)
    if isinstance(variance, LearnedLog):  # log sigma^2 around the posterior's
        out = broadcast(post.log_variance_clipped, x0) + 0.5 * torch.randn(x0.shape, generator=g,
                                                                           dtype=torch.float64)
    else:
        out = 0.2 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        if isinstance(variance, Learned):
            out = out.abs() * broadcast(post.beta, x0)  # sigma^2 = out + beta > 0
    out.requires_grad_(True)
    bits = vlb_term_bits(sch, variance, x0, x_t, t, x0_hat, out).bits
    (grad,) = torch.autograd.grad(bits.sum(), out)
    # the seed's L_t in nats per element, and its two derivatives (eq. 4.2, 4.4) per element
    err2 = (broadcast(post.c_x0, x0) * (x0 - x0_hat)) ** 2  # (mu_hat - mu_theta)^2
    hat = broadcast(post.log_variance_clipped.exp(), x0)  # sigma_hat^2
    log_var = variance.log_variance(broadcast(post.beta, x0), hat, out.detach())
    var = log_var.exp()
    per_element = 1 / (x0[0].numel() * math.log(2))  # the bound's mean over dims, in bits
    eq_4_2 = per_element * 0.5 * (1 / var - hat / var**2 - err2 / var**2)
    eq_4_4 = per_element * 0.5 * (1 - hat / var - err2 / var)
    return sch, levels, out.detach(), grad, eq_4_2, eq_4_4


@pytest.mark.parametrize("variance", [Learned(), LearnedLog(), LearnedRange()],
                         ids=["learned", "learned_log", "learned_range"])
def test_the_chain_rule_gives_equations_4_2_and_4_4(variance):
    sch, levels, out, grad, eq_4_2, eq_4_4 = _batch(variance)
    got = variance_gradients(variance, sch, levels, out, grad)

    def mean_abs(x):
        return x.abs().flatten(1).mean(1)

    assert torch.allclose(got[:, VARIANCE], mean_abs(eq_4_2), rtol=1e-6)
    assert torch.allclose(got[:, LOG_VARIANCE], mean_abs(eq_4_4), rtol=1e-6)
    head = {"learned": eq_4_2, "learned_log": eq_4_4}.get(variance.name)
    if head is not None:  # what the network's head receives is the seed's equation itself
        assert torch.allclose(got[:, HEAD], mean_abs(head), rtol=1e-6)
    assert torch.allclose(got[:, HEAD], mean_abs(grad), rtol=1e-12)


def test_the_seeds_example_recomputed():
    """Seed 003 §4.2: sigma_hat^2 = 0.01, (mu_hat - mu)^2 = 0.05, and the network outputs
    sigma^2 = 0.001. The seed computes with 0.0001 instead; both by autograd on the KL."""

    def f64(value, grad=False):
        return torch.tensor(value, dtype=torch.float64, requires_grad=grad)

    def derivatives(var):
        s, v = f64(math.log(var), True), f64(var, True)
        kl_s = normal_kl(f64(0.0), f64(math.log(0.01)), f64(math.sqrt(0.05)), s)
        kl_v = normal_kl(f64(0.0), f64(math.log(0.01)), f64(math.sqrt(0.05)), v.log())
        return (torch.autograd.grad(kl_v, v)[0].item(), torch.autograd.grad(kl_s, s)[0].item())

    assert derivatives(0.001) == pytest.approx((-29_500.0, -29.5), rel=1e-9)
    assert derivatives(0.0001) == pytest.approx((-2.995e6, -299.5), rel=1e-9)  # the seed's
    # the two differ by the factor sigma^2 (d/ds = sigma^2 d/dsigma^2): 1,000x at 0.001
    d_var, d_log = derivatives(0.001)
    assert d_var / d_log == pytest.approx(1 / 0.001)
