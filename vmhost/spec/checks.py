"""Cross-field rules that no single block can check alone; each returns every problem it finds."""

import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

from vmhost.spec import guest_net
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.cloud_init import exclusive_problems
from vmhost.spec.cpu import parse_cpuset
from vmhost.spec.disk import BlockDisk, Disk, FileDisk, ImageDisk, NewDisk, OverlayDisk
from vmhost.spec.errors import Problem
from vmhost.spec.nic import Nic
from vmhost.spec.vm import LABEL_KEY_PATTERN, VMSpec

BUS_PREFIX = {"virtio": "vd", "virtio-scsi": "sd", "scsi": "sd", "sata": "sd", "ide": "hd"}
WWN_BUSES = {"scsi", "virtio-scsi", "ide"}
IDE_DEVICES_PER_MACHINE = 4
RESERVED_PCI_SLOTS = (0x00, 0x01, 0x1F)


def max_vcpus(spec: VMSpec) -> int:
    return spec.cpu.max_vcpus or spec.cpu.vcpus


def _cpu(spec: VMSpec) -> Iterator[Problem]:
    cpu = spec.cpu
    if cpu.max_vcpus is not None and cpu.max_vcpus < cpu.vcpus:
        yield Problem("cpu.max_vcpus", f"must be at least vcpus ({cpu.vcpus}), got {cpu.max_vcpus}")
    if cpu.topology and cpu.topology.total != max_vcpus(spec):
        t = cpu.topology
        yield Problem(
            "cpu.topology",
            f"sockets*cores*threads = {t.sockets}*{t.cores}*{t.threads} = {t.total} "
            f"does not match {'max_vcpus' if cpu.max_vcpus else 'vcpus'} ({max_vcpus(spec)})",
        )
    for index, pin in enumerate(cpu.pinning):
        if pin.vcpu >= max_vcpus(spec):
            yield Problem(f"cpu.pinning.{index}.vcpu", f"vCPU {pin.vcpu} does not exist (VM has {max_vcpus(spec)})")
    yield from _duplicates("cpu.pinning.{}.vcpu", [p.vcpu for p in cpu.pinning], "vCPU pinned twice")


def _memory(spec: VMSpec) -> Iterator[Problem]:
    mem = spec.memory
    if mem.max_size is not None:
        if mem.max_size < mem.size:
            yield Problem("memory.max_size", "must be at least memory.size")
        if mem.slots is None:
            yield Problem("memory.slots", "is required when memory.max_size is set (memory hotplug)")
    elif mem.slots is not None:
        yield Problem("memory.max_size", "is required when memory.slots is set (memory hotplug)")
    if mem.balloon_stats_period and not mem.balloon:
        yield Problem("memory.balloon_stats_period", "needs memory.balloon to be true")


def _numa(spec: VMSpec) -> Iterator[Problem]:
    if not spec.numa:
        return
    seen: set[int] = set()
    for index, cell in enumerate(spec.numa):
        cpus = parse_cpuset(cell.cpus)
        if cpus & seen:
            yield Problem(f"numa.{index}.cpus", f"vCPUs {sorted(cpus & seen)} are already in another cell")
        seen |= cpus
    expected = set(range(max_vcpus(spec)))
    if seen != expected:
        yield Problem("numa", f"cells must cover vCPUs 0-{max_vcpus(spec) - 1} exactly; they cover {sorted(seen)}")
    total = sum(cell.memory for cell in spec.numa)
    if total != spec.memory.size:
        yield Problem("numa", f"cell memory adds up to {total} bytes, not memory.size ({spec.memory.size})")


def _devices(spec: VMSpec) -> Iterator[Problem]:
    for index, disk in enumerate(spec.disks):
        path = f"disks.{index}"
        if disk.target and not disk.target.startswith(BUS_PREFIX[disk.bus]):
            yield Problem(f"{path}.target", f"bus {disk.bus} needs a name starting with {BUS_PREFIX[disk.bus]!r}")
        if disk.wwn and disk.bus not in WWN_BUSES:
            yield Problem(f"{path}.wwn", f"only scsi, virtio-scsi and ide disks carry a wwn, not {disk.bus}")
        if disk.bus == "ide" and spec.boot.machine and "q35" in spec.boot.machine:
            yield Problem(f"{path}.bus", "ide is not available on q35 machines; use sata")
        if disk.readonly and disk.bus in ("sata", "ide"):
            yield Problem(f"{path}.readonly", f"QEMU cannot make {disk.bus} disks read-only; use virtio or scsi")
        if disk.shareable and _disk_format(disk) not in ("raw", "auto"):
            yield Problem(f"{path}.shareable", "only raw images can be shared between VMs")
        yield from _backing(path, disk)
        yield from _io_limits(path, disk.io_limits)
        yield from _iothread(spec, path, disk)
        yield from _pci_address(path, disk)
    yield from _duplicates("disks.{}.pci_address", [d.pci_address for d in spec.disks], "PCI address used twice")
    for index, cdrom in enumerate(spec.cdroms):
        if cdrom.target and not cdrom.target.startswith(BUS_PREFIX[cdrom.bus]):
            yield Problem(
                f"cdroms.{index}.target", f"bus {cdrom.bus} needs a name starting with {BUS_PREFIX[cdrom.bus]!r}"
            )
        if cdrom.bus == "ide" and spec.boot.machine and "q35" in spec.boot.machine:
            yield Problem(f"cdroms.{index}.bus", "ide is not available on q35 machines; use sata")
    drives: list[Disk | Cdrom] = [*spec.disks, *spec.cdroms]
    ide = [d for d in drives if d.bus == "ide"]
    if len(ide) > IDE_DEVICES_PER_MACHINE:
        yield Problem("disks", f"{len(ide)} ide disks and cdroms; the one IDE controller holds at most 4")
    targets = [(f"disks.{i}.target", d.target) for i, d in enumerate(spec.disks)]
    targets += [(f"cdroms.{i}.target", c.target) for i, c in enumerate(spec.cdroms)]
    counts = Counter(t for _, t in targets if t)
    for path, target in targets:
        if target and counts[target] > 1:
            yield Problem(path, f"target {target!r} is used by more than one disk or cdrom")


def _pci_address(path: str, disk: Disk) -> Iterator[Problem]:
    """Only a virtio disk is a PCI device of its own; slots 0, 1 and 31 hold the host, ISA and LPC bridges."""
    if disk.pci_address is None:
        return
    if disk.bus != "virtio":
        yield Problem(f"{path}.pci_address", f"only virtio disks are PCI devices themselves, not {disk.bus} ones")
    if int(disk.pci_address[8:10], 16) in RESERVED_PCI_SLOTS:
        yield Problem(f"{path}.pci_address", "slots 00, 01 and 1f hold the machine's host, ISA and LPC bridges")


def _backing(path: str, disk: Disk) -> Iterator[Problem]:
    """A recorded backing chain must fit its image: raw images have none, an overlay's starts with its base."""
    source = disk.source
    if isinstance(source, FileDisk) and source.format == "raw" and source.backing:
        yield Problem(f"{path}.source.backing", "a raw image has no backing chain")
    if (
        isinstance(source, OverlayDisk)
        and source.backing is not None
        and [i.path for i in source.backing[:1]] != [source.base]
    ):
        yield Problem(f"{path}.source.backing", f"must start with the base image {source.base}")


def _iothread(spec: VMSpec, path: str, disk: Disk) -> Iterator[Problem]:
    """IOThreads serve virtio-blk disks and virtio-scsi controllers only, and must exist; a controller is run by
    one IOThread (or none), so the disks on it agree."""
    if disk.controller is not None:
        if disk.bus != "virtio-scsi":
            yield Problem(f"{path}.controller", f"only virtio-scsi disks choose their controller, not {disk.bus}")
        others = {d.iothread for d in spec.disks if d.bus == "virtio-scsi" and d.controller == disk.controller}
        if len(others) > 1:
            yield Problem(f"{path}.controller", f"the disks on controller {disk.controller} name different IOThreads")
    if disk.iothread is None:
        return
    if disk.bus not in ("virtio", "virtio-scsi"):
        yield Problem(f"{path}.iothread", f"only virtio and virtio-scsi disks run in an IOThread, not {disk.bus}")
    elif disk.iothread not in spec.iothreads.ids:
        yield Problem(f"{path}.iothread", f"IOThread {disk.iothread} is not one of iothreads ({spec.iothreads.ids})")


def _io_limits(path: str, limits: object) -> Iterator[Problem]:
    if limits is None:
        return
    for kind in ("bytes_sec", "iops_sec"):
        if getattr(limits, f"total_{kind}") and (getattr(limits, f"read_{kind}") or getattr(limits, f"write_{kind}")):
            yield Problem(f"{path}.io_limits.total_{kind}", f"cannot be combined with read_{kind}/write_{kind}")


def _boot(spec: VMSpec) -> Iterator[Problem]:
    orders = [(f"disks.{i}.boot_order", d.boot_order) for i, d in enumerate(spec.disks)]
    orders += [(f"cdroms.{i}.boot_order", c.boot_order) for i, c in enumerate(spec.cdroms)]
    orders += [(f"nics.{i}.boot_order", n.boot_order) for i, n in enumerate(spec.nics)]
    given = [(path, order) for path, order in orders if order is not None]
    if given and spec.boot.order:
        yield Problem("boot.order", "cannot be combined with per-device boot_order; use one or the other")
    counts = Counter(order for _, order in given)
    for path, order in given:
        if counts[order] > 1:
            yield Problem(path, f"boot order {order} is given to more than one device")
    yield from _duplicates("boot.order.{}", list(spec.boot.order), "device class listed twice")


def _nics(spec: VMSpec) -> Iterator[Problem]:
    for index, nic in enumerate(spec.nics):
        if nic.queues and nic.model != "virtio":
            yield Problem(f"nics.{index}.queues", "multiqueue needs model virtio")
        if nic.type == "direct" and nic.tap:
            yield Problem(f"nics.{index}.tap", "direct (macvtap) NICs are named by the host, not by tap")
        if nic.type == "direct" and nic.mtu:
            yield Problem(f"nics.{index}.mtu", "direct (macvtap) NICs take the MTU of their host NIC")
        if nic.type == "direct" and nic.allowed_ips:
            yield Problem(f"nics.{index}.allowed_ips", "libvirt cannot filter direct (macvtap) NICs")
        yield from _vf_nic(index, nic)
    yield from _duplicates("nics.{}.mac", [n.mac for n in spec.nics], "MAC address used twice")
    yield from _duplicates("nics.{}.tap", [n.tap for n in spec.nics], "tap name used twice")


VF_NIC_UNSET = ("model", "tap", "mtu", "bandwidth", "allowed_ips", "queues")


def _vf_nic(index: int, nic: Nic) -> Iterator[Problem]:
    """A VF is the guest's own hardware: no emulated model, no host tap to name, shape or filter."""
    if nic.type != "hostdev":
        if nic.vlan is not None:
            yield Problem(f"nics.{index}.vlan", "only hostdev (SR-IOV VF) NICs take a vlan")
        return
    for name in VF_NIC_UNSET:
        if name in nic.model_fields_set and getattr(nic, name) not in (None, []):
            yield Problem(f"nics.{index}.{name}", "a hostdev (SR-IOV VF) NIC has none")


def _graphics(spec: VMSpec) -> Iterator[Problem]:
    graphics = spec.graphics
    if graphics and graphics.sound and graphics.type != "spice":
        yield Problem("graphics.sound", "sound is only carried over SPICE")
    if graphics and graphics.type == "vnc" and graphics.password and len(graphics.password.get_secret_value()) > 8:
        yield Problem("graphics.password", "VNC passwords are at most 8 characters")
    if spec.usb.redirection and not (graphics and graphics.type == "spice"):
        yield Problem("usb.redirection", "USB redirection needs SPICE graphics")
    if spec.usb.controller == "none" and (spec.passthrough.usb or spec.usb.redirection):
        yield Problem("usb.controller", "USB passthrough and redirection need a USB controller")
    if spec.usb.controller == "none" and graphics and graphics.tablet:
        yield Problem("graphics.tablet", "a USB tablet needs a USB controller")


def _passthrough(spec: VMSpec) -> Iterator[Problem]:
    usb = [(d.bus, d.device, d.vendor, d.product) for d in spec.passthrough.usb]
    yield from _duplicates("passthrough.usb.{}", usb, "USB device given twice")
    yield from _duplicates(
        "passthrough.pci.{}.address", [d.address for d in spec.passthrough.pci], "PCI device given twice"
    )


def _platform(spec: VMSpec) -> Iterator[Problem]:
    if spec.boot.firmware == "uefi" and not spec.features.acpi:
        yield Problem("features.acpi", "UEFI firmware needs ACPI")
    if spec.features.hyperv_synic and not any(t.name == "hypervclock" and t.present for t in spec.clock.timers):
        yield Problem("features.hyperv_synic", "the Hyper-V timers need a hypervclock timer in clock.timers")
    if spec.lifecycle.on_poweroff == "restart" and spec.lifecycle.on_reboot == "destroy":
        yield Problem("lifecycle.on_reboot", "cannot destroy on reboot while restarting on poweroff")


def _labels(spec: VMSpec) -> Iterator[Problem]:
    for key in spec.labels:
        if not re.match(LABEL_KEY_PATTERN, key):
            yield Problem(f"labels.{key}", "label keys are letters, digits, '-', '_', '.' (≤63 chars)")


def _guest_network(spec: VMSpec) -> Iterator[Problem]:
    """What the guest is told: each interface's rules, addresses unique across all, raw documents exclusive."""
    owners: list[tuple[str, guest_net.GuestNetwork]] = [(f"nics.{i}", nic) for i, nic in enumerate(spec.nics)]
    if spec.container is not None:
        owners.append(("container.network", spec.container.network))
        yield from guest_net.container_problems(spec.container.network, spec.container.network.mode)
    yield from guest_net.guest_problems(owners)
    if spec.cloud_init is not None:
        yield from exclusive_problems(spec.cloud_init, any(nic.configures_guest() for nic in spec.nics))


VM_ONLY_BLOCKS = ("disks", "cdroms", "nics", "numa", "graphics", "cloud_init")


def _kind(spec: VMSpec) -> Iterator[Problem]:
    """A container spec carries a container block and none of the VM's devices; a VM spec no container block."""
    if spec.kind == "vm":
        if spec.container is not None:
            yield Problem("container", "is only for kind container")
        return
    if spec.container is None:
        yield Problem("container", "is required for kind container")
    for block in VM_ONLY_BLOCKS:
        if getattr(spec, block):
            yield Problem(block, "a container has none (VMs only)")
    if spec.passthrough.pci or spec.passthrough.usb:
        yield Problem("passthrough", "a container has no device passthrough (VMs only)")
    if spec.boot.kernel is not None:
        yield Problem("boot.kernel", "a container boots no kernel (VMs only)")
    yield from _container_limits(spec)


def _container_limits(spec: VMSpec) -> Iterator[Problem]:
    """memory.size and cpu.vcpus/shares become cgroup limits; the VM-only knobs of those blocks have no meaning."""
    if spec.memory.max_size is not None or spec.memory.slots is not None:
        yield Problem("memory.max_size", "containers have no memory hotplug")
    if spec.memory.hugepages:
        yield Problem("memory.hugepages", "is for VMs only")
    cpu = spec.cpu
    for field, value in (("max_vcpus", cpu.max_vcpus), ("topology", cpu.topology), ("pinning", cpu.pinning)):
        if value:
            yield Problem(f"cpu.{field}", "is for VMs only (a container's CPU limit is cpu.vcpus)")
    if cpu.mode != "auto":
        yield Problem("cpu.mode", "is for VMs only")


def _duplicates(path_template: str, values: Sequence[object], what: str) -> Iterator[Problem]:
    counts = Counter(v for v in values if v is not None)
    for index, value in enumerate(values):
        if value is not None and counts[value] > 1:
            yield Problem(path_template.format(index), f"{what}: {value}")


RULES: list[Callable[[VMSpec], Iterator[Problem]]] = [
    _cpu,
    _memory,
    _numa,
    _devices,
    _boot,
    _nics,
    _graphics,
    _passthrough,
    _platform,
    _labels,
    _kind,
    _guest_network,
]


def cross_check(spec: VMSpec) -> list[Problem]:
    return sorted(problem for rule in RULES for problem in rule(spec))


def _disk_format(disk: Disk) -> str:
    source = disk.source
    if isinstance(source, OverlayDisk | ImageDisk):
        return "qcow2"
    if isinstance(source, NewDisk | FileDisk | BlockDisk):
        return source.format
    return "raw"
