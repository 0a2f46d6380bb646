"""The diffusers scheduler config that matches a difftk run's schedule, target and variance.

difftk's t-space table holds beta_1..beta_T for t = 1..T; diffusers stores the same T
betas indexed k = 0..T-1 (k = t - 1), so the list is written as is and the shift lives in
the network (timestep_shift.py). prediction_type follows the target (eps: "epsilon", x0:
"sample", v: "v_prediction"; Ho et al. 2020, Salimans & Ho 2022); variance_type follows
the fixed variances of Ho et al. 2020 (beta_tilde: "fixed_small", beta: "fixed_large").
"""

from __future__ import annotations

from typing import Any

from difftk.interop.errors import InteropError

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
VARIANCE_TYPES = {"fixed_small": "fixed_small", "fixed_large": "fixed_large"}


def _plain_linear(schedule) -> bool:
    return (schedule.name == "linear" and not schedule.zero_terminal_snr
            and not schedule.rescale_to_T)


TABLE_SPACINGS = ("linspace", "leading", "trailing")


def _spacing(sampler) -> str:
    grid = getattr(sampler, "grid", None)
    return grid if grid in TABLE_SPACINGS else "leading"


def scheduler_config(parts: dict[str, Any], diffusers_version: str) -> dict[str, Any]:
    """A DDPMScheduler config (DDIMScheduler and the others read it too) for a recipe's parts."""
    schedule, target, variance = parts["schedule"], parts["target"], parts["variance"]
    if not getattr(schedule, "has_table", False):
        raise InteropError(f'diffusers\' DDPM/DDIM schedulers need a t-space schedule with a '
                           f'beta table, and "{schedule.name}" is a sigma-space schedule')
    if target.name not in PREDICTION_TYPES:
        raise InteropError(f'diffusers\' schedulers predict eps, x0 or v, and this run\'s target '
                           f'is "{target.name}"')
    if variance.name not in VARIANCE_TYPES:
        raise InteropError(f'diffusers\' schedulers cannot express the variance "{variance.name}" '
                           f"(only fixed_small and fixed_large map)")
    config: dict[str, Any] = {
        "_class_name": "DDPMScheduler",
        "_diffusers_version": diffusers_version,
        "num_train_timesteps": schedule.num_steps,
        "prediction_type": PREDICTION_TYPES[target.name],
        "variance_type": VARIANCE_TYPES[variance.name],
        # difftk's samplers clamp x0 only when asked (clip_denoised); diffusers' default is on.
        "clip_sample": bool(getattr(parts.get("sampler"), "clip_denoised", False)),
        "clip_sample_range": 1.0,
        # the recipe's own grid when it is a table spacing diffusers knows (the same steps:
        # diffusion/grids.py table_timesteps); diffusers' default otherwise
        "timestep_spacing": _spacing(parts.get("sampler")),
        "steps_offset": 0,
    }
    if _plain_linear(schedule):  # google/ddpm-cifar10-32's own form
        config.update(beta_schedule="linear", beta_start=schedule.beta_start,
                      beta_end=schedule.beta_end, trained_betas=None)
    else:
        config.update(beta_schedule="linear", trained_betas=schedule.betas().tolist())
    return config
