"""What only a SmartOS host acts on: vmadm properties with no libvirt or Xen counterpart, kept in the spec so that
the SmartOS driver's payload carries them (a vmadm payload converted into a spec loses none of them).

The top-level block, a disk's and a NIC's: host bookkeeping (tags, ZFS volume properties, the flexible disk
quota) that other drivers ignore safely, and guest-visible settings (PCI passthrough by illumos device path, a
one-time boot device, DHCP client-id filtering) that other drivers refuse (`foreign_problems`).
"""

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.boot import BootDevice

if TYPE_CHECKING:
    from vmhost.spec.vm import VMSpec

PCI_SLOT_RANGES = (("bus", 255), ("device", 31), ("function", 7))
Compression = Literal[
    "on", "off", "gzip", "lz4", "lzjb", "zle",
    "gzip-1", "gzip-2", "gzip-3", "gzip-4", "gzip-5", "gzip-6", "gzip-7", "gzip-8", "gzip-9",
]  # fmt: skip
"""VM.COMPRESSION_TYPES."""
CID_RE = re.compile(r"^0x(?:[0-9A-Fa-f]{2})+$")
"""utils.validCID: 0x and hex digits, an even length, at most 512 characters."""
CID_MAX = 512
TAG_VALUE = str | int | float | bool


def parse_pci_slot(text: str) -> tuple[int, int, int]:
    """vmadm's pci_slot, as VM.js parsePCIslot reads it: "b:d:f", "d:f" (bus 0) or "d" (bus 0, function 0),
    decimal, bus 0-255, device 0-31, function 0-7. ValueError names what is wrong."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"must be 'bus:device:function', 'device:function' or 'device' (decimal), got {text!r}")
    numbers = [int(part) for part in parts]
    bus, device, function = {1: (0, numbers[0], 0), 2: (0, *numbers), 3: tuple(numbers)}[len(numbers)]
    for (name, top), value in zip(PCI_SLOT_RANGES, (bus, device, function), strict=True):
        if value > top:
            raise ValueError(f"{name} {value} of {text!r} is out of range 0-{top}")
    return bus, device, function


def _pci_slot(value: str) -> str:
    parse_pci_slot(value)
    return value


class SmartosPciDevice(SpecModel):
    """A host PCI device given to a bhyve guest (vmadm pci_devices)."""

    path: str = Field(pattern=r"^/devices/", description="The device's illumos path, /devices/...")
    pci_slot: str = Field(description="Guest PCI slot, 'b:d:f', 'd:f' or 'd' (decimal), as vmadm takes it.")
    model: Literal["passthru"] = Field("passthru", description="bhyve's only model for host devices.")

    _slot = field_validator("pci_slot")(_pci_slot)


class Smartos(SpecModel):
    """SmartOS-only settings of the VM."""

    tags: dict[str, TAG_VALUE] = Field(
        default_factory=dict, description="vmadm tags (Triton's key/values, e.g. for CNS and affinity); bookkeeping."
    )
    flexible_disk_size: int | None = Field(
        None, ge=0, description="bhyve: MiB all disks together may use (vmadm flexible_disk_size); bookkeeping."
    )
    pci_devices: list[SmartosPciDevice] = Field(
        default_factory=list, description="bhyve host PCI devices by illumos path; other drivers refuse them."
    )
    boot_once: list[BootDevice] = Field(
        default_factory=list,
        description="kvm: devices to try at the next boot only (vmadm boot 'once='); other drivers refuse it.",
    )


class SmartosDisk(SpecModel):
    """ZFS properties of the volume vmadm makes for a disk; other drivers have no ZFS volume and ignore them."""

    refreservation: int | None = Field(None, ge=0, description="MiB reserved for the volume (vmadm's default: all).")
    compression: Compression | None = Field(None, description="ZFS compression of the volume.")
    block_size: int | None = Field(None, ge=512, le=131072, description="ZFS volblocksize in bytes, a power of 2.")

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"must be a power of 2, got {value}")
        return value


class SmartosNic(SpecModel):
    """SmartOS-only filtering of a NIC."""

    allowed_dhcp_cids: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="kvm: DHCP client ids the guest may use; other drivers cannot filter them and refuse the list.",
    )

    @field_validator("allowed_dhcp_cids")
    @classmethod
    def _cids(cls, value: list[str]) -> list[str]:
        for cid in value:
            if not CID_RE.match(cid) or len(cid) > CID_MAX:
                raise ValueError(f"{cid!r} is not a DHCP client id ('0x' and an even number of hex digits)")
        return value


def foreign_problems(spec: "VMSpec") -> Iterator[tuple[str, str]]:
    """(path, message) for the SmartOS-only settings a libvirt or Xen guest would silently lack."""
    block = spec.smartos
    if block is not None and block.pci_devices:
        yield "smartos.pci_devices", "names host devices by illumos /devices path: only a SmartOS host has them"
    if block is not None and block.boot_once:
        yield "smartos.boot_once", "a one-time boot device is applied by vmadm only; use boot.order here"
    for index, nic in enumerate(spec.nics):
        if nic.smartos is not None and nic.smartos.allowed_dhcp_cids:
            yield f"nics.{index}.smartos.allowed_dhcp_cids", "only SmartOS filters DHCP client ids"
