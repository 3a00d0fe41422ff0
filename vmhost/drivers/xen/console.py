"""`xl console` under a pty, with xenconsole's refusal of a second client turned into a clear error."""

import time

from vmhost.drivers.pty_console import PtyConsole
from vmhost.drivers.xen.xl import CONSOLE_BUSY
from vmhost.errors import Conflict, HypervisorError

SETTLE_SECONDS = 1.0
"""xenconsole takes its per-domid lock before anything else (tools/console/client/main.c console_lock): a
console that has printed something, or is still there after this long, was not refused."""


class XlConsole(PtyConsole):
    def __init__(self, argv: list[str], name: str):
        super().__init__(argv)
        self._pending = b""
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline and not self._pending:
            try:
                self._pending += super().read(0.05)
            except EOFError:
                break
            if self._process.poll() is not None:
                break
        if self._process.poll() is None and CONSOLE_BUSY.encode() not in self._pending:
            return
        said = (self._pending + self._drain()).decode(errors="replace").strip()
        self.close()
        if CONSOLE_BUSY in said:
            raise Conflict(f"the console of {name} is busy: another client is attached to it", said)
        raise HypervisorError(f"xl console for {name} ended at once", said or None)

    def read(self, timeout: float) -> bytes:
        """What the settle window already read comes first."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return super().read(timeout)

    def _drain(self) -> bytes:
        """What the console command printed before it ended."""
        said = b""
        while True:
            try:
                chunk = super().read(0.1)
            except EOFError:
                return said
            if not chunk:
                return said
            said += chunk
