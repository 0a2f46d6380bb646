"""Contracts of the engineering families (precision, clipping, EMA, optimizer, learning-rate
schedule) and their shared mathematics. No loop: the built-ins in ``difftk.plugins`` import
these, and the training loop gets the components from the registry."""
