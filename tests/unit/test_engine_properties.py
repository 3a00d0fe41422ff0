"""Random sequences of operations, hypervisor events and agent restarts (some in the middle of an operation)
through the engine on the fake hypervisor; after each, the invariants hold: every state is legal and settled,
the store agrees with the hypervisor, and nothing is left behind."""

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import Killed, engine_on, killed_at, restarted, spec
from vmhost.drivers.base import DomainState
from vmhost.engine import Engine
from vmhost.engine.states import OBSERVED, TRANSIENT, VmState
from vmhost.errors import VmhostError

NAMES = ("a", "b")
OPERATIONS = ("create", "start", "stop", "kill", "pause", "resume", "reboot", "delete", "update")
EVENTS = ("crash", "destroy-outside", "restart-agent")
POINTS = ("begin", "recorded", "defined", "created-paused", "resumed", "destroyed", "paused", "undefined")
DISK = {"source": {"type": "new", "size": "1MiB"}}
NEVER_DUE = {"initial_seconds": 3600, "max_seconds": 3600}
"""A crash schedules a restart (so recovery sees desired_state running) that never fires during the test."""

actions = st.one_of(
    st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(NAMES), st.none()),
    st.tuples(st.sampled_from(EVENTS), st.sampled_from(NAMES), st.none()),
    st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(NAMES), st.sampled_from(POINTS)),
)


def operate(engine: Engine, operation: str, name: str) -> None:
    calls: dict[str, Any] = {
        "create": lambda: engine.create(spec(name, disks=[DISK], restart_policy="on-crash", restart_backoff=NEVER_DUE)),
        "start": lambda: engine.start(name),
        "stop": lambda: engine.stop(name, timeout=0.05),
        "kill": lambda: engine.kill(name),
        "pause": lambda: engine.pause(name),
        "resume": lambda: engine.resume(name),
        "reboot": lambda: engine.reboot(name),
        "delete": lambda: engine.delete(name),
        "update": lambda: engine.update(name, {"cpu": {"vcpus": 2}, "disks": [DISK, DISK]}),
    }
    with contextlib.suppress(VmhostError):  # refused (not running, absent...): the invariants hold all the same
        calls[operation]()


def check(engine: Engine, hypervisor: FakeHypervisor) -> None:
    records = {record.name: record for record in engine.store.list_vms()}
    assert set(records) == set(hypervisor.domains), "no orphan domain, no lost definition"
    for name, record in records.items():
        state = VmState(record.state)
        assert state not in TRANSIENT, (name, state)
        assert OBSERVED[hypervisor.domains[name].state] == state, "the store agrees with the hypervisor"
    owned = {path for record in records.values() for path in record.owned_paths}
    assert {str(p) for p in (engine.config.data_dir / "vms").glob("*/disks/*")} == owned
    assert {d.name for d in (engine.config.data_dir / "vms").iterdir()} <= {r.uuid for r in records.values()}
    assert engine.store.unfinished_operations() == []
    assert not hypervisor.reserved_pci


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(actions, max_size=20))
def test_random_operations_and_events_keep_every_invariant(monkeypatch: pytest.MonkeyPatch, sequence):
    hypervisor = FakeHypervisor()
    with tempfile.TemporaryDirectory() as directory:
        engine = engine_on(hypervisor, Path(directory) / "data")
        for action, name, point in sequence:
            if action == "restart-agent":
                engine = restarted(engine, hypervisor)
            elif action in ("crash", "destroy-outside"):
                if hypervisor.domains.get(name) and hypervisor.domains[name].state == DomainState.RUNNING:
                    (hypervisor.crash if action == "crash" else hypervisor.destroy_outside)(name)
            elif point is None:
                operate(engine, action, name)
            else:
                killed = False
                with killed_at(monkeypatch, f"{action}:{point}"):
                    try:
                        operate(engine, action, name)
                    except Killed:
                        killed = True
                if killed:  # the agent that comes back has no fault point: its restores run to the end
                    engine = restarted(engine, hypervisor)
            check(engine, hypervisor)
        engine.store.close()
