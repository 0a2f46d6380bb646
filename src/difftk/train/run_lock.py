"""One writer per run directory: an advisory lock held for the run's life.

Two ``difftk train`` on one run name would interleave their checkpoints and recipe.
The lock is ``flock`` on ``<run>/train.lock``: the kernel drops it when its process
ends, however it ends, so a lock left by a killed run is never stale. The file also
records who holds it (pid, host, start time), so a refusal names the holder. On file
systems without ``flock`` (some NFS and Lustre mounts) the record itself is the lock: a
record of a process that no longer runs on this host is stale and taken over; one from
another host is honoured, and the sentence says which file to delete if that job is gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from difftk.errors import DifftkError

LOCK_NAME = "train.lock"
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP}


class RunLockedError(DifftkError):
    """Another process is training in this run directory."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S UTC", time.gmtime(started)) if started else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{since}"


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for one writer."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _refuse(self, holder: dict, hint: str = "") -> RunLockedError:
        who = _describe(holder) if holder else "another process"
        return RunLockedError(f"{self.run_dir} is in use by another difftk train ({who}); wait "
                              f"for it to end or choose another name with --set run.name=NAME{hint}")

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        refuse_links_out(self.run_dir)
        try:  # never through a link: a train.lock pointing elsewhere must not empty that file
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DifftkError(f"{self.path}: is a symbolic link; difftk writes no file of "
                                  "a run through a link (remove it)") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refuse(self._holder()) from None
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                os.close(fd)
                raise
            try:
                self._check_record()  # no flock on this file system: the record decides
            except RunLockedError:
                os.close(fd)
                raise
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def _check_record(self) -> None:
        holder = self._holder()
        if not holder or holder.get("pid") == os.getpid():
            return
        if holder.get("host") != socket.gethostname():
            raise self._refuse(holder, f" (if that job is gone, delete {self.path})")
        if _pid_alive(int(holder.get("pid", 0))):
            raise self._refuse(holder)
        print(f"difftk: {self.path}: taking over the stale lock of {_describe(holder)}, "
              "which no longer runs", file=sys.stderr)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty record: nobody holds it
        except OSError:
            pass
        os.close(self._fd)  # drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_links_out(run_dir: Path) -> None:
    """Refuse a run directory holding a symbolic link that leads out of it: difftk would
    write the linked file (a checkpoint, a sample grid) wherever the link points."""
    root = run_dir.resolve()
    for folder, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_symlink():
                target = path.resolve()
                if target != root and root not in target.parents:
                    raise DifftkError(f"{path}: is a symbolic link out of the run directory "
                                      f"(to {target}); difftk writes no file of a run "
                                      "through such a link (remove it)")
