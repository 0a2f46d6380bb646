"""A validated recipe (``Recipe``): settings and one component per family, and its TOML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tomli_w
from pydantic import ValidationError

from difftk.errors import DifftkError, RecipeError, UnknownComponentError, quoted, with_article
from difftk.families import BY_NAME
from difftk.plugin_guard import component_boundary
from difftk.recipe.messages import _errors
from difftk.recipe.sections import COMPONENT_SECTIONS, LogSection, RunSection, TrainSection


@dataclass
class Recipe:
    """A validated recipe: settings sections and one component per family."""

    run: RunSection
    train: TrainSection
    log: LogSection
    parts: dict[str, Any]  # section -> Component

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run.model_dump(), "train": self.train.model_dump(),
                               "log": self.log.model_dump()}
        for section in COMPONENT_SECTIONS:
            part = self.parts[section]
            # TOML has no null: an unset optional parameter is left out (its default is None).
            out[section] = {"name": part.name,
                            **{k: v for k, v in part.params().items() if v is not None}}
        return out

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def with_parts(self, **updates) -> Recipe:
        return Recipe(self.run, self.train, self.log, {**self.parts, **updates})

    def loggers(self, registry=None) -> list[Any]:
        """The logger components that ``log.backends`` lists (validated)."""
        from difftk.registry import default_registry

        parts, problems = logger_parts(self.log, registry or default_registry())
        if problems:
            raise RecipeError(problems)
        return parts


def logger_parts(log: LogSection, registry) -> tuple[list[Any], list[tuple[str, str]]]:
    """log.backends as logger components, and the problems with its entries."""
    family = BY_NAME["loggers"]
    parts: list[Any] = []
    problems: list[tuple[str, str]] = []
    for index, item in enumerate(log.backends):
        path = f"log.{family.names_field}.{index}"
        raw = {"name": item} if isinstance(item, str) else dict(item)
        name = raw.pop("name", None)
        if not isinstance(name, str):
            problems.append((path, f'must name {with_article(family.noun)} ("jsonl", or a table '
                                   f'{{name = "wandb", ...}})'))
            continue
        try:
            entry = registry.get(family.name, name)
        except UnknownComponentError as exc:
            problems.append((path, str(exc)))
            continue
        if any(p.name == name for p in parts):
            problems.append((path, f"lists {quoted(name)} a second time"))
            continue
        try:
            with component_boundary(entry, "checking its parameters"):
                parts.append(entry.cls.model_validate(raw))
        except ValidationError as exc:
            problems += _errors(exc, path, entry.cls)
        except DifftkError as exc:
            problems.append((path, str(exc)))
    return parts, problems
