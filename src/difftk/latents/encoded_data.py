"""The data set in latent space: encoded once per run, and cached on disk where encoding is
costly (an autoencoder), keyed by a digest of the codec's weights and of the data.

A second run with the same autoencoder and data set reads ``<weights stem>.latents/<key>
.safetensors`` beside the weights instead of running the encoder. Labels, class names and
the split stay as they were; horizontal flips are off (a flip of the latents is not the
latents of the flipped image).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from difftk.data.dataset import DataBundle
from difftk.latents.latents import LatentCodec


def data_digest(bundle: DataBundle) -> str:
    """sha256 over both splits' shapes, dtypes and values."""
    h = hashlib.sha256()
    for x in (bundle.train, bundle.heldout):
        h.update(f"{tuple(x.shape)} {x.dtype}".encode())
        h.update(x.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def encode_split(codec: LatentCodec, x: Tensor, device: torch.device, batch_size: int = 256
                 ) -> Tensor:
    """codec.encode over x in batches on ``device`` (fp32), gathered on the CPU."""
    parts = [codec.encode(x[i:i + batch_size].to(device).float()).float().cpu()
             for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts)


def _read_cache(path) -> tuple[Tensor, Tensor] | None:
    try:
        tensors = load_file(str(path))
        return tensors["train"], tensors["heldout"]
    except (SafetensorError, OSError, KeyError, ValueError):
        return None  # absent or damaged: encode again and rewrite it


def _write_cache(path, train: Tensor, heldout: Tensor) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"train": train.contiguous(), "heldout": heldout.contiguous()}, str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only folder beside the weights: the run goes on without a cache


def encode_data(codec: LatentCodec, pixels: DataBundle, device: torch.device) -> DataBundle:
    """The bundle in latent space (the pixels themselves for the identity codec)."""
    if codec.identity:
        return pixels
    codec.eval()
    key, folder = codec.cache_key(), codec.cache_dir()
    path = None
    if key is not None and folder is not None:
        path = folder / f"{hashlib.sha256((key + data_digest(pixels)).encode()).hexdigest()[:32]}.safetensors"
    cached = _read_cache(path) if path is not None and path.is_file() else None
    if cached is None:
        train = encode_split(codec, pixels.train, device)
        heldout = encode_split(codec, pixels.heldout, device)
        if path is not None:
            _write_cache(path, train, heldout)
    else:
        train, heldout = cached
    kind = "image" if train.dim() == 4 else "vector"
    return replace(pixels, train=train, heldout=heldout, kind=kind, hflip=False,
                   source=f"{pixels.source or 'the data set'} (encoded)")
