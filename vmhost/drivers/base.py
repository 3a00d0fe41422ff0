"""The hypervisor-agnostic driver contract the lifecycle engine is written against."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from vmhost.spec import VMSpec


class DomainState(StrEnum):
    """What the hypervisor says about a domain right now."""

    ABSENT = "absent"
    SHUTOFF = "shutoff"
    RUNNING = "running"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting-down"
    CRASHED = "crashed"
    """Off because the guest crashed or QEMU died."""
    CRASHED_PRESERVED = "crashed-preserved"
    """The guest crashed and QEMU is kept alive for inspection (on_crash: preserve)."""
    OTHER = "other"


class Capability(StrEnum):
    """What a driver can do beyond define/start/stop/delete; the engine checks these before it touches anything."""

    PAUSE = "pause"
    REBOOT = "reboot"
    CONSOLE = "console"
    DISK_HOTPLUG = "disk-hotplug"
    NIC_HOTPLUG = "nic-hotplug"
    VCPU_HOTPLUG = "vcpu-hotplug"
    MEMORY_HOTPLUG = "memory-hotplug"
    PCI_PASSTHROUGH = "pci-passthrough"
    SNAPSHOTS = "snapshots"
    LIVE_MIGRATION = "live-migration"


class DomainEventKind(StrEnum):
    """Lifecycle changes a driver reports, whatever its hypervisor calls them."""

    DEFINED = "defined"
    UNDEFINED = "undefined"
    STARTED = "started"
    PAUSED = "paused"
    RESUMED = "resumed"
    SHUTTING_DOWN = "shutting-down"
    STOPPED = "stopped"
    CRASHED = "crashed"


@dataclass(frozen=True)
class DomainEvent:
    """`reason` says why, in vmhost's words: guest-poweroff, destroyed, qemu-died, guest-crash, ..."""

    name: str
    kind: DomainEventKind
    reason: str = ""


@dataclass(frozen=True)
class Resources:
    """Host resources the engine allocated for a VM, handed to the driver at define time."""

    console_log: Path
    disk_paths: Mapping[str, Path] = field(default_factory=dict)
    disk_formats: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""


@dataclass(frozen=True)
class Recorded:
    """What the hypervisor keeps about a VM vmhost defined: its spec (secrets restored) and its owner."""

    spec: dict[str, Any]
    owner: str


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainState
    reason: str = ""
    vcpus: int = 0
    memory_bytes: int = 0
    cpu_time_ns: int = 0
    pid: int | None = None
    driver: str = ""
    """Which driver reported it, when several run (set by DriverSet)."""


@dataclass(frozen=True)
class DiskIO:
    """One disk's counters since its VM started."""

    device: str
    read_bytes: int | None = None
    write_bytes: int | None = None
    read_requests: int | None = None
    write_requests: int | None = None


@dataclass(frozen=True)
class NicIO:
    """One NIC's counters since its VM started, seen from the guest (receive = into the guest)."""

    interface: str
    receive_bytes: int | None = None
    transmit_bytes: int | None = None
    receive_packets: int | None = None
    transmit_packets: int | None = None


@dataclass(frozen=True)
class DomainStats:
    """A VM's counters at one moment, in vmhost's units; None where the driver cannot know (metrics leave it out)."""

    name: str
    state: DomainState = DomainState.OTHER
    cpu_seconds: float | None = None
    vcpus: int | None = None
    """vCPUs online."""
    memory_bytes: int | None = None
    """Memory the guest has now (the balloon's current size)."""
    rss_bytes: int | None = None
    """Host memory the VM's process uses."""
    disks: tuple[DiskIO, ...] = ()
    nics: tuple[NicIO, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    """What a management plane asks of the host beyond HostInfo: CPU topology and speed, software versions."""

    cpus: int
    cpu_mhz: int
    """0 when the hypervisor does not say."""
    cpu_sockets: int
    memory_total: int
    versions: Mapping[str, str] = field(default_factory=dict)
    """Component -> version, e.g. {"libvirt": "9.0.0", "qemu": "7.2.0"} or {"xen": "4.17.1"}."""


@dataclass(frozen=True)
class HostInfo:
    hypervisor: str
    cpus: int
    memory_total: int
    memory_available: int
    accel: str


class ConsoleStream(Protocol):
    def read(self, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class EventSource(Protocol):
    """Pushes DomainEvents as they happen; reconnects by itself and calls on_connected after each (re)connect."""

    def start(
        self, sink: Callable[[DomainEvent], None], on_connected: Callable[[], None], on_lost: Callable[[str], None]
    ) -> None: ...

    def stop(self) -> None: ...


class DomainCalls(Protocol):
    """The calls on domains and the host that a driver serves and the engine's router forwards to a VM's driver.

    Every method is blocking; names are already validated by the spec.
    """

    def host_info(self) -> HostInfo: ...

    def host_facts(self) -> HostFacts:
        """CPU speed and sockets and software versions, for management planes that ask (ZStack's connect)."""
        ...

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        """(path, message) for what this host lacks that the spec needs (bridges, networks, devices)."""
        ...

    def define(self, spec: VMSpec, resources: Resources) -> None: ...

    def undefine(self, name: str) -> None: ...

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        """Hot-plug the spec's disk `target` into the running VM."""
        ...

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None: ...

    def create_paused(self, name: str) -> None: ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def request_shutdown(self, name: str) -> None: ...

    def destroy(self, name: str) -> None: ...

    def request_reboot(self, name: str) -> None: ...

    def reset(self, name: str) -> None: ...

    def state(self, name: str) -> DomainState: ...

    def info(self, name: str) -> DomainInfo: ...

    def states(self) -> dict[str, DomainState]:
        """Name → state of every domain the hypervisor knows, in one cheap call."""
        ...

    def list_owned(self) -> list[DomainInfo]: ...

    def domain_stats(self) -> list[DomainStats]:
        """Counters of the vmhost VMs the hypervisor has, for metrics: one bulk call where it offers one."""
        ...

    def recorded(self, name: str) -> Recorded | None:
        """What the hypervisor keeps for a VM vmhost defined, to adopt it without a store."""
        ...

    def kill_process(self, name: str) -> bool:
        """Last resort when a forced stop fails: SIGKILL the VM's process. False if there was none."""
        ...

    def interfaces(self, name: str) -> list[str]:
        """Host-side network devices of a created VM's NICs (taps, veths, vifs), in guest order."""
        ...

    def open_console(self, name: str) -> ConsoleStream: ...

    def graphics_ports(self, name: str) -> dict[str, int]:
        """{"vnc": port, "spice": port} of a created VM's remote displays; -1 where none is bound or known yet."""
        ...

    def reserve_pci(self, address: str) -> None: ...

    def release_pci(self, address: str) -> None: ...


class Driver(DomainCalls, Protocol):
    """One hypervisor."""

    kind: str
    """The driver's name (libvirt, runc, xen, smartos): errors and the capability matrix name it."""
    capabilities: frozenset[Capability]
    """What it can do beyond define/start/stop/delete; a method for a capability it lacks raises Unsupported."""
