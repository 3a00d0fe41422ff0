"""An in-memory hypervisor and a driver for it that implements the whole Driver protocol, with injectable
failures and hypervisor-side events (a crash, a destroy from outside), so engine, recovery and restart-policy
tests run in milliseconds. One FakeHypervisor outlives Engines: an agent restart is a new Engine on it."""

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from vmhost.drivers.base import (
    Capability,
    ConsoleStream,
    DomainEvent,
    DomainEventKind,
    DomainInfo,
    DomainState,
    DomainStats,
    GuestAddresses,
    HostFacts,
    HostInfo,
    MigrationOptions,
    MigrationProgress,
    MigrationTarget,
    Recorded,
    Resources,
)
from vmhost.errors import HypervisorError, NotFound
from vmhost.spec import VMSpec
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.units import parse_size

LIVE = {DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTTING_DOWN, DomainState.CRASHED_PRESERVED}
_pids = itertools.count(10_000)


@dataclass
class Domain:
    name: str
    uuid: str
    spec: dict[str, Any]
    owner: str
    state: DomainState = DomainState.SHUTOFF
    plugged: set[str] = field(default_factory=set)
    """Disk targets hot-plugged into the running domain."""
    pid: int | None = None
    reason: str = ""
    """Why it went down last, as the DomainEvent said (DomainInfo.reason)."""
    live: dict[str, Any] = field(default_factory=dict)
    """What the running domain has now: booted from the definition, then changed live (nics: MACs, vcpus,
    memory, disk sizes and media by target); empty while off."""


def booted_facts(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "nics": [nic["mac"] for nic in spec["nics"]],
        "vcpus": spec["cpu"]["vcpus"],
        "memory": parse_size(spec["memory"]["size"]),
        "disks": {},
        "media": {cdrom["target"]: cdrom["iso"] for cdrom in spec["cdroms"]},
    }


NETWORK: dict[str, "FakeHypervisor"] = {}
"""Fake hypervisors by the address a migration reaches them at (the host of MigrationTarget.hypervisor_uri)."""


@dataclass
class FakeHypervisor:
    domains: dict[str, Domain] = field(default_factory=dict)
    reserved_pci: set[str] = field(default_factory=set)
    sink: Callable[[DomainEvent], None] | None = None
    """Where hypervisor-side events go (an Engine's on_domain_event), like a libvirt event connection."""
    jobs: dict[str, MigrationProgress] = field(default_factory=dict)
    """Migration jobs running, by domain."""
    aborts: dict[str, threading.Event] = field(default_factory=dict)
    stall_migrations: bool = False
    """Migrations make no progress until they are aborted (the watchdog's case)."""

    def emit(self, name: str, kind: DomainEventKind, reason: str) -> None:
        if self.sink is not None:
            self.sink(DomainEvent(name, kind, reason))

    def crash(self, name: str, announced: bool = True) -> None:
        """QEMU dies: the domain is off, crashed; not `announced`: its event is late or lost."""
        domain = self.domains[name]
        domain.state, domain.pid, domain.plugged, domain.reason = DomainState.CRASHED, None, set(), "qemu-died"
        if announced:
            self.emit(name, DomainEventKind.CRASHED, "qemu-died")

    def destroy_outside(self, name: str) -> None:
        domain = self.domains[name]
        domain.state, domain.pid, domain.plugged, domain.reason = DomainState.SHUTOFF, None, set(), "destroyed"
        self.emit(name, DomainEventKind.STOPPED, "destroyed")

    def running(self) -> set[str]:
        return {name for name, domain in self.domains.items() if domain.state in LIVE}


class FakeConsole:
    def __init__(self) -> None:
        self.written = b""

    def read(self, timeout: float) -> bytes:
        return b""

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        """Nothing to release."""


class FakeDriver:
    """Every call is recorded in `calls`; `fail_next(method, error)` makes the next call of `method` raise."""

    def __init__(
        self,
        hypervisor: FakeHypervisor | None = None,
        kind: str = "fake",
        capabilities: frozenset[Capability] = frozenset(Capability),
        acpi_works: bool = True,
    ):
        self.hypervisor = hypervisor or FakeHypervisor()
        self.kind = kind
        self.capabilities = capabilities
        self.acpi_works = acpi_works
        self.calls: list[str] = []
        self._failures: dict[str, list[Exception]] = defaultdict(list)

    def fail_next(self, method: str, error: Exception) -> None:
        self._failures[method].append(error)

    def _call(self, method: str) -> None:
        self.calls.append(method)
        if self._failures[method]:
            raise self._failures[method].pop(0)

    def _domain(self, name: str) -> Domain:
        try:
            return self.hypervisor.domains[name]
        except KeyError:
            raise NotFound(f"no domain {name}") from None

    def _set(self, domain: Domain, state: DomainState) -> None:
        domain.state = state
        if state in LIVE and domain.pid is None:
            domain.pid, domain.live = next(_pids), booted_facts(domain.spec)
        if state not in LIVE:
            domain.pid, domain.plugged, domain.live = None, set(), {}

    def _running(self, name: str) -> Domain:
        domain = self._domain(name)
        if domain.state not in LIVE:
            raise HypervisorError(f"{name} is not running")
        return domain

    # ---- host ------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        return HostInfo(hypervisor="fake", cpus=4, memory_total=8 << 30, memory_available=8 << 30, accel="tcg")

    def host_facts(self) -> HostFacts:
        return HostFacts(cpus=4, cpu_mhz=0, cpu_sockets=1, memory_total=8 << 30, versions={"fake": "1"})

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        return []

    # ---- definitions -------------------------------------------------------------------------

    def define(self, spec: VMSpec, resources: Resources) -> None:
        self._call("define")
        document = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
        existing = self.hypervisor.domains.get(spec.name)
        if existing is not None:
            existing.spec, existing.owner = document, resources.owner
            return
        self.hypervisor.domains[spec.name] = Domain(spec.name, str(spec.uuid), document, resources.owner)

    def undefine(self, name: str) -> None:
        self._call("undefine")
        self.hypervisor.domains.pop(name, None)

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self._call("attach_disk")
        domain = self._domain(spec.name)
        if domain.state not in LIVE:
            raise HypervisorError(f"{spec.name} is not running")
        domain.plugged.add(target)

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self._call("detach_disk")
        domain = self._domain(spec.name)
        if domain.state in LIVE:
            domain.plugged.discard(target)

    # ---- live changes (the engine redefines the persistent definition afterwards) ------------

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        self._call("attach_nic")
        domain = self._running(spec.name)
        if mac in domain.live["nics"] or all(nic.mac != mac for nic in spec.nics):
            raise HypervisorError(f"cannot attach NIC {mac} to {spec.name}: already there, or not in the spec")
        domain.live["nics"].append(mac)

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        self._call("detach_nic")
        domain = self._running(spec.name)
        if mac not in domain.live["nics"]:
            raise HypervisorError(f"{spec.name} has no NIC {mac}")
        domain.live["nics"].remove(mac)

    def set_vcpus(self, name: str, count: int) -> None:
        self._call("set_vcpus")
        self._running(name).live["vcpus"] = count

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        self._call("set_memory")
        self._running(spec.name).live["memory"] = size

    def resize_disk(self, name: str, target: str, size: int) -> None:
        self._call("resize_disk")
        self._running(name).live["disks"][target] = size

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self._call("change_media")
        [cdrom] = [cdrom for cdrom in spec.cdroms if cdrom.target == target]
        self._running(spec.name).live["media"][target] = str(cdrom.iso) if cdrom.iso else None

    # ---- lifecycle -------------------------------------------------------------------------

    def create_paused(self, name: str) -> None:
        self._call("create_paused")
        domain = self._domain(name)
        if domain.state in LIVE:
            raise HypervisorError(f"{name} is already running")
        self._set(domain, DomainState.PAUSED)

    def pause(self, name: str) -> None:
        self._call("pause")
        domain = self._domain(name)
        if domain.state != DomainState.RUNNING:
            raise HypervisorError(f"{name} is not running")
        self._set(domain, DomainState.PAUSED)

    def resume(self, name: str) -> None:
        self._call("resume")
        domain = self._domain(name)
        if domain.state != DomainState.PAUSED:
            raise HypervisorError(f"{name} is not paused")
        self._set(domain, DomainState.RUNNING)

    def request_shutdown(self, name: str) -> None:
        self._call("request_shutdown")
        domain = self._domain(name)
        if domain.state != DomainState.RUNNING:
            raise HypervisorError(f"{name} is not running")
        if self.acpi_works:
            self._set(domain, DomainState.SHUTOFF)

    def destroy(self, name: str) -> None:
        """Idempotent, like libvirt's: a domain that is already off is fine."""
        self._call("destroy")
        domain = self.hypervisor.domains.get(name)
        if domain is not None and domain.state in LIVE:
            self._set(domain, DomainState.SHUTOFF)

    def request_reboot(self, name: str) -> None:
        self._call("request_reboot")
        if self._domain(name).state != DomainState.RUNNING:
            raise HypervisorError(f"{name} is not running")

    def reset(self, name: str) -> None:
        self._call("reset")
        if self._domain(name).state != DomainState.RUNNING:
            raise HypervisorError(f"{name} is not running")

    def kill_process(self, name: str) -> bool:
        self._call("kill_process")
        domain = self.hypervisor.domains.get(name)
        if domain is None or domain.state not in LIVE:
            return False
        self._set(domain, DomainState.SHUTOFF)
        return True

    # ---- migration ---------------------------------------------------------------------------

    def migrate(self, name: str, target: MigrationTarget, options: MigrationOptions) -> None:
        """The memory moves in one step, or never while stall_migrations: then until abort_migration."""
        self._call("migrate")
        domain = self._running(name)
        destination = NETWORK[str(urlsplit(target.hypervisor_uri).hostname)]
        aborted = self.hypervisor.aborts.setdefault(name, threading.Event())
        aborted.clear()
        self.hypervisor.jobs[name] = MigrationProgress("memory", 0, 1 << 20, 1 << 20)
        try:
            if self.hypervisor.stall_migrations and aborted.wait(30):
                raise HypervisorError(f"migration of {name} aborted: canceled by client")
        finally:
            del self.hypervisor.jobs[name]
        definition = json.loads(target.definition)
        arrived = Domain(name, domain.uuid, definition["spec"], definition["owner"])
        destination.domains[name] = arrived
        FakeDriver(destination)._set(arrived, DomainState.PAUSED)
        self._set(domain, DomainState.SHUTOFF)
        self.hypervisor.emit(name, DomainEventKind.STOPPED, "migrated")

    def migration_progress(self, name: str) -> MigrationProgress | None:
        return self.hypervisor.jobs.get(name)

    def abort_migration(self, name: str) -> None:
        self._call("abort_migration")
        if name in self.hypervisor.jobs:
            self.hypervisor.aborts[name].set()
            while name in self.hypervisor.jobs:
                time.sleep(0.01)

    def incoming_definition(self, spec: VMSpec, resources: Resources) -> str:
        document = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
        return json.dumps({"spec": document, "owner": resources.owner})

    # ---- queries -----------------------------------------------------------------------------

    def state(self, name: str) -> DomainState:
        domain = self.hypervisor.domains.get(name)
        return domain.state if domain else DomainState.ABSENT

    def info(self, name: str) -> DomainInfo:
        domain = self._domain(name)
        return DomainInfo(
            name=name,
            uuid=domain.uuid,
            state=domain.state,
            reason=domain.reason if domain.state not in LIVE else "",
            vcpus=int(domain.spec["cpu"]["vcpus"]),
            memory_bytes=1 << 28,
            pid=domain.pid,
            driver=self.kind,
        )

    def states(self) -> dict[str, DomainState]:
        return {name: domain.state for name, domain in self.hypervisor.domains.items()}

    def list_owned(self) -> list[DomainInfo]:
        return [self.info(name) for name in self.hypervisor.domains]

    def domain_stats(self) -> list[DomainStats]:
        return [
            DomainStats(name=name, state=domain.state, cpu_seconds=0.0, vcpus=int(domain.spec["cpu"]["vcpus"]))
            for name, domain in self.hypervisor.domains.items()
        ]

    def graphics_ports(self, name: str) -> dict[str, int]:
        self._domain(name)
        return {}

    def recorded(self, name: str) -> Recorded | None:
        domain = self.hypervisor.domains.get(name)
        return Recorded(spec=domain.spec, owner=domain.owner) if domain else None

    def interfaces(self, name: str) -> list[str]:
        return []

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        return {}

    def open_console(self, name: str) -> ConsoleStream:
        self._call("open_console")
        return FakeConsole()

    def reserve_pci(self, address: str) -> None:
        self._call("reserve_pci")
        self.hypervisor.reserved_pci.add(address)

    def release_pci(self, address: str) -> None:
        self._call("release_pci")
        self.hypervisor.reserved_pci.discard(address)

    def create_snapshot(
        self,
        spec: VMSpec,
        resources: Resources,
        snapshot: str,
        *,
        disk_only: bool,
        layers: Mapping[str, Path],
        quiesce: bool,
    ) -> None:
        """The fake keeps snapshot names only, in the domain's `live` facts (gone with the domain)."""
        self._call("create_snapshot")
        self._domain(spec.name).live.setdefault("snapshots", []).append(snapshot)

    def snapshot_names(self, name: str) -> list[str]:
        return list(self._domain(name).live.get("snapshots", []))

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        self._call("revert_snapshot")
        if snapshot not in self.snapshot_names(name):
            raise NotFound(f"no snapshot {snapshot} of {name}")

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self._call("delete_snapshot")
        names = self._domain(name).live.get("snapshots", [])
        if snapshot in names:
            names.remove(snapshot)

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        self._call("merge_layer")
