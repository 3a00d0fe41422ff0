"""The last minutes of each running VM's counters, for GET /v1/vms/{vm}/stats (the dashboard's charts): one bulk
statistics call every INTERVAL seconds (the same as a /metrics scrape), KEEP samples per VM, and only this agent's
running VMs are kept, so the history is bounded by the VMs the host runs."""

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from vmhost.api.metrics import own_active
from vmhost.drivers.base import DomainStats
from vmhost.engine import Engine

log = logging.getLogger("vmhost.http")
INTERVAL = 5.0
KEEP = 120
"""Samples per VM: ten minutes at INTERVAL."""


@dataclass(frozen=True)
class Sample:
    time: float
    cpu_seconds: float | None
    memory_bytes: int | None
    rss_bytes: int | None
    disk_read_bytes: int | None
    disk_write_bytes: int | None
    net_rx_bytes: int | None
    """Into the guest."""
    net_tx_bytes: int | None

    @classmethod
    def of(cls, stats: DomainStats, now: float) -> "Sample":
        return cls(
            now,
            stats.cpu_seconds,
            stats.memory_bytes,
            stats.rss_bytes,
            _total(d.read_bytes for d in stats.disks),
            _total(d.write_bytes for d in stats.disks),
            _total(n.receive_bytes for n in stats.nics),
            _total(n.transmit_bytes for n in stats.nics),
        )


def _total(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class StatsHistory:
    def __init__(self, engine: Engine, interval: float = INTERVAL, keep: int = KEEP):
        self.engine, self.interval, self.keep = engine, interval, keep
        self._lock = threading.Lock()
        self._samples: dict[str, deque[Sample]] = {}

    def sample(self) -> None:
        now = time.time()
        current = {entry.name: Sample.of(entry, now) for entry in own_active(self.engine)}
        with self._lock:
            for name in set(self._samples) - set(current):
                del self._samples[name]  # stopped or gone: its counters start again from zero next time
            for name, sample in current.items():
                self._samples.setdefault(name, deque(maxlen=self.keep)).append(sample)

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(sample) for sample in self._samples.get(name, ())]

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a hypervisor that does not answer now may later; the charts just have a gap
                log.debug("stats sample failed", exc_info=True)
            if stop.wait(self.interval):
                return
