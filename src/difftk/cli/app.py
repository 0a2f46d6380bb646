"""The typer app and what every command shares: the --set option and error printing."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from difftk.errors import DifftkError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train diffusion models from recipes of named, pluggable parts, and "
                       "study why their training is stable or not.")

SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="SECTION.FIELD=VALUE",
    help="Override a recipe field, e.g. --set weight.name=min_snr --set weight.gamma=5. "
         "Values are read as TOML (numbers, true/false, [lists], \"strings\"). Repeatable.")]


def fail(exc: Exception) -> typer.Exit:
    """Print a user error as one sentence on stderr; DIFFTK_DEBUG=1 shows the traceback."""
    if os.environ.get("DIFFTK_DEBUG"):
        raise exc
    code = exc.exit_code if isinstance(exc, DifftkError) else 1
    typer.echo(f"error: {exc}" if "\n" not in str(exc) else f"error:\n{exc}", err=True)
    return typer.Exit(code)
from difftk.cli import export  # noqa: E402, F401  (registers the command)
