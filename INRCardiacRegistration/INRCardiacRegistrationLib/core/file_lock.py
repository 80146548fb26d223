"""An exclusive lock between processes, held on a file (``flock`` on POSIX, ``msvcrt.locking`` on Windows).

The operating system drops the lock when the holding process ends, however it ends (a crash or ``kill -9``
included), so a stale lock file never blocks anyone on a local file system. The file itself stays (removing a lock
file races with a process about to lock it, and on NFS leaves that process locking a deleted file); its holder
empties it when it lets go, so a file that names a holder means a process holds it or one crashed holding it. On NFS
(v4, or v3 with lockd) the lock holds between hosts too, but one held by a machine that died lasts until the
server's lease expires (about a minute or two). A file system without locks (some Lustre, BeeGFS or SMB mounts)
gives a warning and no lock. The holder writes ``pid host start-time`` into the file for the message others get
while it is busy.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class LockBusy(RuntimeError):
    """The lock is held by another process (the message names it)."""


class LocksUnsupported(OSError):
    """The file system refuses ``flock`` (ENOLCK, ENOSYS, EOPNOTSUPP ...)."""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise LocksUnsupported(str(error)) from error
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_holder(path: str | Path) -> str:
    """What the holder wrote into the lock file (``"pid 123 on host since 2026-..."``), or ``"unknown"``."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return "unknown"
    return text or "unknown"


def is_locked(path: str | Path) -> bool:
    """Whether another process holds the lock on ``path`` now (a missing file is not locked; nothing is written)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if not _try_lock(fd):
            return True
        _unlock(fd)
        return False
    except LocksUnsupported:
        return False
    finally:
        os.close(fd)


@contextmanager
def exclusive_lock(path: str | Path, wait_s: float = 0.0, poll_s: float = 0.5,
                   on_wait: Callable[[str], None] | None = None,
                   give_up: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) while inside.

    If another process holds it, retry every ``poll_s`` seconds for up to ``wait_s`` seconds (``on_wait`` is
    called once with the holder's description; ``give_up()`` returning True ends the wait early), then raise
    :class:`LockBusy`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, wait_s)
        told = False
        unsupported = None
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline or (give_up is not None and give_up()):
                    raise LockBusy(f"{path.parent} is in use by another process ({lock_holder(path)})")
                if not told and on_wait is not None:
                    on_wait(lock_holder(path))
                    told = True
                time.sleep(poll_s)
        except LocksUnsupported as error:
            unsupported = error
        if unsupported is not None:
            warnings.warn(f"{path}: the file system does not support locks ({unsupported}); nothing prevents two "
                          "processes from writing this folder at once", stacklevel=3)
            yield
            return
        try:
            stamp = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n"
            if sys.platform != "win32":  # on Windows the locked byte cannot be rewritten while held
                os.ftruncate(fd, 0)
                os.pwrite(fd, stamp.encode("utf-8"), 0)
            yield
        finally:
            if sys.platform != "win32":
                os.ftruncate(fd, 0)  # released: the file names no holder any more
            _unlock(fd)
    finally:
        os.close(fd)
