"""VmadmDriver: the Driver protocol on SmartOS's vmadm (brand bhyve or kvm), through its command line.

vmadm knows VMs by UUID; vmhost by name. The name is the payload's alias, found again with one
`vmadm list -p -o uuid,alias,state alias=<name>`. vmhost's record (spec and owner) lives in internal_metadata.

The two-phase start is honest about vmadm: there is no paused state, so a VM is created with autoboot false
(installed, not booted), create_paused only checks that it is stopped, the start-paused hooks run against
the created-but-not-booted VM, and resume is `vmadm start`.

A bhyve `vmadm reboot` is a stop with a fixed 10 s timeout, after which the zone is halted, then a start
(VM.js doStopStartReboot), so the graceful reboot here is `vmadm stop -t <stop timeout>` + `vmadm start`; kvm
keeps `vmadm reboot` (an in-zone reboot, VM.js doReboot).
"""

import contextlib
import json
import logging
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmhost.drivers.base import (
    Capability,
    ConsoleStream,
    DomainInfo,
    DomainState,
    DomainStats,
    GuestAddresses,
    HostFacts,
    HostInfo,
    Recorded,
    Resources,
)
from vmhost.drivers.cpuinfo import os_host_facts
from vmhost.drivers.no_migration import NoMigration
from vmhost.drivers.pty_console import PtyConsole
from vmhost.drivers.smartos.command import Vmadm, failure
from vmhost.drivers.smartos.states import mapped
from vmhost.drivers.smartos.update import update_payload
from vmhost.drivers.stop_to_change import StopToChange
from vmhost.errors import Conflict, HypervisorError, NotFound, Unsupported, VmhostError
from vmhost.render.hooks import DocumentHook
from vmhost.render.vmadm import BRANDS, OWNER_KEY, SPEC_KEY, Brand, payload_json, problems, render_payload
from vmhost.spec import VMSpec
from vmhost.spec.units import MiB

LIST_FIELDS = "uuid,alias,state"
CREATE_PAYLOAD = "vmadm-create.json"
UPDATE_PAYLOAD = "vmadm-update.json"
STOP_GRACE_SECONDS = 3600
"""vmadm's own deadline for a graceful stop (-t): beyond any engine deadline, so that the engine decides when
to force (with `stop -F`); vmadm's halt at -t is only a failsafe if the agent is gone."""
EARLY_FAILURE_SECONDS = 0.5
"""How long a graceful stop is watched for an immediate refusal before it is left running."""
REAPED_STOP_WAIT = 5.0
REBOOT_MARGIN_SECONDS = 30.0
"""On top of the stop timeout, for vmadm to halt the zone and report."""
log = logging.getLogger("vmhost.smartos")


@dataclass(frozen=True)
class Listed:
    uuid: str
    alias: str
    state: str


def parse_list(text: str) -> list[Listed]:
    """`list -p -o uuid,alias,state`: the UUID is fixed-width and the state has no ':', so an alias may."""
    rows = []
    for line in text.splitlines():
        if len(line) > 37 and line[36] == ":":
            alias, _, state = line[37:].rpartition(":")
            rows.append(Listed(uuid=line[:36], alias=alias, state=state))
    return rows


class VmadmDriver(StopToChange, NoMigration):
    kind = "smartos"
    migration_hint = "vmadm send/receive (a stopped VM's zone streamed between hosts) is not wired in"
    capabilities = frozenset({Capability.REBOOT, Capability.CONSOLE})
    """vmadm has no paused state, no live disk changes, and bhyve passthrough is not rendered; bhyve adds
    snapshots (ZFS, through vmadm; kvm VMs have none)."""

    def __init__(
        self,
        command: str = "vmadm",
        brand: Brand = "bhyve",
        stop_grace: int = STOP_GRACE_SECONDS,
        timeout: float = 600.0,
        reboot_timeout: float = 60.0,
        *,
        render_hooks: tuple[DocumentHook, ...] = (),
    ):
        """reboot_timeout: how long a graceful reboot lets the guest power off (the host's stop_timeout);
        render_hooks: plugins' render_vmadm hooks, applied to every payload."""
        self.render_hooks = render_hooks
        if brand not in BRANDS:
            raise VmhostError(f"the smartos driver runs brands {', '.join(BRANDS)}, not {brand!r}")
        self.vmadm = Vmadm(command, timeout)
        self.brand: Brand = brand
        if brand == "bhyve":
            self.capabilities = VmadmDriver.capabilities | {Capability.SNAPSHOTS}
        self.stop_grace = stop_grace
        self.reboot_timeout = reboot_timeout
        self._stops: dict[str, subprocess.Popen[str]] = {}
        self._stops_lock = threading.Lock()

    # ---- lookups -------------------------------------------------------------------------

    def _find(self, name: str) -> Listed | None:
        rows = [r for r in self._list(f"alias={name}") if r.alias == name]
        if len(rows) > 1:
            raise HypervisorError(
                f"several vmadm VMs carry the alias {name}; vmhost cannot tell which is its own",
                ", ".join(r.uuid for r in rows),
            )
        return rows[0] if rows else None

    def _uuid(self, name: str) -> str:
        listed = self._find(name)
        if listed is None:
            raise NotFound(f"vmadm has no VM with alias {name}")
        return listed.uuid

    def _list(self, *filters: str) -> list[Listed]:
        return parse_list(self.vmadm.run("list", "-p", "-o", LIST_FIELDS, *filters, what="the host"))

    def _get(self, name: str) -> dict[str, Any]:
        vm: dict[str, Any] = json.loads(self.vmadm.run("get", self._uuid(name), what=name))
        return vm

    def _lookup_all(self) -> list[dict[str, Any]]:
        vms: list[dict[str, Any]] = json.loads(self.vmadm.run("lookup", "-j", what="the host") or "[]")
        return vms

    # ---- host ----------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """From the OS itself: vmadm has no host query (sysconf works on illumos and Linux alike)."""
        page = os.sysconf("SC_PAGE_SIZE")
        return HostInfo(
            hypervisor=f"SmartOS vmadm ({self.brand})",
            cpus=os.cpu_count() or 0,
            memory_total=os.sysconf("SC_PHYS_PAGES") * page,
            memory_available=os.sysconf("SC_AVPHYS_PAGES") * page,
            accel=self.brand,
        )

    def host_facts(self) -> HostFacts:
        return os_host_facts(self.host_info().memory_total, {})

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        """What a vmadm payload cannot carry. nic tags and images are vmadm's to check at create."""
        return problems(spec, self.brand)

    # ---- definition ----------------------------------------------------------------------

    def define(self, spec: VMSpec, resources: Resources) -> None:
        """`vmadm create` (autoboot false) for a new VM; `vmadm update` with what changed for an existing one."""
        payload = render_payload(spec, self.brand, owner=resources.owner, hooks=self.render_hooks)
        directory = resources.console_log.parent
        listed = self._find(spec.name)
        if listed is None:
            path = self.vmadm.write_payload(directory / CREATE_PAYLOAD, payload_json(payload))
            self.vmadm.run("create", "-f", str(path), what=spec.name)
            return
        if listed.uuid != str(spec.uuid):
            raise Conflict(f"the vmadm VM with alias {spec.name} has UUID {listed.uuid}, not {spec.uuid}")
        changes = update_payload(self._get(spec.name), payload)
        if changes:
            path = self.vmadm.write_payload(directory / UPDATE_PAYLOAD, payload_json(changes))
            self.vmadm.run("update", listed.uuid, "-f", str(path), what=spec.name)

    def undefine(self, name: str) -> None:
        listed = self._find(name)
        if listed is not None:
            self.vmadm.run("delete", listed.uuid, what=name)

    # ---- snapshots (ZFS snapshots of the VM's datasets: crash-consistent, no memory state) ---------

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
        if quiesce:
            raise Unsupported(self.kind, Capability.SNAPSHOTS, "vmadm cannot quiesce a guest's filesystems")
        if not disk_only and self.state(spec.name) != DomainState.SHUTOFF:
            raise Unsupported(
                self.kind,
                Capability.SNAPSHOTS,
                f"vmadm snapshots hold no memory state: snapshot {spec.name} with --disk-only, or stop it first",
            )
        self.vmadm.run("create-snapshot", self._uuid(spec.name), snapshot, what=spec.name)

    def snapshot_names(self, name: str) -> list[str]:
        snapshots = sorted(self._get(name).get("snapshots", []), key=lambda s: s.get("created_timestamp", ""))
        return [str(s["name"]) for s in snapshots]

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        """vmadm stops a running VM, deletes every newer snapshot, rolls back and boots it again."""
        self.vmadm.run("rollback-snapshot", self._uuid(name), snapshot, what=name)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        if snapshot in self.snapshot_names(name):
            self.vmadm.run("delete-snapshot", self._uuid(name), snapshot, what=name)

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        raise Unsupported(self.kind, Capability.SNAPSHOTS, "vmadm snapshots are ZFS snapshots, not overlays")

    # ---- lifecycle -----------------------------------------------------------------------

    def create_paused(self, name: str) -> None:
        """vmadm has no paused state: the created, not yet booted VM (stopped) is the paused phase."""
        state = self.state(name)
        if state == DomainState.ABSENT:
            raise NotFound(f"vmadm has no VM with alias {name}")
        if state != DomainState.SHUTOFF:
            raise Conflict(f"{name} is {state.value}; a start must begin from a stopped vmadm VM")

    def pause(self, name: str) -> None:
        raise Unsupported(self.kind, Capability.PAUSE, "vmadm has no paused state")

    def resume(self, name: str) -> None:
        """Boots the VM; vmadm treats an already running one as success."""
        self.vmadm.run("start", self._uuid(name), what=name)

    def request_shutdown(self, name: str) -> None:
        """`vmadm stop -t` blocks until the guest is down, so it is left running: the engine waits with its own
        deadline and then forces with destroy. A refusal within the first moment is reported."""
        uuid = self._uuid(name)
        self._reap()
        process = self.vmadm.spawn("stop", uuid, "-t", str(self.stop_grace))
        try:
            process.wait(timeout=EARLY_FAILURE_SECONDS)
        except subprocess.TimeoutExpired:
            with self._stops_lock:
                self._stops[uuid] = process
            return
        _stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise failure("stop", name, process.returncode, stderr)

    def destroy(self, name: str) -> None:
        """`vmadm stop -F` (zoneadm halt); idempotent, as vmadm treats a VM that is not running as success."""
        listed = self._find(name)
        if listed is None:
            return
        with contextlib.suppress(NotFound):  # deleted between the lookup and the halt: nothing is running
            self.vmadm.run("stop", listed.uuid, "-F", what=name)
        self._reap(wait_for=listed.uuid)

    def _reap(self, wait_for: str | None = None) -> None:
        """Collect graceful stops that have ended; a forced stop ends the one of its VM."""
        with self._stops_lock:
            for uuid, process in list(self._stops.items()):
                if uuid == wait_for:
                    try:
                        process.wait(timeout=REAPED_STOP_WAIT)
                    except subprocess.TimeoutExpired:
                        continue
                if process.poll() is not None:
                    process.communicate()
                    del self._stops[uuid]

    def request_reboot(self, name: str) -> None:
        """bhyve: `stop -t <reboot_timeout>` then `start`, instead of vmadm reboot's fixed 10 s before the halt;
        it returns once the guest is up again. kvm: `vmadm reboot`."""
        uuid = self._uuid(name)
        if self.brand != "bhyve":
            self.vmadm.run("reboot", uuid, what=name)
            return
        seconds = int(self.reboot_timeout)
        log.info("graceful reboot as vmadm stop -t + start", extra={"vm": name, "timeout": seconds})
        self.vmadm.run("stop", uuid, "-t", str(seconds), what=name, timeout=seconds + REBOOT_MARGIN_SECONDS)
        self.vmadm.run("start", uuid, what=name)

    def reset(self, name: str) -> None:
        self.vmadm.run("reboot", self._uuid(name), "-F", what=name)

    def kill_process(self, name: str) -> bool:
        """Nothing beyond `stop -F`: it halts the zone, and with it every process the VM had."""
        return False

    # ---- state ---------------------------------------------------------------------------

    def state(self, name: str) -> DomainState:
        listed = self._find(name)
        return DomainState.ABSENT if listed is None else mapped(listed.state)

    def info(self, name: str) -> DomainInfo:
        return _info(self._get(name))

    def states(self) -> dict[str, DomainState]:
        return {row.alias: mapped(row.state) for row in self._list() if row.alias}

    def list_owned(self) -> list[DomainInfo]:
        """VMs carrying vmhost's record in internal_metadata; every other VM is not ours to touch."""
        return [_info(vm) for vm in self._lookup_all() if _is_owned(vm)]

    def domain_stats(self) -> list[DomainStats]:
        """vmadm reports no CPU time or device counters; vCPUs and RAM of the running VMs are what it has."""
        return [
            DomainStats(
                name=vm["alias"],
                state=DomainState.RUNNING,
                vcpus=int(vm.get("vcpus", 0)),
                memory_bytes=int(vm.get("ram", 0)) * MiB,
            )
            for vm in self._lookup_all()
            if _is_owned(vm) and mapped(vm.get("state", "")) == DomainState.RUNNING
        ]

    def recorded(self, name: str) -> Recorded | None:
        """The recorded spec, with the VNC password put back from vnc_password (the record keeps it masked)."""
        vm = self._get(name)
        metadata = vm.get("internal_metadata", {})
        if SPEC_KEY not in metadata:
            return None
        spec: dict[str, Any] = json.loads(metadata[SPEC_KEY])
        if isinstance(spec.get("graphics"), dict):
            spec["graphics"]["password"] = vm.get("vnc_password") or None
        return Recorded(spec=spec, owner=str(metadata.get(OWNER_KEY, "")))

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        """vmadm reports the addresses a payload assigned, not what the guest has."""
        return {}

    def interfaces(self, name: str) -> list[str]:
        """The zone's VNICs (net0, net1, ...) in guest order."""
        return [nic.get("interface", f"net{index}") for index, nic in enumerate(self._get(name).get("nics", []))]

    def open_console(self, name: str) -> ConsoleStream:
        return PtyConsole(self.vmadm.argv("console", self._uuid(name)))

    def graphics_ports(self, name: str) -> dict[str, int]:
        """vmadm's vnc_port: the payload's fixed port; 0 (picked at boot, not in `vmadm get`) is -1; -1 is off."""
        port = int(self._get(name).get("vnc_port", -1))
        return {} if port < 0 else {"vnc": port or -1}

    def reserve_pci(self, address: str) -> None:
        raise Unsupported(self.kind, Capability.PCI_PASSTHROUGH, f"{address}: bhyve passthrough is not rendered")

    def release_pci(self, address: str) -> None:
        raise Unsupported(self.kind, Capability.PCI_PASSTHROUGH, f"{address}: bhyve passthrough is not rendered")


def _is_owned(vm: dict[str, Any]) -> bool:
    return OWNER_KEY in vm.get("internal_metadata", {})


def _info(vm: dict[str, Any]) -> DomainInfo:
    state = mapped(vm.get("state", ""))
    return DomainInfo(
        name=vm.get("alias", ""),
        uuid=vm["uuid"],
        state=state,
        vcpus=int(vm.get("vcpus", 0)),
        memory_bytes=int(vm.get("ram", 0)) * MiB,
        pid=vm.get("pid") if state == DomainState.RUNNING else None,
    )
