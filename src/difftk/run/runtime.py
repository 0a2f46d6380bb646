"""Where the run executes: device, rank, world size, and the few collectives the loop needs.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR in the environment) ``make_runtime``
starts the process group: nccl on CUDA, gloo on CPU, one process per device (cuda:LOCAL_RANK),
with a timeout so a rank that dies ends the others' waits with an error instead of a hang.
Without it the run is one process and every collective below is the identity, so the loop
has no distributed branches: it asks the runtime to agree, sum or gather, and a single
process answers at once.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from difftk.errors import DifftkError

# How long a rank waits in a collective (a barrier while rank 0 writes a checkpoint, say)
# before the group gives up on a rank that stopped answering.
GROUP_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    distributed: bool = False  # a process group is running (torchrun), even at world size 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, base: int) -> int:
        """The seed of this rank's own random stream (what the network draws, e.g. dropout)."""
        return base + 1000003 * self.rank

    @property
    def alone(self) -> bool:
        """One process in all: every collective is the identity (and costs nothing)."""
        return not self.distributed or self.world_size == 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}" if self.world_size > 1 else ""

    # ---------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if not self.alone:
            dist.barrier()

    def all_true(self, flag: torch.Tensor | bool) -> bool:
        """Whether ``flag`` holds on every rank (one host sync)."""
        if self.alone:
            return bool(flag)
        t = torch.as_tensor(flag, device=self.device).to(torch.int32).reshape(1)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def any_true(self, flag: bool) -> bool:
        return not self.all_true(not flag)

    def max_float(self, value: float) -> float:
        """The largest of every rank's ``value`` (one host sync), so all ranks agree on it."""
        if self.alone:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the ranks, in place."""
        if not self.alone:
            dist.all_reduce(t)
        return t

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` (the same shape on each), concatenated in rank order."""
        if self.alone:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            # every process reaches the end before any tears the group down: a gloo peer
            # destroyed while another still talks to it aborts ("terminate called ...")
            dist.barrier()
            dist.destroy_process_group()

    def exit_process(self, code: int) -> None:
        """Under torchrun, end this process now with ``code``, its output flushed, without
        Python's interpreter shutdown; in one process, return and let it end as usual.

        gloo's worker threads outlive destroy_process_group (a DDP or FSDP network keeps the
        group alive in C++). One still freeing a finished collective's tensors while the
        interpreter finalizes cannot take the GIL, and the process aborts
        (pytorch/pytorch#179291): a run that had written everything exited with SIGABRT
        about once in ten under load. Everything the run writes is closed by now.
        """
        if not self.distributed:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DifftkError(f'run.device "{device}" is not a device torch knows') from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DifftkError(f'run.device is "{device}" but this machine has no CUDA device')
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)  # one process per device
    return dev


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def make_runtime(device: str = "auto", distributed: bool = False) -> Runtime:
    """The runtime of this process; with ``distributed`` under torchrun, the process group
    is started (nccl on CUDA, gloo on CPU)."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local)
    if not (distributed and launched_by_torchrun()):
        return Runtime(dev, 0, 1) if distributed else Runtime(dev, rank, world)
    if dev.type == "cuda":
        if dev.index >= torch.cuda.device_count():
            raise DifftkError(f"LOCAL_RANK {local} has no CUDA device (this node has "
                              f"{torch.cuda.device_count()}); start at most one process per GPU")
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT,
                                device_id=dev if dev.type == "cuda" else None)
    return Runtime(dev, dist.get_rank(), dist.get_world_size(), distributed=True)


PEER_LOSS_WORDS = ("Connection reset", "Connection closed", "Broken pipe", "Socket Timeout",
                   "connection refused", "NCCL communicator was aborted", "gloo")


def peer_lost(exc: BaseException) -> bool:
    """Whether a collective failed because another process of the group is gone (killed by
    SIGKILL, the OOM killer or a node failure), as gloo and NCCL report it."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    return isinstance(exc, RuntimeError) and any(w.lower() in str(exc).lower()
                                                 for w in PEER_LOSS_WORDS)


def peer_loss_reason(exc: BaseException) -> str:
    """The words of the backend's message that say what happened, without its source paths."""
    text = str(exc)
    for word in PEER_LOSS_WORDS:
        at = text.lower().find(word.lower())
        if at >= 0 and word != "gloo":
            end = text.find(".", at)
            return text[at:end if end > 0 else None].strip()
    return type(exc).__name__


def announce_failure(exc: DifftkError, runtime: Runtime | None) -> DifftkError:
    """The error as this process reports it: under torchrun, its sentence names the rank.

    The process then exits non-zero; torchrun stops the other processes of the group at
    once, and a process started some other way gives up after GROUP_TIMEOUT in its next
    collective, so a failure never hangs the run.
    """
    if runtime is None or runtime.world_size == 1:
        return exc
    tagged = DifftkError(f"{runtime.describe()}: {exc}")
    tagged.exit_code = exc.exit_code
    return tagged
