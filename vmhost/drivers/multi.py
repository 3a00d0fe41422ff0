"""DriverSet: the engine talks to one Driver whatever mix of hypervisors the host runs.

Each call goes to the driver of the VM it names. The engine tells the set which driver holds a VM (its store
records it); a VM not yet recorded goes to the driver its spec asks for: containers to runc, VMs to the host's
VM driver.
"""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from vmhost.drivers.base import (
    Capability,
    ConsoleStream,
    DomainInfo,
    DomainState,
    DomainStats,
    Driver,
    GuestAddresses,
    HostFacts,
    HostInfo,
    MigrationOptions,
    MigrationProgress,
    MigrationTarget,
    Recorded,
    Resources,
)
from vmhost.errors import NotFound, Unsupported, VmhostError
from vmhost.spec import VMSpec

CONTAINER_DRIVER = "runc"


def _unknown(_name: str) -> str | None:
    return None


class DriverSet:
    kind = "set"

    def __init__(self, drivers: Mapping[str, Driver], vm_driver: str, locate: Callable[[str], str | None] = _unknown):
        if vm_driver not in drivers:
            raise VmhostError(f"the VM driver {vm_driver} is not among the host's drivers ({', '.join(drivers)})")
        self.drivers = dict(drivers)
        self.vm_driver = vm_driver
        self.locate = locate
        """Which driver holds the VM of this name, if known (the engine's store knows)."""

    @classmethod
    def of(cls, driver: "Driver | DriverSet", locate: Callable[[str], str | None] = _unknown) -> "DriverSet":
        """A set over one driver or over a set's drivers, asking `locate` which driver holds a VM."""
        if isinstance(driver, DriverSet):
            return cls(driver.drivers, driver.vm_driver, locate)
        return cls({driver.kind: driver}, driver.kind, locate)

    # ---- routing ---------------------------------------------------------------------------

    def kind_for(self, spec: VMSpec) -> str:
        return CONTAINER_DRIVER if spec.kind == "container" else self.vm_driver

    def for_spec(self, spec: VMSpec) -> Driver:
        kind = self.kind_for(spec)
        if kind not in self.drivers:
            raise VmhostError(f"this host has no {kind} driver for a {spec.kind} spec")
        return self.drivers[kind]

    def for_name(self, name: str) -> Driver:
        """The recorded driver; else the one that knows the name; else the VM driver."""
        if len(self.drivers) == 1:
            return self.drivers[self.vm_driver]
        kind = self.locate(name)
        if kind in self.drivers:
            return self.drivers[kind]
        if len(self.drivers) > 1:
            for driver in self.drivers.values():
                if driver.state(name) != DomainState.ABSENT:
                    return driver
        return self.drivers[self.vm_driver]

    # ---- capabilities ----------------------------------------------------------------------

    def capabilities_for(self, spec: VMSpec) -> frozenset[Capability]:
        """What the driver that would run this spec (by its kind) can do."""
        return self.for_spec(spec).capabilities

    def capabilities_of(self, name: str) -> frozenset[Capability]:
        """What the driver that holds the VM `name` can do."""
        return self.for_name(name).capabilities

    def require(self, target: VMSpec | str, capability: Capability) -> None:
        """Unsupported, naming the driver and the capability, unless the driver of `target` (a spec: by its
        kind; a name: the VM's driver) declares it. Asked before anything is touched."""
        driver = self.for_spec(target) if isinstance(target, VMSpec) else self.for_name(target)
        if capability not in driver.capabilities:
            raise Unsupported(driver.kind, capability.value)

    def capability_matrix(self) -> dict[str, list[str]]:
        """Driver name -> its capabilities, in Capability's order (GET /v1/host, `vmhost host`)."""
        return {kind: [c.value for c in Capability if c in d.capabilities] for kind, d in self.drivers.items()}

    # ---- by spec ---------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        return self.drivers[self.vm_driver].host_info()

    def host_facts(self) -> HostFacts:
        return self.drivers[self.vm_driver].host_facts()

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        kind = self.kind_for(spec)
        if kind not in self.drivers:
            return [("kind", f"this host has no {kind} driver to run a {spec.kind}")]
        return self.drivers[kind].host_problems(spec)

    def define(self, spec: VMSpec, resources: Resources) -> None:
        self.for_spec(spec).define(spec, resources)

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self.for_spec(spec).attach_disk(spec, resources, target)

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self.for_spec(spec).detach_disk(spec, resources, target)

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        self.for_spec(spec).attach_nic(spec, resources, mac)

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        self.for_spec(spec).detach_nic(spec, resources, mac, timeout)

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        self.for_spec(spec).set_memory(spec, resources, size)

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        self.for_spec(spec).change_media(spec, resources, target)

    def incoming_definition(self, spec: VMSpec, resources: Resources) -> str:
        return self.for_spec(spec).incoming_definition(spec, resources)

    def reserve_pci(self, address: str) -> None:
        self.drivers[self.vm_driver].reserve_pci(address)

    def release_pci(self, address: str) -> None:
        self.drivers[self.vm_driver].release_pci(address)

    # ---- by name ---------------------------------------------------------------------------

    def undefine(self, name: str) -> None:
        self.for_name(name).undefine(name)

    def create_paused(self, name: str) -> None:
        self.for_name(name).create_paused(name)

    def pause(self, name: str) -> None:
        self.for_name(name).pause(name)

    def migrate(self, name: str, target: MigrationTarget, options: MigrationOptions) -> None:
        self.for_name(name).migrate(name, target, options)

    def migration_progress(self, name: str) -> MigrationProgress | None:
        return self.for_name(name).migration_progress(name)

    def abort_migration(self, name: str) -> None:
        self.for_name(name).abort_migration(name)

    def resume(self, name: str) -> None:
        self.for_name(name).resume(name)

    def request_shutdown(self, name: str) -> None:
        self.for_name(name).request_shutdown(name)

    def destroy(self, name: str) -> None:
        self.for_name(name).destroy(name)

    def request_reboot(self, name: str) -> None:
        self.for_name(name).request_reboot(name)

    def reset(self, name: str) -> None:
        self.for_name(name).reset(name)

    def set_vcpus(self, name: str, count: int) -> None:
        self.for_name(name).set_vcpus(name, count)

    def resize_disk(self, name: str, target: str, size: int) -> None:
        self.for_name(name).resize_disk(name, target, size)

    def state(self, name: str) -> DomainState:
        return self.for_name(name).state(name)

    def info(self, name: str) -> DomainInfo:
        driver = self.for_name(name)
        return dataclasses.replace(driver.info(name), driver=driver.kind)

    def recorded(self, name: str) -> Recorded | None:
        return self.for_name(name).recorded(name)

    def kill_process(self, name: str) -> bool:
        return self.for_name(name).kill_process(name)

    def interfaces(self, name: str) -> list[str]:
        return self.for_name(name).interfaces(name)

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        return self.for_name(name).guest_addresses(name)

    def open_console(self, name: str) -> ConsoleStream:
        return self.for_name(name).open_console(name)

    def graphics_ports(self, name: str) -> dict[str, int]:
        return self.for_name(name).graphics_ports(name)

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
        driver = self.for_name(spec.name)
        driver.create_snapshot(spec, resources, snapshot, disk_only=disk_only, layers=layers, quiesce=quiesce)

    def snapshot_names(self, name: str) -> list[str]:
        return self.for_name(name).snapshot_names(name)

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        self.for_name(name).revert_snapshot(name, snapshot)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        self.for_name(name).delete_snapshot(name, snapshot)

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        self.for_name(name).merge_layer(name, target, overlay)

    # ---- every driver ----------------------------------------------------------------------

    def states(self) -> dict[str, DomainState]:
        """A name two hypervisors know is reported from the driver that holds the VM."""
        merged: dict[str, DomainState] = {}
        for kind, driver in self.drivers.items():
            for name, state in driver.states().items():
                if name not in merged or self.locate(name) == kind:
                    merged[name] = state
        return merged

    def list_owned(self) -> list[DomainInfo]:
        return [
            dataclasses.replace(info, driver=kind)
            for kind, driver in self.drivers.items()
            for info in driver.list_owned()
        ]

    def domain_stats(self) -> list[DomainStats]:
        return [stats for driver in self.drivers.values() for stats in driver.domain_stats()]

    def recorded_by(self, info: DomainInfo) -> Recorded | None:
        """What the driver that listed `info` keeps for it (adoption asks the right hypervisor)."""
        driver = self.drivers.get(info.driver)
        if driver is None:
            raise NotFound(f"no {info.driver} driver for {info.name}")
        return driver.recorded(info.name)
