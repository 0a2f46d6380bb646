"""difftk plot: the figures of the seeds. Each figure registers a subcommand on ``plot_app``
from its own module (imported in difftk.cli)."""

from __future__ import annotations

from difftk.cli.app import DifftkTyper

plot_app = DifftkTyper(no_args_is_help=True, help="Draw the seeds' figures (PNG, and --csv numbers).")

