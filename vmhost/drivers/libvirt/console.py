"""Serial console over a libvirt stream, usable without an event loop."""

import contextlib
import queue
import threading

import libvirt

_EOF = b""
BUFFERED_CHUNKS = 16
"""At most this many received chunks (64 KiB each) wait for the reader; then the pump stops reading the console."""
PUT_SLICE = 0.2


class LibvirtConsole:
    """A blocking stream drained by a reader thread: non-blocking streams need a libvirt event loop,
    blocking ones do their own I/O. FORCE takes the console from any stale session. The buffer is bounded:
    a reader that falls behind (a websocket client that does not read) pauses the pump, not the agent's memory."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain):
        self._stream = conn.newStream(0)
        dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._chunks: queue.Queue[bytes] = queue.Queue(BUFFERED_CHUNKS)
        self._ended = False
        self._closed = threading.Event()
        threading.Thread(target=self._pump, name=f"console-{dom.name()}", daemon=True).start()

    def _pump(self) -> None:
        try:
            while not self._closed.is_set():
                data = self._stream.recv(65536)
                if not data:
                    break
                self._hand_over(bytes(data))
        except libvirt.libvirtError:
            pass
        self._hand_over(_EOF)

    def _hand_over(self, chunk: bytes) -> None:
        """Wait while the buffer is full (the console is not read meanwhile); give up once the stream is closed."""
        while not self._closed.is_set():
            try:
                self._chunks.put(chunk, timeout=PUT_SLICE)
                return
            except queue.Full:
                continue

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` seconds (b"" if nothing did); EOFError once the VM is gone or closed."""
        if self._ended or self._closed.is_set():
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
            view = view[self._stream.send(bytes(view)) :]

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.abort()
