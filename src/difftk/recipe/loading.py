"""Reading a recipe: a TOML file or text, overrides applied, validated."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from difftk.errors import RecipeError
from difftk.recipe.overrides import apply_overrides
from difftk.recipe.resolved import Recipe
from difftk.recipe.validation import validate


def load_recipe(path: str | Path, overrides: list[str] | None = None, registry=None,
                warn=True) -> Recipe:
    """Read, override and validate a recipe file."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RecipeError([("", "no such recipe file")], source)
    data = parse_recipe_text(path, source)
    dropped: list[str] = []
    problems = apply_overrides(data, list(overrides or []), dropped)
    if problems:
        raise RecipeError(problems, source)
    if warn:
        for line in dropped:
            print(f"difftk: --set changed a name, so these were dropped: {line}", file=sys.stderr)
    return validate(data, registry, source)


def parse_recipe_text(path: Path, source: str) -> dict[str, Any]:
    """A recipe file's TOML as a dict, or a RecipeError saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError([("", f"cannot be read ({exc.strerror or exc})")], source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError([("", f"is not UTF-8 text (byte {exc.start} is "
                                f"0x{raw[exc.start]:02x}); TOML files are UTF-8")],
                          source) from None
    return toml_dict(text, source)


def toml_dict(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error or nesting too deep to parse is one RecipeError."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError([("", f"is not valid TOML: {exc}")], source) from None
    except RecursionError:
        raise RecipeError([("", "nests arrays or tables too deeply to read")], source) from None


def recipe_from_text(text: str, registry=None, source: str = "recipe") -> Recipe:
    from difftk.registry import default_registry

    return validate(toml_dict(text, source), registry or default_registry(), source)
