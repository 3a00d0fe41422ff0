"""LibvirtDriver: the Driver protocol on libvirt-python (qemu:///system by default)."""

import os
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import libvirt
from lxml import etree

from vmhost.drivers import processes
from vmhost.drivers.base import (
    Capability,
    ConsoleStream,
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
from vmhost.drivers.libvirt import live, snapshots
from vmhost.drivers.libvirt.console import LibvirtConsole
from vmhost.drivers.libvirt.errors import translate
from vmhost.drivers.libvirt.migration import Migrations
from vmhost.drivers.libvirt.secrets import CephSecrets, referenced
from vmhost.drivers.libvirt.stats import typed_stats
from vmhost.errors import HypervisorError, NotFound, Unavailable
from vmhost.render.libvirt import RenderHook, domain_xml, read_metadata, render_domain
from vmhost.render.libvirt.context import METADATA_NS, RenderContext
from vmhost.spec import VMSpec
from vmhost.spec.smartos import foreign_problems

T = TypeVar("T")

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED_PRESERVED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.PAUSED,
}
_CRASHED_SHUTOFF = {libvirt.VIR_DOMAIN_SHUTOFF_CRASHED, libvirt.VIR_DOMAIN_SHUTOFF_FAILED}
_SHUTOFF_REASONS = {
    libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN: "guest-poweroff",
    libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_SHUTOFF_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED: "migrated",
}
"""Why a domain is off, in the words of DomainEvent. Coarser than its STOPPED event (events.py): the state says
"crashed" for a killed QEMU (event: qemu-died) and a panicked guest (guest-crash) alike."""


def _reason(state: int, reason: int) -> str:
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return _SHUTOFF_REASONS.get(reason, "stopped")
    return "guest-panic" if state == libvirt.VIR_DOMAIN_CRASHED else ""


def _mapped(state: int, reason: int) -> DomainState:
    """A domain that is off because its guest crashed or its QEMU died counts as crashed, not stopped."""
    if state == libvirt.VIR_DOMAIN_SHUTOFF and reason in _CRASHED_SHUTOFF:
        return DomainState.CRASHED
    return _STATES.get(state, DomainState.OTHER)


_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
)
_NODE_MEMORY_KEYS = ("free", "buffers", "cached")
DETACH_WAIT = 10.0
_STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report errors ourselves."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)


class LibvirtDriver:
    kind = "libvirt"
    capabilities = frozenset(
        {
            Capability.PAUSE,
            Capability.REBOOT,
            Capability.CONSOLE,
            Capability.DISK_HOTPLUG,
            Capability.PCI_PASSTHROUGH,
            Capability.NIC_HOTPLUG,
            Capability.VCPU_HOTPLUG,
            Capability.MEMORY_HOTPLUG,
            Capability.DISK_RESIZE,
            Capability.MEDIA_CHANGE,
            Capability.SNAPSHOTS,
            Capability.LIVE_MIGRATION,
            Capability.OFFLINE_MIGRATION,
        }
    )
    """What vmhost implements on libvirt today."""

    def __init__(self, uri: str, accel: str, render_hooks: tuple[RenderHook, ...] = ()):
        self.uri = uri
        self.accel = accel
        self.render_hooks = render_hooks
        self._local = threading.local()
        self.secrets = CephSecrets(lambda: self.conn)
        self.migrations = Migrations()

    @property
    def conn(self) -> libvirt.virConnect:
        """One connection per thread: libvirtd serves only ~5 concurrent calls per connection
        (max_client_requests), so a shared one would serialise parallel starts."""
        conn: libvirt.virConnect | None = getattr(self._local, "conn", None)
        if conn is None or not conn.isAlive():
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise Unavailable(
                    f"cannot connect to libvirt at {self.uri} (is libvirtd running?)", exc.get_error_message()
                ) from None
            self._local.conn = conn
        return conn

    def _domain(self, name: str) -> libvirt.virDomain:
        return self._call(name, "look up", lambda: self.conn.lookupByName(name))

    def _call(self, name: str, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except libvirt.libvirtError as exc:
            raise translate(exc, name, action) from None

    def host_info(self) -> HostInfo:
        conn = self.conn
        model, _memory_mib, cpus, *_ = self._call("host", "query", conn.getInfo)
        stats = self._call("host", "query", lambda: conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS))
        return HostInfo(
            hypervisor=f"{conn.getType()} {_version(self._call('host', 'query', conn.getVersion))} ({model})",
            cpus=cpus,
            memory_total=stats["total"] * 1024,
            memory_available=sum(stats.get(key, 0) for key in _NODE_MEMORY_KEYS) * 1024,
            accel=self.accel,
        )

    def host_facts(self) -> HostFacts:
        conn = self.conn
        _model, _memory_mib, cpus, mhz, nodes, sockets, *_ = self._call("host", "query", conn.getInfo)
        return HostFacts(
            cpus=cpus,
            cpu_mhz=mhz,
            cpu_sockets=nodes * sockets,
            memory_total=self.host_info().memory_total,
            versions={
                "libvirt": _version(self._call("host", "query", conn.getLibVersion)),
                conn.getType().lower(): _version(self._call("host", "query", conn.getVersion)),
            },
        )

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        problems = list(foreign_problems(spec))
        if (spec.accel or self.accel) == "kvm" and not os.path.exists("/dev/kvm"):
            problems.append(("accel", "KVM is not available on this host (no /dev/kvm); use accel tcg"))
        for index, nic in enumerate(spec.nics):
            problems += [(f"nics.{index}.source", m) for m in self._nic_source_problems(nic.type, nic.source)]
        for index, device in enumerate(spec.passthrough.pci):
            if not self._node_device_exists(_pci_name(device.address)):
                problems.append((f"passthrough.pci.{index}.address", f"no PCI device {device.address} on this host"))
        return problems

    def _nic_source_problems(self, kind: str, source: str) -> list[str]:
        if kind == "bridge" and not Path(f"/sys/class/net/{source}/bridge").is_dir():
            return [f"bridge {source} does not exist on this host"]
        if kind == "direct" and not Path(f"/sys/class/net/{source}").exists():
            return [f"host interface {source} does not exist"]
        if kind == "hostdev" and not self._node_device_exists(_pci_name(source)):
            return [f"no PCI device (SR-IOV VF) {source} on this host"]
        if kind == "network":
            try:
                if not self.conn.networkLookupByName(source).isActive():
                    return [f"libvirt network {source} is not active"]
            except libvirt.libvirtError:
                return [f"libvirt network {source} does not exist"]
        return []

    def _node_device_exists(self, name: str) -> bool:
        try:
            self.conn.nodeDeviceLookupByName(name)
        except libvirt.libvirtError:
            return False
        return True

    def _context(self, spec: VMSpec, resources: Resources) -> RenderContext:
        return RenderContext(
            accel=spec.accel or self.accel,  # type: ignore[arg-type]
            console_log=resources.console_log,
            disk_paths=resources.disk_paths,
            disk_formats=resources.disk_formats,
            disk_layers=resources.disk_layers,
            owner=resources.owner,
            hooks=self.render_hooks,
            seed_iso=resources.seed_iso,
        )

    def define(self, spec: VMSpec, resources: Resources) -> None:
        xml = self.incoming_definition(spec, resources)
        self._call(spec.name, "define", lambda: self.conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE))

    def incoming_definition(self, spec: VMSpec, resources: Resources) -> str:
        """The domain XML define() writes (renderer and plugins' render hooks), for a migration into this host."""
        return domain_xml(spec, self._context(spec, resources))

    def migrate(self, name: str, target: MigrationTarget, options: MigrationOptions) -> None:
        self.migrations.migrate(self._domain(name), target, options)

    def migration_progress(self, name: str) -> MigrationProgress | None:
        try:
            dom = self._domain(name)
        except NotFound:
            return None
        return self.migrations.current(dom)

    def abort_migration(self, name: str) -> None:
        try:
            dom = self._domain(name)
        except NotFound:
            return
        self.migrations.abort(dom)

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        """Plug the disk with `target` into the running domain (the persistent definition is define's job)."""
        xml = _disk_xml(render_domain(spec, self._context(spec, resources)), target)
        dom = self._domain(spec.name)
        self._call(spec.name, "attach a disk to", lambda: dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        """Ask the guest to release the disk and wait until it has: a guest may refuse (the disk in use)."""
        xml = _disk_xml(render_domain(spec, self._context(spec, resources)), target)
        dom = self._domain(spec.name)
        self._call(spec.name, "detach a disk from", lambda: dom.detachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))
        deadline = time.monotonic() + DETACH_WAIT
        while f"dev='{target}'" in self._call(spec.name, "query", lambda: dom.XMLDesc(0)):
            if time.monotonic() > deadline:
                raise HypervisorError(f"the guest of {spec.name} did not release disk {target} in {DETACH_WAIT:.0f}s")
            time.sleep(0.1)

    def attach_nic(self, spec: VMSpec, resources: Resources, mac: str) -> None:
        live.attach_nic(self._domain(spec.name), render_domain(spec, self._context(spec, resources)), mac)

    def detach_nic(self, spec: VMSpec, resources: Resources, mac: str, timeout: float) -> None:
        live.detach_nic(self._domain(spec.name), render_domain(spec, self._context(spec, resources)), mac, timeout)

    def set_vcpus(self, name: str, count: int) -> None:
        live.set_vcpus(self._domain(name), count)

    def set_memory(self, spec: VMSpec, resources: Resources, size: int) -> None:
        live.set_memory(self._domain(spec.name), size)

    def resize_disk(self, name: str, target: str, size: int) -> None:
        live.resize_disk(self._domain(name), target, size)

    def change_media(self, spec: VMSpec, resources: Resources, target: str) -> None:
        live.change_media(self._domain(spec.name), render_domain(spec, self._context(spec, resources)), target)

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
        snapshots.create(self._domain(spec.name), snapshot, layers, quiesce)

    def snapshot_names(self, name: str) -> list[str]:
        return snapshots.names(self._domain(name))

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        snapshots.revert(self._domain(name), snapshot)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        snapshots.delete(self._domain(name), snapshot)

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        snapshots.merge(self._domain(name), target, overlay)

    def undefine(self, name: str) -> None:
        """Undefine the domain, then remove the Ceph secrets vmhost made for it that nothing else uses."""
        try:
            dom = self._domain(name)
            used = referenced(etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
            dom.undefineFlags(_UNDEFINE_FLAGS)
        except NotFound:
            return
        except libvirt.libvirtError as exc:
            raise translate(exc, name, "undefine") from None
        for uuid in used:
            self.secrets.release(uuid)

    def ceph_secret(self, uuid: UUID, key: str) -> AbstractContextManager[None]:
        return self.secrets.held(uuid, key)

    def create_paused(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "start", lambda: dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED))

    def pause(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "pause", dom.suspend)

    def resume(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "resume", dom.resume)

    def request_shutdown(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "shut down", lambda: dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN))

    def destroy(self, name: str) -> None:
        """Idempotent: a domain that is already off is fine."""
        try:
            dom = self._domain(name)
            dom.destroy()
        except NotFound:
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not dom.isActive():
                return
            raise translate(exc, name, "destroy") from None

    def request_reboot(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "reboot", lambda: dom.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN))

    def reset(self, name: str) -> None:
        dom = self._domain(name)
        self._call(name, "reset", lambda: dom.reset(0))

    def state(self, name: str) -> DomainState:
        try:
            state, reason = self._domain(name).state()
        except NotFound:
            return DomainState.ABSENT
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return DomainState.ABSENT
            raise translate(exc, name, "query") from None
        return _mapped(state, reason)

    def info(self, name: str) -> DomainInfo:
        dom = self._domain(name)
        return self._info(dom)

    def _info(self, dom: libvirt.virDomain) -> DomainInfo:
        _state, _max_kib, memory_kib, vcpus, cpu_time = self._call(dom.name(), "query", dom.info)
        state, reason = self._call(dom.name(), "query", dom.state)
        mapped = _mapped(state, reason)
        return DomainInfo(
            name=dom.name(),
            uuid=dom.UUIDString(),
            state=mapped,
            reason=_reason(state, reason),
            vcpus=vcpus,
            memory_bytes=memory_kib * 1024,
            cpu_time_ns=cpu_time,
            pid=_qemu_pid(dom.name()) if mapped != DomainState.SHUTOFF else None,
        )

    def states(self) -> dict[str, DomainState]:
        """Every domain's state in one call (bulk stats, state group only)."""
        conn = self.conn
        records = self._call(
            "host",
            "list",
            lambda: conn.getAllDomainStats(
                libvirt.VIR_DOMAIN_STATS_STATE, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT
            ),
        )
        return {
            dom.name(): _mapped(stats.get("state.state", -1), stats.get("state.reason", -1)) for dom, stats in records
        }

    def list_owned(self) -> list[DomainInfo]:
        """Only domains carrying vmhost's metadata; anything else on the host is not ours to touch."""
        owned = []
        for dom in self._call("host", "list", self.conn.listAllDomains):
            try:
                if _is_owned(dom):
                    owned.append(self._info(dom))
            except NotFound:
                continue  # undefined between the listing and the query
        return owned

    def domain_stats(self) -> list[DomainStats]:
        """One bulk call for every vmhost domain's state, CPU, memory, block and network counters.

        NOWAIT skips domains whose QEMU monitor is busy instead of blocking the scrape on them.
        """
        conn = self.conn
        records = self._call(
            "host",
            "collect stats",
            lambda: conn.getAllDomainStats(_STATS_GROUPS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT),
        )
        return [
            typed_stats(
                dom.name(),
                _mapped(stats.get("state.state", -1), stats.get("state.reason", -1)),
                stats,
                uuid=dom.UUIDString(),
            )
            for dom, stats in records
            if _is_owned(dom)
        ]

    def recorded(self, name: str) -> Recorded | None:
        """The metadata's spec, with the graphics password put back from the domain's own (secure) XML."""
        dom = self._domain(name)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE
        xml = self._call(name, "query", lambda: dom.XMLDesc(flags))
        metadata = read_metadata(xml)
        if metadata is None or metadata["spec"] is None:
            return None
        spec = metadata["spec"]
        if isinstance(spec.get("graphics"), dict):
            graphics = etree.fromstring(xml.encode()).find("devices/graphics")
            spec["graphics"]["password"] = graphics.get("passwd") if graphics is not None else None
        return Recorded(spec=spec, owner=metadata["owner"])

    def kill_process(self, name: str) -> bool:
        """Only a process whose command line names this guest: a stale pid file may point at anything."""
        pid = _qemu_pid(name)
        if pid is None or f"guest={name},".encode() not in processes.cmdline(pid):
            return False
        return processes.sigkill(pid)

    def interfaces(self, name: str) -> list[str]:
        """The tap devices of the created domain's NICs, in guest order (they exist from the paused window on)."""
        dom = self._domain(name)
        xml = self._call(name, "query", lambda: dom.XMLDesc(0))
        targets = etree.fromstring(xml.encode()).iterfind("devices/interface/target")
        return [str(target.get("dev")) for target in targets if target.get("dev")]

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        """Like `virsh domifaddr`: the guest agent where it answers, else libvirt's DHCP leases, else the host's
        ARP table; the first source that knows a NIC wins."""
        dom = self._domain(name)
        found: dict[str, GuestAddresses] = {}
        for source, flag in ADDRESS_SOURCES:
            try:
                interfaces = dom.interfaceAddresses(flag)
            except libvirt.libvirtError:
                continue  # no agent channel or no answer, no lease database: the next source may know
            for interface in interfaces.values():
                mac = str(interface.get("hwaddr") or "").lower()
                addresses = tuple(_address(a) for a in interface.get("addrs") or [])
                if mac and addresses and mac not in found:
                    found[mac] = GuestAddresses(addresses, source)
        return found

    def open_console(self, name: str) -> ConsoleStream:
        dom = self._domain(name)
        return self._call(name, "open the console of", lambda: LibvirtConsole(self.conn, dom))

    def graphics_ports(self, name: str) -> dict[str, int]:
        """The ports QEMU bound, which only the live domain's XML holds (-1 while it has not bound one yet)."""
        dom = self._domain(name)
        domain = etree.fromstring(self._call(name, "query", lambda: dom.XMLDesc(0)).encode())
        return {node.get("type", ""): int(node.get("port", "-1")) for node in domain.iterfind("devices/graphics")}

    def reserve_pci(self, address: str) -> None:
        device = self._call(address, "find PCI device", lambda: self.conn.nodeDeviceLookupByName(_pci_name(address)))
        self._call(address, "detach PCI device", lambda: device.detachFlags(None, 0))

    def release_pci(self, address: str) -> None:
        device = self._call(address, "find PCI device", lambda: self.conn.nodeDeviceLookupByName(_pci_name(address)))
        self._call(address, "reattach PCI device", device.reAttach)


def _address(found: Mapping[str, Any]) -> str:
    """CIDR form where the source knows the prefix; the ARP table knows none (libvirt says 0)."""
    return f"{found['addr']}/{found['prefix']}" if found.get("prefix") else str(found["addr"])


ADDRESS_SOURCES = (
    ("agent", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT),
    ("lease", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE),
    ("arp", libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP),
)


def _is_owned(dom: libvirt.virDomain) -> bool:
    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    except libvirt.libvirtError:
        return False
    return True


def _disk_xml(domain: etree._Element, target: str) -> str:
    for disk in domain.iterfind("devices/disk"):
        if disk.find(f"target[@dev='{target}']") is not None:
            return etree.tostring(disk, encoding="unicode")
    raise NotFound(f"no disk with target {target}")


def _pci_name(address: str) -> str:
    return "pci_" + address.replace(":", "_").replace(".", "_")


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _qemu_pid(name: str) -> int | None:
    """libvirt's pid file for the domain's QEMU process (local system connection)."""
    try:
        return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
