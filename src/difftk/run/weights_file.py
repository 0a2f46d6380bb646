"""A .safetensors file's claims checked before its tensors are read.

A safetensors header states each tensor's dtype, shape and byte range; a file may claim
tensors far larger than any network (a sparse file of 4 GB reads as 4 GB of zeros). Reading
such a file asks for that much memory before anything else can fail, so the claims are read
first (the 8-byte header length and the JSON header alone) and a file whose tensors exceed
the memory available is refused with the figure.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from difftk.errors import CheckpointError

MAX_HEADER = 100 * 2**20  # safetensors' own limit for the JSON header


def claimed_bytes(path: Path) -> int:
    """The bytes of tensor data the header of ``path`` claims (0 for an empty file)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: is not a safetensors file (shorter than its "
                                      "header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER:
                raise CheckpointError(f"{path}: claims a header of {n} bytes, not a "
                                      "safetensors file")
            header = json.loads(f.read(n))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: is not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: its header is not a safetensors header")
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict)]
    return max([int(e) for e in ends if isinstance(e, int)], default=0)


def refuse_oversized_file(path: Path, what: str = "weights") -> None:
    """Refuse a file whose tensors could not be held in the memory available."""
    import torch

    from difftk.run.assemble import available_memory

    need, have = claimed_bytes(path), available_memory(torch.device("cpu"))
    if have is not None and need > have:
        raise CheckpointError(f"{path}: claims {need / 2**30:.1f} GiB of {what}, more than the "
                              f"{have / 2**30:.1f} GiB of memory available; not a file difftk "
                              "wrote for this machine")
