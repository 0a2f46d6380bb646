"""Validation of a whole recipe: every section, every component, and the combinations
that cannot work, each problem with the recipe path of its field."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from difftk.diffusion.table_rule import table_problems
from difftk.errors import DifftkError, RecipeError, UnknownComponentError, with_article
from difftk.families import BY_SECTION, FAMILIES
from difftk.plugin_guard import component_boundary
from difftk.recipe.messages import _errors, _printable, _short_repr
from difftk.recipe.resolved import Recipe, logger_parts
from difftk.recipe.sections import COMPONENT_SECTIONS, SETTINGS


def _migrate_lr_warmup(data: dict[str, Any], problems: list[tuple[str, str]]) -> dict[str, Any]:
    """The former ``train.lr_warmup_steps = N`` is ``[lr_schedule] name = "linear_warmup",
    warmup_steps = N`` (0: the default constant schedule), so older recipes and run
    directories keep loading; beside an [lr_schedule] section it is refused (it would be
    ignored)."""
    train = data.get("train")
    if not isinstance(train, dict) or "lr_warmup_steps" not in train:
        return data
    train = dict(train)
    warm = train.pop("lr_warmup_steps")
    data = {**data, "train": train}
    if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
        problems.append(("train.lr_warmup_steps", f"must be a whole number >= 0 (got {warm!r})"))
    elif "lr_schedule" in data:
        problems.append(("train.lr_warmup_steps", f"has moved to [lr_schedule] (name = "
                         f'"linear_warmup", warmup_steps = {warm}, or the warmup_steps of '
                         f"another schedule) and this recipe has an [lr_schedule]: remove "
                         f"train.lr_warmup_steps"))
    elif warm:
        data["lr_schedule"] = {"name": "linear_warmup", "warmup_steps": warm}
    return data


def validate_settings(data: dict, sections: dict, registry) -> tuple[dict[str, Any], list]:
    """The plain-settings sections (``sections``: name -> model) of a parsed recipe, and the
    problems found in them (a [log] section's logger parts included)."""
    problems: list[tuple[str, str]] = []
    settings: dict[str, Any] = {}
    for section, cls in sections.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            problems.append((section, "must be a table"))
            continue
        try:
            settings[section] = cls.model_validate(raw)
        except ValidationError as exc:
            problems += _errors(exc, section, cls)
    if "log" in settings:
        problems += logger_parts(settings["log"], registry)[1]
    return settings, problems


def grid_problems(parts: dict[str, Any]) -> list[tuple[str, str]]:
    """A recipe that validates must sample: the sampler's grid of noise levels on the
    schedule must be built and fall strictly (a repeated level makes a step of length 0,
    which multistep solvers divide by)."""
    sampler, schedule = parts.get("sampler"), parts.get("schedule")
    if sampler is None or schedule is None:
        return []
    try:
        grid = sampler.noise_levels(schedule)
    except DifftkError as exc:
        return [("sampler", str(exc))]
    except (ArithmeticError, ValueError, IndexError, RuntimeError) as exc:
        return [("sampler", f"its grid cannot be built on this schedule ({exc})")]
    sigma = [float(v) for v in grid.sigma]
    if any(not (a == a) for a in sigma):
        return [("sampler", "its grid of noise levels holds NaN on this schedule")]
    repeats = [a for a, b in zip(sigma, sigma[1:], strict=False) if b >= a]
    if repeats:
        return [("sampler", f"its grid repeats or raises the noise level {repeats[0]:.4g} "
                            f"({len(repeats)} of {len(sigma) - 1} steps have no length on this "
                            "schedule); use fewer steps or a schedule with more levels")]
    return []


def validate(data: dict[str, Any], registry, source: str = "recipe") -> Recipe:
    """Validate a parsed recipe dict; raise RecipeError listing every problem."""
    problems: list[tuple[str, str]] = []
    data = _migrate_lr_warmup(data, problems)
    known = set(SETTINGS) | set(COMPONENT_SECTIONS)
    for section in data:
        if section not in known:
            close = difflib.get_close_matches(section, sorted(known), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            problems.append((_printable(section), f"unknown section [{_printable(section)}]{hint}"))
    settings, found = validate_settings(data, SETTINGS, registry)
    problems += found
    parts: dict[str, Any] = {}
    for family in FAMILIES:
        if family.section not in BY_SECTION:
            continue  # a list in a settings section (log.backends), checked above
        raw = data.get(family.section)
        if raw is None:
            if family.default is None:
                problems.append((family.section, f"the recipe needs a [{family.section}] section "
                                 f"naming {with_article(family.noun)}"))
                continue
            raw = {"name": family.default}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            problems.append((f"{family.section}.name", f"must name {with_article(family.noun)}"
                             + ("" if not isinstance(raw, dict) or "name" not in raw else
                                f" as a string (got {_short_repr(raw['name'])})")))
            continue
        try:
            entry = registry.get(family.name, str(raw["name"]))
        except UnknownComponentError as exc:
            problems.append((f"{family.section}.name", str(exc)))
            continue
        params = {k: v for k, v in raw.items() if k != "name"}
        try:
            with component_boundary(entry, "checking its parameters"):
                parts[family.section] = entry.cls.model_validate(params)
        except ValidationError as exc:
            problems += _errors(exc, family.section, entry.cls)
        except DifftkError as exc:
            problems.append((family.section, str(exc)))
    if not problems:
        problems += table_problems(parts)
        for section, part in parts.items():
            entry = registry.get(BY_SECTION[section].name, part.name)
            try:
                with component_boundary(entry, "checking the recipe"):
                    found = list(part.check(parts))
            except DifftkError as exc:
                problems.append((section, str(exc)))
                continue
            for path, msg in found:
                problems.append((f"{section}.{path}" if path else section, msg))
    if not problems:
        problems += grid_problems(parts)
    if problems:
        raise RecipeError(problems, source)
    return Recipe(settings["run"], settings["train"], settings["log"], parts)
