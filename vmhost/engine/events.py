"""State-change events: what happened to which VM, fanned out to every listener (API streams, CLI)."""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

log = logging.getLogger("vmhost.events")
Listener = Callable[["VmEvent"], object]


@dataclass(frozen=True)
class VmEvent:
    """One line of `vmhost events`: like vmadm's events, a JSON object per change."""

    vm: str
    uuid: str
    type: str
    state: str
    reason: str = ""
    time: float = field(default_factory=time.time)
    seq: int = 0
    """Order of publication, set by the bus: listeners resume from it without gaps or duplicates."""

    def view(self) -> dict[str, Any]:
        return asdict(self)


class EventBus:
    """Synchronous fan-out plus a short history so a new listener can catch up; listeners must be quick."""

    def __init__(self, history: int = 1000):
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._recent: deque[VmEvent] = deque(maxlen=history)
        self._seq = 0

    def publish(self, event: VmEvent) -> None:
        """A failing listener is logged and skipped: it must never fail the operation that published."""
        with self._lock:
            self._seq += 1
            event = replace(event, seq=self._seq)
            self._recent.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed")

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def recent(self, since: float = 0.0) -> list[VmEvent]:
        """Kept events published after the Unix time `since`."""
        with self._lock:
            return [event for event in self._recent if event.time > since]
