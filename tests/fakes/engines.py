"""Engines on the fake hypervisor, and a simulated SIGKILL at a journaled point (without killing pytest)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.driver import FakeDriver, FakeHypervisor
from vmhost.config import HostConfig
from vmhost.engine import Engine, steps
from vmhost.store.sqlite import Store


class Killed(BaseException):
    """Raised at a fault point: not an Exception, so no undo and no journal entry runs, as with a SIGKILL."""


def engine_on(hypervisor: FakeHypervisor, data_dir: Path, **driver_options: Any) -> Engine:
    """An agent (start) on this hypervisor and data directory; hypervisor events go to it from now on."""
    config = HostConfig(data_dir=data_dir, stop_timeout=0.5, allowed_paths=(data_dir,))
    store = Store(config.db_path, synchronous="NORMAL")
    engine = Engine(config, FakeDriver(hypervisor, **driver_options), store=store)
    hypervisor.sink = engine.on_domain_event
    return engine


def restarted(engine: Engine, hypervisor: FakeHypervisor, **driver_options: Any) -> Engine:
    """The agent died and came back: a new Engine on the same store and hypervisor, recovered."""
    hypervisor.sink = None
    engine.store.close()
    again = engine_on(hypervisor, engine.config.data_dir, **driver_options)
    again.recover()
    return again


@contextmanager
def killed_at(monkeypatch: pytest.MonkeyPatch, point: str) -> Iterator[list[str]]:
    """The process 'dies' right after `point` (kind:step) is journaled; yields the points passed."""
    passed: list[str] = []

    def fault(name: str) -> None:
        passed.append(name)
        if name == point:
            raise Killed(name)

    with monkeypatch.context() as patch:
        patch.setattr(steps.faults, "point", fault)
        yield passed


def spec(name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "memory": "64MiB", **changes}
