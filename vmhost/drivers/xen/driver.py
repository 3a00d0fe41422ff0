"""XlDriver: the Driver protocol on Xen's `xl` command (Xen 4.17, run in dom0 as root).

xl keeps no definition of a stopped domain, so define writes the VM's xl.cfg (rendered by vmhost.render.xen)
into the VM's directory and a record under the driver's own state directory; a VM with a record and no
running domain is SHUTOFF. Every call runs `xl` with an argv list; xl's messages become vmhost errors.
"""

from pathlib import Path
from typing import Any

from vmhost.drivers import processes
from vmhost.drivers.base import ConsoleStream, DomainInfo, DomainState, HostInfo, Recorded, Resources
from vmhost.drivers.pty_console import PtyConsole
from vmhost.drivers.xen.records import Record, Records, write_private
from vmhost.drivers.xen.xl import Xl, XlDomain, parse_info, parse_list
from vmhost.errors import Conflict, HostResourceError, NotFound, VmhostError
from vmhost.render.xen import XenContext, problems, render_xl_cfg
from vmhost.spec import VMSpec
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.units import MiB

CONFIG_NAME = "xl.cfg"
DEAD = {DomainState.CRASHED_PRESERVED, DomainState.SHUTTING_DOWN}
"""A listed domain in these states holds no running guest; a new start clears the shell first."""


class XlDriver:
    kind = "xen"

    def __init__(self, command: str, state_dir: Path, sysfs: Path = Path("/sys")):
        """state_dir: where the driver keeps its records (e.g. <data_dir>/xen); sysfs: the host's /sys."""
        self.xl = Xl(command)
        self.command = command
        self.records = Records(state_dir)
        self.sysfs = sysfs

    # ---- host ------------------------------------------------------------------------------------

    def host_info(self) -> HostInfo:
        """From `xl info`: memory in MiB, CPUs, Xen version."""
        info = parse_info(self.xl.run("info", target="the host", action="query"))
        try:
            return HostInfo(
                hypervisor=f"Xen {info['xen_version']}",
                cpus=int(info["nr_cpus"]),
                memory_total=int(info["total_memory"]) * MiB,
                memory_available=int(info["free_memory"]) * MiB,
                accel="xen",
            )
        except (KeyError, ValueError) as exc:
            raise VmhostError("`xl info` did not report the host's CPUs and memory", str(exc)) from None

    def host_problems(self, spec: VMSpec) -> list[tuple[str, str]]:
        found = problems(spec)
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
        ctx = XenContext(disk_paths=resources.disk_paths, disk_formats=resources.disk_formats)
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

    def attach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise VmhostError(f"hot-plugging disk {target} is not supported on the xen driver; stop {spec.name} first")

    def detach_disk(self, spec: VMSpec, resources: Resources, target: str) -> None:
        raise VmhostError(f"hot-unplugging disk {target} is not supported on the xen driver; stop {spec.name} first")

    def recorded(self, name: str) -> Recorded | None:
        record = self.records.read(name)
        return None if record is None else Recorded(spec=record.spec, owner=record.owner)

    # ---- lifecycle -------------------------------------------------------------------------------

    def create_paused(self, name: str) -> None:
        """`xl create -p`: the domain is built with its vCPUs paused, for the activation steps.

        A crashed or shut-down shell of the same name is destroyed first (xl would refuse the name).
        """
        record = self._record(name)
        domain = self._domain(name)
        if domain is not None:
            if domain.state not in DEAD:
                raise Conflict(f"{name} is already running")
            self.destroy(name)
        if not record.config.is_file():
            raise NotFound(f"the xl config of {name} is missing ({record.config})")
        self.xl.run("create", "-p", str(record.config), target=name, action="start")

    def pause(self, name: str) -> None:
        self.xl.run("pause", name, target=name, action="pause")

    def resume(self, name: str) -> None:
        self.xl.run("unpause", name, target=name, action="resume")

    def request_shutdown(self, name: str) -> None:
        """Returns at once; the engine waits with its own deadline (xl shutdown -w has none).

        -F falls back to the ACPI power button for HVM guests without PV drivers.
        """
        self.xl.run("shutdown", "-F", name, target=name, action="shut down")

    def destroy(self, name: str) -> None:
        """Idempotent: a domain that is already gone is fine."""
        try:
            self.xl.run("destroy", name, target=name, action="destroy")
        except NotFound:
            return

    def request_reboot(self, name: str) -> None:
        self.xl.run("reboot", "-F", name, target=name, action="reboot")

    def reset(self, name: str) -> None:
        """The virtual reset button (xl trigger, HVM guests)."""
        self.xl.run("trigger", name, "reset", target=name, action="reset")

    # ---- state -----------------------------------------------------------------------------------

    def _list(self) -> dict[str, XlDomain]:
        """Every guest domain (not dom0) by name, from one `xl list -v`."""
        domains = parse_list(self.xl.run("list", "-v", target="domains", action="list"))
        return {domain.name: domain for domain in domains if domain.domid != 0}

    def _domain(self, name: str) -> XlDomain | None:
        return self._list().get(name)

    def _record(self, name: str) -> Record:
        record = self.records.read(name)
        if record is None:
            raise NotFound(f"no VM named {name} is defined for xl")
        return record

    def state(self, name: str) -> DomainState:
        domain = self._domain(name)
        if domain is not None:
            return domain.state
        return DomainState.SHUTOFF if self.records.read(name) is not None else DomainState.ABSENT

    def states(self) -> dict[str, DomainState]:
        """Running domains from xl, defined-but-stopped VMs from the records."""
        states = {name: DomainState.SHUTOFF for name in self.records.names()}
        states.update({name: domain.state for name, domain in self._list().items()})
        return states

    def info(self, name: str) -> DomainInfo:
        return self._info(name, self._list())

    def _info(self, name: str, domains: dict[str, XlDomain]) -> DomainInfo:
        domain = domains.get(name)
        if domain is None:
            return DomainInfo(name=name, uuid=self._record(name).uuid, state=DomainState.SHUTOFF)
        return DomainInfo(
            name=name,
            uuid=domain.uuid,
            state=domain.state,
            vcpus=domain.vcpus,
            memory_bytes=domain.memory_mib * MiB,
            cpu_time_ns=int(domain.cpu_seconds * 1e9),
            pid=_device_model_pid(domain.domid),
        )

    def list_owned(self) -> list[DomainInfo]:
        """Every VM this driver holds a record for: xl domains without one are not vmhost's."""
        domains = self._list()
        return [self._info(name, domains) for name in self.records.names()]

    def bulk_stats(self) -> list[dict[str, Any]]:
        """What `xl list` knows, under libvirt's bulk-stats names (CPU ns, memory KiB, online vCPUs)."""
        domains = self._list()
        return [
            {
                "name": name,
                "cpu.time": int(domains[name].cpu_seconds * 1e9),
                "balloon.current": domains[name].memory_mib * 1024,
                "vcpu.current": domains[name].vcpus,
            }
            for name in self.records.names()
            if name in domains
        ]

    # ---- processes, console, devices -------------------------------------------------------------

    def kill_process(self, name: str) -> bool:
        """SIGKILL the domain's QEMU device model (HVM); False when there is none (PVH) or it is gone."""
        domain = self._domain(name)
        pid = _device_model_pid(domain.domid) if domain else None
        return pid is not None and processes.sigkill(pid)

    def interfaces(self, name: str) -> list[str]:
        """The backend vifs of a created domain (libxl names them vif<domid>.<devid>), in guest order."""
        domain = self._domain(name)
        if domain is None:
            return []
        count = len(self._record(name).spec.get("nics", []))
        return [f"vif{domain.domid}.{devid}" for devid in range(count)]

    def open_console(self, name: str) -> ConsoleStream:
        if self._domain(name) is None:
            raise NotFound(f"Xen has no running domain named {name}")
        return PtyConsole([self.command, "console", name])

    def reserve_pci(self, address: str) -> None:
        """Bind the device to pciback so a domain can be given it."""
        self.xl.run("pci-assignable-add", address, target=address, action="make assignable")

    def release_pci(self, address: str) -> None:
        """-r rebinds the device to the host driver it had before."""
        self.xl.run("pci-assignable-remove", "-r", address, target=address, action="give back to the host")


def _device_model_pid(domid: int) -> int | None:
    """The QEMU libxl started for this domain: its command line carries `-xen-domid <domid>`."""
    needle = f"\0-xen-domid\0{domid}\0".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if needle in processes.cmdline(int(entry.name)):
            return int(entry.name)
    return None
