"""Built-in loss weightings (seed 001 §7 and §8.3; the ELBO's weight, seed 003 ch. 4-5).

Each docstring states the MSE its formula weights (``relative_to``): "target" is the
trained target's MSE as in seed 001 eq. 39; "x0" is the x0-MSE, which the objective
turns into the trained target's weight by dividing by the target's error factor (SNR for
eps, SNR + 1 for v, 1 for x0; seed 003 eq. 5.7). The defaults follow each paper.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field, model_validator

from difftk.diffusion.levels import SIGMA_DATA_HELP, Levels, SigmaData
from difftk.diffusion.weighting import RELATIVE_TO_HELP, RelativeTo, Weighting
from difftk.hookspecs import hookimpl


def _x0_default():
    return Field("x0", description=RELATIVE_TO_HELP)


class Uniform(Weighting):
    """w = 1: the unweighted MSE of the trained target (Ho et al. 2020's L_simple).

    relative_to = "target" (default): L_simple. With "x0" the target's MSE is divided
    by its error factor, i.e. the plain x0-MSE whatever the target.
    """

    name = "uniform"

    def __call__(self, snr):
        return torch.ones_like(snr)


class SNRWeight(Weighting):
    """w = SNR on the trained target's MSE (seed 001 §7.2; Kingma & Gao 2023).

    relative_to = "target" (default), the seed's convention (an x0-model's SNR-weighted
    x0-MSE is an eps-model's L_simple, since ||eps err||^2 = SNR ||x0 err||^2). With "x0"
    it weights the x0-MSE, so an eps-model gets exactly L_simple.
    """

    name = "snr"

    def __call__(self, snr):
        return snr.clone()


class SNRPow(Weighting):
    """w = SNR^gamma on the trained target's MSE, gamma > 0 (seed 001 §7.2, the general form).

    relative_to = "target" (default). gamma = 1 is ``snr``; the default 0.5 sits halfway
    between uniform and SNR on a log scale.
    """

    name = "snr_pow"
    gamma: float = Field(0.5, gt=0, description="exponent of the SNR")

    def __call__(self, snr):
        return snr.pow(self.gamma)


class LogSNR(Weighting):
    """w = log(1 + SNR) = softplus(logSNR): the log-scaled SNR weight, made non-negative.

    Seed 001 §7.2 suggests w = log SNR to compress SNR's range, but log SNR is negative
    below SNR = 1 and a negative weight would push the model away from the target. log(1 +
    SNR) equals SNR - SNR^2/2 + ... near SNR = 0 (so it fades out at high noise like
    ``snr``) and log SNR + SNR^-1 + ... at high SNR (the seed's logarithmic growth).
    relative_to = "target" (default), as in the seed.
    """

    name = "log_snr"

    def __call__(self, snr):
        return torch.log1p(snr)


class MinSNR(Weighting):
    """Min-SNR-gamma: w = min(SNR, gamma) on the x0-MSE (Hang et al. 2023; seed 001 §7.3).

    With the default relative_to = "x0" an eps-model gets min(SNR, gamma) / SNR and a
    v-model min(SNR, gamma) / (SNR + 1), as in the paper and diffusers' scripts.
    """

    name = "min_snr"
    gamma: float = Field(5.0, gt=0, description="cap on the weight")
    relative_to: RelativeTo = _x0_default()

    def __call__(self, snr):
        return torch.clamp(snr, max=self.gamma)


class MaxSNR(Weighting):
    """Max-SNR: w = max(SNR, gamma) on the x0-MSE (Salimans & Ho 2022's truncated SNR;
    seed 001 §7.4).

    The default gamma = 1 with relative_to = "x0" is the paper's max(||x0 err||^2,
    ||eps err||^2): a floor that keeps supervising the noisiest levels.
    """

    name = "max_snr"
    gamma: float = Field(1.0, gt=0, description="floor of the weight")
    relative_to: RelativeTo = _x0_default()

    def __call__(self, snr):
        return torch.clamp(snr, min=self.gamma)


class SNRClip(Weighting):
    """SNR clipping: w = min(max(SNR, tau_min), tau_max) on the x0-MSE (seed 001 §7.5).

    The trapezoid of max_snr's floor and min_snr's cap, so its defaults are theirs
    (tau_min = 1, Salimans & Ho 2022; tau_max = 5, Hang et al. 2023), relative_to = "x0".
    """

    name = "snr_clip"
    tau_min: float = Field(1.0, gt=0, description="floor of the weight (low SNR)")
    tau_max: float = Field(5.0, gt=0, description="cap on the weight (high SNR)")
    relative_to: RelativeTo = _x0_default()

    @model_validator(mode="after")
    def _ordered(self):
        if self.tau_min > self.tau_max:
            raise ValueError("tau_min must not exceed tau_max")
        return self

    def __call__(self, snr):
        return torch.clamp(snr, min=self.tau_min, max=self.tau_max)


class P2(Weighting):
    """Perception-prioritized weight w = 1 / (kappa + SNR)^gamma (Choi et al. 2022; seed 001 §7.1).

    relative_to = "target" (default): the paper multiplies an eps-model's eps-MSE
    (L_simple) by it. w -> kappa^-gamma as SNR -> 0 and -> 0 as SNR -> infinity.
    """

    name = "p2"
    kappa: float = Field(1.0, gt=0, description="offset k that bounds the weight at low SNR")
    gamma: float = Field(0.5, ge=0, description="strength of the high-SNR down-weighting")

    def __call__(self, snr):
        return (self.kappa + snr).pow(-self.gamma)


class EDMWeight(Weighting):
    """EDM's lambda = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on the
    x0-MSE (Karras et al. 2022; seed 001 §8.3), with sigma^2 = 1 / SNR.

    relative_to = "x0" (default): with EDM's x0 preconditioning lambda c_out^2 = 1, so
    the network's own regression target has unit weight at every sigma.
    """

    name = "edm"
    sigma_data: SigmaData = Field("data", description=SIGMA_DATA_HELP)
    relative_to: RelativeTo = _x0_default()

    def __call__(self, snr):
        if self.sigma_data == "data":
            raise RuntimeError("sigma_data must be resolved before use")
        return snr + 1.0 / float(self.sigma_data) ** 2


class EDM2Uncertainty(EDMWeight):
    """EDM2's learned weighting: EDM's lambda on the x0-MSE, divided by e^u(sigma), plus u
    (Karras et al. 2024b, §5 "Uncertainty-based loss weighting", eq. 77; Kendall & Gal 2018).

    u(sigma) is a one-layer magnitude-preserving network of 128 Fourier features of
    ln(sigma) / 4, trained with the model and saved in its checkpoint
    (difftk.nn.loss_uncertainty). At its optimum u = ln E[lambda ||x0_hat - x0||^2 | sigma],
    so the effective weight lambda / e^u makes every noise level's expected loss 1.
    """

    name = "edm2_uncertainty"
    channels: int = Field(128, ge=1, le=4096, description="Fourier features of u(sigma)")

    def uncertainty_network(self):
        from difftk.nn.loss_uncertainty import LossUncertainty

        return LossUncertainty(self.channels)


class ELBO(Weighting):
    """The ELBO's weight: turns the target's MSE into the L_t term of the variational bound
    of a t-space schedule with fixed reverse variance (seed 003 eq. 4.6, 5.3, 5.7).

    On the x0-MSE (relative_to = "x0", the default, so every target gets the true bound):
    L_t = ||mu_tilde - mu_theta||^2 / (2 s_t^2) = C0_t^2 / (2 s_t^2) ||x0 - x0_hat||^2,
    with C0_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) the posterior mean's x0
    coefficient (seed 004 Theory II.4). For eps this is beta_t^2 / (2 s_t^2 alpha_t
    (1 - alpha_bar_t)) (Ho et al. 2020 eq. 12); with s_t^2 = beta_tilde_t it is
    (SNR_{t-1} - SNR_t) / 2 on the x0-MSE. ``variance`` picks s_t^2: the posterior
    beta_tilde_t ("fixed_small"; at t = 1, where beta_tilde_1 = 0, beta_tilde_2 as
    improved-diffusion clips it) or beta_t ("fixed_large"). At t = 1 the weight is the
    mean term of a Gaussian decoder's -log p(x0 | x1). Per dimension: with the mean-
    reduced MSE the loss is L_t / D in nats, with reduction = "sum" it is L_t. Between
    table steps (fractional t) log w is interpolated linearly in t.
    """

    name = "elbo"
    needs_table = "is defined by the steps of"
    variance: Literal["fixed_small", "fixed_large"] = Field(
        "fixed_small", description='reverse variance s_t^2: "fixed_small" (beta_tilde_t) or '
        '"fixed_large" (beta_t)')
    relative_to: RelativeTo = _x0_default()

    def __call__(self, snr):
        raise TypeError("the elbo weighting is not a function of SNR alone; call "
                        "at(levels, schedule) with a t-space schedule")

    def check(self, parts):
        problems = []
        schedule, variance = parts.get("schedule"), parts.get("variance")
        if schedule is None or not schedule.has_table or variance is None or variance.learned:
            return problems  # no table: table_rule.py says so
        # The bound is the sampler's only if s_t^2 is the variance the recipe samples with.
        tab = schedule.table
        beta, beta_tilde = tab["betas"][1:], tab["posterior_variance"][2:]
        used = variance.log_variance(beta, beta_tilde, None)
        options = {"fixed_small": torch.log(beta_tilde), "fixed_large": torch.log(beta)}
        chosen = options.pop(self.variance)
        other, other_log = next(iter(options.items()))
        if not torch.allclose(used, chosen) and torch.allclose(used, other_log):
            problems.append(("variance", f'the recipe samples with the variance "{variance.name}", '
                             f'whose bound needs variance = "{other}" here'))
        return problems

    def table(self, schedule) -> torch.Tensor:
        """The weight on the x0-MSE at t = 0..T (float64; index 0 repeats t = 1)."""
        tab = schedule.table
        c0 = tab["posterior_c_x0"].clone()
        if self.variance == "fixed_small":
            var = tab["posterior_variance"].clone()
            var[1] = var[2] if var.shape[0] > 2 else tab["betas"][0]
        else:
            var = torch.cat([tab["betas"][:1], tab["betas"]])
        var[0] = var[1]
        c0[0] = c0[1]
        return c0.square() / (2.0 * var)

    def at(self, levels: Levels, schedule=None):
        if schedule is None or not getattr(schedule, "has_table", False):
            raise TypeError("the elbo weighting needs the t-space schedule the levels come from")
        w = self.table(schedule)
        T = w.shape[0] - 1
        t = levels.t if levels.t is not None else schedule.time_from_log_snr(levels.log_snr)
        t = t.to(torch.float64).cpu().clamp(1, T)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=T)
        frac = t - lo
        log_w = torch.log(w)
        interpolated = torch.exp(log_w[lo] * (1 - frac) + log_w[hi] * frac)
        return torch.where(frac == 0, w[lo], interpolated).to(levels.alpha.device)


def _rectified_flow_time(snr):
    """The rectified-flow time t of a level, t / (1 - t) = sigma_edm = 1 / sqrt(SNR)."""
    return 1.0 / (1.0 + snr.sqrt())


class SD3SigmaSqrt(Weighting):
    """Stable Diffusion 3's "sigma_sqrt" weight t^-2 on the velocity MSE, t the rectified-flow
    time (diffusers' ``compute_loss_weighting_for_sd3``; Esser et al. 2024 §3.1)."""

    name = "sd3_sigma_sqrt"

    def __call__(self, snr):
        return _rectified_flow_time(snr) ** -2


class SD3CosMap(Weighting):
    """SD3's "cosmap" weight 2 / (pi (1 - 2t + 2t^2)) on the velocity MSE (Esser et al. 2024
    eq. 21 as a weight; diffusers' ``compute_loss_weighting_for_sd3``)."""

    name = "sd3_cosmap"

    def __call__(self, snr):
        t = _rectified_flow_time(snr)
        return 2.0 / (math.pi * (1.0 - 2.0 * t + 2.0 * t**2))


class _SiTWeight(Weighting):
    """SiT's weights for noise and score models (Ma et al. 2024, ``training_losses``), on the
    eps-MSE and applied here to the x0-MSE (relative_to = "x0"; ||eps err||^2 = SNR ||x0 err||^2
    at fixed x_t). D = sigma sigma' - (alpha' / alpha) sigma^2 is the path's g^2 / 2 (SiT's
    ``compute_drift`` diffusion term), from the schedule's rates; the x0-MSE forms below
    multiply out the 1 / alpha, so they stay finite at alpha = 0."""

    relative_to: RelativeTo = _x0_default()
    reads_schedule: ClassVar[bool] = True

    def __call__(self, snr):
        raise TypeError(f"the {self.name} weighting reads the schedule's rates; call "
                        "at(levels, schedule)")

    def x0_form(self, alpha, sigma, d_alpha, d_sigma):
        raise NotImplementedError

    def at(self, levels: Levels, schedule=None):
        if schedule is None:
            raise TypeError(f"the {self.name} weighting needs the schedule of the levels")
        rate = schedule.path_derivative(levels)
        alpha, sigma = levels.alpha.double(), levels.sigma.double()
        return self.x0_form(alpha, sigma, rate.d_alpha.to(sigma), rate.d_sigma.to(sigma))


class SiTVelocity(_SiTWeight):
    """SiT's "velocity" weight (D / sigma)^2 on the eps-MSE, which makes a noise model's loss
    the velocity MSE: (sigma' alpha - alpha' sigma)^2 / sigma^2 on the x0-MSE (1 / t^2 on
    rectified flow)."""

    name = "sit_velocity"

    def x0_form(self, alpha, sigma, d_alpha, d_sigma):
        return (d_sigma * alpha - d_alpha * sigma) ** 2 / sigma**2


class SiTLikelihood(_SiTWeight):
    """SiT's "likelihood" weight D / sigma^2 on the eps-MSE, Song et al. 2021's maximum-
    likelihood weighting lambda = g^2 of the score loss: (sigma' alpha^2 / sigma - alpha' alpha)
    / sigma^2 on the x0-MSE."""

    name = "sit_likelihood"

    def x0_form(self, alpha, sigma, d_alpha, d_sigma):
        return (d_sigma * alpha**2 / sigma - d_alpha * alpha) / sigma**2


BUILTIN_WEIGHTS = (Uniform, SNRWeight, SNRPow, LogSNR, MinSNR, MaxSNR, SNRClip, P2, EDMWeight,
                   EDM2Uncertainty, ELBO, SD3SigmaSqrt, SD3CosMap, SiTVelocity, SiTLikelihood)


@hookimpl
def register_weights(register):
    for cls in BUILTIN_WEIGHTS:
        register(cls)
