"""One component from a short spec (``name:key=value``) or a TOML table, and the
recipe's sampler with a command line's changes."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from difftk.errors import RecipeError
from difftk.families import BY_SECTION
from difftk.plugin_guard import component_boundary
from difftk.recipe.messages import _errors
from difftk.recipe.overrides import apply_overrides, parse_value
from difftk.recipe.resolved import Recipe
from difftk.recipe.validation import validate


def component_from_spec(section: str, spec: str, registry=None, defaults: dict | None = None):
    """A component of a recipe section from "name" or "name:key=value:key=value" (the NAMES
    that difftk plot commands take). ``defaults`` fill parameters the component has and the
    spec leaves out (e.g. a sigma_data for plots, where there is no data set)."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    name, *settings = spec.split(":")
    params: dict[str, Any] = {}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep:
            raise RecipeError([("", f'"{item}" is not of the form key=value')], spec)
        params[key.strip()] = parse_value(raw.strip())
    entry = registry.get(BY_SECTION[section].name, name)  # unknown names: did-you-mean
    for key, value in (defaults or {}).items():
        if key in entry.cls.model_fields and key not in params:
            params[key] = value
    try:
        with component_boundary(entry, "checking its parameters"):
            return entry.cls.model_validate(params)
    except ValidationError as exc:
        raise RecipeError(_errors(exc, section, entry.cls), spec) from None


def component_from_table(section: str, table: dict, source: str, registry=None):
    """A component of a recipe section from its TOML table ({name = ..., **params})."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    params = dict(table)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise RecipeError([(f"{section}.name", "is missing: name the component")], source)
    entry = registry.get(BY_SECTION[section].name, name)
    try:
        with component_boundary(entry, "checking its parameters"):
            return entry.cls.model_validate(params)
    except ValidationError as exc:
        raise RecipeError(_errors(exc, section, entry.cls), source) from None


def sampler_with_overrides(recipe: Recipe, name: str | None = None, steps: int | None = None,
                           guidance: float | None = None, sets: list[str] | None = None,
                           registry=None):
    """The recipe's sampler with a command line's changes (--sampler, --steps, --guidance,
    --set), validated against the rest of the recipe (e.g. ddpm needs a table)."""
    from difftk.registry import default_registry

    data = recipe.to_dict()
    overrides = list(sets or [])
    if name is not None:
        overrides.insert(0, f'sampler.name="{name}"')
    if steps is not None:
        overrides.append(f"sampler.steps={steps}")
    if guidance is not None:
        overrides.append(f"sampler.guidance={guidance}")
    problems = apply_overrides(data, overrides)
    if problems:
        raise RecipeError(problems, "--set")
    return validate(data, registry or default_registry(), "--set").parts["sampler"]
