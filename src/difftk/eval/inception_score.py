"""The Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs",
Section 4): exp E_x KL(p(y|x) || p(y)), averaged over splits of the sample set.

Computed as torch-fidelity's ``isc`` does (its default, which follows the original TF code):
softmax of the 1008 logits without the fc bias, the samples shuffled by
``np.random.RandomState(2020)``, 10 splits, the mean and standard deviation of the splits'
scores. The score depends on the order only through the splits.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def inception_score(logits: Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) over ``splits`` of exp(mean KL(p(y|x) || p(y))) for logits [N, classes]."""
    n = len(logits)
    if n < splits:
        raise ValueError(f"the Inception Score with {splits} splits needs at least {splits} "
                         "samples")
    logits = logits[np.random.RandomState(seed).permutation(n)].double()
    p, log_p = logits.softmax(dim=1), logits.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        part, log_part = p[i * n // splits:(i + 1) * n // splits], \
            log_p[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(dim=0, keepdim=True)
        scores.append(float((part * (log_part - marginal.log())).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))
