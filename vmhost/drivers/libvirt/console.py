"""Serial console over a libvirt stream, usable without an event loop."""

import contextlib
import queue
import threading

import libvirt

_EOF = b""


class LibvirtConsole:
    """A blocking stream drained by a reader thread: non-blocking streams need a libvirt event loop,
    blocking ones do their own I/O. FORCE takes the console from any stale session."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain):
        self._stream = conn.newStream(0)
        dom.openConsole(None, self._stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self._ended = False
        self._closed = threading.Event()
        threading.Thread(target=self._pump, name=f"console-{dom.name()}", daemon=True).start()

    def _pump(self) -> None:
        try:
            while not self._closed.is_set():
                data = self._stream.recv(65536)
                if not data:
                    break
                self._chunks.put(bytes(data))
        except libvirt.libvirtError:
            pass
        self._chunks.put(_EOF)

    def read(self, timeout: float) -> bytes:
        """What arrived within `timeout` seconds (b"" if nothing did); EOFError once the VM is gone."""
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
            view = view[self._stream.send(bytes(view)) :]

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(libvirt.libvirtError):
            self._stream.abort()
