"""What a network costs: trainable parameters and forward FLOPs per image.

The network is built on the meta device, so even DiT-XL costs no memory and no
initialisation time; FLOPs come from torch.utils.flop_counter, which counts matrix
products and convolutions (attention included) at 2 FLOPs per multiply-add and ignores
elementwise work. Papers that quote "Gflops" usually count multiply-adds (DiT, Table 4):
divide by 2 to compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from difftk.nn.architecture import Architecture, DataSpec


@dataclass(frozen=True)
class Cost:
    parameters: int  # trainable parameters
    flops: int  # forward FLOPs for one sample

    @property
    def training_flops(self) -> int:
        """Forward + backward for one sample: about 3x the forward (backward ~2x)."""
        return 3 * self.flops


def network_cost(arch: Architecture, spec: DataSpec) -> Cost:
    with torch.device("meta"):
        net = arch.build(spec)
    net.eval()
    parameters = sum(p.numel() for p in net.parameters() if p.requires_grad)
    x = torch.zeros((1, *spec.shape), device="meta")
    time = torch.zeros(1, device="meta")
    labels = torch.zeros(1, dtype=torch.long, device="meta") if spec.num_classes else None
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x, time, labels)
    return Cost(parameters, counter.get_total_flops())


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"
