"""difftk.testing's contract checks: every built-in passes them, and broken parts fail them."""

import pytest
import torch
from pydantic import Field

import difftk
from difftk.testing import builtin_examples, check_component, checks_for, parametrize_with_checks
from difftk.testing.generation_checks import check_sampler_fixed_noise_fixed_sample
from difftk.testing.math_checks import (
    check_schedule_snr_monotone,
    check_weight_finite_nonnegative,
    check_weight_relative_to,
)


@parametrize_with_checks(builtin_examples())
def test_builtin_component_meets_its_family_contract(component, check):
    check(component)


def test_every_family_has_checks_beyond_the_common_ones():
    from difftk.families import FAMILIES
    from difftk.testing.common import COMMON_CHECKS

    examples = {c.family: c for c in builtin_examples()}
    for family in FAMILIES:
        assert len(checks_for(examples[family.name])) > len(COMMON_CHECKS), family.name


class NegativeLogSNR(difftk.Weighting):
    """The raw log SNR, which is negative below SNR = 1."""

    name = "raw_log_snr"

    def __call__(self, snr):
        return torch.log(snr)


class IgnoresRelativeTo(difftk.Weighting):
    """A weighting that overrides on_target and forgets the x0 conversion."""

    name = "forgetful"
    relative_to: str = Field("x0", description="claimed convention")

    def __call__(self, snr):
        return torch.clamp(snr, max=5.0)

    def on_target(self, levels, target, schedule=None):
        return self.at(levels, schedule).float()


def test_negative_weighting_fails_the_check():
    with pytest.raises(AssertionError, match="negative|not finite"):
        check_weight_finite_nonnegative(NegativeLogSNR())


def test_ignoring_relative_to_fails_the_check():
    with pytest.raises(AssertionError, match="relative_to"):
        check_weight_relative_to(IgnoresRelativeTo())


def test_undocumented_parameter_and_summary_fail_check_component():
    class Bare(difftk.Weighting):
        name = "bare"
        gamma: float = 1.0

        def __call__(self, snr):
            return snr

    Bare.__doc__ = None
    with pytest.raises(AssertionError) as exc:
        check_component(Bare())
    assert "check_parameters_documented" in str(exc.value) and "gamma" in str(exc.value)
    assert "check_name_and_summary" in str(exc.value)


def test_non_monotone_schedule_fails_the_check():
    class Wobbly(difftk.SigmaSchedule):
        """EDM sigma that rises and falls again along u."""

        name = "wobbly"

        def sigma_at(self, u):
            return 0.01 + 80 * torch.sin(torch.pi * u).abs()

        def sigma_edm_range(self):
            return 0.01, 80.01

    with pytest.raises(AssertionError, match="decreases"):
        check_schedule_snr_monotone(Wobbly())


def test_unseeded_sampler_fails_the_check():
    from difftk.diffusion.sampler import SampleResult
    from difftk.plugins.samplers import Euler

    class Jittery(Euler):
        """Euler plus noise from the global RNG instead of the generator."""

        name = "jittery"

        def sample(self, denoiser, noise, generator, labels=None):
            result = super().sample(denoiser, noise, generator, labels)
            return SampleResult(result.x + 0.01 * torch.randn_like(result.x), result.nfe)

    with pytest.raises(AssertionError, match="two samples"):
        check_sampler_fixed_noise_fixed_sample(Jittery(steps=4))


def test_every_hookspec_is_documented_with_its_signature(root):
    import inspect

    from difftk import hookspecs

    doc = (root / "docs" / "plugins.md").read_text()
    specs = [(n, f) for n, f in vars(hookspecs).items()
             if callable(f) and hasattr(f, "difftk_spec")]
    assert len(specs) >= 13
    for name, fn in specs:
        assert f"`{name}{inspect.signature(fn)}`" in doc, name
