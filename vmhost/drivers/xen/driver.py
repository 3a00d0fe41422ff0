"""XlDriver: the Driver protocol on Xen's `xl` command (Xen 4.17, run in dom0 as root).

xl keeps no definition of a stopped domain, so define writes the VM's xl.cfg (rendered by vmhost.render.xen)
into the VM's directory and a record under the driver's own state directory; a VM with a record and no
running domain is SHUTOFF. Every call runs `xl` with an argv list; xl's messages become vmhost errors.

What xl really does (tools/xl and tools/libs/light at 4.17), and what the driver does about it:
- An all-digit argument is a domid to xl, unchecked (libxl_domain_qualifier_to_domid): such names are refused
  at validation, and a VM recorded under one is addressed by the domid `xl list` gives its name.
- `xl shutdown`/`xl reboot` wait up to 60 s for the guest's acknowledgement and then fail: they run in the
  background, so the engine's own deadline and forced destroy apply.
- `xl pause`/`unpause`/`trigger` exit 0 whatever happened: the state is checked afterwards.
- A guest reboot is xl's monitor destroying the domain, sleeping 2 s and creating it again: while the monitor
  lives and no domain is listed, the VM is SHUTTING_DOWN, not off.
"""

import logging
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

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
    Recorded,
    Resources,
)
from vmhost.drivers.no_migration import NoMigration
from vmhost.drivers.no_snapshots import NoSnapshots
from vmhost.drivers.stop_to_change import StopToChange
from vmhost.drivers.xen import facts, host
from vmhost.drivers.xen.console import XlConsole
from vmhost.drivers.xen.records import Record, Records, write_private
from vmhost.drivers.xen.xl import Xl, XlDomain, XlTimeout, parse_info, parse_list, translate
from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, VmhostError
from vmhost.render.hooks import DocumentHook
from vmhost.render.xen import XenContext, domain_type, problems, render_xl_cfg
from vmhost.spec import VMSpec
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.smartos import foreign_problems
from vmhost.spec.units import MiB

CONFIG_NAME = "xl.cfg"
DEAD = {DomainState.CRASHED_PRESERVED, DomainState.SHUTTING_DOWN}
"""A listed domain in these states holds no running guest; a new start clears the shell first."""
EARLY_FAILURE_SECONDS = 0.5
"""How long a shutdown or reboot request is watched for an immediate refusal before it is left running."""
REQUEST_END_WAIT = 5.0
"""After a destroy, how long a pending shutdown request gets to see the domain gone (then it is killed)."""
DIGIT_NAME = "xl reads an all-digit argument as a domain id, so a Xen VM's name needs a non-digit character"
log = logging.getLogger("vmhost.xen")


class XlDriver(StopToChange, NoSnapshots, NoMigration):
    kind = "xen"
    migration_hint = "xl migrate runs over ssh between the dom0s, which vmhost does not set up"
    snapshot_hint = "xl has no snapshots; snapshot the disk images or volumes with the storage that holds them"
    capabilities = frozenset({Capability.PAUSE, Capability.REBOOT, Capability.CONSOLE, Capability.PCI_PASSTHROUGH})
    """No disk hot-plug: a disk change waits for the next start."""

    def __init__(
        self,
        command: str,
        state_dir: Path,
        sysfs: Path = Path("/sys"),
        xl_conf: Path = host.XL_CONF,
        render_hooks: tuple[DocumentHook, ...] = (),
    ):
        """state_dir: where the driver keeps its records (e.g. <data_dir>/xen); sysfs: the host's /sys;
        xl_conf: xl's global config (its autoballoon setting decides what memory a start may use);
        render_hooks: plugins' render_xl hooks, applied to every xl.cfg."""
        self.xl = Xl(command)
        self.render_hooks = render_hooks
        self.command = command
        self.records = Records(state_dir)
        self.sysfs = sysfs
        self.xl_conf = xl_conf
        self._requests: dict[str, subprocess.Popen[str]] = {}
        self._requests_lock = threading.Lock()

    # ---- host ------------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """From `xl info`: memory in MiB, CPUs, Xen version. With autoballoon, `xl create` takes what it needs
        from dom0 (down to libxl's minimum), so that memory counts as available too."""
        info = parse_info(self.xl.run("info", target="the host", action="query"))
        balloons = host.autoballoon(self.xl_conf, info.get("xen_commandline", ""))
        return facts.host_info(info, host.balloonable_mib(self._dom0_memory_mib()) if balloons else 0)

    def host_facts(self) -> HostFacts:
        return facts.host_facts(parse_info(self.xl.run("info", target="the host", action="query")))

    def _dom0_memory_mib(self) -> int:
        listed = parse_list(self.xl.run("list", "-v", target="domains", action="list"))
        return next((domain.memory_mib for domain in listed if domain.domid == 0), 0)

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        found = problems(spec) + list(foreign_problems(spec))
        found += [
            (f"disks.{i}.pci_address", "xl places disks itself") for i, d in enumerate(spec.disks) if d.pci_address
        ]
        if host.misread(spec.name):
            found.append(("name", DIGIT_NAME))
        for index, nic in enumerate(spec.nics):
            if nic.type == "bridge" and not (self.sysfs / "class/net" / nic.source / "bridge").is_dir():
                found.append((f"nics.{index}.source", f"bridge {nic.source} does not exist on this host"))
        for index, device in enumerate(spec.passthrough.pci):
            if not (self.sysfs / "bus/pci/devices" / device.address).exists():
                found.append((f"passthrough.pci.{index}.address", f"no PCI device {device.address} on this host"))
        return found

    # ---- definitions -----------------------------------------------------------------------------

    def define(self, spec: VMSpec, resources: Resources) -> None:
        """Write <vm dir>/xl.cfg and the record; a running domain keeps its config until its next start."""
        ctx = XenContext(
            disk_paths=resources.disk_paths,
            disk_formats=resources.disk_formats,
            hooks=self.render_hooks,
            seed_iso=resources.seed_iso,
        )
        try:
            text = render_xl_cfg(spec, ctx)
        except ValueError as exc:
            raise HostResourceError(f"cannot express {spec.name} as an xl domain", str(exc)) from None
        config = resources.console_log.parent / CONFIG_NAME
        config.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        write_private(config, text)
        stored = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
        self.records.write(Record(spec.name, str(spec.uuid), config, stored, resources.owner))

    def undefine(self, name: str) -> None:
        """Idempotent; a running domain is left alone (xl holds its own copy of the config)."""
        record = self.records.read(name)
        if record is not None:
            record.config.unlink(missing_ok=True)
            self.records.remove(name)

    def recorded(self, name: str) -> Recorded | None:
        record = self.records.read(name)
        return None if record is None else Recorded(spec=record.spec, owner=record.owner)

    # ---- lifecycle -------------------------------------------------------------------------------

    def create_paused(self, name: str) -> None:
        """`xl create -p`: the domain is built with its vCPUs paused, for the activation steps.

        A crashed or shut-down shell of the same name is destroyed first (xl would refuse the name). libxl
        allows the device model 60 s and each hotplug script 40 s; if xl is still not done at that bound it is
        killed, and the half-built domain it leaves is destroyed here (the engine's rollback only covers a
        create that returned).
        """
        record = self._record(name)
        domain = self._domain(name)
        if domain is not None:
            if domain.state not in DEAD:
                raise Conflict(f"{name} is already running")
            self.destroy(name)
        if not record.config.is_file():
            raise NotFound(f"the xl config of {name} is missing ({record.config})")
        limit = host.create_timeout(record.spec, self._hvm(record))
        try:
            self.xl.run("create", "-p", str(record.config), target=name, action="start", timeout=limit)
        except XlTimeout as exc:
            self.destroy(name)
            raise HypervisorError(f"{exc.message}; the half-built domain was destroyed") from None

    def pause(self, name: str) -> None:
        """xl pause exits 0 even when libxl failed, so the state must say paused afterwards."""
        done = self.xl.result("pause", self._address(name), target=name, action="pause")
        if self.state(name) != DomainState.PAUSED:
            raise HypervisorError(f"xl could not pause {name}", done.stderr.strip() or None)

    def resume(self, name: str) -> None:
        """xl unpause exits 0 even when libxl failed (e.g. the device model did not resume): check the state."""
        done = self.xl.result("unpause", self._address(name), target=name, action="resume")
        if self.state(name) == DomainState.PAUSED:
            raise HypervisorError(f"xl could not resume {name}: it is still paused", done.stderr.strip() or None)

    def request_shutdown(self, name: str) -> None:
        """`xl shutdown -F` (-F: the ACPI power button for HVM guests without PV drivers), left running: it
        waits up to 60 s for the guest to acknowledge and then fails. The engine waits with its own deadline
        and destroys at it, so a request that fails or is never acknowledged only means that."""
        try:
            self._request("shutdown", name)
        except NotFound:
            if self.state(name) != DomainState.SHUTTING_DOWN:
                raise  # else: between the halves of a guest reboot; the destroy at the deadline stops it
        except HypervisorError as exc:
            log.warning("shutdown request failed", extra={"vm": name, "error": exc.message, "detail": exc.detail})

    def request_reboot(self, name: str) -> None:
        """`xl reboot -F`, left running like a shutdown; a refusal (no PV drivers and no reset trigger on x86:
        "reboot failed") is reported."""
        self._request("reboot", name)

    def _request(self, command: str, name: str) -> None:
        target = self._address(name)
        self._reap()
        with self._requests_lock:
            if name in self._requests:
                return  # one request at a time: the guest has not answered the last one yet
        process = self.xl.spawn(command, "-F", target)
        try:
            process.wait(timeout=EARLY_FAILURE_SECONDS)
        except subprocess.TimeoutExpired:
            with self._requests_lock:
                self._requests[name] = process
            return
        _stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise translate(stderr.strip(), name, "shut down" if command == "shutdown" else "reboot")

    def _reap(self, ended: str | None = None) -> None:
        """Collect requests that have finished (a late failure is logged); the one of `ended`, whose domain is
        gone, gets a moment to notice and is killed if it does not."""
        with self._requests_lock:
            for name, process in list(self._requests.items()):
                if name == ended:
                    try:
                        process.wait(timeout=REQUEST_END_WAIT)
                    except subprocess.TimeoutExpired:
                        process.kill()
                if process.poll() is None:
                    continue
                _stdout, stderr = process.communicate()
                if process.returncode:
                    log.warning("xl request failed", extra={"vm": name, "detail": stderr.strip()})
                del self._requests[name]

    def destroy(self, name: str) -> None:
        """Idempotent: a domain that is already gone is fine. A guest in the middle of a reboot has no domain
        but a monitor about to create one again: the monitor is stopped, then whatever it made is destroyed."""
        self._destroy_listed(name)
        if self._stop_rebooting_monitor(name):
            self._destroy_listed(name)
        self._reap(ended=name)

    def _destroy_listed(self, name: str) -> None:
        try:
            self.xl.run("destroy", self._address(name), target=name, action="destroy")
        except NotFound:
            return

    def _stop_rebooting_monitor(self, name: str) -> bool:
        record = self.records.read(name)
        if record is None or self._domain(name) is not None:
            return False
        pid = host.monitors({str(record.config)}).get(str(record.config))
        return pid is not None and processes.sigkill(pid)

    def reset(self, name: str) -> None:
        """The reset button: x86 Xen has no reset trigger (`xl trigger NAME reset` does nothing and exits 0),
        so a forced reboot is destroy and create again, with the same config and a new domid."""
        if self._domain(name) is None:
            raise Conflict(f"{name} is not running")
        self.destroy(name)
        try:
            self.create_paused(name)
            self.resume(name)
        except VmhostError as exc:
            self.destroy(name)
            raise HypervisorError(
                f"forced reboot of {name}: it was destroyed but did not start again", exc.message
            ) from None

    # ---- state -----------------------------------------------------------------------------------

    def _list(self) -> dict[str, XlDomain]:
        """Every guest domain (not dom0) by name, from one `xl list -v`."""
        domains = parse_list(self.xl.run("list", "-v", target="domains", action="list"))
        return {domain.name: domain for domain in domains if domain.domid != 0}

    def _domain(self, name: str) -> XlDomain | None:
        return self._list().get(name)

    def _address(self, name: str) -> str:
        """What to hand xl for `name`: the name itself (xl looks names up exactly), except for a name xl would
        read as a domid; that one is addressed by the domid `xl list` shows for it, or NotFound."""
        if not host.misread(name):
            return name
        domain = self._domain(name)
        if domain is None:
            raise NotFound(f"Xen has no domain named {name}")
        return str(domain.domid)

    def _hvm(self, record: Record) -> bool:
        try:
            return domain_type(VMSpec.model_validate(record.spec)) == "hvm"
        except ValueError:
            return True

    def _record(self, name: str) -> Record:
        record = self.records.read(name)
        if record is None:
            raise NotFound(f"no VM named {name} is defined for xl")
        return record

    def state(self, name: str) -> DomainState:
        domain = self._domain(name)
        if domain is not None:
            return domain.state
        record = self.records.read(name)
        if record is None:
            return DomainState.ABSENT
        return self._unlisted({name: record})[name]

    def states(self) -> dict[str, DomainState]:
        """Running domains from xl, defined-but-stopped VMs from the records (one /proc scan for them all)."""
        domains = self._list()
        records = {name: self.records.read(name) for name in self.records.names() if name not in domains}
        states = self._unlisted({name: record for name, record in records.items() if record is not None})
        states.update({name: domain.state for name, domain in domains.items()})
        return states

    @staticmethod
    def _unlisted(records: dict[str, Record]) -> dict[str, DomainState]:
        """A recorded VM without a domain is off, unless xl's monitor for it still runs: then it is between
        the destroy and the re-create of a guest reboot (xl_vmcontrol.c create_domain), shutting down."""
        alive = host.monitors({str(record.config) for record in records.values()})
        return {
            name: DomainState.SHUTTING_DOWN if str(record.config) in alive else DomainState.SHUTOFF
            for name, record in records.items()
        }

    def info(self, name: str) -> DomainInfo:
        return self._info(name, self._list(), self.states)

    def _info(
        self, name: str, domains: dict[str, XlDomain], states: Callable[[], dict[str, DomainState]]
    ) -> DomainInfo:
        """`states` gives the state of a VM without a domain (off, or between the halves of a reboot)."""
        domain = domains.get(name)
        if domain is None:
            return DomainInfo(name=name, uuid=self._record(name).uuid, state=states().get(name, DomainState.SHUTOFF))
        return DomainInfo(
            name=name,
            uuid=domain.uuid,
            state=domain.state,
            vcpus=domain.vcpus,
            memory_bytes=domain.memory_mib * MiB,
            cpu_time_ns=int(domain.cpu_seconds * 1e9),
            pid=host.device_model_pid(domain.domid),
        )

    def list_owned(self) -> list[DomainInfo]:
        """Every VM this driver holds a record for: xl domains without one are not vmhost's."""
        domains = self._list()
        states = self.states()
        return [self._info(name, domains, lambda: states) for name in self.records.names()]

    def domain_stats(self) -> list[DomainStats]:
        return facts.domain_stats(self._list(), self.records.names())

    # ---- processes, console, devices -------------------------------------------------------------

    def kill_process(self, name: str) -> bool:
        """SIGKILL the domain's QEMU device model (HVM); False when there is none (PVH) or it is gone."""
        domain = self._domain(name)
        pid = host.device_model_pid(domain.domid) if domain else None
        return pid is not None and processes.sigkill(pid)

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        """xl has no guest agent or lease query."""
        return {}

    def interfaces(self, name: str) -> list[str]:
        """The host devices of a created domain's NICs, in guest order: libxl names the backend vif
        vif<domid>.<devid> (libxl_nic.c libxl__device_nic_devname) and vif-bridge renames it to the NIC's tap
        name (vifname=) when one is set (vif-common.sh rename_vif); an HVM NIC also has QEMU's tap, the same
        name with "-emu" (libxl_internal.h TAP_DEVICE_SUFFIX), right after it."""
        domain = self._domain(name)
        if domain is None:
            return []
        record = self._record(name)
        hvm = self._hvm(record)
        names = []
        for devid, nic in enumerate(record.spec.get("nics", [])):
            vif = nic.get("tap") or f"vif{domain.domid}.{devid}"
            names += [vif, f"{vif}-emu"] if hvm else [vif]
        return names

    def open_console(self, name: str) -> ConsoleStream:
        """A second client is refused by xenconsole's per-domid lock: that is a Conflict ("busy")."""
        if self._domain(name) is None:
            raise NotFound(f"Xen has no running domain named {name}")
        return XlConsole([self.command, "console", self._address(name)], name)

    def graphics_ports(self, name: str) -> dict[str, int]:
        """The port the spec fixed; -1 for a VNC display xl picked itself (vncunused), which xl does not report."""
        record = self._record(name)
        graphics = record.spec.get("graphics")
        if not isinstance(graphics, dict) or not self._hvm(record):
            return {}
        return {str(graphics.get("type", "vnc")): int(graphics.get("port") or -1)}

    def reserve_pci(self, address: str) -> None:
        """Bind the device to pciback so a domain can be given it."""
        self.xl.run("pci-assignable-add", address, target=address, action="make assignable")

    def release_pci(self, address: str) -> None:
        """-r rebinds the device to the host driver it had before."""
        self.xl.run("pci-assignable-remove", "-r", address, target=address, action="give back to the host")
