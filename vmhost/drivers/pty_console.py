"""A console command (`xl console NAME`, `vmadm console UUID`) under a pseudo-terminal, as a ConsoleStream."""

import contextlib
import os
import pty
import subprocess

from vmhost.host.fds import wait_readable


class PtyConsole:
    """Console commands want a terminal (Ctrl-] ends them); the pty's master side is our stream."""

    def __init__(self, argv: list[str]):
        master, slave = pty.openpty()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - argv list of validated names
                argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True
            )
        finally:
            os.close(slave)
        self._fd = master
        self._closed = False

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` seconds (b"" if nothing did); EOFError once the console ended."""
        if self._closed:
            raise EOFError("console closed")
        if not wait_readable(self._fd, timeout):
            return b""
        try:
            data = os.read(self._fd, 65536)
        except OSError:  # EIO: the process on the other side is gone
            data = b""
        if not data:
            raise EOFError("console closed")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        os.close(self._fd)
