"""The table spacings against transcriptions of their references, for every step count.

diffusers' DDPMScheduler / DDIMScheduler ``set_timesteps`` (0-based index):

    linspace: np.linspace(0, T - 1, n).round()[::-1]
    leading:  (np.arange(0, n) * (T // n)).round()[::-1] + steps_offset   (steps_offset 0)
    trailing: np.round(np.arange(T, 0, -T / n)) - 1

improved-diffusion's ``space_timesteps(T, [n])`` (one section, respace.py):

    frac_stride = 1 if n <= 1 else (T - 1) / (n - 1); cur_idx = 0.0
    for _ in range(n): taken.append(round(cur_idx)); cur_idx += frac_stride

Both round half to even (np.round, Python's round). The transcriptions below keep that
rule and evaluate it on exact fractions (Python's round of a Fraction is exact), so
they state what the formulas mean rather than where float noise happens to land.
"""

from fractions import Fraction

import pytest

from difftk.diffusion.grids import table_timesteps

T = 1000


def diffusers_linspace(T, n):
    return sorted({round(Fraction(k * (T - 1), n - 1)) if n > 1 else 0 for k in range(n)},
                  reverse=True)


def diffusers_leading(T, n):
    step_ratio = T // n
    return sorted({k * step_ratio for k in range(n)}, reverse=True)


def diffusers_trailing(T, n):
    step_ratio = Fraction(T, n)
    values, v = [], Fraction(T)
    while v > 0:  # np.arange(T, 0, -step_ratio)
        values.append(round(v) - 1)
        v -= step_ratio
    return sorted(set(values), reverse=True)


def improved_diffusion_space_timesteps(T, n):
    frac_stride = Fraction(1) if n <= 1 else Fraction(T - 1, n - 1)
    cur_idx, taken = Fraction(0), []
    for _ in range(n):
        taken.append(round(cur_idx))
        cur_idx += frac_stride
    return sorted(set(taken), reverse=True)


def one_based(spacing, n):
    return [int(t) - 1 for t in table_timesteps(spacing, T, n).tolist()]


@pytest.mark.parametrize("spacing, reference", [
    ("linspace", diffusers_linspace), ("leading", diffusers_leading),
    ("trailing", diffusers_trailing)])
def test_every_step_count_matches_diffusers(spacing, reference):
    wrong = [n for n in range(1, T + 1) if one_based(spacing, n) != reference(T, n)]
    assert not wrong, f"{spacing} differs from diffusers for n = {wrong[:10]} ({len(wrong)} in all)"


def test_linspace_is_improved_diffusions_respacing_for_every_step_count():
    wrong = [n for n in range(1, T + 1)
             if one_based("linspace", n) != improved_diffusion_space_timesteps(T, n)]
    assert not wrong, f"differs from space_timesteps for n = {wrong[:10]} ({len(wrong)} in all)"


def test_ties_go_to_the_even_index():
    """n = 25: 41.625 k hits .5 at k = 4, 12, 20; both references give 166, 500, 832 (0-based)."""
    index = one_based("linspace", 25)
    assert {166, 500, 832} <= set(index) and not {167, 499, 833} & set(index)
    # trailing, n = 48: T - k T / n is 62.5 at k = 45 and 312.5 at k = 33; half to even gives
    # 62 and 312 (0-based 61, 311), where float steps of 1000 / 48 land above the tie.
    index = one_based("trailing", 48)
    assert {61, 311} <= set(index) and not {62, 312} & set(index)
