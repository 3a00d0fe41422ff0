"""Events for hypervisors that offer no event stream (xl, runc, vmadm): poll states() and report the changes.

One cheap bulk call per interval; a change between two polls becomes the DomainEvent a native stream would have
sent, so the engine's crash detection and restart policy work the same on every driver.
"""

import logging
import threading
from collections.abc import Callable

from vmhost.drivers.base import DomainEvent, DomainEventKind, DomainState, Driver, EventSource
from vmhost.errors import VmhostError

log = logging.getLogger("vmhost.events")

TRANSITIONS: dict[DomainState, tuple[DomainEventKind, str]] = {
    DomainState.RUNNING: (DomainEventKind.STARTED, "started"),
    DomainState.PAUSED: (DomainEventKind.PAUSED, "paused"),
    DomainState.SHUTTING_DOWN: (DomainEventKind.SHUTTING_DOWN, ""),
    DomainState.SHUTOFF: (DomainEventKind.STOPPED, "guest-poweroff"),
    DomainState.CRASHED: (DomainEventKind.CRASHED, "guest-crash"),
    DomainState.CRASHED_PRESERVED: (DomainEventKind.CRASHED, "guest-crash"),
    DomainState.ABSENT: (DomainEventKind.UNDEFINED, "undefined"),
}


def changes(before: dict[str, DomainState], after: dict[str, DomainState]) -> list[DomainEvent]:
    """The events that explain how `before` became `after` (PAUSED→RUNNING is a resume, not a start)."""
    events = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name, DomainState.ABSENT), after.get(name, DomainState.ABSENT)
        if old == new or new not in TRANSITIONS:
            continue
        if old == DomainState.ABSENT:
            events.append(DomainEvent(name, DomainEventKind.DEFINED))
            if new in (DomainState.SHUTOFF, DomainState.ABSENT):
                continue
        kind, reason = TRANSITIONS[new]
        if old == DomainState.PAUSED and new == DomainState.RUNNING:
            kind, reason = DomainEventKind.RESUMED, "resumed"
        events.append(DomainEvent(name, kind, reason))
    return events


class PollingEventSource:
    def __init__(self, driver: Driver, interval: float = 0.5):
        self.driver = driver
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sink, on_connected, on_lost), name=f"{self.driver.kind}-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None:
        last: dict[str, DomainState] | None = None
        while not self._stop.is_set():
            try:
                now = self.driver.states()
            except VmhostError as exc:
                if last is not None:
                    on_lost(exc.message)
                last = None
            else:
                if last is None:
                    on_connected()
                else:
                    for event in changes(last, now):
                        self._deliver(sink, event)
                last = now
            self._stop.wait(self.interval)

    @staticmethod
    def _deliver(sink: Callable[[DomainEvent], None], event: DomainEvent) -> None:
        try:
            sink(event)
        except Exception:
            log.exception("event handler failed", extra={"vm": event.name, "event": event.kind.value})


class CompositeEventSource:
    """Every driver's events into one sink."""

    def __init__(self, sources: list[EventSource]):
        self.sources = sources

    def start(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None:
        for source in self.sources:
            source.start(sink, on_connected, on_lost)

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
