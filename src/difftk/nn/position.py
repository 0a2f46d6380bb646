"""2-D positions of patch tokens: fixed sincos features (added) or rotary embeddings (applied
to queries and keys).

Tokens are numbered row-major over a grid_h x grid_w grid, as a patchify produces them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difftk.nn.fp32 import fp32_region


def grid_positions(grid_h: int, grid_w: int) -> tuple[Tensor, Tensor]:
    """(row, column) index of each token, row-major, each [grid_h * grid_w]."""
    rows = torch.arange(grid_h).repeat_interleave(grid_w)
    cols = torch.arange(grid_w).repeat(grid_h)
    return rows, cols


def sincos_2d(dim: int, grid_h: int, grid_w: int, base: float = 10000.0) -> Tensor:
    """Fixed 2-D sincos position features [N, dim] (Vaswani et al. 2017 per axis; MAE and DiT's
    get_2d_sincos_pos_embed): half the features encode the row, half the column, each as
    [sin(p w_i), cos(p w_i)] with w_i = base^(-i / (dim / 4))."""
    if dim % 4:
        raise ValueError(f"sincos position features need a width divisible by 4, not {dim}")
    quarter = dim // 4
    omega = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = grid_positions(grid_h, grid_w)
    parts = []
    for pos in (rows, cols):
        angle = pos.double()[:, None] * omega[None]
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=1).float()


class Rope2d(nn.Module):
    """Axial 2-D rotary position embedding (Su et al. 2021; Heo et al. 2024 "RoPE-Axial").

    The head dimension is split in pairs (x_i, x_{i + d/2}); the first d/4 pairs rotate by
    row * w_j, the other d/4 by column * w_j, with w_j = base^(-j / (d/4)). A rotation keeps
    norms, and q(m) . k(n) then depends only on the offset m - n between two grid positions.
    Computed in fp32.
    """

    def __init__(self, head_dim: int, grid_h: int, grid_w: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D rotary embeddings need a head width divisible by 4, not {head_dim}")
        quarter = head_dim // 4
        omega = base ** (-torch.arange(quarter, dtype=torch.float64) / quarter)
        rows, cols = grid_positions(grid_h, grid_w)
        angle = torch.cat([rows.double()[:, None] * omega, cols.double()[:, None] * omega], dim=1)
        self.register_buffer("cos", torch.cos(angle).float(), persistent=False)  # [N, d/2]
        self.register_buffer("sin", torch.sin(angle).float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Rotate [B, heads, N, head_dim] queries or keys by their token's position."""
        with fp32_region(x):
            xf = x.float()
            x1, x2 = xf.chunk(2, dim=-1)
            out = torch.cat([x1 * self.cos - x2 * self.sin, x1 * self.sin + x2 * self.cos], dim=-1)
        return out.to(x.dtype)
