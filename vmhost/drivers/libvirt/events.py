"""Domain lifecycle events from libvirt, through libvirtaio, with reconnection when libvirtd goes away.

libvirt accepts one event-loop implementation per process, registered before the connections that use it.
So one daemon thread runs an asyncio loop with libvirtaio for the whole process, and every monitor runs
on it; callbacks hand events to a queue drained by one worker thread, which keeps each VM's events in order.
"""

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import libvirt
import libvirtaio

from vmhost.drivers.base import DomainEvent, DomainEventKind

log = logging.getLogger("vmhost.events")

KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def event_loop() -> asyncio.AbstractEventLoop:
    """The process-wide loop libvirt's events run on (started, and libvirtaio registered, on first use)."""
    global _loop  # noqa: PLW0603 - one per process, by libvirt's rule
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
                ready.set()
                loop.run_forever()

            threading.Thread(target=run, name="libvirt-events", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def translate(name: str, event: int, detail: int) -> DomainEvent | None:
    """libvirt (event, detail) → DomainEvent; None for events vmhost does not act on."""
    kind, reason = _KINDS.get((event, detail), _KINDS.get((event, -1), (None, "")))
    return DomainEvent(name, kind, reason) if kind else None


_KINDS: dict[tuple[int, int], tuple[DomainEventKind | None, str]] = {
    (libvirt.VIR_DOMAIN_EVENT_DEFINED, -1): (DomainEventKind.DEFINED, ""),
    (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, -1): (DomainEventKind.UNDEFINED, "undefined"),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, -1): (DomainEventKind.STARTED, "started"),
    (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_MIGRATED): (
        DomainEventKind.STARTED,
        "migrated",
    ),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, -1): (DomainEventKind.PAUSED, "paused"),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED): (
        DomainEventKind.PAUSED,
        "migrated",
    ),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR): (
        DomainEventKind.PAUSED,
        "io-error",
    ),
    (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG): (
        DomainEventKind.PAUSED,
        "watchdog",
    ),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, -1): (DomainEventKind.RESUMED, "resumed"),
    (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_MIGRATED): (
        DomainEventKind.RESUMED,
        "migrated",
    ),
    (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, -1): (DomainEventKind.SHUTTING_DOWN, "shutting-down"),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN): (
        DomainEventKind.STOPPED,
        "guest-poweroff",
    ),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED): (
        DomainEventKind.STOPPED,
        "destroyed",
    ),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED): (
        DomainEventKind.CRASHED,
        "guest-crash",
    ),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED): (DomainEventKind.CRASHED, "qemu-died"),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED): (
        DomainEventKind.STOPPED,
        "migrated",
    ),
    (libvirt.VIR_DOMAIN_EVENT_STOPPED, -1): (DomainEventKind.STOPPED, "stopped"),
    (libvirt.VIR_DOMAIN_EVENT_CRASHED, -1): (DomainEventKind.CRASHED, "guest-panic"),
}


def _ignore(_value: object) -> None:
    """Default sink until start() is given the real one."""


def _nothing() -> None:
    """Default connection callback until start()."""


class LibvirtEventMonitor:
    """Keeps one event connection alive: keepalive detects a dead libvirtd, the close callback ends the
    connection, and run() reconnects with backoff, registers its callbacks again and reports the reconnect
    (so the engine resyncs whatever it missed)."""

    def __init__(self, uri: str):
        self.uri = uri
        self._sink: Callable[[DomainEvent], None] = _ignore
        self._on_connected: Callable[[], None] = _nothing
        self._on_lost: Callable[[str], None] = _ignore
        self._queue: queue.Queue[DomainEvent | None] = queue.Queue()
        self._future: Future[None] | None = None
        self._stopping = threading.Event()
        self.connected = threading.Event()

    def start(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None:
        self._sink, self._on_connected, self._on_lost = sink, on_connected, on_lost
        threading.Thread(target=self._deliver, name="domain-events", daemon=True).start()
        self._future = asyncio.run_coroutine_threadsafe(self._run(), event_loop())

    def stop(self) -> None:
        self._stopping.set()
        if self._future is not None:
            self._future.cancel()
        self._queue.put(None)

    def _deliver(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._sink(event)
            except Exception:
                log.exception("handling %s failed", event)

    async def _run(self) -> None:
        """Never ends on an error: whatever breaks one connection is logged and a new one is tried."""
        while not self._stopping.is_set():
            try:
                await self._connect_and_follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event monitor failed; reconnecting")
                await asyncio.sleep(RECONNECT_BACKOFF[-1])

    async def _connect_and_follow(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            closed = asyncio.Event()
            try:
                conn = await asyncio.to_thread(libvirt.open, self.uri)
            except libvirt.libvirtError as exc:
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                log.warning(
                    "libvirt unreachable, retrying",
                    extra={"uri": self.uri, "in_seconds": delay, "error": exc.get_error_message()},
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            callback = self._register(conn, closed)
            self.connected.set()
            await asyncio.to_thread(self._on_connected)
            try:
                await closed.wait()
            finally:
                self.connected.clear()
                self._forget(conn, callback)
            if not self._stopping.is_set():
                self._on_lost("libvirt connection lost")

    def _register(self, conn: libvirt.virConnect, closed: asyncio.Event) -> int:
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        conn.registerCloseCallback(lambda _conn, _reason, _opaque: closed.set(), None)
        return int(conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle, None))

    def _lifecycle(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _opaque: object
    ) -> None:
        translated = translate(dom.name(), event, detail)
        if translated is not None:
            self._queue.put(translated)

    @staticmethod
    def _forget(conn: libvirt.virConnect, callback: int) -> None:
        for undo in (lambda: conn.domainEventDeregisterAny(callback), conn.unregisterCloseCallback, conn.close):
            with contextlib.suppress(libvirt.libvirtError):
                undo()
