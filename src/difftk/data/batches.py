"""Batches drawn by index from an in-memory tensor with a seeded generator.

Each epoch is a fresh permutation; the permutation and the cursor are part of the
checkpoint, so a resumed run draws exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import torch
from torch import Tensor


class BatchStream:
    def __init__(self, data: Tensor, labels: Tensor | None, batch_size: int, seed: int):
        self.data, self.labels = data, labels
        self.batch_size = min(batch_size, data.shape[0])
        self.generator = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(data.shape[0], generator=self.generator)
        self.cursor = 0

    def next(self) -> tuple[Tensor, Tensor | None]:
        if self.cursor + self.batch_size > self.perm.shape[0]:
            self.perm = torch.randperm(self.data.shape[0], generator=self.generator)
            self.cursor = 0
        idx = self.perm[self.cursor:self.cursor + self.batch_size].to(self.data.device)
        self.cursor += self.batch_size
        labels = self.labels[idx] if self.labels is not None else None
        return self.data[idx], labels

    def state(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state(), "perm": self.perm,
                "cursor": torch.tensor(self.cursor)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])
        self.perm = state["perm"].clone()
        self.cursor = int(state["cursor"])
