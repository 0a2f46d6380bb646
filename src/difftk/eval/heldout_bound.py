"""Seed 003's learning-curve metrics, NLL in bits/dim and mean MSE (Tables 5.1 and 6.1, the
"training characteristics" figures of chapters 4-6), as ``log.eval_every`` logs them.

Both come out of one pass of the full variational bound (eval/nll.py): the NLL is the bound
L_T + sum_t L_t + L_0 in bits/dim, the mean MSE the per-pixel ||mu_tilde - mu_theta||^2
averaged over t = 1..T. They exist only where the bound does: on a t-space schedule's table
of T steps, and on image data scored as 8-bit pixels by the discretised decoder (seed 003
Algorithm 2). Elsewhere ``bound_problem`` says why, once, and the run skips them.
"""

from __future__ import annotations

# recipe name in log.eval_metrics -> the keys of nll_bits_per_dim's result it logs
BOUND_METRICS: dict[str, tuple[str, ...]] = {
    "nll": ("nll_bpd", "prior_bpd", "decoder_bpd"),
    "mse": ("mean_mse", "x0_mse"),
}


def bound_problem(schedule, kind: str, in_latents: bool = False) -> str | None:
    """Why the bound's NLL and mean MSE do not apply to this schedule and data (``in_latents``:
    the network models a [latents] encoding, not the pixels), or None."""
    if not getattr(schedule, "has_table", False):
        return (f'the "{schedule.name}" schedule has no table of T steps to sum the '
                "variational bound over (seed 003 §3)")
    if in_latents:
        return ("the bound scores 8-bit pixels (seed 003 Algorithm 2), and this run's network "
                "models their latent encoding")
    if kind != "image":
        return (f"the bound scores 8-bit pixels (seed 003 Algorithm 2), and this run's data "
                f"are {kind}s")
    return None


def bound_keys(metrics: list[str]) -> list[str]:
    """The result keys that the named metrics (entries of log.eval_metrics) log."""
    return [key for name in metrics for key in BOUND_METRICS.get(name, ())]
