"""Where the run executes: device, rank and world size.

Everything rank-dependent goes through here, so running under torchrun with DDP is a
small step: logging and checkpoints ask ``is_main``, seeds are offset by rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from difftk.errors import DifftkError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, base: int) -> int:
        """The seed of this rank's random streams."""
        return base + 1000003 * self.rank


def make_runtime(device: str = "auto") -> Runtime:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
                           if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise DifftkError(f'run.device "{device}" is not a device torch knows') from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DifftkError(f'run.device is "{device}" but this machine has no CUDA device')
    return Runtime(dev, rank, world)
