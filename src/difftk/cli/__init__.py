"""The difftk command line: parse, load the recipe, call the library. No math here.

Heavy imports (torch, tensorboard) happen inside the commands that need them, so
``difftk --help`` answers at once. Each command lives in its own module and registers
itself on ``app`` when imported below.
"""

from difftk.cli import plot, plugins, sample, train, validate  # noqa: F401  (registers commands)
from difftk.cli.app import app


def main() -> None:
    app()
