"""Firmware and boot, platform features, clock, and what to do on guest power events."""

from typing import Literal

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub, yes_no
from vmhost.spec import VMSpec
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.disk import Disk
from vmhost.spec.nic import Nic

HYPERV_SPINLOCK_RETRIES = 8191


def os_element(spec: VMSpec) -> etree._Element:
    boot = spec.boot
    os = element("os", firmware="efi" if boot.firmware == "uefi" else None)
    sub(os, "type", "hvm", arch="x86_64", machine=boot.machine)
    if boot.kernel:
        sub(os, "kernel", str(boot.kernel.kernel))
        if boot.kernel.initrd:
            sub(os, "initrd", str(boot.kernel.initrd))
        if boot.kernel.cmdline:
            sub(os, "cmdline", boot.kernel.cmdline)
    for device in _boot_devices(spec):
        sub(os, "boot", dev=device)
    if boot.menu:
        sub(os, "bootmenu", enable="yes", timeout=boot.menu_timeout)
    if not spec.smbios.is_empty():
        sub(os, "smbios", mode="sysinfo")
    return os


def _boot_devices(spec: VMSpec) -> list[str]:
    """Device classes for <os><boot>; a VM that says nothing about booting boots from its first disk.

    Per-device <boot order> and <os><boot> exclude each other, so nothing is added when devices carry an order.
    """
    if spec.boot.order:
        return list(spec.boot.order)
    devices: list[Disk | Cdrom | Nic] = [*spec.disks, *spec.cdroms, *spec.nics]
    if spec.boot.kernel or any(device.boot_order is not None for device in devices):
        return []
    return ["hd"]


def features_element(spec: VMSpec, accel: Literal["kvm", "tcg"]) -> etree._Element | None:
    """None when every feature is off: an empty <features> says nothing."""
    features = spec.features
    node = element("features")
    for name in ("acpi", "apic", "pae"):
        if getattr(features, name):
            sub(node, name)
    if features.hyperv:
        hyperv = sub(node, "hyperv", mode="custom")
        sub(hyperv, "relaxed", state="on")
        sub(hyperv, "vapic", state="on")
        if features.hyperv_synic and accel == "kvm":
            for name in ("vpindex", "synic", "stimer"):  # in this order: each needs the one before
                sub(hyperv, name, state="on")
        sub(hyperv, "spinlocks", state="on", retries=HYPERV_SPINLOCK_RETRIES)
        if features.hyperv_vendor_id:
            sub(hyperv, "vendor_id", state="on", value=features.hyperv_vendor_id)
    if features.hide_kvm and accel == "kvm":
        sub(sub(node, "kvm"), "hidden", state="on")
    if not features.vmport:
        sub(node, "vmport", state="off")
    return node if len(node) else None


def pm_element(spec: VMSpec) -> etree._Element | None:
    """ACPI S3/S4 as the spec asks; None when it leaves both to the hypervisor."""
    features = spec.features
    if features.suspend_to_mem is None and features.suspend_to_disk is None:
        return None
    pm = element("pm")
    if features.suspend_to_mem is not None:
        sub(pm, "suspend-to-mem", enabled=yes_no(features.suspend_to_mem))
    if features.suspend_to_disk is not None:
        sub(pm, "suspend-to-disk", enabled=yes_no(features.suspend_to_disk))
    return pm


def clock_element(spec: VMSpec) -> etree._Element:
    clock = element("clock", offset=spec.clock.offset)
    for timer in spec.clock.timers:
        sub(
            clock,
            "timer",
            name=timer.name,
            track=timer.track,
            tickpolicy=timer.tickpolicy,
            present=yes_no(timer.present),
        )
    return clock


def lifecycle_elements(spec: VMSpec) -> list[etree._Element]:
    actions = spec.lifecycle
    return [
        element("on_poweroff", actions.on_poweroff),
        element("on_reboot", actions.on_reboot),
        element("on_crash", actions.on_crash),
    ]
