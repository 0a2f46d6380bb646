"""Training batches: which items batch k holds is a pure function of (seed, k).

Each epoch is a fresh seeded permutation of the training set (the last partial batch of
an epoch is dropped); the flips of batch k come from their own seeded draw. A stream's
state is therefore just the number of batches drawn: a resumed run draws exactly the
batches, and the flips, the interrupted one would have, whichever pipeline draws them.

The plan is global: under torchrun every process draws the same batch k and keeps its own
contiguous slice of it (``part`` of ``parts``), so the items a run sees do not depend on
how many processes ran it, and a checkpoint resumes exactly on any number of them.

Two pipelines share that plan:
- ``BatchStream``: the whole training set is one tensor on the training device and a
  batch is one index gather (no per-sample Python);
- ``LoaderStream``: for sets too large for the device or for memory, a DataLoader whose
  workers gather whole batches on the host into pinned memory, copied to the device
  asynchronously. A set read from storage (``Items``: packed shards, image files) is read
  there, only this process's slice of each batch, as stored (uint8 pixels), and scaled to
  float on the training device: no process holds the set, or a float copy of it.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from difftk.data.dataset import DataBundle
from difftk.data.items import Items, is_lazy
from difftk.errors import DataError, DataUnavailable, DifftkError

# Below this share of free GPU memory, "auto" keeps the training set on the device.
DEVICE_SHARE = 0.25


def mix_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class BatchPlan:
    """Indices and flip mask of batch k, from the seed alone."""

    def __init__(self, n: int, batch_size: int, seed: int, hflip: bool = False):
        self.n, self.seed, self.hflip = n, seed, hflip
        self.batch_size = min(batch_size, n)
        self.per_epoch = n // self.batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, 0, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        return self._perm

    def indices(self, k: int) -> Tensor:
        epoch, slot = divmod(k, self.per_epoch)
        start = slot * self.batch_size
        return self.permutation(epoch)[start:start + self.batch_size]

    def flips(self, k: int) -> Tensor | None:
        """A [B] bool mask of the items flipped left-right, each with probability 1/2."""
        if not self.hflip:
            return None
        gen = torch.Generator().manual_seed(mix_seed(self.seed, 1, k))
        return torch.rand(self.batch_size, generator=gen) < 0.5


def gather(data: Tensor | Items, labels: Tensor | None, plan: BatchPlan, k: int,
           part: slice = slice(None)) -> tuple[Tensor, Tensor | None]:
    """The ``part`` of batch k of (data, labels), flipped where the plan says, on data's device
    (for ``Items``: as stored, on the CPU; ``Items.scale`` makes training values of it)."""
    idx = plan.indices(k)[part].to(data.device)
    mask = plan.flips(k)
    if is_lazy(data):  # as stored; a latent set with both flips stored reads the flipped copy
        x = data.read_flipped(idx.numpy(), None if mask is None else mask[part].numpy())
        return x, labels[idx] if labels is not None else None
    x = data[idx]
    if mask is not None:
        mask = mask[part].to(data.device).view(-1, *[1] * (x.dim() - 1))
        x = torch.where(mask, x.flip(-1), x)
    return x, labels[idx] if labels is not None else None


def split_batch(batch_size: int, n_items: int, world_size: int, accumulation: int) -> int:
    """The global batch (at most the training set), once it splits evenly into world_size
    processes x accumulation micro-batches."""
    batch_size = min(batch_size, n_items)
    parts = world_size * accumulation
    if batch_size % parts:
        raise DifftkError(f"train.batch_size {batch_size} (the global batch) does not split into "
                          f"{world_size} process(es) x train.grad_accumulation {accumulation} equal "
                          f"micro-batches; make it a multiple of {parts}")
    return batch_size


def rank_slice(batch_size: int, part: int, parts: int) -> slice:
    """The contiguous items of a global batch that process ``part`` of ``parts`` trains on."""
    size = batch_size // parts
    return slice(part * size, (part + 1) * size)


class BatchStream:
    """The training set as one tensor; this process's slice of batch k is one index gather
    on its device. ``batch_size`` is the global batch."""

    def __init__(self, data: Tensor | Items, labels: Tensor | None, batch_size: int, seed: int,
                 hflip: bool = False, part: int = 0, parts: int = 1):
        self.data, self.labels = data, labels
        self.plan = BatchPlan(data.shape[0], batch_size, seed, hflip)
        self.batch_size = self.plan.batch_size
        self.part = rank_slice(self.batch_size, part, parts)
        self.drawn = 0

    def next(self) -> tuple[Tensor, Tensor | None]:
        batch = gather(self.data, self.labels, self.plan, self.drawn, self.part)
        self.drawn += 1
        return batch

    def state(self) -> dict[str, Tensor]:
        return {"drawn": torch.tensor(self.drawn, dtype=torch.int64)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.drawn = int(state["drawn"])

    def close(self) -> None:
        pass


class _ReadFailure:
    def __init__(self, message: str):
        self.message = message


class _PlannedBatches(TorchDataset):
    """Map-style dataset whose item k is batch k (a worker gathers it whole)."""

    def __init__(self, data: Tensor, labels: Tensor | None, plan: BatchPlan, part: slice):
        self.data, self.labels, self.plan, self.part = data, labels, plan, part

    def __getitem__(self, k: int):
        try:
            return gather(self.data, self.labels, self.plan, k, self.part)
        except DataError as exc:  # returned, not raised: the worker's traceback is not the news
            return _ReadFailure(str(exc)), None


class LoaderStream(BatchStream):
    """The same batches as BatchStream, gathered on the host by DataLoader workers into
    pinned memory and copied to the device without blocking (``data``: a tensor, or
    ``Items`` read by the workers and scaled on the device)."""

    def __init__(self, data: Tensor | Items, labels: Tensor | None, batch_size: int, seed: int,
                 device: torch.device, hflip: bool = False, workers: int = 2, part: int = 0,
                 parts: int = 1):
        super().__init__(data if is_lazy(data) else data.cpu(),
                         labels.cpu() if labels is not None else None, batch_size,
                         seed, hflip, part, parts)
        self.device, self.workers = torch.device(device), workers
        self._iter = None

    def _start(self):
        loader = DataLoader(
            _PlannedBatches(self.data, self.labels, self.plan, self.part), batch_size=None,
            sampler=itertools.count(self.drawn), num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None)
        return iter(loader)

    def next(self) -> tuple[Tensor, Tensor | None]:
        if self._iter is None:
            self._iter = self._start()
        x, y = next(self._iter)
        if isinstance(x, _ReadFailure):  # a worker's read failed: the shard or file is named
            self.close()
            raise DataUnavailable(f"{x.message} (reading batch {self.drawn} of the run)")
        k = self.drawn
        self.drawn += 1
        x = x.to(self.device, non_blocking=True)
        if is_lazy(self.data):
            draw = getattr(self.data.scaling, "drawn", None)
            if draw is not None:  # a latent posterior sampled per batch (data/latent_values.py)
                eps = self.data.scaling.noise(k, self.batch_size, self.part,
                                              self.data.value_shape, x.device)
                x = draw(x, eps)
            else:
                x = self.data.scale(x)
        return x, y.to(self.device, non_blocking=True) if y is not None else None

    def load_state(self, state: dict[str, Tensor]) -> None:
        self.close()  # restart the workers at the restored position
        super().load_state(state)

    def close(self) -> None:
        if self._iter is not None:
            self._iter = None  # dropping the iterator shuts its workers down


def use_loader(bundle: DataBundle, device: torch.device) -> bool:
    """Which pipeline: the bundle's choice, or for "auto" the device tensor when it fits.

    On CPU the training set is already in host memory, so one in-memory tensor is always
    the cheaper path; on a GPU it is kept there when it takes under a quarter of the free
    memory.
    """
    if is_lazy(bundle.train):
        return True  # read from storage: never copied whole to a device
    if bundle.pipeline != "auto":
        return bundle.pipeline == "loader"
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return bundle.train.element_size() * bundle.train.nelement() > DEVICE_SHARE * free


def batch_stream(bundle: DataBundle, batch_size: int, seed: int, device: torch.device,
                 part: int = 0, parts: int = 1) -> BatchStream:
    """This process's slices of the training batches of a bundle on a device, through the
    pipeline that suits it."""
    labels = bundle.train_labels
    if use_loader(bundle, device):
        return LoaderStream(bundle.train, labels, batch_size, seed, device, bundle.hflip,
                            bundle.workers, part, parts)
    return BatchStream(bundle.train.to(device), labels.to(device) if labels is not None else None,
                       batch_size, seed, bundle.hflip, part, parts)
