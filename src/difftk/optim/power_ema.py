"""EDM2's power-function EMA (Karras et al. 2024, "Analyzing and improving the training
dynamics of diffusion models", §3 and appendix C): the profile exponent gamma and its width
sigma_rel, the per-step decay, and the least-squares reconstruction of one profile from
stored ones. Shared by the ``power`` EMA rule and post-hoc EMA.

A power EMA at time t with exponent gamma averages past weights with the profile
p(tau) = (gamma + 1) tau^gamma / t^(gamma + 1) on [0, t].
"""

from __future__ import annotations

import functools

import numpy as np

# sigma_rel of the power profile tends to sqrt(1/12) = 0.2887 as gamma -> 0 (EDM2 eq. 123).
SIGMA_REL_MAX = float(np.sqrt(1 / 12))


@functools.cache
def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The power-profile exponent with relative width sigma_rel (EDM2 eq. 126, algorithm 2).

    The largest real root of gamma^3 + 7 gamma^2 + (16 - s^-2) gamma + (12 - s^-2) = 0.
    """
    t = float(sigma_rel) ** -2
    return float(np.roots([1.0, 7.0, 16.0 - t, 12.0 - t]).real.max())


def gamma_to_sigma_rel(gamma: float) -> float:
    """sigma_rel = sqrt((gamma + 1) / ((gamma + 2)^2 (gamma + 3))) (EDM2 eq. 123)."""
    return float(np.sqrt((gamma + 1) / (gamma + 2) ** 2 / (gamma + 3)))


def power_beta(gamma: float, step: int) -> float:
    """beta_t = (1 - 1/t)^(gamma + 1) (EDM2 eq. 127 with t counted in optimizer steps).

    EDM2 counts t in images with delta = batch size; with a constant batch the ratio
    delta / t is 1 / step. The first step gives beta = 0: the EMA starts at the weights.
    """
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def power_inner(a_t, a_gamma, b_t, b_gamma) -> np.ndarray:
    """<p_a, p_b> of two power profiles ending at a_t, b_t (EDM2 eq. 151, algorithm 3).

    = (ga + 1)(gb + 1) r^e / ((ga + gb + 1) max(a_t, b_t)), r = a_t / b_t,
    e = gb where a_t < b_t, else -ga. Broadcasts.
    """
    a_t, a_gamma, b_t, b_gamma = (np.asarray(v, dtype=np.float64) for v in (a_t, a_gamma, b_t, b_gamma))
    ratio = a_t / b_t
    exponent = np.where(a_t < b_t, b_gamma, -a_gamma)
    return (a_gamma + 1) * (b_gamma + 1) * ratio**exponent / ((a_gamma + b_gamma + 1) * np.maximum(a_t, b_t))


def solve_power_coefficients(in_t, in_gamma, out_t: float, out_gamma: float) -> np.ndarray:
    """Least-squares coefficients of the stored profiles for the profile (out_t, out_gamma).

    With A_ij = <p_i, p_j> and b_i = <p_i, q>, x = A^-1 b normalised to sum 1 (EDM2
    ``solve_posthoc_coefficients``).
    """
    in_t = np.asarray(in_t, dtype=np.float64).reshape(-1, 1)
    in_gamma = np.asarray(in_gamma, dtype=np.float64).reshape(-1, 1)
    gram = power_inner(in_t, in_gamma, in_t.T, in_gamma.T)
    rhs = power_inner(in_t[:, 0], in_gamma[:, 0], out_t, out_gamma)
    # lstsq, not solve: two snapshots of nearly equal profiles make the Gram matrix singular.
    x = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return x / x.sum()
