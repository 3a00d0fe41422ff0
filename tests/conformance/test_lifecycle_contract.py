"""The lifecycle every driver must implement, checked through the Engine against the real hypervisor.

Each case runs once per harness (tests/conformance/conftest.py DRIVERS); see harness.py for how a driver joins.
"""

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conformance.harness import Behaviour, Harness
from tests.eventually import eventually
from vmhost.drivers.base import DomainState
from vmhost.engine import Engine
from vmhost.engine.hooks import Hook, Phase
from vmhost.spec import SpecError

pytestmark = pytest.mark.integration
case = pytest.mark.case


def wait_state(engine: Engine, name: str, state: str, timeout: float = 30) -> None:
    def reached() -> bool:
        current = engine.get(name)["state"]
        assert current == state, f"{name} is {current}"
        return True

    eventually(reached, timeout, 0.1, f"{name} {state}")


def vm_dir(engine: Engine, uuid: str) -> Path:
    return engine.config.data_dir / "vms" / uuid


@case("create")
def test_create_defines_a_stopped_workload(harness: Harness, engine: Engine):
    name = harness.name("create")
    record = engine.create(harness.spec(name))
    assert record.driver == harness.driver
    assert engine.driver.state(name) == DomainState.SHUTOFF
    assert engine.get(name)["state"] == "stopped"
    assert engine.driver.recorded(name).spec["name"] == name


@case("two-phase-start")
def test_start_runs_activation_steps_while_the_workload_is_created_but_not_running(harness: Harness, engine: Engine):
    name = harness.name("twophase")
    seen: list[DomainState] = []
    engine.hooks.append(
        Hook("conformance", Phase.START_PAUSED, lambda ctx: seen.append(ctx.driver.state(ctx.spec.name)))
    )
    engine.create(harness.spec(name), start=True)
    assert seen == [DomainState.PAUSED]
    assert engine.driver.state(name) == DomainState.RUNNING
    harness.wait_running(engine, name)


@case("get-and-list")
def test_get_and_list_show_the_running_workload_with_its_driver(harness: Harness, engine: Engine):
    name = harness.name("view")
    engine.create(harness.spec(name), start=True)
    harness.wait_running(engine, name)
    view = engine.get(name)
    assert (view["state"], view["driver"]) == ("running", harness.driver)
    assert view["runtime"]["pid"] > 0
    assert [(r.name, s) for r, s in engine.list_vms() if r.name == name] == [(name, "running")]
    assert engine.driver.states()[name] == DomainState.RUNNING
    assert name in [info.name for info in engine.driver.list_owned()]


@case("graceful-stop")
def test_graceful_stop_ends_the_workload_without_forcing(harness: Harness, engine: Engine):
    name = harness.name("graceful")
    engine.create(harness.spec(name), start=True)
    harness.wait_running(engine, name)
    result = engine.stop(name, timeout=30)
    assert result.method == "acpi"
    assert result.seconds < 15
    assert engine.driver.state(name) == DomainState.SHUTOFF
    assert engine.get(name)["state"] == "stopped"


@case("forced-stop-after-deadline")
def test_stop_forces_the_workload_off_at_the_deadline_when_it_ignores_the_request(harness: Harness, engine: Engine):
    name = harness.name("stubborn")
    engine.create(harness.spec(name, Behaviour.IGNORES_STOP), start=True)
    harness.wait_running(engine, name)
    result = engine.stop(name, timeout=3)
    assert result.method == "forced"
    assert 3 <= result.seconds < 3 + 5
    assert engine.driver.state(name) == DomainState.SHUTOFF
    assert engine.get(name)["state"] == "stopped"


@case("idempotent-start-stop")
def test_start_and_stop_are_idempotent(harness: Harness, engine: Engine):
    name = harness.name("idem")
    engine.create(harness.spec(name))
    assert engine.stop(name).method == "already-stopped"
    engine.start(name)
    harness.wait_running(engine, name)
    pid = engine.driver.info(name).pid
    engine.start(name)
    assert engine.driver.info(name).pid == pid
    engine.stop(name, force=True)
    assert engine.stop(name).method == "already-stopped"
    engine.start(name)
    harness.wait_running(engine, name, times=2)
    assert engine.get(name)["state"] == "running"


@case("delete-leaves-nothing")
def test_delete_of_a_running_workload_leaves_nothing(harness: Harness, engine: Engine):
    name = harness.name("delete")
    uuid = engine.create(harness.spec(name), start=True).uuid
    harness.wait_running(engine, name)
    engine.delete(name)
    assert harness.leftovers(engine, name) == []
    assert not vm_dir(engine, uuid).exists()
    assert engine.store.get_vm(name) is None
    assert engine.driver.state(name) == DomainState.ABSENT


@case("bad-spec-rejected")
def test_spec_the_host_cannot_run_is_refused_naming_the_field_with_nothing_created(harness: Harness, engine: Engine):
    name = harness.name("bad")
    spec, field = harness.bad_spec(name)
    with pytest.raises(SpecError) as refused:
        engine.create(spec, start=True)
    assert field in [problem.path for problem in refused.value.problems]
    assert engine.store.get_vm(name) is None
    assert harness.leftovers(engine, name) == []
    vms = engine.config.data_dir / "vms"
    assert not vms.exists() or not list(vms.iterdir())


@case("crash-detected")
def test_workload_killed_from_outside_is_seen_as_crashed(harness: Harness, engine: Engine):
    name = harness.name("crash")
    engine.create(harness.spec(name), start=True)
    harness.wait_running(engine, name)
    harness.crash(engine, name)
    wait_state(engine, name, "crashed")
    assert engine.driver.state(name) == DomainState.CRASHED


@case("crash-restarts")
def test_crash_is_followed_by_a_restart_under_the_on_crash_policy(
    harness: Harness, engine: Engine, follow_events: Callable[[], None]
):
    name = harness.name("respawn")
    policy = {"restart_policy": "on-crash", "restart_backoff": {"initial_seconds": 0.5}}
    engine.create(harness.spec(name, **policy), start=True)
    follow_events()
    harness.wait_running(engine, name)
    harness.crash(engine, name)
    harness.wait_running(engine, name, times=2)
    wait_state(engine, name, "running")
    assert engine.record(name).restart_count == 1
    assert engine.record(name).last_exit_reason


@case("clean-exit-is-stopped")
def test_workload_that_ends_cleanly_is_stopped_not_crashed(
    harness: Harness, engine: Engine, follow_events: Callable[[], None]
):
    name = harness.name("selfoff")
    engine.create(harness.spec(name, Behaviour.EXITS_CLEANLY, restart_policy="on-crash"), start=True)
    follow_events()
    wait_state(engine, name, "stopped", timeout=60)
    assert engine.driver.state(name) == DomainState.SHUTOFF
    time.sleep(2)
    assert engine.get(name)["state"] == "stopped"
    assert engine.record(name).restart_count == 0


@case("agent-restart-adopts")
def test_new_agent_without_a_store_adopts_the_running_workload_untouched(
    harness: Harness, new_engine: Callable[[], Engine]
):
    first = new_engine()
    name = harness.name("adopt")
    first.create(harness.spec(name), start=True)
    harness.wait_running(first, name)
    pid = first.driver.info(name).pid
    config = first.config
    for suffix in ("", "-wal", "-shm"):
        config.db_path.with_name(config.db_path.name + suffix).unlink(missing_ok=True)
    second = new_engine()
    second.recover()
    view = second.get(name)
    assert (view["state"], view["state_reason"], view["driver"]) == (
        "running",
        "adopted from the hypervisor",
        harness.driver,
    )
    assert second.driver.info(name).pid == pid
    assert second.stop(name, timeout=30).method == "acpi"
