"""The engine's operations on the in-memory fake hypervisor: declared steps, their journal, undo on failure,
capability checks before anything is touched, the enforced state machine, reads that do not write."""

from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import engine_on, spec
from vmhost.drivers.base import Capability, DomainState
from vmhost.engine import Engine, supervisor
from vmhost.engine.hooks import Hook, HookFailed, Phase
from vmhost.engine.locks import VmLocks
from vmhost.engine.states import IllegalTransition, VmState
from vmhost.errors import HypervisorError, Unsupported

DISK = [{"source": {"type": "new", "size": "1MiB"}}]


@pytest.fixture
def hypervisor() -> FakeHypervisor:
    return FakeHypervisor()


@pytest.fixture
def engine(hypervisor: FakeHypervisor, tmp_path: Path) -> Engine:
    return engine_on(hypervisor, tmp_path / "data")


def vm_dirs(engine: Engine) -> set[str]:
    return {path.name for path in (engine.config.data_dir / "vms").iterdir()}


def test_create_start_stop_delete_keep_store_and_hypervisor_in_step(engine, hypervisor):
    record = engine.create(spec("web", disks=DISK), start=True)
    assert hypervisor.domains["web"].state == DomainState.RUNNING
    assert engine.get("web")["state"] == "running"
    assert Path(record.owned_paths[0]).exists()
    assert engine.stop("web").method == "acpi"
    assert engine.record("web").state == "stopped"
    engine.delete("web")
    assert "web" not in hypervisor.domains
    assert engine.store.get_vm("web") is None
    assert vm_dirs(engine) == set()


def test_each_completed_step_is_journaled_in_order(engine):
    engine.create(spec("web", disks=DISK), start=True)
    ops = {op.kind: op for op in engine.store.operations("web")}
    assert ops["create"].steps == ["begin", "recorded", "disks-created", "defined", "stopped", "started"]
    assert ops["start"].steps == ["begin", "created-paused", "activated", "resumed", "running"]
    assert {op.state for op in ops.values()} == {"succeeded"}


def test_a_failed_start_undoes_the_create_newest_step_first(engine, hypervisor):
    engine.core.driver.for_name("web").fail_next("create_paused", HypervisorError("no memory"))
    with pytest.raises(HypervisorError, match="no memory"):
        engine.create(spec("web", disks=DISK), start=True)
    assert "web" not in hypervisor.domains
    assert engine.store.get_vm("web") is None
    assert vm_dirs(engine) == set()
    assert [op.state for op in engine.store.operations("web")] == ["failed", "failed"]


def test_an_undo_that_fails_is_reported_with_the_error(engine):
    driver = engine.core.driver.for_name("web")
    driver.fail_next("create_paused", HypervisorError("no memory"))
    driver.fail_next("undefine", HypervisorError("stuck"))
    with pytest.raises(HypervisorError, match="no memory") as failure:
        engine.create(spec("web"), start=True)
    assert "could not undo defined: stuck" in (failure.value.detail or "")
    assert engine.store.get_vm("web") is None, "the steps before it were still undone"


def test_a_refusing_start_paused_hook_destroys_the_paused_domain(hypervisor, tmp_path):
    def refuse(_context):
        raise RuntimeError("no VLAN")

    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web"))
    engine.hooks.append(Hook("vlan", Phase.START_PAUSED, refuse))
    with pytest.raises(HookFailed, match="plugin vlan failed in start-paused") as failure:
        engine.start("web")
    assert failure.value.code == "hook_failed"
    assert hypervisor.domains["web"].state == DomainState.SHUTOFF
    assert engine.record("web").state == "stopped"
    assert engine.record("web").reason.startswith("start failed: plugin vlan")


def test_a_stop_the_guest_ignores_is_forced_at_the_deadline(hypervisor, tmp_path):
    engine = engine_on(hypervisor, tmp_path / "data", acpi_works=False)
    engine.create(spec("web"), start=True)
    assert engine.stop("web", timeout=0.2).method == "forced"
    assert hypervisor.domains["web"].state == DomainState.SHUTOFF


def test_a_finished_stop_reports_how_it_ended_not_its_countdown(hypervisor, tmp_path):
    engine = engine_on(hypervisor, tmp_path / "data", acpi_works=False)
    engine.create(spec("web"), start=True)
    said: list[str] = []
    engine.progress = said.append
    engine.stop("web", timeout=0.2)
    assert any("s left)" in message for message in said)
    assert said[-1].startswith("web is off after ") and "left" not in said[-1]


def test_a_crashed_guest_kept_for_inspection_is_stopped_at_once_without_the_power_button(hypervisor, tmp_path):
    """libvirt refuses a shutdown of a crashed, preserved domain: the stop forces it instead of failing."""
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(spec("web", lifecycle={"on_crash": "preserve"}), start=True)
    hypervisor.domains["web"].state = DomainState.CRASHED_PRESERVED
    result = engine.stop("web")
    assert result.method == "forced"
    assert "request_shutdown" not in engine.driver.for_name("web").calls  # type: ignore[attr-defined]
    assert hypervisor.domains["web"].state == DomainState.SHUTOFF


@pytest.mark.parametrize(
    ("capability", "call"),
    [
        (Capability.PAUSE, lambda engine: engine.pause("web")),
        (Capability.PAUSE, lambda engine: engine.resume("web")),
        (Capability.REBOOT, lambda engine: engine.reboot("web")),
        (Capability.CONSOLE, lambda engine: engine.open_console("web")),
        (Capability.DISK_HOTPLUG, lambda engine: engine.attach_disk("web", DISK[0])),
        (Capability.DISK_HOTPLUG, lambda engine: engine.detach_disk("web", "vda")),
    ],
)
def test_an_unsupported_capability_is_refused_before_anything_is_touched(hypervisor, tmp_path, capability, call):
    engine = engine_on(hypervisor, tmp_path / "data", capabilities=frozenset(Capability) - {capability})
    engine.create(spec("web", disks=DISK), start=True)
    driver = engine.core.driver.for_name("web")
    before, operations = list(driver.calls), len(engine.store.operations("web"))
    with pytest.raises(Unsupported) as refused:
        call(engine)
    assert (refused.value.code, refused.value.driver, refused.value.capability) == ("unsupported", "fake", capability)
    assert driver.calls == before
    assert len(engine.store.operations("web")) == operations


def test_disks_change_offline_without_hotplug(hypervisor, tmp_path):
    engine = engine_on(hypervisor, tmp_path / "data", capabilities=frozenset())
    engine.create(spec("web"))
    assert engine.attach_disk("web", DISK[0]) == "vda"
    engine.detach_disk("web", "vda")
    assert engine.record("web").spec["disks"] == []


def test_an_illegal_transition_raises_and_writes_nothing(engine):
    engine.create(spec("web"), start=True)
    with pytest.raises(IllegalTransition, match="running -> starting"):
        engine.core.set_state("web", VmState.STARTING)
    assert engine.record("web").state == "running"


def test_a_failed_create_discards_its_lock_file_only_while_holding_it(engine, monkeypatch):
    held_at_discard: list[bool] = []
    discard = VmLocks.discard

    def watched(locks: VmLocks, name: str) -> None:
        held_at_discard.append(locks.is_held(name))
        discard(locks, name)

    monkeypatch.setattr(VmLocks, "discard", watched)
    engine.core.driver.for_name("web").fail_next("define", HypervisorError("refused"))
    with pytest.raises(HypervisorError):
        engine.create(spec("web"))
    assert held_at_discard == [True]


def test_reads_report_the_hypervisor_without_writing_the_store(engine, hypervisor, monkeypatch):
    monkeypatch.setattr(supervisor, "EVENT_GRACE", 0.05)
    engine.create(spec("web"), start=True)
    hypervisor.sink = None  # the event is lost
    hypervisor.destroy_outside("web")
    before = engine.record("web")
    assert engine.get("web")["state"] == "stopped"
    assert engine.info("web")["state"] == "stopped"
    assert engine.record("web") == before
    engine.list_vms()  # the supervisor's reconcile is what writes, once no event came
    eventually(lambda: engine.record("web").state == "stopped", timeout=5, what="the exit found and recorded")
    assert engine.record("web").last_exit_reason == "destroyed outside vmhost"


def test_pause_and_resume_follow_the_state_machine(engine, hypervisor):
    engine.create(spec("web"), start=True)
    engine.pause("web")
    assert (hypervisor.domains["web"].state, engine.record("web").state) == (DomainState.PAUSED, "paused")
    engine.resume("web")
    assert (hypervisor.domains["web"].state, engine.record("web").state) == (DomainState.RUNNING, "running")


def test_killing_a_crashed_vm_records_what_the_hypervisor_says(engine, hypervisor):
    """Found by the property test: kill recorded `stopped` for a domain the hypervisor still calls crashed."""
    engine.create(spec("web"), start=True)
    hypervisor.crash("web")
    engine.kill("web")
    record = engine.record("web")
    assert (record.state, record.desired_state) == ("crashed", "stopped")
    assert engine.get("web")["state"] == record.state
