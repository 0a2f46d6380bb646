"""An adaptive ODE solver: Dormand-Prince 5(4) with step-size control (Dormand & Prince 1980;
Hairer, Norsett & Wanner, "Solving ODEs I", §II.4-5), as torchdiffeq's ``dopri5`` and
scipy's ``RK45`` integrate.

Written here rather than depending on torchdiffeq: the flow sampler and the ODE likelihood
need one fixed-signature integrator of a tensor state, with its function evaluations
counted, and these fifty lines are tested against closed-form solutions and scipy
(tests/test_ode_likelihood.py). The error of a step is measured as torchdiffeq does: the RMS
over all elements of err / (atol + rtol max(|y|, |y_new|)); a step is accepted when it is
at most 1, and the next step is h min(10, max(0.2, 0.9 ratio^(-1/5))).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# The Butcher tableau of DOPRI5: nodes c, stage weights a, 5th-order b, and b - b* (the
# embedded 4th-order solution's difference), from Dormand & Prince 1980, Table 2.
C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
A = ((),
     (1 / 5,),
     (3 / 40, 9 / 40),
     (44 / 45, -56 / 15, 32 / 9),
     (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
     (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
     (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
B_ERR = (35 / 384 - 5179 / 57600, 0.0, 500 / 1113 - 7571 / 16695, 125 / 192 - 393 / 640,
         -2187 / 6784 + 92097 / 339200, 11 / 84 - 187 / 2100, -1 / 40)


@dataclass
class Solution:
    y: Tensor
    evaluations: int  # calls of f
    accepted: int  # accepted steps
    rejected: int


def dopri5(f: Callable[[float, Tensor], Tensor], y0: Tensor, t0: float, t1: float, *,
           rtol: float = 1e-3, atol: float = 1e-6, first_step: float | None = None,
           max_steps: int = 10_000) -> Solution:
    """y(t1) for dy/dt = f(t, y), y(t0) = y0 (t1 may lie below t0). The first-same-as-last
    property reuses the last stage of an accepted step, so a step costs six evaluations."""
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    t, y = t0, y0
    k1 = f(t, y)
    evaluations = 1
    h = first_step if first_step is not None else _initial_step(f, t, y, k1, direction, rtol,
                                                                atol)
    if first_step is None:
        evaluations += 1
    h = min(abs(h), span)
    accepted = rejected = 0
    while direction * (t1 - t) > 1e-12 * max(1.0, span):
        if accepted + rejected >= max_steps:
            raise RuntimeError(f"dopri5 took more than {max_steps} steps from t = {t0} to "
                               f"{t1} (stopped at t = {t:.6g}); loosen rtol / atol")
        h = min(h, abs(t1 - t))
        step = direction * h
        k = [k1]
        for i in range(1, 7):
            yi = y + step * sum(a * kj for a, kj in zip(A[i], k, strict=False) if a != 0.0)
            k.append(f(t + C[i] * step, yi))
        evaluations += 6
        y_new = y + step * sum(b * ki for b, ki in zip(B, k, strict=True) if b != 0.0)
        err = step * sum(e * ki for e, ki in zip(B_ERR, k, strict=True) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        ratio = float((err / scale).double().pow(2).mean().sqrt())
        if ratio <= 1.0:
            t, y, k1 = t + step, y_new, k[6]  # FSAL: the 7th stage is f(t + h, y_new)
            accepted += 1
        else:
            rejected += 1
        factor = 10.0 if ratio == 0 else 0.9 * ratio ** (-0.2) if math.isfinite(ratio) else 0.2
        h = h * min(10.0, max(0.2, factor))
    return Solution(y, evaluations, accepted, rejected)


def _initial_step(f, t, y, f0, direction, rtol, atol) -> float:
    """Hairer, Norsett & Wanner's starting step (II.4, as torchdiffeq and scipy choose it)."""
    scale = atol + rtol * y.abs()
    d0 = float((y / scale).double().pow(2).mean().sqrt())
    d1 = float((f0 / scale).double().pow(2).mean().sqrt())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = f(t + direction * h0, y + direction * h0 * f0)
    d2 = float(((f1 - f0) / scale).double().pow(2).mean().sqrt()) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** 0.2
    return min(100 * h0, h1)
