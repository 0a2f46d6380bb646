"""Training: the loop, checkpoints, logging, and the engineering families' bases."""
