"""difftk new-plugin: scaffold a separate pip package that adds a component to a family."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def new_plugin(
    name: Annotated[str, typer.Argument(help='Plugin name, e.g. "my-weight" (package '
                                             'difftk-my-weight, component my_weight).')],
    family: Annotated[str, typer.Option(help="Family the component joins.")] = "weights",
    directory: Annotated[Path, typer.Option(
        "--dir", help="Where to create the package directory.")] = Path("."),
):
    """Write a plugin package: pyproject with the entry point, module, README, test."""
    from difftk.scaffold import scaffold_plugin

    root = scaffold_plugin(name, family, directory)
    typer.echo(f"wrote {root}\nnext: pip install -e {root} && difftk list-plugins --family "
               f"{family} && pytest {root / 'tests'}")
