"""FD-DINOv2 (Stein et al. 2023, "Exposing flaws of generative model evaluation metrics"):
the Frechet distance on DINOv2 ViT-L/14 features, as EDM2 reports it (Karras et al. 2024).

The network is transformers' ``Dinov2Model`` read from a local folder
(``facebook/dinov2-large`` saved with ``save_pretrained``; nothing downloads), the port of
the ``dinov2_vitl14`` hub model EDM2 loads; the feature is the final layer-normed class token
(the hub model's output, transformers' ``pooler_output``), 1024 values. Images are prepared as
EDM2's ``DINOv2Detector(resize_mode="torch")`` does: 0-255 pixels resized to 224 x 224 by
``F.interpolate(bicubic, antialias=True)``, divided by 255 and normalised with ImageNet's mean
and standard deviation.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from difftk.errors import DifftkError

RESOLUTION = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def dinov2_input(images: Tensor) -> Tensor:
    """uint8 [N, C, H, W] (C = 1 or 3) -> the network's float32 input [N, 3, 224, 224]."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bicubic", antialias=True)
    x = x / 255
    mean = torch.tensor(MEAN, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


class DinoFeatures(nn.Module):
    """uint8 images -> the 1024 (ViT-L) class-token features."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.dim = int(model.config.hidden_size)  # 1024 for ViT-L/14

    def forward(self, images: Tensor) -> Tensor:
        return self.model(pixel_values=dinov2_input(images)).pooler_output


def load_dinov2(folder: Path) -> DinoFeatures:
    """The DINOv2 model saved in ``folder`` (config.json and its weights)."""
    from difftk.optional_package import OptionalPackage

    package = OptionalPackage("transformers", 'pip install "difftk[metrics]"')
    if not package.installed():
        raise DifftkError(package.sentence("FD-DINOv2"))
    try:
        from transformers import Dinov2Model
        from transformers.utils import logging as transformers_logging
    except Exception as exc:  # a broken install (e.g. a torchvision built for another torch)
        raise DifftkError(f"transformers cannot be imported ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]})") from None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DifftkError(f"{folder}: not a saved DINOv2 model (no config.json); save "
                          "facebook/dinov2-large there with transformers' save_pretrained")
    transformers_logging.disable_progress_bar()  # difftk shows its own progress
    try:
        model = Dinov2Model.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise DifftkError(f"{folder}: cannot be read as a DINOv2 model "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return DinoFeatures(model).eval().requires_grad_(False)
