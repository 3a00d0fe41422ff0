"""Recovery and restart policies on the fake hypervisor: an agent 'killed' at every journaled point of every
operation is recovered with the operation's own steps; crashes seen live, during an operation, or while the
agent was down all get the same restart-policy decision."""

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import Killed, engine_on, killed_at, restarted, spec
from vmhost.api.operations import Operations, OpState
from vmhost.drivers.base import DomainEventKind, DomainState
from vmhost.engine import Engine, supervisor
from vmhost.engine.states import TRANSIENT
from vmhost.engine.supervisor import FOUND_CRASHED

DISK = {"source": {"type": "new", "size": "1MiB"}}
QUICK = {"initial_seconds": 0.1, "max_retries": 3}

# point -> (state before, the call)
CASES: dict[str, tuple[str, Any]] = {
    **{
        f"create:{step}": ("absent", lambda e: e.create(spec("web", disks=[DISK])))
        for step in ("begin", "recorded", "disks-created", "defined", "stopped")
    },
    **{
        f"start:{step}": ("stopped", lambda e: e.start("web"))
        for step in ("begin", "created-paused", "activated", "resumed", "running")
    },
    **{f"stop:{step}": ("running", lambda e: e.stop("web")) for step in ("begin", "shutdown-requested", "stopped")},
    **{f"kill:{step}": ("running", lambda e: e.kill("web")) for step in ("begin", "destroyed")},
    **{
        f"delete:{step}": ("running", lambda e: e.delete("web"))
        for step in ("begin", "destroyed", "undefined", "disks-removed", "forgotten")
    },
    **{
        f"update:{step}": ("stopped", lambda e: e.update("web", {"cpu": {"vcpus": 2}, "disks": [DISK, DISK]}))
        for step in ("begin", "disks-created", "defined", "recorded")
    },
    **{f"pause:{step}": ("running", lambda e: e.pause("web")) for step in ("begin", "paused")},
    **{f"resume:{step}": ("paused", lambda e: e.resume("web")) for step in ("begin", "resumed")},
    **{f"reboot:{step}": ("running", lambda e: e.reboot("web")) for step in ("begin", "requested")},
    **{
        f"attach-disk:{step}": ("running", lambda e: e.attach_disk("web", DISK))
        for step in ("disks-created", "plugged")
    },
    **{f"detach-disk:{step}": ("running", lambda e: e.detach_disk("web", "vda")) for step in ("unplugged", "defined")},
    **{
        f"snapshot-create:{step}": ("running", lambda e: e.create_snapshot("web", "s1"))
        for step in ("begin", "taken", "recorded")
    },
    **{
        f"snapshot-revert:{step}": (
            "running",
            lambda e: (e.create_snapshot("web", "s1"), e.revert_snapshot("web", "s1")),
        )
        for step in ("begin", "reverted")
    },
    "snapshot-revert:redefined": (
        "running",
        lambda e: (
            e.create_snapshot("web", "s1"),
            e.update("web", {"cpu": {"vcpus": 2}}),
            e.revert_snapshot("web", "s1"),
        ),
    ),
    **{
        f"snapshot-delete:{step}": (
            "stopped",
            lambda e: (e.create_snapshot("web", "s1"), e.delete_snapshot("web", "s1")),
        )
        for step in ("begin", "metadata-removed", "forgotten")
    },
}


def prepare(engine: Engine, before: str) -> None:
    if before == "absent":
        return
    engine.create(spec("web", disks=[DISK]), start=before in ("running", "paused"))
    if before == "paused":
        engine.pause("web")


def assert_consistent(engine: Engine, hypervisor: FakeHypervisor) -> None:
    """No orphan domain or lost definition, no stray disk or directory, nothing transient, nothing unfinished."""
    records = {record.name: record for record in engine.store.list_vms()}
    assert set(records) == set(hypervisor.domains)
    for name, record in records.items():
        assert record.state not in TRANSIENT
        assert engine.get(name)["state"] == record.state, "the store agrees with the hypervisor"
        assert hypervisor.domains[name].spec["cpu"] == record.spec["cpu"], "the definition matches the store"
    owned = {path for record in records.values() for path in record.owned_paths}
    assert {str(p) for p in (engine.config.data_dir / "vms").glob("*/disks/*")} == owned
    assert {d.name for d in (engine.config.data_dir / "vms").iterdir()} <= {r.uuid for r in records.values()}
    assert engine.store.unfinished_operations() == []


@pytest.mark.parametrize("point", list(CASES))
def test_an_agent_killed_at_any_journaled_point_is_recovered_with_the_same_steps(point, tmp_path, monkeypatch):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    before, call = CASES[point]
    prepare(engine, before)
    with killed_at(monkeypatch, point) as passed, pytest.raises(Killed):
        call(engine)
    assert point in passed
    engine = restarted(engine, hypervisor)
    assert_consistent(engine, hypervisor)
    kind = point.split(":")[0]
    [op] = [op for op in engine.store.operations(limit=100) if op.kind == kind and op.result.startswith("interrupted")]
    assert op.state in ("completed by recovery", "rolled back by recovery")


@pytest.mark.parametrize("step", ["disks-created", "defined"])
def test_a_next_boot_update_of_a_running_vm_killed_before_it_is_recorded_leaves_no_new_disk(
    step, tmp_path, monkeypatch
):
    """The new disk is for the next boot (never plugged in): recovery removes it although the VM runs."""
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    prepare(engine, "running")
    with killed_at(monkeypatch, f"update:{step}"), pytest.raises(Killed):
        engine.update("web", {"cpu": {"vcpus": 2}, "disks": [DISK, DISK]})
    engine = restarted(engine, hypervisor)
    assert_consistent(engine, hypervisor)
    assert [disk["target"] for disk in engine.get("web")["disks"]] == ["vda"]


def guest_writes(overlay: Path, base: Path) -> None:
    """What libvirt and then the guest would have done: the overlay made on the disk's image, data written on it
    (the fake driver keeps snapshot names only)."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)], check=True
    )
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x61 0 4k", str(overlay)], check=True, capture_output=True
    )


def same_content(overlay: Path, base: Path) -> bool:
    return subprocess.run(["qemu-img", "compare", "-q", str(overlay), str(base)], check=False).returncode == 0


DISK_ONLY_REVERT = [("running", step) for step in ("begin", "stopped", "reverted", "started")] + [
    ("stopped", step) for step in ("begin", "reverted")
]


@pytest.mark.parametrize(("before", "step"), DISK_ONLY_REVERT)
def test_an_interrupted_disk_only_revert_is_completed_and_a_vm_that_ran_boots_again(
    before, step, tmp_path, monkeypatch
):
    """vmhost reverts overlays itself (on a libvirt driver): whatever step the agent died after, recovery forces
    the VM off if it still runs, makes a new empty overlay and starts the VM again if it ran."""
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data", kind="libvirt")
    engine.create(spec("web", disks=[DISK]), start=before == "running")
    [base] = map(Path, engine.record("web").owned_paths)
    overlay = Path(engine.create_snapshot("web", "s1", disk_only=True)["layers"]["vda"])
    guest_writes(overlay, base)
    booted = hypervisor.domains["web"].pid
    with killed_at(monkeypatch, f"snapshot-revert:{step}") as passed, pytest.raises(Killed):
        engine.revert_snapshot("web", "s1")
    assert f"snapshot-revert:{step}" in passed
    engine = restarted(engine, hypervisor, kind="libvirt")
    assert same_content(overlay, base), "what was written since the snapshot is gone"
    record = engine.record("web")
    assert (record.state, record.desired_state) == (before, before)
    if before == "running":
        assert hypervisor.domains["web"].pid not in (None, booted), "a new boot, not the guest that ran on"
    [op] = [op for op in engine.store.operations("web", limit=10) if op.kind == "snapshot-revert"]
    assert op.state == "completed by recovery"
    assert [s["name"] for s in engine.list_snapshots("web")] == ["s1"], "the snapshot stays, to revert to again"
    assert engine.store.unfinished_operations() == []


def test_an_interrupted_pause_leaves_the_guest_alive(tmp_path, monkeypatch):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web"), start=True)
    with killed_at(monkeypatch, "pause:paused"), pytest.raises(Killed):
        engine.pause("web")
    engine = restarted(engine, hypervisor)
    assert hypervisor.domains["web"].state == DomainState.PAUSED, "completed: paused, never destroyed"
    assert engine.record("web").state == "paused"
    assert engine.store.operations("web", limit=1)[0].state == "completed by recovery"


@pytest.mark.parametrize("policy", ["never", "on-crash", "always"])
def test_a_vm_found_crashed_at_agent_start_gets_its_restart_policy(policy, tmp_path):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", restart_policy=policy, restart_backoff=QUICK), start=True)
    hypervisor.sink = None  # the agent is down
    hypervisor.crash("web")
    engine = restarted(engine, hypervisor)
    record = engine.record("web")
    assert record.last_exit_reason == FOUND_CRASHED
    if policy == "never":
        assert (record.state, record.desired_state) == ("crashed", "stopped")
        assert hypervisor.domains["web"].state == DomainState.CRASHED
        return
    eventually(lambda: engine.record("web").state == "running", timeout=5, what="restarted by policy")
    assert engine.record("web").restart_count == 1
    assert [e.type for e in engine.events.recent() if e.type.startswith("restart")] == [
        "restart-scheduled",
        "restarted",
    ]


def test_a_crash_during_a_detach_is_restarted_once_the_lock_is_free(tmp_path):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", disks=[DISK], restart_policy="on-crash", restart_backoff=QUICK), start=True)
    driver = engine.core.driver.for_name("web")
    seen_during: list[str] = []
    real_detach = driver.detach_disk

    def crash_then_detach(*args: Any) -> None:
        hypervisor.crash("web")  # the event arrives while the detach holds the lock
        seen_during.append(engine.record("web").state)
        real_detach(*args)

    driver.detach_disk = crash_then_detach
    engine.detach_disk("web", "vda")
    assert seen_during == ["running"], "the event waited for the operation"
    eventually(lambda: engine.record("web").restart_count == 1, timeout=5, what="restart after the lock was freed")
    eventually(lambda: engine.record("web").state == "running", timeout=5)
    assert engine.record("web").last_exit_reason == "the QEMU process died"


def states(engine: Engine) -> dict[str, str]:
    return {record.name: state.value for record, state in engine.list_vms()}


def restarts_told(engine: Engine) -> list[str]:
    return [e.type for e in engine.events.recent() if e.type.startswith("restart")]


def test_a_crash_the_reconcile_sees_before_its_event_is_the_events_to_explain(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "EVENT_GRACE", 0.3)
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", restart_policy="on-crash", restart_backoff={"initial_seconds": 5}), start=True)
    hypervisor.crash("web", announced=False)
    assert states(engine) == {"web": "crashed"}
    assert engine.record("web").state == "running", "the record waits for the event"
    hypervisor.emit("web", DomainEventKind.CRASHED, "qemu-died")  # the event, a moment later
    time.sleep(0.5)
    assert states(engine) == {"web": "crashed"}
    assert [e.reason for e in engine.events.recent() if e.state == "crashed" and e.type == "state"] == [
        "the QEMU process died"
    ]
    assert restarts_told(engine) == ["restart-scheduled"]


def test_a_crash_no_event_told_gets_its_reason_and_restart_policy(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "EVENT_GRACE", 0.1)
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", restart_policy="on-crash", restart_backoff=QUICK), start=True)
    hypervisor.crash("web", announced=False)
    engine.list_vms()  # what the agent does once events are connected again
    eventually(lambda: engine.record("web").restart_count == 1, timeout=5, what="restarted by policy")
    eventually(lambda: engine.record("web").state == "running", timeout=5)
    assert engine.record("web").last_exit_reason == "the QEMU process died"
    assert restarts_told(engine) == ["restart-scheduled", "restarted"]


def test_an_exit_told_twice_gets_the_restart_policy_once(tmp_path):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", restart_policy="on-crash", restart_backoff=QUICK), start=True)
    hypervisor.crash("web")
    hypervisor.emit("web", DomainEventKind.STOPPED, "guest-crash")  # libvirt tells a panic twice
    eventually(lambda: engine.record("web").state == "running", timeout=5, what="restarted by policy")
    assert restarts_told(engine) == ["restart-scheduled", "restarted"]


def test_a_found_exit_of_a_vm_an_operation_holds_is_left_to_the_operation(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "EVENT_GRACE", 0.1)
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", restart_policy="on-crash", restart_backoff=QUICK), start=True)
    hypervisor.crash("web", announced=False)
    with engine.core.locks.hold("web"):
        engine.list_vms()
        time.sleep(0.2)
        eventually(engine.supervisor.idle, timeout=5, what="the found exit looked at")
    assert engine.record("web").state == "running"
    assert restarts_told(engine) == []


def test_operation_ids_answer_after_an_agent_restart(tmp_path, monkeypatch):
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    operations = Operations(journal=engine)
    created = operations.submit("create", "web", lambda: engine.create(spec("web")).name)
    created.done.wait(5)
    with killed_at(monkeypatch, "delete:undefined"):
        deleted = operations.submit("delete", "web", lambda: engine.delete("web"))
        deleted.done.wait(5)
    operations.shutdown()
    engine = restarted(engine, hypervisor)
    after = Operations(journal=engine)
    assert after.get(created.id).state == OpState.SUCCEEDED
    assert after.get(deleted.id).state == OpState.COMPLETED_BY_RECOVERY
    assert {op.id for op in after.recent()} == {created.id, deleted.id}, "a completed delete stays in the history"
    assert engine.store.get_vm("web") is None
