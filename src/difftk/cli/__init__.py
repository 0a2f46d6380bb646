"""The difftk command line: parse, load the recipe, call the library. No math here.

Heavy imports (torch, tensorboard) happen inside the commands that need them, so
``difftk --help`` answers at once. Each command lives in its own module and registers
itself on ``app`` when imported below; the import order is the order of ``difftk --help``
(train first). ``DifftkTyper`` (app.py) gives every command plain-text help and turns a
``DifftkError`` into one sentence on stderr and a non-zero exit.
"""

from difftk.cli import train, train_autoencoder  # noqa: F401, I001
from difftk.cli import sample, eval, eval_stats, ema  # noqa: F401, I001
from difftk.cli import validate, info, memory, data  # noqa: F401, I001
from difftk.cli import bench  # noqa: F401, I001
from difftk.cli import plot, plot_schedules, plot_noise_sampling, plot_weights  # noqa: F401, I001
from difftk.cli import plot_targets, plot_information  # noqa: F401, I001
from difftk.cli import plot_variance_ratio, plot_forward_noising  # noqa: F401, I001
from difftk.cli import plot_trajectory  # noqa: F401, I001
from difftk.cli import analyze, compare  # noqa: F401, I001
from difftk.cli import export  # noqa: F401, I001
from difftk.cli import plugins, new_plugin  # noqa: F401, I001
from difftk.cli.app import app  # noqa: I001


def main() -> None:
    import sys

    from difftk.cli.app import mark_standalone

    mark_standalone()

    # "--resume=auto" is --resume-or-start: --resume itself is a flag, and only the form with
    # "=" is unambiguous (--resume auto could be a flag and a recipe named auto).
    args = ["--resume-or-start" if a == "--resume=auto" else a for a in sys.argv[1:]]
    app(args=args, prog_name="difftk")  # also under python -m difftk and torchrun -m difftk
