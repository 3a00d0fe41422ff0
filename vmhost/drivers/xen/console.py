"""The serial console through `xl console <name>`, run on a pseudo-terminal (xl console wants a tty)."""

import contextlib
import os
import queue
import select
import subprocess
import threading

CHUNK = 65536
_EOF = b""


class XlConsole:
    """A reader thread drains the pty into a queue, so read() can wait with a timeout like the other consoles."""

    def __init__(self, command: str, name: str):
        leader, follower = os.openpty()
        try:
            self._process = subprocess.Popen(  # noqa: S603 - argv list; the name passed NAME_PATTERN
                [command, "console", name],
                stdin=follower,
                stdout=follower,
                stderr=follower,
                start_new_session=True,
            )
        except OSError:
            os.close(leader)
            raise
        finally:
            os.close(follower)
        self._fd = leader
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self._ended = False
        self._closed = threading.Event()
        threading.Thread(target=self._pump, name=f"xl-console-{name}", daemon=True).start()

    def _pump(self) -> None:
        while not self._closed.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._fd, CHUNK)
            except OSError:  # EIO: xl console exited and the pty has no writer left
                break
            if not data:
                break
            self._chunks.put(data)
        self._chunks.put(_EOF)

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` seconds (b"" if nothing did); EOFError once xl console has ended."""
        if self._ended:
            raise EOFError("console closed")
        try:
            data = self._chunks.get(timeout=timeout)
        except queue.Empty:
            return b""
        while data and not self._chunks.empty():
            more = self._chunks.get_nowait()
            if not more:
                self._chunks.put(_EOF)
                break
            data += more
        if not data:
            self._ended = True
            raise EOFError("console closed")
        return data

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        """Ends xl console (as Ctrl-] would) and releases the pty."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(5)
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):
            os.close(self._fd)
