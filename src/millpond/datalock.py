"""One server per data dir: an exclusive ``flock`` on ``DATA/lock`` for the process lifetime.

Why: two servers on one data dir would both run pumps from the same cursors (every
event delivered twice) and fight over SQLite's write locks, failing requests at random
later. Refusing the second one at start, with one clear line, is the only safe answer.

Why ``flock`` and not a PID file checked by hand: the kernel releases the lock when the
process dies however it dies (SIGKILL, OOM killer, power cut), so a crashed server is
restarted at once, with no stale file to remove and no PID-reuse guess. The file stays
in place (deleting it would let a third process lock a fresh inode while the second
still holds the old one); it holds the owner's PID only so the refusal can name it.
The descriptor is opened close-on-exec: worker processes (spawn/forkserver) do not
inherit it, so they cannot keep a dead server's lock alive.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = "lock"


class DataDirBusy(Exception):
    """Another process holds the data dir's lock; ``pid`` is its PID when it wrote one."""

    def __init__(self, data_dir: Path, pid: int | None):
        self.data_dir = data_dir
        self.pid = pid
        holder = f" (pid {pid})" if pid else ""
        super().__init__(f"data dir {data_dir} is in use by another millpond{holder}; "
                         "stop it first or choose another --data")


class DataDirLock:
    """The held lock; :meth:`release` (or process exit) lets another server start."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def acquire(data_dir: Path) -> DataDirLock:
    """Lock ``data_dir`` (created if missing) without waiting; raises :class:`DataDirBusy`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        pid = _read_pid(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirBusy(data_dir, pid) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(path, fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None
