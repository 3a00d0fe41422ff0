"""The vmadm properties a spec keeps for SmartOS (its `smartos` blocks) or maps to a guest-visible setting: boot
strings, disk PCI slots, boot flags, and the ZFS properties of a disk's volume.

Refusals that vmadm itself makes only at create (VM.js assignBhyvePCIslots) use vmadm's own words.
"""

from collections.abc import Callable
from typing import Any

from vmhost.dialects.vmadm import values
from vmhost.spec.smartos import parse_pci_slot

Document = dict[str, Any]
Report = Callable[[str, str], None]

SMARTOS_DISK_KEYS = ("refreservation", "compression", "block_size")
BOOT_DEVICES = {"c": "hd", "d": "cdrom", "n": "network"}
"""qemu -boot drive letters: kvm hands the boot string to qemu as it is (VM.js startvm)."""
BHYVE_RESERVED_DEVICES = (0, 6, 30, 31)
"""Host bridge, NICs, framebuffer and LPC (VM.js assignBhyvePCIslots)."""
ISA_BRIDGE_DEVICE = 1


def boot_string(text: str, problem: Report) -> tuple[list[str], list[str]]:
    """(order, once) of a qemu boot string: 'order=cd,once=d', or the older bare 'cd' (an order)."""
    order: list[str] = []
    once: list[str] = []
    for part in (p for p in text.split(",") if p):
        key, _, letters = part.rpartition("=")
        key = key or "order"
        if key not in ("order", "once"):
            problem("boot", f"vmhost reads order= and once= of a boot string, not {key}=")
            continue
        devices = _devices(letters, problem)
        (order if key == "order" else once).extend(devices)
    return order, once


def _devices(letters: str, problem: Report) -> list[str]:
    devices = []
    for letter in letters:
        if letter not in BOOT_DEVICES:
            problem("boot", f"drive letter {letter!r}: vmhost boots from c (disk), d (CD-ROM) or n (network)")
        elif BOOT_DEVICES[letter] not in devices:
            devices.append(BOOT_DEVICES[letter])
    return devices


def pci_address(path: str, text: str, problem: Report) -> str | None:
    """A bhyve disk's pci_slot as the spec's guest PCI address (bus 0 only)."""
    try:
        bus, device, function = parse_pci_slot(text)
    except ValueError:
        problem(path, f'pci_slot "{text}" is not valid')
        return None
    if device in BHYVE_RESERVED_DEVICES and bus == 0:
        problem(path, f'pci_slot "{text}" invalid: PCI device {device} is reserved')
    elif bus:
        problem(path, f"vmhost places disks on PCI bus 0 only, not bus {bus}")
    elif device == ISA_BRIDGE_DEVICE:
        problem(path, "PCI device 1 holds the ISA bridge of the machines libvirt and Xen give guests")
    else:
        return f"0000:00:{device:02x}.{function}"
    return None


def disk_block(disk: dict[str, Any]) -> Document:
    """The disk's ZFS volume properties, for its `smartos` block."""
    block: Document = {}
    for key in SMARTOS_DISK_KEYS:
        if key == "compression" and key in disk:
            block[key] = disk[key]
        elif key in disk and values.as_integer(disk[key]) is not None:
            block[key] = values.as_integer(disk[key])
    return {"smartos": block} if block else {}


def boot_flags(doc: Document, payload: dict[str, Any], problem: Report) -> None:
    """One boot disk and one disk per slot, as vmadm's create insists; with a boot string's order the flags say
    nothing more as long as the flagged device is the first of its kind (the order reaches it first)."""
    entries = [(f"disks.{i}", disk) for i, disk in enumerate(payload.get("disks") or [])]
    booting = [path for path, disk in entries if values.as_boolean(disk.get("boot", False))]
    for path in booting[1:]:
        problem(f"{path}.boot", f"multiple boot disks: {booting[0]} and {path}")
    seen: dict[tuple[int, int, int], str] = {}
    for path, disk in entries:
        slot = _slot(disk)
        if slot is not None and slot in seen:
            problem(
                f"{path}.pci_slot", f'VM has multiple disks in pci_slot "{disk["pci_slot"]}": {seen[slot]} and {path}'
            )
        elif slot is not None:
            seen[slot] = path
    if doc.get("boot", {}).get("order"):
        _drop_flags(doc, problem)


def _slot(disk: dict[str, Any]) -> tuple[int, int, int] | None:
    """The parsed slot, so that '4:1' and '0:4:1' are the same one."""
    try:
        return parse_pci_slot(str(disk["pci_slot"])) if "pci_slot" in disk else None
    except ValueError:
        return None


def _drop_flags(doc: Document, problem: Report) -> None:
    for kind in ("disks", "cdroms"):
        for index, entry in enumerate(doc.get(kind) or []):
            if entry.pop("boot_order", None) is not None and index:
                problem(
                    "boot", f"with a boot order string, vmhost boots the first of the {kind}: put the boot one first"
                )
