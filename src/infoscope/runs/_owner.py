"""One writer per run: an exclusive, non-blocking lock beside the run's file.

The lock is an advisory lock on ``<run>-lock`` (``flock`` on POSIX,
``msvcrt.locking`` on Windows), held by the writing store from its first
record until it is closed. The operating system releases it when the process
ends, however it ends, so a killed writer never leaves a stale lock. The lock
file itself stays: deleting it would let two writers lock two different
files of the same name.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ._errors import RunInUseError

__all__ = ["OwnerLock"]

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


class OwnerLock:
    """The writer's claim on a run; :meth:`acquire` raises if another holds it."""

    def __init__(self, path: str):
        self.path = path + "-lock"
        self.run_path = path
        self._file: Any = None  # closed, and so unlocked, when collected
        self._pid: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._file is not None and self._pid == os.getpid()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunInUseError` at once."""
        if self.held:
            return
        self._file = None  # a descriptor inherited through fork is the parent's
        file = os.fdopen(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), "r+b", 0)
        try:
            _lock(file.fileno())
        except OSError:
            holder = _read_holder(file.fileno())
            file.close()
            raise RunInUseError(
                f"the run {self.run_path!r} is being written by another monitor"
                f"{holder}; a run has one writer at a time. Give this monitor "
                f"another path, or close the other one first (monitor.close())."
            ) from None
        # Who holds it, for the message another writer gets.
        holder = f"{os.getpid()} {socket.gethostname()} {time.time():.0f}\n"
        try:
            file.truncate(0)
            file.write(holder.encode())
        except OSError:
            pass  # the note is a courtesy; the lock is what counts
        self._file, self._pid = file, os.getpid()

    def release(self) -> None:
        """Let another writer take the run."""
        if self.held:
            self._file.close()  # closing the descriptor releases the lock
        self._file = self._pid = None


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _read_holder(fd: Any) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        pid, host, since = os.read(fd, 200).decode().split()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(since)))
    except (OSError, ValueError, UnicodeDecodeError):
        return ""
    return f" (process {pid} on {host}, since {started})"
