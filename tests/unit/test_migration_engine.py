"""Migration between two agents on fake hypervisors: the source coordinates, the destination prepares, takes
the VM in and finishes. Whatever happens, and wherever either agent is killed, the VM ends on exactly one host,
running if it ran, and the other host keeps nothing of it."""

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.eventually import eventually
from tests.fakes.driver import NETWORK, FakeDriver, FakeHypervisor
from tests.fakes.engines import Killed, killed_at, spec
from tests.fakes.hosts import Host, LocalPeer, make_engine
from vmhost.drivers.base import Capability, DomainEventKind, DomainState, HostInfo
from vmhost.engine.hooks import Hook, HookContext, Phase
from vmhost.engine.operations import migrate as migrate_operation
from vmhost.engine.peer import IncomingOffer, IncomingTicket, MigrationRequest
from vmhost.errors import (
    Conflict,
    HostResourceError,
    HypervisorError,
    PeerUnreachable,
    Unavailable,
    Unsupported,
    VmhostError,
)
from vmhost.spec import SpecError

T = TypeVar("T")
DISK = {"source": {"type": "new", "size": "1MiB"}}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    peers: dict[str, LocalPeer] = {}
    made = []
    for index in (1, 2):
        hypervisor = FakeHypervisor()
        host = Host(f"h{index}", f"10.9.0.{index}", tmp_path / f"h{index}", hypervisor, None, peers)  # type: ignore[arg-type]
        host.data_dir.mkdir()
        host.engine = make_engine(host)
        NETWORK[host.address] = hypervisor
        peers[f"https://{host.address}:7443"] = LocalPeer(host)
        made.append(host)
    yield made[0], made[1]
    time.sleep(0.2)  # let the dead engines' deferred events end
    for host in made:
        NETWORK.pop(host.address, None)
        for engine in [*host.dead, host.engine]:
            engine.store.close()


def url(host: Host) -> str:
    return f"https://{host.address}:7443"


def running_web(source: Host, **fields: Any) -> None:
    source.engine.create(spec("web", **fields), start=True)


def where_is(name: str, *hosts: Host) -> list[tuple[str, str, str]]:
    """(host, record state, domain state) of every host that keeps anything of `name`."""
    found = []
    for host in hosts:
        record = host.engine.store.get_vm(name)
        domain = host.hypervisor.domains.get(name)
        if record is not None or domain is not None:
            found.append((host.name, record.state if record else "-", domain.state.value if domain else "-"))
    return found


def test_a_live_migration_moves_the_vm_and_leaves_nothing_at_the_source(hosts):
    source, destination = hosts
    running_web(source)
    seen = []
    source.engine.events.subscribe(lambda event: seen.append((event.type, event.reason)))

    source.engine.migrate("web", url(destination), MigrationRequest())

    assert where_is("web", source, destination) == [("h2", "running", "running")]
    assert source.vm_dirs() == []
    record = destination.engine.record("web")
    assert record.desired_state == "running"
    assert record.migration["state"] == "finished"
    assert ("migrated", f"migrated to {url(destination)}") in seen


def test_the_destination_keeps_the_vm_running_across_its_own_restart(hosts):
    source, destination = hosts
    running_web(source)
    source.engine.migrate("web", url(destination), MigrationRequest())
    destination.restart()
    assert where_is("web", source, destination) == [("h2", "running", "running")]


def test_an_offline_migration_moves_spec_and_disks(hosts):
    source, destination = hosts
    source.engine.create(spec("web", disks=[DISK]))
    disk = Path(source.engine.record("web").owned_paths[0])

    source.engine.migrate("web", url(destination), MigrationRequest(offline=True, copy_storage=True))

    assert where_is("web", source, destination) == [("h2", "stopped", "shutoff")]
    moved = Path(destination.engine.record("web").owned_paths[0])
    assert moved.is_file() and moved.is_relative_to(destination.data_dir)
    assert not disk.exists() and source.vm_dirs() == []
    destination.engine.start("web")
    assert destination.hypervisor.domains["web"].state == DomainState.RUNNING


def test_a_stalled_migration_is_aborted_and_the_vm_keeps_running_here(hosts):
    source, destination = hosts
    running_web(source)
    source.hypervisor.stall_migrations = True

    with pytest.raises(HypervisorError, match="aborted: no progress for 1 s; web keeps running here"):
        source.engine.migrate("web", url(destination), MigrationRequest())

    assert where_is("web", source, destination) == [("h1", "running", "running")]
    assert destination.vm_dirs() == []
    assert "migration to https://10.9.0.2:7443 failed" in source.engine.record("web").reason


def test_a_migration_past_its_timeout_is_aborted(hosts):
    source, destination = hosts
    running_web(source)
    source.hypervisor.stall_migrations = True
    with pytest.raises(HypervisorError, match=r"took longer than 0\.6 s"):
        source.engine.migrate("web", url(destination), MigrationRequest(timeout=0.6, stall_timeout=30))
    assert where_is("web", source, destination) == [("h1", "running", "running")]


@pytest.mark.parametrize(
    ("make", "request_", "error", "message"),
    [
        (lambda e: e.create(spec("web")), MigrationRequest(), Conflict, "needs it running"),
        (lambda e: e.create(spec("web"), start=True), MigrationRequest(offline=True), Conflict, "only a stopped VM"),
        (lambda e: e.create(spec("web", disks=[DISK]), start=True), MigrationRequest(), Conflict, "--copy-storage"),
    ],
)
def test_what_cannot_migrate_is_refused_before_anything_is_touched(hosts, make, request_, error, message):
    source, destination = hosts
    make(source.engine)
    before = source.engine.record("web").state
    with pytest.raises(error, match=message):
        source.engine.migrate("web", url(destination), request_)
    assert source.engine.record("web").state == before
    assert where_is("web", destination) == [] and destination.vm_dirs() == []


def test_a_destination_that_cannot_take_the_vm_refuses_and_the_vm_stays(hosts):
    source, destination = hosts
    running_web(source)
    destination.engine.store.close()
    destination.engine = make_engine(destination, migration_address=None)
    with pytest.raises(HostResourceError, match="set migration_address"):
        source.engine.migrate("web", url(destination), MigrationRequest())
    assert where_is("web", source, destination) == [("h1", "running", "running")]
    assert source.engine.record("web").state == "running"


@pytest.mark.parametrize("lacking", ["memory", "bridge"])
def test_a_destination_without_room_or_the_vms_bridge_refuses_and_the_vm_stays(hosts, monkeypatch, lacking):
    """The destination checks the spec as a create there would: its own free memory, its own bridges."""
    source, destination = hosts
    running_web(source)
    host_info, host_problems = FakeDriver.host_info, FakeDriver.host_problems

    def small(driver: FakeDriver) -> HostInfo:
        info = host_info(driver)
        at_destination = driver.hypervisor is destination.hypervisor
        return dataclasses.replace(info, memory_available=64 << 20) if at_destination else info

    def no_bridge(driver: FakeDriver, spec_: Any) -> list[tuple[str, str]]:
        at_destination = driver.hypervisor is destination.hypervisor
        return [("nics[0].bridge", "no bridge br0 on this host")] if at_destination else host_problems(driver, spec_)

    monkeypatch.setattr(FakeDriver, *(("host_info", small) if lacking == "memory" else ("host_problems", no_bridge)))
    expected = "not enough host memory" if lacking == "memory" else "nics\\[0\\].bridge.*no bridge br0"
    with pytest.raises((VmhostError, SpecError), match=expected):
        source.engine.migrate("web", url(destination), MigrationRequest())
    assert where_is("web", source, destination) == [("h1", "running", "running")]
    assert destination.vm_dirs() == []


def test_an_accepted_incoming_migration_holds_its_memory_until_its_vm_arrives(hosts, monkeypatch):
    """An evacuation prepares several VMs before any arrives: what was accepted is not offered again."""
    source, destination = hosts
    running_web(source, memory="5GiB")
    with killed_at(monkeypatch, "migrate:prepared"), pytest.raises(Killed):
        source.engine.migrate("web", url(destination), MigrationRequest())
    destination.engine.create(spec("big", memory="3GiB"))
    with pytest.raises(HostResourceError, match="and 5184MiB held for incoming migrations"):
        destination.engine.start("big")
    source.restart()  # the source comes back, aborts the migration there: the memory is free again
    assert destination.engine.store.get_vm("web") is None
    destination.engine.start("big")


def test_a_name_taken_at_the_destination_is_refused(hosts):
    source, destination = hosts
    running_web(source)
    destination.engine.create(spec("web"))
    with pytest.raises(Conflict, match="already has a VM named web"):
        source.engine.migrate("web", url(destination), MigrationRequest())
    assert source.engine.record("web").state == "running"


def test_a_driver_without_live_migration_is_refused_with_its_name(hosts):
    source, destination = hosts
    running_web(source)
    driver = source.engine.driver.for_name("web")
    assert isinstance(driver, FakeDriver)
    driver.capabilities = frozenset(Capability) - {Capability.LIVE_MIGRATION}
    with pytest.raises(Unsupported, match="live-migration"):
        source.engine.migrate("web", url(destination), MigrationRequest())


def test_an_incoming_vm_cannot_be_changed_until_it_has_arrived(hosts):
    source, destination = hosts
    running_web(source)
    ticket = destination.engine.accept_incoming(
        IncomingOffer(migration_id="a" * 32, spec=source.engine.record("web").spec, source_url=url(source))
    )
    assert ticket.hypervisor_uri == "qemu+tcp://10.9.0.2/system" and not ticket.tls
    with pytest.raises(Conflict, match=r"migrating here from https://10\.9\.0\.1:7443"):
        destination.engine.start("web")
    assert destination.engine.incoming_status("a" * 32) == "prepared"
    destination.engine.abort_incoming("a" * 32)
    destination.engine.abort_incoming("a" * 32)  # idempotent
    assert destination.engine.incoming_status("a" * 32) == "unknown"
    assert where_is("web", destination) == [] and destination.vm_dirs() == []


def test_an_arrived_vm_cannot_be_aborted_only_finished(hosts):
    """Its source has it shut off: dropping it here would lose it."""
    source, destination = hosts
    running_web(source)
    ticket = destination.engine.accept_incoming(
        IncomingOffer(migration_id="b" * 32, spec=source.engine.record("web").spec, source_url=url(source))
    )
    source.engine.driver.migrate("web", _target(ticket), _options())
    assert destination.engine.incoming_status("b" * 32) == "arrived"
    with pytest.raises(Conflict, match="can only be finished"):
        destination.engine.abort_incoming("b" * 32)
    destination.engine.finish_incoming("b" * 32)
    destination.engine.finish_incoming("b" * 32)  # idempotent
    assert destination.engine.incoming_status("b" * 32) == "finished"


def test_an_incoming_migration_whose_source_never_returns_is_settled_after_its_deadline(hosts):
    source, destination = hosts
    running_web(source)
    destination.engine.store.close()
    destination.engine = make_engine(destination, incoming_timeout=0.01)
    destination.engine.accept_incoming(
        IncomingOffer(migration_id="c" * 32, spec=source.engine.record("web").spec, source_url=url(source))
    )
    time.sleep(0.05)
    destination.engine.list_vms()  # the periodic reconcile
    assert where_is("web", destination) == [] and destination.vm_dirs() == []


SOURCE_POINTS = [f"migrate:{step}" for step in ("begin", "prepared", "transferred", "finished")]
DESTINATION_POINTS = [
    "incoming:begin",
    "incoming:recorded",
    "incoming:placeholders",
    "incoming-finish:begin",
    "incoming-finish:resumed",
    "incoming-finish:owned",
]


@pytest.mark.parametrize("point", SOURCE_POINTS + DESTINATION_POINTS)
def test_a_vm_never_runs_on_two_hosts_and_is_never_lost_wherever_an_agent_dies(point, hosts, monkeypatch):
    source, destination = hosts
    running_web(source)
    with killed_at(monkeypatch, point) as passed:
        try:
            source.engine.migrate("web", url(destination), MigrationRequest())
        except Killed:
            source.restart()  # the source agent died at `point`; it comes back and recovers
        except PeerUnreachable:
            pass  # the destination died before the point of no return: the source rolled back
    assert point in passed
    found = where_is("web", source, destination)
    assert len(found) == 1, found
    host, state, domain = found[0]
    assert (state, domain) == ("running", "running"), found
    other = destination if host == "h1" else source
    assert other.vm_dirs() == []
    assert other.engine.store.get_vm("web") is None


OFFLINE_POINTS = [
    *(f"migrate:{step}" for step in ("begin", "prepared", "copied", "finished", "cleaned")),
    *(f"incoming:{step}" for step in ("begin", "recorded", "placeholders")),
    *(f"incoming-finish:{step}" for step in ("begin", "defined", "owned")),
]


@pytest.mark.parametrize("point", OFFLINE_POINTS)
def test_an_offline_migration_killed_anywhere_leaves_the_stopped_vm_and_its_disk_on_one_host(point, hosts, monkeypatch):
    source, destination = hosts
    source.engine.create(spec("web", disks=[DISK]))
    with killed_at(monkeypatch, point) as passed:
        try:
            source.engine.migrate("web", url(destination), MigrationRequest(offline=True, copy_storage=True))
        except Killed:
            source.restart()
        except PeerUnreachable:
            pass
    assert point in passed
    found = where_is("web", source, destination)
    assert len(found) == 1, found
    host, state, domain = found[0]
    assert (state, domain) == ("stopped", "shutoff"), found
    holder, other = (source, destination) if host == "h1" else (destination, source)
    assert other.vm_dirs() == [] and other.engine.store.get_vm("web") is None
    assert all(Path(path).is_file() for path in holder.engine.record("web").owned_paths)
    holder.engine.start("web")
    assert holder.hypervisor.domains["web"].state == DomainState.RUNNING


def _target(ticket: IncomingTicket) -> Any:
    from vmhost.drivers.base import MigrationTarget

    return MigrationTarget(ticket.hypervisor_uri, ticket.stream_uri, ticket.definition, ticket.tls)


def _options() -> Any:
    from vmhost.drivers.base import MigrationOptions

    return MigrationOptions()


def test_deleting_a_vm_still_migrating_in_drops_only_the_incoming_copy(hosts):
    source, destination = hosts
    running_web(source)
    destination.engine.accept_incoming(
        IncomingOffer(migration_id="d" * 32, spec=source.engine.record("web").spec, source_url=url(source))
    )
    destination.engine.delete("web")
    assert where_is("web", source, destination) == [("h1", "running", "running")]
    assert destination.vm_dirs() == []


def test_a_live_vm_is_resumed_as_soon_as_it_arrives_without_waiting_for_its_source(hosts):
    """libvirt tells the source only after it stopped the source's QEMU: the destination does not wait."""
    source, destination = hosts
    running_web(source)
    ticket = destination.engine.accept_incoming(
        IncomingOffer(migration_id="e" * 32, spec=source.engine.record("web").spec, source_url=url(source))
    )
    source.engine.driver.migrate("web", _target(ticket), _options())
    destination.hypervisor.emit("web", DomainEventKind.PAUSED, "paused")  # the arrival, as libvirt reports it
    eventually(lambda: destination.engine.incoming_status("e" * 32) == "finished", 5, 0.02, "taken in")
    assert destination.hypervisor.domains["web"].state == DomainState.RUNNING
    destination.engine.finish_incoming("e" * 32)  # the source's finish, later: nothing left to do


def test_the_destination_runs_the_start_paused_hooks_while_the_arrived_vm_is_still_paused(hosts):
    """Plugins activate host-side resources there (e.g. the nic-tuning example) before the guest runs again."""
    source, destination = hosts
    running_web(source)
    seen: list[tuple[str, DomainState]] = []

    def activate(context: HookContext) -> None:
        seen.append((context.spec.name, destination.hypervisor.domains[context.spec.name].state))

    destination.engine.hooks.append(Hook("nic-tuning", Phase.START_PAUSED, activate))
    source.engine.migrate("web", url(destination), MigrationRequest())
    assert seen == [("web", DomainState.PAUSED)]
    assert destination.hypervisor.domains["web"].state == DomainState.RUNNING


def test_a_vm_that_moved_but_was_not_confirmed_is_never_started_again_here(hosts, monkeypatch):
    """Past the point of no return nothing is undone: the source keeps a `migrating` record that start and the
    restore at agent start refuse (the VM may run on the other host), until an operator deletes it."""
    source, destination = hosts
    running_web(source)
    monkeypatch.setattr(migrate_operation, "PEER_PATIENCE", 0.3)
    peer = source.peers[url(destination)]

    def unreachable(migration_id: str) -> None:
        raise PeerUnreachable(f"{peer.url} did not answer")

    monkeypatch.setattr(peer, "finish", unreachable)
    source.engine.store.update_vm("web", spec={**source.engine.record("web").spec, "autostart": True})
    with pytest.raises(PeerUnreachable):
        source.engine.migrate("web", url(destination), MigrationRequest())
    record = source.engine.record("web")
    assert (record.state, record.desired_state) == ("migrating", "stopped")
    assert "did not confirm" in record.reason
    (incoming_id,) = _incoming_ids(destination)
    assert destination.engine.incoming_status(incoming_id) in ("arrived", "finished")
    with pytest.raises(Conflict, match="did not confirm"):
        source.engine.start("web")
    source.restart()
    assert source.hypervisor.domains["web"].state == DomainState.SHUTOFF
    assert source.engine.record("web").state == "migrating"
    source.engine.delete("web")
    assert where_is("web", source) == []


def test_a_migration_that_failed_while_the_hypervisor_was_away_leaves_a_vm_that_still_runs_here(hosts, monkeypatch):
    """Before the point of no return the VM never left: when the hypervisor cannot say its state as the migration
    fails, the record waits for the next reconcile, which finds the VM running here and lets it be changed."""
    source, destination = hosts
    running_web(source)
    peer = source.peers[url(destination)]
    hypervisor_away = False
    answering_state = FakeDriver.state

    def refused(offer: IncomingOffer) -> IncomingTicket:
        nonlocal hypervisor_away
        hypervisor_away = True
        raise PeerUnreachable(f"{peer.url} did not answer")

    def state(driver: FakeDriver, name: str) -> DomainState:
        if hypervisor_away and driver.hypervisor is source.hypervisor:
            raise Unavailable("lost the connection to the hypervisor")
        return answering_state(driver, name)

    monkeypatch.setattr(peer, "prepare", refused)
    monkeypatch.setattr(FakeDriver, "state", state)
    with pytest.raises(PeerUnreachable):
        source.engine.migrate("web", url(destination), MigrationRequest())
    hypervisor_away = False

    source.engine.list_vms()

    assert source.engine.record("web").state == "running"
    source.engine.stop("web")
    assert where_is("web", source, destination) == [("h1", "stopped", "shutoff")]


def _incoming_ids(host: Host) -> list[str]:
    return [record.migration["id"] for record in host.engine.store.list_vms() if record.migration.get("id")]
