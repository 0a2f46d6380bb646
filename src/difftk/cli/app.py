"""The typer app and what every command shares: the --set option and error reporting.

Every command is registered through ``DifftkTyper.command``, which gives it plain-text
help (plain_help.py) and one error rule: a ``DifftkError`` (bad input: a recipe, a path, a
checkpoint) ends the command with its one sentence on stderr and the error's exit code.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.plain_help import PlainTextCommand, PlainTextGroup
from difftk.errors import DifftkError

# True when difftk runs as its own process (main()), not called in-process (tests, notebooks):
# only then may a command take a signal for the rest of the process's life.
_standalone = [False]


def mark_standalone() -> None:
    _standalone[0] = True


def standalone() -> bool:
    return _standalone[0]


def fail(exc: Exception) -> typer.Exit:
    """Print a user error as one sentence on stderr; DIFFTK_DEBUG=1 shows the traceback."""
    if os.environ.get("DIFFTK_DEBUG"):
        raise exc
    code = exc.exit_code if isinstance(exc, DifftkError) else 1
    typer.echo(f"error: {exc}" if "\n" not in str(exc) else f"error:\n{exc}", err=True)
    return typer.Exit(code)


def reports_user_errors(command):
    """Wrap a command so that a DifftkError becomes ``fail``'s sentence and exit code."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DifftkError as exc:
            raise fail(exc) from None

    return run


class DifftkTyper(typer.Typer):
    """A Typer whose groups and commands show help as written and report user errors."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", PlainTextGroup)
        super().__init__(**kwargs)

    def command(self, *args, cls=PlainTextCommand, **kwargs):
        register = super().command(*args, cls=cls, **kwargs)

        def decorator(function):
            register(reports_user_errors(function))
            return function

        return decorator


app = DifftkTyper(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train diffusion models from recipes of named, pluggable parts, and "
                       "study why their training is stable or not.")

SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="SECTION.FIELD=VALUE",
    help="Override a recipe field, e.g. --set train.steps=500 --set ema.beta=0.99. "
         "Values are read as TOML (numbers, true/false, [lists], \"strings\"). Repeatable.")]

GuideOption = Annotated[Path | None, typer.Option(
    "--guide", metavar="CHECKPOINT",
    help="Autoguidance (Karras et al. 2024): guide with this weaker model of the same data "
         "(an earlier checkpoint, a smaller run; same schedule and labels) instead of the "
         "unconditional prediction, at --guidance.")]


@app.callback()
def _root(plugins_dir: Annotated[Path | None, typer.Option(
        "--plugins-dir", metavar="DIR", envvar="DIFFTK_PLUGINS_DIR",
        help="Load every *.py file in DIR as a plugin module (also DIFFTK_PLUGINS_DIR).")] = None):
    if plugins_dir is not None:
        os.environ["DIFFTK_PLUGINS_DIR"] = str(plugins_dir)  # read when the registry is built
