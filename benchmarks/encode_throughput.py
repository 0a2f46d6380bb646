"""Images/s of `difftk data encode`'s encoder step for random-weights AutoencoderKLs at 256x256.

    python benchmarks/encode_throughput.py [--device cpu] [--images 64] [--batch 16]
        [--dtype fp32] [--json benchmarks/results/encode_throughput.json]

Two networks built by diffusers' own constructor (no download): a tiny factor-8 VAE (8
channels per level, the one the tests use) and one of Stable Diffusion's VAE size
(block_out_channels 128, 256, 512, 512, two layers per block: 83.7M parameters, as
sd-vae-ft-ema). Each encodes ``--images`` random 256x256 images through difftk's encoder
path (`latents/encode_pack.EncodedItems`: uint8 -> [-1, 1] -> posterior -> 0.18215 x mean),
timed after one warm-up batch; the median of 3 passes. The sd-sized one gets an eighth of
the images on a CPU. State the CPU or GPU with any figure quoted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from difftk.data.items import ArrayItems
from difftk.latents.diffusers_vae import DiffusersVaeCodec

NETWORKS = {
    "tiny (8 channels, factor 8)": dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                         norm_num_groups=4),
    "sd-vae size (128-512 channels)": dict(block_out_channels=(128, 256, 512, 512),
                                           layers_per_block=2, norm_num_groups=32),
}


def build(settings: dict, dtype: torch.dtype, device) -> DiffusersVaeCodec:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                        sample_size=256, **settings).eval().requires_grad_(False)
    vae = vae.to(device, dtype)
    codec = DiffusersVaeCodec(vae, Path("."), {"scaling_factor": 0.18215, "shift_factor": 0.0,
                                               "normalize": "scale", "sample": "mean",
                                               "final_std": 0.5})
    return codec, sum(p.numel() for p in vae.parameters())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from difftk.latents.encode_pack import EncodedItems

    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    device = torch.device(args.device)
    rows = []
    for name, settings in NETWORKS.items():
        n = args.images if "tiny" in name or device.type == "cuda" else max(args.images // 8, 2)
        pixels = ArrayItems(np.random.default_rng(0).integers(0, 256, (n, 3, 256, 256),
                                                              dtype=np.uint8))
        codec, params = build(settings, dtype, device)
        items = EncodedItems(codec, pixels, 255.0, device, args.batch)
        items.read(np.arange(min(args.batch, n)))  # warm-up
        rates = []
        for _ in range(3):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            items.read(np.arange(n))
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(n / (time.perf_counter() - start))
        rows.append({"network": name, "parameters": params, "images": n, "batch": args.batch,
                     "dtype": args.dtype, "device": str(device),
                     "images_per_second": statistics.median(rates)})
        print(f"{name:32s} {params / 1e6:6.1f}M parameters  {statistics.median(rates):9.2f} "
              f"images/s ({args.dtype}, {device}, batch {args.batch})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
