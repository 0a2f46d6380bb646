"""The data set in latent space: encoded once per run, and cached on disk where encoding is
costly (an autoencoder), keyed by a digest of the codec's weights and of the data.

A second run with the same autoencoder and data set reads the latent set ``<weights
stem>.latents/<key>/`` beside the weights (packed shards, as ``difftk data encode``
writes them) instead of running the encoder. Labels, class names and
the split stay as they were; horizontal flips are off (a flip of the latents is not the
latents of the flipped image).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from difftk.data.dataset import DataBundle
from difftk.data.items import Items
from difftk.errors import DataError
from difftk.latents.latents import LatentCodec


def data_digest(bundle: DataBundle) -> str:
    """sha256 over both splits' shapes, dtypes and values (a set read from storage: its
    items' own digest, which does not read it)."""
    h = hashlib.sha256()
    for x in (bundle.train, bundle.heldout):
        h.update(f"{tuple(x.shape)} {x.dtype}".encode())
        if isinstance(x, Items):
            h.update(x.digest().encode())
        else:
            h.update(x.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def encode_split(codec: LatentCodec, x: Tensor, device: torch.device, batch_size: int = 256
                 ) -> Tensor:
    """codec.encode over x in batches on ``device`` (fp32), gathered on the CPU."""
    parts = [codec.encode(x[i:i + batch_size].to(device).float()).float().cpu()
             for i in range(0, x.shape[0], batch_size)]
    return torch.cat(parts)


def _cached(folder) -> tuple[Tensor, Tensor] | None:
    """Both splits of a latent cache folder, or None when it is absent or damaged."""
    from difftk.data.packed import PackedItems, read_manifest

    try:
        manifest = read_manifest(folder)
        return tuple(PackedItems(folder, manifest, s).read(np.arange(manifest.splits[s].count))
                     for s in ("train", "heldout"))
    except (DataError, KeyError, OSError):
        return None


def _write_cached(folder, codec: LatentCodec, pixels: DataBundle, device) -> None:
    """The encoded splits as a latent set (the format difftk data encode writes)."""
    from difftk.data.pack import finish, pack_split
    from difftk.data.packed import Manifest
    from difftk.latents.encode_pack import EncodedItems

    try:
        splits = {name: EncodedItems(codec, x, None, device, batch_size=256)
                  for name, x in (("train", pixels.train), ("heldout", pixels.heldout))}
        records = {name: pack_split(items, None, folder, name, 8192, 1)
                   for name, items in splits.items()}
        shape = list(splits["train"].item_shape)
        finish(folder, Manifest(item_shape=shape, dtype="float32",
                                kind="image" if len(shape) == 3 else "vector",
                                source=pixels.source, codec=codec.identity_record(),
                                splits=records))
    except OSError:
        pass  # a read-only folder beside the weights: the run goes on without a cache


def encode_data(codec: LatentCodec, pixels: DataBundle, device: torch.device) -> DataBundle:
    """The bundle in latent space (the pixels themselves for the identity codec); encoded
    once and kept as a latent set beside the weights where encoding is costly."""
    if codec.identity:
        return pixels
    codec.eval()
    key, folder = codec.cache_key(), codec.cache_dir()
    path = None
    if key is not None and folder is not None:
        path = folder / hashlib.sha256((key + data_digest(pixels)).encode()).hexdigest()[:32]
    cached = _cached(path) if path is not None else None
    if cached is None and path is not None:
        _write_cached(path, codec, pixels, device)
        cached = _cached(path)
    if cached is None:
        train = encode_split(codec, pixels.train, device)
        heldout = encode_split(codec, pixels.heldout, device)
    else:
        train, heldout = cached
    kind = "image" if train.dim() == 4 else "vector"
    return replace(pixels, train=train, heldout=heldout, kind=kind, hflip=False, known_stats=None,
                   source=f"{pixels.source or 'the data set'} (encoded)")


IDENTITY_KEYS = ("name", "weights_sha256", "key", "scaling_factor", "shift_factor", "normalize",
                 "sample", "final_std")


def check_same_codec(codec: LatentCodec, bundle: DataBundle) -> None:
    """A latent set trains only with the codec that encoded it: one sentence otherwise."""
    made = bundle.encoded_with or {}
    ours = codec.identity_record() if not codec.identity else None
    where = bundle.source or "the data set"
    if ours is None:
        raise DataError(f"{where}: holds latents encoded with {made.get('name', 'a codec')}; "
                        "set the recipe's [latents] to the codec that made them (the same "
                        "section difftk data encode was given)")
    for key in IDENTITY_KEYS:
        if key in made or key in ours:
            if made.get(key) != ours.get(key):
                raise DataError(
                    f"{where}: was encoded with another codec than the recipe's [latents] "
                    f"({key}: {made.get(key)!r} in the latent set, {ours.get(key)!r} in the "
                    "recipe); encode the data again with the recipe's [latents], or name the "
                    "codec that made it")


class DecodedItems(Items):
    """Latents read as images: each read decodes (the pixels a latent set stands for, the
    reference of sample metrics when the pixels themselves are not at hand)."""

    def __init__(self, latents, codec: LatentCodec, batch_size: int = 64):
        self.latents, self.codec, self.batch_size = latents, codec, batch_size
        self.source = f"{getattr(latents, 'source', '')} (decoded)"
        self._shape = None

    def __len__(self) -> int:
        return len(self.latents)

    @property
    def item_shape(self):
        if self._shape is None:
            self._shape = tuple(self.read(np.arange(1)).shape[1:])
        return self._shape

    @property
    def stored_dtype(self):
        return torch.float32

    @torch.no_grad()
    def read(self, indices):
        from difftk.latents.latents import decode_fp32

        device = next(self.codec.parameters(), torch.empty(0)).device
        parts = []
        for i in range(0, len(indices), self.batch_size):
            index = torch.as_tensor(np.asarray(indices[i:i + self.batch_size]))
            z = self.latents[index]
            parts.append(decode_fp32(self.codec, z.to(device)).cpu())
        return torch.cat(parts)

    def digest(self) -> str:
        return self.latents.digest() if hasattr(self.latents, "digest") else ""


def latent_set(codec: LatentCodec, bundle: DataBundle) -> tuple[DataBundle, DataBundle]:
    """(pixels, latents) of a latent set: the latents as stored, and their decoded images."""
    check_same_codec(codec, bundle)
    pixels = replace(bundle, train=DecodedItems(bundle.train, codec),
                     heldout=DecodedItems(bundle.heldout, codec), known_stats=None,
                     hflip=False, source=f"{bundle.source} (decoded)")
    return pixels, bundle
