"""``python -m difftk``: the command line, so torchrun can start it with ``-m difftk``."""

from difftk.cli import main

main()
