"""``python -m difftk ...`` runs the command line, so ``torchrun -m difftk train RECIPE``
works as ``difftk train RECIPE`` does."""

from difftk.cli import main

main()
