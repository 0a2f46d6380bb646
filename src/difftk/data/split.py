"""The held-out split every data set without its own test files uses.

A seeded permutation of the N items: the first ``held`` go to the held-out split, the rest
train; both keep their file order (sorted indices), so the split depends only on
(N, held, split_seed). The default holds out a tenth (at least one item).
"""

from __future__ import annotations

import numpy as np

from difftk.errors import DataError


def heldout_split(n: int, heldout: int | None, split_seed: int, source: str,
                  noun: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of n items, each sorted."""
    held = heldout if heldout is not None else max(1, n // 10)
    if held >= n:
        raise DataError(f"{source}: cannot hold out {held} of {n} {noun}; set data.heldout "
                        f"below {n}")
    perm = np.random.default_rng(split_seed).permutation(n)
    return np.sort(perm[held:]), np.sort(perm[:held])
