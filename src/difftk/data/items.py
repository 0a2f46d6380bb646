"""The data contract: items read by index, decoded lazily, scaled per batch on the device.

A data set's split is ``Items``: a length, the shape of one item, and ``read(indices)``,
which returns the stored values of those items (uint8 pixels for images on disk, the
source's dtype for latents and vectors) as a CPU tensor. ``scale`` turns stored values into
what the network trains on (pixels to [-1, 1] or mean/std per channel), on whatever device
the batch is on, so nothing ever holds a float copy of a set that lives on disk.

Indexing an ``Items`` like a tensor (``items[:64]``, ``items[index_tensor]``) reads and
scales those items: the code that looks at a few held-out images does not care whether the
set is a tensor in memory, packed shards, an EDM zip or a folder of files. ``len`` and
``shape[0]`` are the item count. The in-memory tensor stays the fast path for sets that fit
(``pipeline = "auto"``), chosen by the data set, never assumed by its consumers.

Implementations: packed shards (data/packed.py), image files in a folder or zip
(data/image_files.py), a local Hugging Face data set (plugins/datasets/hf_datasets.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PixelScaling:
    """x = (u - mean) / std per channel with u = stored / white in [0, 1] (torchvision's
    Normalize, EDM's ``/127.5 - 1`` for mean = std = 0.5)."""

    white: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, raw: Tensor) -> Tensor:
        """float32 values of raw [N, C, ...] on raw's device (the same operations, in the same
        order, as an in-memory set scaled at load: both paths give equal bits)."""
        shape = (1, -1) + (1,) * (raw.dim() - 2)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=raw.device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=raw.device).view(shape)
        return raw.float().div_(self.white).sub_(mean).div_(std)


class Items:
    """Random-access items of one split. Subclasses implement ``__len__``, ``item_shape``,
    ``stored_dtype`` and ``read``; ``scaling`` maps stored values to training values."""

    scaling: PixelScaling | None = None  # None: stored values are the training values
    source: str = ""  # the file or folder, for messages

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def stored_dtype(self) -> torch.dtype:
        raise NotImplementedError

    def read(self, indices: np.ndarray) -> Tensor:
        """Stored values of items ``indices`` (int64 [n], any order, repeats allowed), [n, ...]."""
        raise NotImplementedError

    def digest(self) -> str:
        """A short string that changes when the items change (for caches keyed by the data)."""
        raise NotImplementedError

    def read_flipped(self, indices: np.ndarray, flip: np.ndarray | None) -> Tensor:
        """Stored values of ``indices`` with the items where ``flip`` is true mirrored
        left-right (a latent set that stored both flips reads the flipped copy instead)."""
        x = self.read(indices)
        if flip is not None and flip.any():
            mask = torch.from_numpy(np.asarray(flip, dtype=bool))
            x[mask] = x[mask].flip(-1)
        return x

    # What follows lets the consumers that look at a few items index this like a tensor.

    def scale(self, raw: Tensor) -> Tensor:
        return self.scaling(raw) if self.scaling is not None else raw.float()

    @property
    def value_shape(self) -> tuple[int, ...]:
        """The shape of one item as training sees it (after ``scale``)."""
        out = getattr(self.scaling, "value_shape", None)
        return out(self.item_shape) if out is not None else self.item_shape

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self.value_shape))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # what indexing returns

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def dim(self) -> int:
        return 1 + len(self.value_shape)

    def is_floating_point(self) -> bool:
        return self.stored_dtype.is_floating_point

    def stored_bytes(self) -> int:
        """Bytes of the whole split as stored."""
        return len(self) * int(np.prod(self.item_shape)) * torch.empty(
            0, dtype=self.stored_dtype).element_size()

    def __getitem__(self, key) -> Tensor:
        return self.scale(self.read(self._indices(key)))

    def _indices(self, key) -> np.ndarray:
        n = len(self)
        if isinstance(key, slice):
            return np.arange(n, dtype=np.int64)[key]
        if isinstance(key, int):
            raise TypeError("index an Items with a slice or an index array (a batch), not an int")
        index = key.cpu().numpy() if isinstance(key, Tensor) else np.asarray(key)
        index = index.astype(np.int64).reshape(-1)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of range for {n} items")
        return np.where(index < 0, index + n, index)

    def subset(self, indices: np.ndarray) -> Items:
        """The items at ``indices`` (a held-out split, a limit), without reading them."""
        return IndexedItems(self, np.asarray(indices, dtype=np.int64))

    def chunks(self, size: int = 2048):
        """Scaled items in consecutive chunks of ``size``: streaming statistics and encoders."""
        for start in range(0, len(self), size):
            yield self[start:start + size]


class IndexedItems(Items):
    """A view of some items of another Items, in the order given."""

    def __init__(self, base: Items, indices: np.ndarray):
        self.base, self.indices = base, indices
        self.scaling, self.source = base.scaling, base.source

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.base.item_shape

    @property
    def stored_dtype(self) -> torch.dtype:
        return self.base.stored_dtype

    def read(self, indices: np.ndarray) -> Tensor:
        return self.base.read(self.indices[indices])

    def read_flipped(self, indices: np.ndarray, flip: np.ndarray | None) -> Tensor:
        return self.base.read_flipped(self.indices[indices], flip)

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(self.base.digest().encode() + self.indices.tobytes()).hexdigest()[:32]

    def subset(self, indices: np.ndarray) -> Items:
        view = IndexedItems(self.base, self.indices[np.asarray(indices, dtype=np.int64)])
        view.scaling, view.source = self.scaling, self.source
        return view


def is_lazy(x) -> bool:
    """True for a split that is read from storage by index (an ``Items``), not a tensor."""
    return isinstance(x, Items)


def in_memory(x, limit_bytes: int | None = None) -> Tensor:
    """The whole split as a float tensor (a tensor stays as it is); refused above limit_bytes."""
    if not is_lazy(x):
        return x
    need = len(x) * int(np.prod(x.item_shape)) * 4
    if limit_bytes is not None and need > limit_bytes:
        from difftk.errors import DataError

        raise DataError(f"{x.source or 'the data set'}: would take {need / 2**30:.1f} GiB as "
                        f"float32 in memory, over the {limit_bytes / 2**30:.1f} GiB this "
                        "needs it to fit in")
    return torch.cat(list(x.chunks())) if len(x) else torch.empty(0, *x.item_shape)


class ArrayItems(Items):
    """Items of a numpy array already in memory (or memory-mapped): the decoders that read a
    whole file at once (CIFAR-10's batches, IDX, .npz) hand their array over as this."""

    def __init__(self, array: np.ndarray, source: str = ""):
        self.array, self.source = array, source

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    @property
    def stored_dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self.array.dtype)).dtype

    def read(self, indices: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[np.asarray(indices)]))

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256(f"{self.array.shape} {self.array.dtype}".encode())
        h.update(np.ascontiguousarray(self.array).tobytes())
        return h.hexdigest()[:32]


class FlipPairedItems(Items):
    """A latent set that stored every item's latents twice, as encoded and encoded from the
    left-right flipped image: a flipped draw reads the second copy (``flipped[i]``)."""

    def __init__(self, plain: Items, flipped: Items):
        if len(plain) != len(flipped) or plain.item_shape != flipped.item_shape:
            from difftk.errors import DataError

            raise DataError(f"{flipped.source}: holds {len(flipped)} items of shape "
                            f"{list(flipped.item_shape)}, not the {len(plain)} of "
                            f"{list(plain.item_shape)} of its unflipped split")
        self.plain, self.flipped = plain, flipped
        self.scaling, self.source = plain.scaling, plain.source

    def __len__(self) -> int:
        return len(self.plain)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.plain.item_shape

    @property
    def stored_dtype(self) -> torch.dtype:
        return self.plain.stored_dtype

    def read(self, indices: np.ndarray) -> Tensor:
        return self.plain.read(indices)

    def read_flipped(self, indices: np.ndarray, flip: np.ndarray | None) -> Tensor:
        x = self.plain.read(indices)
        if flip is not None and flip.any():
            x[torch.from_numpy(np.asarray(flip, dtype=bool))] = self.flipped.read(
                np.asarray(indices)[np.asarray(flip, dtype=bool)])
        return x

    def digest(self) -> str:
        return self.plain.digest() + self.flipped.digest()
