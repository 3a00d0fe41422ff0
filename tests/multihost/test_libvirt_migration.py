"""The libvirt driver's live migration between two real libvirtds of the test bed (scripts/test-hosts.sh), driven
directly, with no engine or agent: one LibvirtDriver on host 1's libvirtd and one on host 2's, the tiny guest
under TCG. The destination's definition comes from host 2's driver (incoming_definition), so paths may differ
between the hosts, as they do between real ones."""

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.eventually import eventually
from tests.multihost.testbed import TestHost
from vmhost.drivers.base import (
    DomainEvent,
    DomainEventKind,
    DomainState,
    MigrationOptions,
    MigrationProgress,
    MigrationTarget,
    Resources,
)
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.drivers.libvirt.events import LibvirtEventMonitor
from vmhost.errors import HypervisorError
from vmhost.spec import VMSpec, parse_spec

pytestmark = pytest.mark.integration
BOOTED = 120.0
"""Seconds the tiny guest may take to boot under TCG on a busy machine (other sessions share the bed)."""
OWNER = "h2-driver-tests"
"""Not an agent's data dir: the bed's agents leave these domains alone."""


class Host:
    """One bed host as the driver sees it: its driver, and the files of a test VM under its own directory."""

    def __init__(self, bed: TestHost, root: Path):
        self.bed = bed
        self.driver = LibvirtDriver(bed.libvirt_uri, "tcg")
        self.root = root / bed.name
        self.root.mkdir(parents=True, exist_ok=True)

    def resources(self, spec: VMSpec, disks: dict[str, Path] | None = None) -> Resources:
        return Resources(console_log=self.console_log(spec.name), disk_paths=disks or {}, owner=OWNER)

    def console_log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def target(self, spec: VMSpec, resources: Resources) -> MigrationTarget:
        """What this host's agent would answer at prepare: its libvirtd and stream address, its definition."""
        definition = self.driver.incoming_definition(spec, resources)
        return MigrationTarget(self.bed.libvirt_uri, self.bed.migration_uri, definition, tls=False)


@pytest.fixture
def vm(vm_name: Callable[[str], str], guest_spec: Callable[..., dict[str, Any]]) -> Callable[..., VMSpec]:
    def make(suffix: str, **fields: Any) -> VMSpec:
        return parse_spec(guest_spec(vm_name(suffix), **fields))

    return make


@pytest.fixture
def hosts(test_hosts: list[TestHost], vm_name: Callable[[str], str]) -> tuple[Host, Host]:
    """Host 1 and host 2; the VM's files live in the shared dir under the session prefix (the bed's cleanup
    removes them), one directory per host."""
    root = test_hosts[0].shared_dir / vm_name("files")
    root.mkdir(mode=0o755, exist_ok=True)
    return Host(test_hosts[0], root), Host(test_hosts[1], root)


def boot(host: Host, spec: VMSpec, resources: Resources) -> None:
    host.driver.define(spec, resources)
    host.driver.create_paused(spec.name)
    host.driver.resume(spec.name)
    eventually(
        lambda: "VMHOST-GUEST-DEVICES-DONE" in _read(resources.console_log),
        timeout=BOOTED,
        what=f"the boot of {spec.name} on {host.bed.name}",
    )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def answers(host: Host, name: str, timeout: float = 60.0) -> bool:
    """The guest's shell computes an answer on its serial console (the typed line itself never shows it)."""
    console = host.driver.open_console(name)
    try:
        console.write(b"\necho VMHOST-$((6*7))-ALIVE\n")
        seen = b""

        def answered() -> bool:
            nonlocal seen
            seen += console.read(0.5)
            return b"VMHOST-42-ALIVE" in seen

        return bool(eventually(answered, timeout=timeout, what=f"{name} answering on {host.bed.name}"))
    finally:
        console.close()


def domain_xml(host: Host, name: str, flags: int = 0) -> str:
    conn = host.bed.libvirt()
    try:
        return str(conn.lookupByName(name).XMLDesc(flags))
    finally:
        conn.close()


def qcow2(path: Path, size: str = "64M") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


class Events:
    """Every domain event of one host's libvirtd, as the driver's monitor translates them."""

    def __init__(self, uri: str):
        self.seen: list[DomainEvent] = []
        self.monitor = LibvirtEventMonitor(uri)
        self.monitor.start(self.seen.append, lambda: None, lambda _reason: None)
        assert self.monitor.connected.wait(10)

    def of(self, name: str) -> list[tuple[DomainEventKind, str]]:
        return [(event.kind, event.reason) for event in self.seen if event.name == name]


@pytest.fixture
def events(hosts: tuple[Host, Host]) -> Iterator[tuple[Events, Events]]:
    watching = Events(hosts[0].bed.libvirt_uri), Events(hosts[1].bed.libvirt_uri)
    yield watching
    for each in watching:
        each.monitor.stop()


def test_a_running_vm_arrives_paused_and_persistent_there_and_stays_defined_and_shut_off_here(
    hosts: tuple[Host, Host], vm: Callable[..., VMSpec], events: tuple[Events, Events]
):
    one, two = hosts
    spec = vm("moves", disks=[{"source": {"type": "new", "size": "64MiB"}}])
    shared = {"vda": qcow2(one.root.parent / "shared" / "vda.qcow2")}  # one path, seen by both hosts
    boot(one, spec, one.resources(spec, shared))
    arriving = two.resources(spec, shared)

    one.driver.migrate(spec.name, two.target(spec, arriving), MigrationOptions())

    assert two.driver.state(spec.name) == DomainState.PAUSED
    assert one.driver.state(spec.name) == DomainState.SHUTOFF
    assert one.driver.recorded(spec.name) is not None  # still defined here: the engine undefines it later
    assert two.driver.recorded(spec.name) is not None  # persistent there, with host 2's own definition
    assert str(two.console_log(spec.name)) in domain_xml(two, spec.name, libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert one.driver.migration_progress(spec.name) is None
    two.driver.resume(spec.name)
    assert two.driver.state(spec.name) == DomainState.RUNNING
    assert answers(two, spec.name)
    assert "VMHOST-42-ALIVE" in _read(two.console_log(spec.name))  # host 2's log, as its definition says
    eventually(lambda: (DomainEventKind.STOPPED, "migrated") in events[0].of(spec.name), timeout=10)
    eventually(lambda: (DomainEventKind.STARTED, "migrated") in events[1].of(spec.name), timeout=10)
    assert (DomainEventKind.CRASHED, "qemu-died") not in events[0].of(spec.name)


def test_copied_disks_go_into_the_placeholders_the_destination_made_at_its_own_paths(
    hosts: tuple[Host, Host], vm: Callable[..., VMSpec]
):
    one, two = hosts
    spec = vm("copies", disks=[{"source": {"type": "new", "size": "64MiB"}}])
    source = qcow2(one.root / "vda.qcow2")
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 4M", str(source)], check=True, capture_output=True
    )
    placeholder = qcow2(two.root / "disks" / "vda.qcow2")  # another path on host 2
    boot(one, spec, one.resources(spec, {"vda": source}))

    one.driver.migrate(
        spec.name, two.target(spec, two.resources(spec, {"vda": placeholder})), MigrationOptions(("vda",))
    )

    assert str(placeholder) in domain_xml(two, spec.name)
    compared = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", str(source), str(placeholder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compared.returncode == 0, compared.stdout + compared.stderr  # "Images are identical."
    two.driver.resume(spec.name)
    assert answers(two, spec.name)
    assert one.driver.state(spec.name) == DomainState.SHUTOFF


def test_a_slow_migration_reports_advancing_progress_and_an_abort_from_another_thread_keeps_the_vm_here(
    hosts: tuple[Host, Host], vm: Callable[..., VMSpec]
):
    one, two = hosts
    spec = vm("aborted")
    boot(one, spec, one.resources(spec))
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            one.driver.migrate(spec.name, two.target(spec, two.resources(spec)), MigrationOptions(bandwidth_mib=1))
        except BaseException as exc:
            failed.append(exc)

    mover = threading.Thread(target=migrate, daemon=True)
    mover.start()
    readings: list[MigrationProgress] = []

    def advanced_twice() -> bool:
        now = one.driver.migration_progress(spec.name)  # this thread: its own connection
        if now is not None and now.processed_bytes > (readings[-1].processed_bytes if readings else 0):
            readings.append(now)
        return len(readings) >= 3

    eventually(advanced_twice, timeout=60, interval=0.5, what="progress advancing")
    assert {reading.phase for reading in readings} == {"memory"}
    assert all(reading.total_bytes >= 256 * 2**20 for reading in readings)
    assert readings[-1].remaining_bytes > 0 and readings[-1].expected_downtime_ms is not None
    one.driver.abort_migration(spec.name)
    mover.join(60)

    assert not mover.is_alive()
    assert isinstance(failed[0], HypervisorError)
    assert failed[0].message == f"the migration of {spec.name} was aborted; it still runs on this host"
    assert one.driver.state(spec.name) == DomainState.RUNNING
    assert spec.name not in two.bed.domains()
    assert one.driver.migration_progress(spec.name) is None
    one.driver.abort_migration(spec.name)  # nothing runs: nothing to do
    assert answers(one, spec.name)


def test_post_copy_that_the_destination_s_qemu_cannot_do_fails_and_leaves_the_vm_running_here(
    hosts: tuple[Host, Host], vm: Callable[..., VMSpec]
):
    """The bed's QEMU has no userfaultfd (vm.unprivileged_userfaultfd = 0, /dev/userfaultfd root only), so QEMU
    refuses post-copy at the start; what runs post-copy itself was not run here."""
    one, two = hosts
    spec = vm("post-copy")
    boot(one, spec, one.resources(spec))
    try:
        one.driver.migrate(spec.name, two.target(spec, two.resources(spec)), MigrationOptions(post_copy=True))
    except HypervisorError as refused:
        assert refused.message.startswith(f"the migration of {spec.name} to {two.bed.libvirt_uri} failed")
        assert "Postcopy is not supported" in (refused.detail or "")
        assert one.driver.state(spec.name) == DomainState.RUNNING
        assert spec.name not in two.bed.domains()
    else:  # a host with userfaultfd: the guest arrives running (no PAUSED with post-copy)
        assert two.driver.state(spec.name) == DomainState.RUNNING
        assert one.driver.state(spec.name) == DomainState.SHUTOFF


def test_an_abort_while_the_disks_are_copied_keeps_the_vm_here_and_leaves_nothing_defined_there(
    hosts: tuple[Host, Host], vm: Callable[..., VMSpec]
):
    one, two = hosts
    spec = vm("copy-aborted", disks=[{"source": {"type": "new", "size": "64MiB"}}])
    source = qcow2(one.root / "vda.qcow2")
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0xcd 0 16M", str(source)], check=True, capture_output=True
    )
    placeholder = qcow2(two.root / "vda.qcow2")
    boot(one, spec, one.resources(spec, {"vda": source}))
    target = two.target(spec, two.resources(spec, {"vda": placeholder}))
    failed: list[BaseException] = []

    def migrate() -> None:
        try:
            one.driver.migrate(spec.name, target, MigrationOptions(("vda",), bandwidth_mib=1))
        except BaseException as exc:
            failed.append(exc)

    mover = threading.Thread(target=migrate, daemon=True)
    mover.start()

    def copying() -> MigrationProgress | None:
        now = one.driver.migration_progress(spec.name)
        return now if now is not None and now.phase == "disks" and now.processed_bytes > 0 else None

    reading = eventually(copying, timeout=60, interval=0.2, what="the disk copy under way")
    assert reading.total_bytes >= 64 * 2**20
    one.driver.abort_migration(spec.name)
    mover.join(60)

    assert isinstance(failed[0], HypervisorError) and "was aborted" in failed[0].message
    assert one.driver.state(spec.name) == DomainState.RUNNING
    assert spec.name not in two.bed.domains()
    assert placeholder.exists()  # the destination's agent removes its placeholder, not the driver
    assert answers(one, spec.name)
