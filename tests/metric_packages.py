"""What the metric tests share: random FID Inception weights in pytorch-fid's file layout,
and the reference packages (pytorch-fid, torch-fidelity, clean-fid) imported offline.

The packages live in their own folder (tests/metric-check.txt; README's test command
installs them with ``pip install --no-deps --target .venv/metric-check``), on the path of
these tests only: they need torchvision, and PyPI's torchvision wheel carries operators
compiled against CUDA torch. On the CPU-only torch of the test machines its two operator-
registration modules cannot load (``torchvision::nms does not exist``), which breaks every
package that imports torchvision when it is installed (diffusers does). The metric packages
use only its pure-Python models and transforms, so here the two modules are stood in for
before the first import.
"""

from __future__ import annotations

import math
import os
import sys
import types
from pathlib import Path

import torch

from difftk.eval.inception import FIDInceptionV3

PACKAGES = Path(os.environ.get("DIFFTK_METRIC_CHECK",
                               Path(__file__).resolve().parents[1] / ".venv" / "metric-check"))


def import_metric_packages() -> None:
    if not (PACKAGES / "pytorch_fid").is_dir():
        raise RuntimeError(f"the metric packages are not in {PACKAGES}: pip install --no-deps "
                           f"--target {PACKAGES} -r tests/metric-check.txt")
    if str(PACKAGES) not in sys.path:
        sys.path.insert(0, str(PACKAGES))
    if "torchvision" in sys.modules:
        return
    for name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
        sys.modules[name] = types.ModuleType(name)
    import torchvision  # noqa: F401


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights at a usable activation scale (He init), with BatchNorm statistics and
    affine terms drawn too, so a port that skipped or misplaced any of them would differ."""
    g = torch.Generator().manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g)
                                    * math.sqrt(2 / fan_in))
            elif isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                module.running_var.copy_(1 + 0.2 * torch.rand(c, generator=g))
                module.weight.copy_(1 + 0.1 * torch.randn(c, generator=g))
                module.bias.copy_(0.1 * torch.randn(c, generator=g))
            elif isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * 0.02)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.02)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def write_inception_weights(path, seed: int = 0):
    torch.save(random_inception_state(seed), path)  # as pytorch-fid's file: a plain state dict
    return path
