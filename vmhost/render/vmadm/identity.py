"""Identity, CPU, memory, firmware and platform: the top-level scalars of the payload."""

from collections.abc import Iterator, Sequence
from typing import Any

from vmhost.render.vmadm.brands import Brand
from vmhost.spec import VMSpec
from vmhost.spec.units import MiB

BOOT_LETTERS = {"hd": "c", "cdrom": "d", "network": "n"}
KVM_CPU_TYPES = {"host-passthrough": "host", "qemu64": "qemu64", "default": "qemu64"}
"""vmadm's cpu_type (kvm only) offers two models, host and qemu64; 'auto' leaves vmadm's default (qemu64), 'default'
asks for the emulator's default model (qemu64) by name."""


def render_identity(spec: VMSpec, brand: Brand) -> dict[str, Any]:
    """autoboot is always false: vmhost starts the VM itself, after its activation steps."""
    payload: dict[str, Any] = {
        "alias": spec.name,
        "brand": brand,
        "uuid": str(spec.uuid),
        "autoboot": False,
        "ram": spec.memory.size // MiB,
        "vcpus": spec.cpu.vcpus,
    }
    if spec.cpu.shares is not None:
        payload["cpu_shares"] = spec.cpu.shares
    if brand == "kvm" and spec.cpu.mode in KVM_CPU_TYPES:
        payload["cpu_type"] = KVM_CPU_TYPES[spec.cpu.mode]
    if brand == "bhyve":
        payload["bootrom"] = spec.boot.firmware
    payload.update(_smartos(spec))
    return payload


def _smartos(spec: VMSpec) -> dict[str, Any]:
    """The spec's SmartOS-only settings, under their vmadm names."""
    block = spec.smartos
    if block is None:
        return {}
    payload: dict[str, Any] = {}
    if block.tags:
        payload["tags"] = dict(block.tags)
    if block.flexible_disk_size is not None:
        payload["flexible_disk_size"] = block.flexible_disk_size
    if block.pci_devices:
        # no model: proptable has no pci_devices.*.model (vmadm would drop it as a bad property); passthru is all
        payload["pci_devices"] = [device.model_dump(exclude={"model"}) for device in block.pci_devices]
    return payload


def boot_string(spec: VMSpec, boots_from_cdrom: bool) -> str | None:
    """kvm's boot string for qemu: boot.order and the smartos block's once= as drive letters; else order=dc when
    the boot flag is on a CD-ROM (qemu's default, order=cd, would try the disk first)."""
    once = spec.smartos.boot_once if spec.smartos is not None else []
    parts = [f"order={_letters(spec.boot.order)}"] if spec.boot.order else []
    if not parts and boots_from_cdrom:
        parts = ["order=dc"]
    parts += [f"once={_letters(once)}"] if once else []
    return ",".join(parts) or None


def _letters(devices: Sequence[str]) -> str:
    return "".join(BOOT_LETTERS[device] for device in devices)


def identity_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    yield from _cpu_problems(spec, brand)
    yield from _memory_problems(spec)
    yield from _boot_problems(spec, brand)
    yield from _platform_problems(spec, brand)


def _cpu_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    cpu = spec.cpu
    if spec.accel == "tcg":
        yield "accel", "SmartOS runs VMs with hardware virtualisation only (bhyve or kvm), not tcg"
    if cpu.max_vcpus is not None and cpu.max_vcpus != cpu.vcpus:
        yield "cpu.max_vcpus", "vmadm has no vCPU hotplug"
    if cpu.topology is not None:
        yield "cpu.topology", "a vmadm payload sets no CPU topology"
    if cpu.pinning:
        yield "cpu.pinning", "a vmadm payload cannot pin vCPUs"
    allowed = {"auto", *KVM_CPU_TYPES} if brand == "kvm" else {"auto"}
    if brand == "bhyve" and cpu.mode == "default":
        yield "cpu.mode", "bhyve shows the guest the host's CPU; it has no emulator default model (use auto)"
    elif cpu.mode not in allowed:
        yield "cpu.mode", f"the {brand} brand accepts cpu.mode {', '.join(sorted(allowed))}; got {cpu.mode!r}"
    if cpu.features:
        yield "cpu.features", "a vmadm payload sets no CPU flags"
    if cpu.emulator_pinning is not None:
        yield "cpu.emulator_pinning", "a vmadm payload cannot pin the hypervisor's own threads"
    if spec.iothreads.count:
        yield "iothreads", "vmadm VMs have no IOThreads"


def _memory_problems(spec: VMSpec) -> Iterator[tuple[str, str]]:
    memory = spec.memory
    if memory.max_size is not None or memory.slots is not None:
        yield "memory.max_size", "vmadm has no memory hotplug"
    if memory.hugepages:
        yield "memory.hugepages", "a vmadm payload cannot ask for hugepages"
    if memory.balloon_stats_period:
        yield "memory.balloon_stats_period", "vmadm VMs have no balloon statistics"
    if memory.access == "shared":
        yield "memory.access", "a vmadm payload cannot share guest memory with the host (no vhost-user devices)"
    if spec.numa:
        yield "numa", "a vmadm payload sets no guest NUMA cells"


def _boot_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    boot = spec.boot
    block = spec.smartos
    if brand == "bhyve" and block is not None and block.boot_once:
        yield "smartos.boot_once", "the bhyve brand has no one-time boot device (kvm's boot once=)"
    if brand == "kvm" and block is not None and (block.flexible_disk_size is not None or block.pci_devices):
        yield "smartos", "flexible_disk_size and pci_devices are bhyve's; the kvm brand takes neither"
    if brand == "kvm" and boot.firmware == "uefi":
        yield "boot.firmware", "the kvm brand boots BIOS only; use the bhyve brand for UEFI"
    if boot.kernel is not None:
        yield "boot.kernel", "vmadm VMs cannot boot a host kernel directly"
    if boot.machine is not None:
        yield "boot.machine", "vmadm chooses the machine type itself"
    if boot.menu:
        yield "boot.menu", "a vmadm payload cannot turn on the firmware boot menu"
    if boot.menu_timeout is not None:
        yield "boot.menu_timeout", "a vmadm payload has no firmware boot menu to time"


def _platform_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    yield from _feature_problems(spec, brand)
    if spec.clock.offset != "utc" or spec.clock.timers:
        yield "clock", "a vmadm payload sets no clock offset or timers"
    if not spec.smbios.is_empty():
        yield "smbios", "vmadm writes the SMBIOS tables itself; a payload sets no serial, asset tag or OEM strings"
    lifecycle = spec.lifecycle
    if (lifecycle.on_poweroff, lifecycle.on_reboot, lifecycle.on_crash) != ("destroy", "restart", "destroy"):
        yield "lifecycle", "vmadm VMs stop on poweroff and crash and restart on reboot; nothing else"
    if spec.console.log_file is not None:
        yield "console.log_file", "vmadm keeps no serial console log"
    if spec.passthrough.pci:
        yield "passthrough.pci", "vmhost does not render bhyve pci_devices (they need /devices paths and slots)"
    if spec.passthrough.usb:
        yield "passthrough.usb", "vmadm VMs take no USB devices"
    if spec.usb.controller is not None:
        yield "usb.controller", "vmadm chooses the USB controller itself"


def _feature_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    """bhyve has no VMware port, so vmport false is already so there (IGNORED_FIELDS)."""
    features = spec.features
    for field in ("acpi", "apic", "pae"):
        if not getattr(features, field):
            yield f"features.{field}", f"vmadm VMs always have {field.upper()}"
    for field in ("hide_kvm", "hyperv", "hyperv_synic"):
        if getattr(features, field):
            yield f"features.{field}", "a vmadm payload cannot set it"
    for field in ("hyperv_vendor_id", "suspend_to_mem", "suspend_to_disk"):
        if getattr(features, field) is not None:
            yield f"features.{field}", "a vmadm payload cannot set it"
    if brand == "kvm" and not features.vmport:
        yield "features.vmport", "the kvm brand's QEMU keeps its VMware port; a vmadm payload cannot turn it off"
