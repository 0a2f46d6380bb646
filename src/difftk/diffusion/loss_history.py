"""The state of a loss-aware noise-level distribution: recent losses per time bucket.

improved-diffusion's ``LossSecondMomentResampler`` (Nichol & Dhariwal 2021, §3.3): keep the
last K losses of each of B buckets of the schedule's time axis; once every bucket holds K,
draw bucket b with probability p_b proportional to sqrt(E[L_b^2]) (mixed with a uniform share),
which minimises the variance of the importance-weighted estimator (1 / (B p_b)) L of the
uniform-time objective, and stays unbiased whatever p is.

Every process holds the same history: it is told the global batch's buckets when it draws
them and the global batch's losses (gathered in batch order) after the step, so the
distribution, and the run, do not depend on the world size. It is saved with the checkpoint,
so a resumed run draws what the uninterrupted one would have.
"""

from __future__ import annotations

import torch
from torch import Tensor


class LossHistory:
    """The last ``per_bucket`` unweighted losses of each of ``buckets`` time buckets."""

    def __init__(self, buckets: int, per_bucket: int):
        self.losses = torch.zeros(buckets, per_bucket, dtype=torch.float64)
        self.counts = torch.zeros(buckets, dtype=torch.int64)
        self.writes = torch.zeros(buckets, dtype=torch.int64)  # losses ever written per bucket
        self.pending: Tensor | None = None  # the buckets of the batch drawn last

    @property
    def warmed_up(self) -> bool:
        return bool((self.counts == self.losses.shape[1]).all())

    def probabilities(self, uniform_share: float) -> Tensor:
        """p_b: uniform until every bucket holds its K losses, then sqrt(mean L_b^2) mixed
        with ``uniform_share`` of the uniform distribution (float64, [B])."""
        buckets = self.losses.shape[0]
        if not self.warmed_up:
            return torch.full((buckets,), 1.0 / buckets, dtype=torch.float64)
        w = self.losses.pow(2).mean(dim=1).sqrt()
        w = w / w.sum()
        return w * (1 - uniform_share) + uniform_share / buckets

    def observe(self, losses: Tensor) -> None:
        """Record the losses of the batch drawn last (global batch order), oldest out first;
        a batch with a non-finite loss teaches nothing (the NaN guard handles the step)."""
        if self.pending is None:
            return
        values = losses.detach().to("cpu", torch.float64).reshape(-1)
        buckets, self.pending = self.pending, None
        if values.shape[0] != buckets.shape[0] or not bool(torch.isfinite(values).all()):
            return
        # Each bucket is a ring of K slots (the mean over it does not depend on their order):
        # the i-th of a bucket's n new losses goes to slot (writes + i) mod K, and only its
        # last K are kept, so the batch is written in one indexed assignment, no loop.
        k = self.losses.shape[1]
        order = torch.argsort(buckets, stable=True)
        sorted_b = buckets[order]
        first = torch.searchsorted(sorted_b, sorted_b)  # where each bucket's run starts
        rank = torch.arange(sorted_b.numel()) - first
        per_bucket = torch.bincount(buckets, minlength=self.losses.shape[0])
        keep = rank >= per_bucket[sorted_b] - k
        b, r = sorted_b[keep], rank[keep]
        slot = (self.writes[b] + r) % k
        self.losses[b, slot] = values[order][keep]
        self.writes = self.writes + per_bucket
        self.counts = torch.clamp(self.counts + per_bucket, max=k)

    def state_dict(self) -> dict[str, Tensor]:
        return {"losses": self.losses.clone(), "counts": self.counts.clone(),
                "writes": self.writes.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state["losses"].shape != self.losses.shape:
            raise ValueError(f"a loss history of shape {tuple(state['losses'].shape)} does not "
                             f"fit this recipe's {tuple(self.losses.shape)}")
        self.losses = state["losses"].to(torch.float64).clone()
        self.counts = state["counts"].to(torch.int64).clone()
        self.writes = state["writes"].to(torch.int64).clone()
        self.pending = None
