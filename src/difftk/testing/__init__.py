"""Contract checks for difftk components, the way scikit-learn's ``parametrize_with_checks`` works.

A plugin author tests a component against its family's contract in one line::

    from difftk.testing import parametrize_with_checks

    @parametrize_with_checks([SoftMinSNR(gamma=4.0)])
    def test_contract(component, check):
        check(component)

Each check is a plain function that raises AssertionError with a sentence when the
component breaks the contract (a weighting must be finite and non-negative over the whole
SNR range, a schedule's SNR must fall monotonically, a sampler must map a fixed noise to a
fixed sample, ...). ``check_component`` runs them all at once. difftk runs the same checks
over every built-in component (tests/test_contracts.py).

``difftk.testing.denoisers`` holds denoisers whose answer is known in closed form (a Gaussian,
a 2-D Gaussian mixture), to test a sampler or a target without training a network.
"""

from difftk.testing.runner import (
    builtin_examples,
    check_component,
    checks_for,
    example_instance,
    parametrize_with_checks,
)

__all__ = ["builtin_examples", "check_component", "checks_for", "example_instance",
           "parametrize_with_checks"]
