"""The file-system steps every durable write is made of: write and fsync a new file, fsync a
directory, rename, remove a tree, make a symbolic link, swap two entries atomically.

Checkpoints, snapshots and the run's recipe change the disk only through these functions, so
that a test can stop the process between any two of them (tests/crash_harness.py patches
them on this module) or make one fail (disk full).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
from pathlib import Path


def write_file(path: Path, data: bytes) -> None:
    """Write, flush and fsync one new file."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def symlink(target: str, link: Path) -> None:
    os.symlink(target, link)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries in one step (Linux renameat2 RENAME_EXCHANGE).

    False where the C library or the file system does not offer it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def write_text_atomic(path: Path, text: str) -> Path:
    """A text file replaced in one rename, so a crash leaves the old or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    write_file(tmp, text.encode())
    rename(tmp, path)
    return path
