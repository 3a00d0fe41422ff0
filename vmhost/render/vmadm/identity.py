"""Identity, CPU, memory, firmware and platform: the top-level scalars of the payload."""

from collections.abc import Iterator
from typing import Any

from vmhost.render.vmadm.brands import Brand
from vmhost.spec import VMSpec
from vmhost.spec.units import MiB

KVM_CPU_TYPES = {"host-passthrough": "host", "qemu64": "qemu64"}
"""vmadm's cpu_type (kvm only) offers these two models; 'auto' leaves vmadm's default (qemu64)."""


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
    return payload


def identity_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    yield from _cpu_problems(spec, brand)
    yield from _memory_problems(spec)
    yield from _boot_problems(spec, brand)
    yield from _platform_problems(spec)


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
    if cpu.mode not in allowed:
        yield "cpu.mode", f"the {brand} brand accepts cpu.mode {', '.join(sorted(allowed))}; got {cpu.mode!r}"


def _memory_problems(spec: VMSpec) -> Iterator[tuple[str, str]]:
    memory = spec.memory
    if memory.max_size is not None or memory.slots is not None:
        yield "memory.max_size", "vmadm has no memory hotplug"
    if memory.hugepages:
        yield "memory.hugepages", "a vmadm payload cannot ask for hugepages"
    if memory.balloon_stats_period:
        yield "memory.balloon_stats_period", "vmadm VMs have no balloon statistics"
    if spec.numa:
        yield "numa", "a vmadm payload sets no guest NUMA cells"


def _boot_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    boot = spec.boot
    if brand == "kvm" and boot.firmware == "uefi":
        yield "boot.firmware", "the kvm brand boots BIOS only; use the bhyve brand for UEFI"
    if boot.kernel is not None:
        yield "boot.kernel", "vmadm VMs cannot boot a host kernel directly"
    if boot.machine is not None:
        yield "boot.machine", "vmadm chooses the machine type itself"
    if boot.menu:
        yield "boot.menu", "a vmadm payload cannot turn on the firmware boot menu"


def _platform_problems(spec: VMSpec) -> Iterator[tuple[str, str]]:
    features = spec.features
    for field in ("acpi", "apic", "pae"):
        if not getattr(features, field):
            yield f"features.{field}", f"vmadm VMs always have {field.upper()}"
    for field in ("hide_kvm", "hyperv"):
        if getattr(features, field):
            yield f"features.{field}", "a vmadm payload cannot set it"
    if spec.clock.offset != "utc" or spec.clock.timers:
        yield "clock", "a vmadm payload sets no clock offset or timers"
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
