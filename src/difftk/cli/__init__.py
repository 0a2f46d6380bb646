"""The difftk command line: parse, load the recipe, call the library. No math here.

Heavy imports (torch, tensorboard) happen inside the commands that need them, so
``difftk --help`` answers at once. Each command lives in its own module and registers
itself on ``app`` when imported below.
"""

from difftk.cli import info, plot, plugins, sample, train, validate  # noqa: F401, I001  (registers commands)
from difftk.cli import new_plugin, plot_weights  # noqa: F401, I001
from difftk.cli import plot_noise_sampling, plot_schedules  # noqa: F401, I001
from difftk.cli import ema, memory  # noqa: F401, I001
from difftk.cli import data  # noqa: F401, I001
from difftk.cli import plot_information, plot_targets  # noqa: F401, I001
from difftk.cli import eval  # noqa: F401, I001
from difftk.cli import analyze, plot_forward_noising, plot_variance_ratio  # noqa: F401, I001
from difftk.cli.app import app


def main() -> None:
    app()
