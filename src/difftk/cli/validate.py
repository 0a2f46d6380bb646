"""difftk validate: the resolved recipe or its errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption


def validate(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe to check.")],
    set_: SetOption = None,
):
    """Print the fully resolved recipe (every default filled in), or each error with its path."""
    from difftk.recipe import load_recipe

    r = load_recipe(recipe, set_)
    sys.stdout.write(r.to_toml())
