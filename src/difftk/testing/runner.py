"""Which checks apply to a component, and the pytest glue (``parametrize_with_checks``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from difftk.component import Component
from difftk.families import BY_NAME, FAMILIES

Check = Callable[[Component], None]

# sigma_data = "data" is resolved from the training set at run start; checks use this value.
EXAMPLE_SIGMA_DATA = 0.5


def _family_checks() -> dict[str, list[Check]]:
    from difftk.testing import (
        augmentation_checks,
        generation_checks,
        latents_checks,
        math_checks,
        training_checks,
    )

    table: dict[str, list[Check]] = {}
    for module in (math_checks, generation_checks, training_checks, augmentation_checks,
                   latents_checks):
        for family, checks in module.CHECKS.items():
            table.setdefault(family, []).extend(checks)
    return table


def checks_for(component: Component) -> list[Check]:
    """The common checks and the checks of the component's family, in a fixed order."""
    from difftk.testing.common import COMMON_CHECKS

    if component.family not in BY_NAME:
        raise ValueError(f"{type(component).__name__} has no known family ({component.family!r})")
    return [*COMMON_CHECKS, *_family_checks().get(component.family, [])]


def check_component(component: Component) -> None:
    """Run every check; raise one AssertionError that lists each failure."""
    failures = []
    for check in checks_for(component):
        try:
            check(component)
        except AssertionError as exc:
            failures.append(f"{check.__name__}: {exc}")
    if failures:
        raise AssertionError(f"{component.name} breaks the {component.family} contract:\n  " +
                             "\n  ".join(failures))


def parametrize_with_checks(components: Iterable[Component]):
    """A pytest.mark.parametrize over (component, check) pairs, with readable ids."""
    import pytest

    pairs, ids = [], []
    for component in components:
        for check in checks_for(component):
            pairs.append((component, check))
            ids.append(f"{component.family}:{component.name}-{check.__name__}")
    return pytest.mark.parametrize("component, check", pairs, ids=ids)


# A required text parameter (a data path) without an example gets this: the part must then
# report the missing file as a one-sentence DataError, which the data-set check accepts.
MISSING_PATH = "difftk-contract-example/missing"


def example_instance(cls: type[Component]) -> Component:
    """A component built from its defaults, the class's ``example_params`` if it has them
    (for required parameters), sigma_data = "data" resolved to a number, and a path that
    does not exist for a required text parameter."""
    params = dict(getattr(cls, "example_params", {}) or {})
    for name, field in cls.model_fields.items():
        if name in params:
            continue
        if field.is_required() and field.annotation is str:
            params[name] = MISSING_PATH
        elif not field.is_required() and field.get_default() == "data":
            params[name] = EXAMPLE_SIGMA_DATA
    return cls.model_validate(params)


def builtin_examples(family: str | None = None) -> list[Component]:
    """One example instance of every built-in component (of one family, or of all)."""
    return [example_instance(entry.cls) for entry in _builtin_entries(family)]


def _builtin_entries(family: str | None):
    from difftk.registry import default_registry

    registry = default_registry()
    families = [family] if family else [f.name for f in FAMILIES]
    return [registry.get(fam, name) for fam in families for name in registry.names(fam)
            if registry.get(fam, name).provider.builtin]


@functools.cache
def _examples_cached(family: str) -> tuple[Component, ...]:
    return tuple(builtin_examples(family))


def partners(component: Component, family: str) -> list[Component]:
    """Built-in members of ``family`` that a recipe may combine with ``component``."""
    from difftk.diffusion.table_rule import table_problems

    section = BY_NAME[family].section
    own = BY_NAME[component.family].section
    return [p for p in _examples_cached(family)
            if not component.check({section: p}) and not p.check({own: component})
            and not table_problems({own: component, section: p})]
