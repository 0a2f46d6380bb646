"""The table spacings equal what diffusers computes, for every step count 1..1000: numpy's
own expressions from DDPMScheduler / DDIMScheduler ``set_timesteps`` (0-based index), and
the installed diffusers schedulers themselves.

    linspace: np.linspace(0, T - 1, n).round()[::-1]
    leading:  (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset   (steps_offset 0)
    trailing: np.round(np.arange(T, 0, -T / n)) - 1

improved-diffusion's ``space_timesteps(T, [n])`` (one section) accumulates a float stride
and rounds each sum; it is linspace in exact arithmetic and differs where float noise
lands on the other side of a .5 (278 of the 1000 step counts, by one step).
"""

import numpy as np
import pytest

from difftk.diffusion.grids import table_timesteps

T = 1000

NUMPY = {
    "linspace": lambda n: np.linspace(0, T - 1, n).round()[::-1],
    "leading": lambda n: (np.arange(0, n) * (T // n)).round()[::-1],
    "trailing": lambda n: np.round(np.arange(T, 0, -T / n)) - 1,
}


def zero_based(spacing, n):
    return [int(t) - 1 for t in table_timesteps(spacing, T, n).tolist()]


@pytest.mark.parametrize("spacing", NUMPY)
def test_every_step_count_is_numpys_own_expression(spacing):
    wrong = [n for n in range(1, T + 1)
             if zero_based(spacing, n) != sorted({int(i) for i in NUMPY[spacing](n)},
                                                 reverse=True)]
    assert not wrong, f"{spacing} differs from numpy for n = {wrong[:10]} ({len(wrong)} in all)"


@pytest.mark.parametrize("spacing", NUMPY)
def test_the_installed_diffusers_schedulers_pick_the_same_steps(spacing):
    from diffusers import DDIMScheduler, DDPMScheduler

    for cls in (DDIMScheduler, DDPMScheduler):
        scheduler = cls(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=0)
        for n in (1, 2, 10, 27, 48, 50, 100, 250, 999, 1000):
            scheduler.set_timesteps(n)
            theirs = sorted({int(t) for t in scheduler.timesteps}, reverse=True)
            assert zero_based(spacing, n) == theirs, (cls.__name__, spacing, n)


def test_improved_diffusions_respacing_differs_from_linspace_by_float_drift_only():
    def space_timesteps(n):
        frac_stride = 1 if n <= 1 else (T - 1) / (n - 1)
        cur_idx, taken = 0.0, []
        for _ in range(n):
            taken.append(round(cur_idx))
            cur_idx += frac_stride
        return sorted(set(taken), reverse=True)

    differ = [n for n in range(1, T + 1) if zero_based("linspace", n) != space_timesteps(n)]
    assert len(differ) == 278  # of 1000: a running float sum drifts from numpy's start + i * step
    for n in differ:  # and where they differ, it is by one step at a time
        ours, theirs = zero_based("linspace", n), space_timesteps(n)
        assert len(ours) == len(theirs)
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) == 1
