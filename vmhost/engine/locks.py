"""Per-VM locks that hold across threads and processes (flock on one file per VM name)."""

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vmhost.errors import Conflict

_RETRY = 0.05


class VmLocks:
    """Two operations on one VM never interleave; operations on different VMs never wait for each other."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.lock"

    @contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Wait (up to `timeout` seconds, forever if None) for the VM's lock."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            fd = os.open(self._path(name), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                self._acquire(fd, name, deadline)
                if self._still_current(fd, name):
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)

    def is_held(self, name: str) -> bool:
        try:
            fd = os.open(self._path(name), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def discard(self, name: str) -> None:
        """Remove a deleted VM's lock file; call while holding it (waiters then retry on a fresh file)."""
        self._path(name).unlink(missing_ok=True)

    @staticmethod
    def _acquire(fd: int, name: str, deadline: float | None) -> None:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline is not None else 0))
                return
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise Conflict(f"another operation on {name} is still running") from None
                time.sleep(_RETRY)

    def _still_current(self, fd: int, name: str) -> bool:
        """A lock file unlinked while we waited is stale: retry on the file that is there now."""
        try:
            return os.stat(self._path(name)).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
