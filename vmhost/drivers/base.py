"""The hypervisor-agnostic driver contract the lifecycle engine is written against."""

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

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
    """Memory changes on a running VM: balloon within the plugged size, DIMMs above it."""
    DISK_RESIZE = "disk-resize"
    """Grow a disk of a running VM."""
    MEDIA_CHANGE = "media-change"
    """Insert, eject or change the media of a running VM's CD-ROM drive."""
    PCI_PASSTHROUGH = "pci-passthrough"
    SNAPSHOTS = "snapshots"
    LIVE_MIGRATION = "live-migration"
    """Move a running VM to another host of the same hypervisor (memory, and with copy_disks local disks too)."""
    OFFLINE_MIGRATION = "offline-migration"
    """Take in a stopped VM another host moved here (the engine moves spec and disks; the driver defines it)."""


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
    seed_iso: Path | None = None
    """The VM's NoCloud seed ISO (built by the engine), attached read-only as an extra CD-ROM; None: no seed."""
    disk_layers: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    """target -> the disk-only snapshot overlays on top of its image, oldest first (the last one is the top)."""


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
    """Why it is in that state, in DomainEvent's words (qemu-died, guest-poweroff, ...); "" when not known."""
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
    uuid: str = ""
    """The domain's UUID where the driver knows it, so that a same-named VM of another agent is told apart."""
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
class GuestAddresses:
    """The addresses a guest has on one NIC (CIDR form) and who told: the guest agent, a DHCP lease or ARP."""

    addresses: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class MigrationTarget:
    """Where a live migration goes, as the destination agent said when it prepared for it."""

    hypervisor_uri: str
    """The destination hypervisor as this host's hypervisor reaches it (libvirt: qemu+tls://ADDRESS/system)."""
    stream_uri: str
    """Where the memory and disk streams go (libvirt: tcp://ADDRESS)."""
    definition: str
    """The destination's own definition of the domain (its paths, its owner), e.g. libvirt domain XML."""
    tls: bool = True
    """Encrypt the hypervisor's streams between the hosts; off only on a test bed (migration_transport = tcp)."""


@dataclass(frozen=True)
class MigrationOptions:
    copy_disks: tuple[str, ...] = ()
    """Targets of local disks whose contents go along, into the placeholders the destination made."""
    bandwidth_mib: int | None = None
    """MiB/s ceiling of the transfer; None: unlimited."""
    auto_converge: bool = False
    """Throttle the guest's vCPUs when its memory changes faster than it is copied."""
    post_copy: bool = False
    """Allow switching to post-copy (the guest runs at the destination, pages follow on demand) once pre-copy
    has made a full pass without converging."""


@dataclass(frozen=True)
class MigrationProgress:
    """A migration job's progress at one moment (processed never decreases while it advances)."""

    phase: str
    """"memory", "disks", "post-copy" or "completing"."""
    processed_bytes: int
    remaining_bytes: int
    total_bytes: int
    expected_downtime_ms: int | None = None

    @property
    def percent(self) -> float:
        """Of the total, what is not left to send (processed counts pages sent again too, so it passes 100)."""
        if not self.total_bytes:
            return 0.0
        return min(100.0, max(0.0, 100.0 * (self.total_bytes - self.remaining_bytes) / self.total_bytes))


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

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        """Live-plug the spec's NIC with this MAC into the running domain (the persistent definition is define's)."""
        ...

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        """`spec` still holds the NIC: unplug it live and wait until the guest released it; HypervisorError naming
        the NIC when it is not released within `timeout` s."""
        ...

    def set_vcpus(self, name: str, count: int) -> None:
        """Live vCPU count, up to the domain's maximum (cpu.max_vcpus)."""
        ...

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        """Bring the running guest to `size` bytes: balloon within the memory plugged now, hot-plug DIMMs above it
        (up to spec.memory.max_size with spec.memory.slots)."""
        ...

    def resize_disk(self, name: str, target: str, size: int) -> None:
        """Grow a running VM's disk `target` to `size` bytes (block resize)."""
        ...

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        """Put the spec's cdrom `target` media into the running drive: its iso, or none = eject."""
        ...

    def create_paused(self, name: str) -> None: ...

    def migrate(self, name: str, target: MigrationTarget, options: MigrationOptions) -> None:
        """Live-migrate the running domain; blocks until it is over. Success: the domain is defined (persistently,
        with target.definition) and paused at the destination, whose agent resumes it (with post_copy: running
        there already); here it stays defined and shut off. Failure, or abort_migration: HypervisorError, the
        domain still runs here and the destination hypervisor keeps nothing of it; except once post-copy has
        started, when an abort is refused and a failure leaves it paused here and running there."""  # LIVE_MIGRATION
        ...

    def migration_progress(self, name: str) -> MigrationProgress | None:
        """The domain's running migration job (outgoing here); None when none runs."""
        ...

    def abort_migration(self, name: str) -> None:
        """Cancel the domain's migration job; nothing to do when none runs."""
        ...

    def incoming_definition(self, spec: VMSpec, resources: Resources) -> str:
        """The definition this host gives the domain (rendered, not defined), for a live migration into it."""
        ...

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

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        """NIC MAC -> the guest's addresses on it, where the hypervisor can know them (nothing where it cannot)."""
        ...

    def open_console(self, name: str) -> ConsoleStream: ...

    def graphics_ports(self, name: str) -> dict[str, int]:
        """{"vnc": port, "spice": port} of a created VM's remote displays; -1 where none is bound or known yet."""
        ...

    def reserve_pci(self, address: str) -> None: ...

    def release_pci(self, address: str) -> None: ...

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
        """Take `snapshot`: full (every disk, plus the memory state of a running VM), or disk-only (crash-consistent)
        into the new external overlays `layers` (target -> file, not there yet; empty for a driver whose storage
        snapshots natively); `quiesce` freezes the guest's filesystems through its agent meanwhile. The hypervisor
        keeps it in its metadata."""  # SNAPSHOTS
        ...

    def snapshot_names(self, name: str) -> list[str]:
        """The VM's snapshots the hypervisor keeps, oldest first."""
        ...

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        """Bring a full snapshot back: its disks and, when it has them, its memory and running state."""
        ...

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        """Forget `snapshot` (nothing to do when it is not there): a full one with its data; of a disk-only one only
        the metadata (its overlays are merged first, merge_layer)."""
        ...

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        """Running VM: merge the top overlay `overlay` of disk `target` into the image below it and make that the
        top (active block commit, then pivot). Nothing to do when `overlay` is not the disk's top any more."""
        ...


class Driver(DomainCalls, Protocol):
    """One hypervisor."""

    kind: str
    """The driver's name (libvirt, runc, xen, smartos): errors and the capability matrix name it."""
    capabilities: frozenset[Capability]
    """What it can do beyond define/start/stop/delete; a method for a capability it lacks raises Unsupported."""


@runtime_checkable
class CephSecretStore(Protocol):
    """A driver that keeps Ceph (cephx) keys in hypervisor secrets, for commands that carry the key itself."""

    def ceph_secret(self, uuid: UUID, key: str) -> AbstractContextManager[None]:
        """Secret `uuid` holds the base64 cephx `key` while the block defines and starts a VM that uses it (and
        afterwards, until no domain refers to it); after a failed block a secret the driver made and no domain
        uses is removed. The key is never logged, kept or returned."""
        ...
