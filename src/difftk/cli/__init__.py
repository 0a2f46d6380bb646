"""The difftk command line: parse, load the recipe, call the library. No math here.

Heavy imports (torch, tensorboard) happen inside the commands that need them, so
``difftk --help`` answers at once. Each command lives in its own module; commands.py
registers them all, in the order of ``difftk --help`` (train first). ``DifftkTyper``
(app.py) gives every command plain-text help and turns a ``DifftkError`` into one sentence
on stderr and a non-zero exit.
"""

from difftk.cli.app import app  # noqa: I001
from difftk.cli.commands import register

register()  # every command, once, in the order of difftk --help (commands.py)


def main() -> None:
    import sys

    from difftk.cli.app import mark_standalone

    mark_standalone()

    # "--resume=auto" is --resume-or-start: --resume itself is a flag, and only the form with
    # "=" is unambiguous (--resume auto could be a flag and a recipe named auto).
    args = ["--resume-or-start" if a == "--resume=auto" else a for a in sys.argv[1:]]
    app(args=args, prog_name="difftk")  # also under python -m difftk and torchrun -m difftk
