"""FID on learned features: a feature network the user brings, loaded from a local file.

Papers report FID on Inception features (Heusel et al. 2017), not on pixels; difftk
downloads nothing, so ``difftk eval --features inception --weights FILE`` reads the
network's weights from FILE (a PyTorch state dict, .pth/.pt, or .safetensors) and
compares the Gaussians of the two feature sets with the same Frechet distance as pixel
FID (eval/metrics.py). Images are expected in difftk's [-1, 1]. The paper metrics against
reference statistics (FID, sFID, IS, precision/recall) are eval/paper_eval.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.errors import DifftkError

FEATURE_NETWORKS = ("inception",)


def _read_state(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise DifftkError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    except Exception as exc:  # a damaged or foreign file: one sentence, not a traceback
        raise DifftkError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise DifftkError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
    return state


def load_feature_network(name: str, weights: Path) -> nn.Module:
    """The named feature network in eval mode with the weights from ``weights``."""
    if name not in FEATURE_NETWORKS:
        raise DifftkError(f'no feature network named "{name}" (networks: '
                          f'{", ".join(FEATURE_NETWORKS)})')
    from difftk.eval.inception import FIDInceptionV3

    net = FIDInceptionV3()
    state = _read_state(Path(weights))
    # BatchNorm's step counters are not in older files and play no part in evaluation.
    own = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    given = {k for k in state if not k.endswith("num_batches_tracked")}
    if own != given:
        missing, extra = sorted(own - given), sorted(given - own)
        example = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise DifftkError(f"{weights}: not the FID Inception weights pytorch-fid uses "
                          f"({len(missing)} tensors missing, {len(extra)} unexpected; {example})")
    try:
        net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DifftkError(f"{weights}: tensor shapes do not match the FID Inception network "
                          f"({str(exc).splitlines()[-1].strip()})") from None
    return net.eval().requires_grad_(False)


def feature_extractor(net: nn.Module, batch_size: int = 50,
                      device: torch.device | None = None,
                      convention: str = "tf") -> Callable[..., np.ndarray]:
    """extract(images [N, C, H, W], pixel_range) -> pool features [N, 2048] (float64), in
    batches: the images (black and white at the data's ``pixel_range``, [-1, 1] by default)
    quantised to 0-255 as their PNG files would be, then prepared by ``convention``
    (eval/inception_input.py)."""
    from difftk.eval.inception_input import network_input

    device = device or next(net.parameters()).device
    net = net.to(device)

    @torch.no_grad()
    def extract(images: Tensor, pixel_range: PixelRange = UNIT_RANGE) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            unit = pixel_range.to_unit(images[i:i + batch_size].float())
            u8 = (unit.clamp(0, 1) * 255).round()
            x = network_input(u8.to(torch.uint8).to(device), convention)
            out.append(net(x).pool.double().cpu())
        return torch.cat(out).numpy()

    return extract


def learned_features(name: str | None, weights: Path | None,
                     device: torch.device) -> dict[str, Callable] | None:
    """{name: extractor} for ``--features NAME --weights FILE``; None when neither is given."""
    if name is None and weights is None:
        return None
    if name is None or weights is None:
        raise DifftkError("--features and --weights go together (e.g. --features inception "
                          "--weights pt_inception-2015-12-05-6726825d.pth)")
    return {name: feature_extractor(load_feature_network(name, weights), device=device)}
