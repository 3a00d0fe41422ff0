"""Engines on the fake hypervisor, and a simulated SIGKILL at a journaled point (without killing pytest)."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from vmhost.api.agent import Agent
from vmhost.api.app import create_app
from vmhost.api.auth import TokenAuth
from vmhost.api.operations import Operations
from vmhost.config import HostConfig
from vmhost.drivers.base import DomainEvent
from vmhost.engine import Engine, steps
from vmhost.host.tokens import ensure_token, read_token
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


class NoEvents:
    def start(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None:
        """The fake hypervisor calls the engine itself."""

    def stop(self) -> None:
        """Nothing runs."""


@contextmanager
def agent_http(engine: Engine) -> Iterator[TestClient]:
    """The agent's app on this engine, in this process, as a client that sends the token."""
    config = engine.config
    ensure_token(config.data_dir)
    agent = Agent(
        config=config,
        engine=engine,
        operations=Operations(journal=engine),
        auth=TokenAuth(config.data_dir, ()),
        monitor=NoEvents(),
    )
    with TestClient(create_app(agent)) as client:
        client.headers["Authorization"] = f"Bearer {read_token(config.data_dir)}"
        yield client


def restarted(engine: Engine, hypervisor: FakeHypervisor, **driver_options: Any) -> Engine:
    """The agent died and came back: a new Engine on the same store and hypervisor, recovered. A thread of the
    dead engine that was waiting for a VM's lock (a deferred event) may take it as the "killed" operation lets
    go, which a real SIGKILL would not allow: it finishes before the new engine looks for interrupted work."""
    hypervisor.sink = None
    eventually(engine.supervisor.idle, 5, 0.01, "the dead engine's deferred events")
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
