"""Disks and CD-ROMs: vmadm's disks[] array, with the boot flag on the first boot device.

vmadm creates a zvol for a disk with `size`, clones an image for one with `image_uuid`, and uses an existing
device for `path` with `nocreate`. A vmhost overlay is representable only when its base is an imgadm image's
zvol (/dev/zvol/[r]dsk/<pool>/<image uuid>). Its size is the image's (image_size, which vmadm also finds itself)
or, on bhyve with flexible_disk_size, the grown disk's (size).
"""

from collections.abc import Iterator
from typing import Any

from vmhost.formats.vmadm import IMAGE_ZVOL
from vmhost.render.vmadm.brands import Brand
from vmhost.spec import VMSpec
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.disk import BlockDisk, Disk, FileDisk, NewDisk, OverlayDisk
from vmhost.spec.units import MiB

DISK_MODELS: dict[Brand, dict[str, str]] = {
    "kvm": {"virtio": "virtio", "ide": "ide", "scsi": "scsi"},
    "bhyve": {"virtio": "virtio", "sata": "ahci"},
}
CDROM_MODELS: dict[Brand, dict[str, str]] = {"kvm": {"ide": "ide", "scsi": "scsi"}, "bhyve": {"sata": "ahci"}}
RAW_FORMATS = ("raw", "auto")
BHYVE_RESERVED_SLOTS = (0, 6, 30, 31)
"""Host bridge, NICs, framebuffer and LPC: the bhyve brand's boot places them (VM.js assignBhyvePCIslots)."""


def boot_device(spec: VMSpec) -> tuple[str, int] | None:
    """("disk"|"cdrom", index) of the device the VM boots from: the lowest boot_order, else the first class in
    boot.order that has a device, else the first disk."""
    ordered = [(d.boot_order, "disk", i) for i, d in enumerate(spec.disks) if d.boot_order is not None]
    ordered += [(c.boot_order, "cdrom", i) for i, c in enumerate(spec.cdroms) if c.boot_order is not None]
    if ordered:
        _order, kind, index = min(ordered)
        return kind, index
    present = {"hd": ("disk", bool(spec.disks)), "cdrom": ("cdrom", bool(spec.cdroms))}
    for device in spec.boot.order:
        if device in present and present[device][1]:
            return present[device][0], 0
    return ("disk", 0) if spec.disks else None


def render_disks(spec: VMSpec, brand: Brand) -> list[dict[str, Any]]:
    booting = boot_device(spec)
    flexible = brand == "bhyve" and spec.smartos is not None and spec.smartos.flexible_disk_size is not None
    disks = [_disk(disk, brand, booting == ("disk", i), flexible) for i, disk in enumerate(spec.disks)]
    disks += [_cdrom(cdrom, brand, booting == ("cdrom", i)) for i, cdrom in enumerate(spec.cdroms)]
    return disks


def _disk(disk: Disk, brand: Brand, boot: bool, flexible: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"boot": boot, "media": "disk", "model": DISK_MODELS[brand][disk.bus]}
    source = disk.source
    if isinstance(source, NewDisk):
        entry["size"] = source.size // MiB
    elif isinstance(source, OverlayDisk):
        match = IMAGE_ZVOL.match(str(source.base))
        assert match, "problems() reports overlays a payload cannot carry"
        entry.update(image_uuid=match["uuid"], zpool=match["zpool"])
        if source.size is not None:  # else vmadm takes the size from the installed image
            entry["size" if flexible else "image_size"] = source.size // MiB
    elif isinstance(source, FileDisk | BlockDisk):
        entry.update(path=str(source.path), nocreate=True)
    if disk.pci_address is not None:
        entry["pci_slot"] = pci_slot(disk.pci_address)
    if disk.smartos is not None:
        entry.update(disk.smartos.model_dump(exclude_none=True))
    return entry


def pci_slot(address: str) -> str:
    """'0000:00:04.1' as vmadm's decimal 'bus:device:function', '0:4:1'."""
    return f"0:{int(address[8:10], 16)}:{address[11]}"


def _cdrom(cdrom: Cdrom, brand: Brand, boot: bool) -> dict[str, Any]:
    return {"boot": boot, "media": "cdrom", "model": CDROM_MODELS[brand][cdrom.bus], "path": str(cdrom.iso)}


def disk_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    for index, disk in enumerate(spec.disks):
        yield from _one_disk_problems(f"disks.{index}", disk, brand)
    for index, cdrom in enumerate(spec.cdroms):
        path = f"cdroms.{index}"
        if cdrom.bus not in CDROM_MODELS[brand]:
            yield f"{path}.bus", _bus_message(brand, cdrom.bus, CDROM_MODELS[brand])
        if cdrom.rbd is not None:
            yield f"{path}.rbd", "vmadm VMs cannot reach Ceph RBD storage; give the ISO as a host file (iso)"
        elif cdrom.iso is None:
            yield f"{path}.iso", "a vmadm cdrom needs an ISO path; an empty tray cannot be expressed"


def _one_disk_problems(path: str, disk: Disk, brand: Brand) -> Iterator[tuple[str, str]]:
    if disk.bus not in DISK_MODELS[brand]:
        yield f"{path}.bus", _bus_message(brand, disk.bus, DISK_MODELS[brand])
    yield from _source_problems(f"{path}.source", disk)
    if disk.pci_address is not None and brand == "kvm":
        yield f"{path}.pci_address", "the kvm brand places disks itself; pci_slot is bhyve's"
    elif disk.pci_address is not None and int(disk.pci_address[8:10], 16) in BHYVE_RESERVED_SLOTS:
        yield f"{path}.pci_address", "bhyve keeps PCI devices 0, 6, 30 and 31 for its own bridges, NICs and display"
    if disk.smartos is not None and disk.smartos.block_size is not None and not isinstance(disk.source, NewDisk):
        yield f"{path}.smartos.block_size", "vmadm sets the block size of volumes it creates empty only"
    unsupported = {
        "cache": disk.cache != "default",
        "readonly": disk.readonly,
        "shareable": disk.shareable,
        "serial": disk.serial is not None,
        "wwn": disk.wwn is not None,
        "io_limits": disk.io_limits is not None,
        "iothread": disk.iothread is not None,
        "physical_block_size": disk.physical_block_size is not None,
        "controller": disk.controller is not None,
    }
    for field, asked in unsupported.items():
        if asked:
            yield f"{path}.{field}", "a vmadm disk cannot carry it"


def _source_problems(path: str, disk: Disk) -> Iterator[tuple[str, str]]:
    source = disk.source
    if isinstance(source, NewDisk) and source.size % MiB:
        yield f"{path}.size", "vmadm sizes disks in whole MiB"
    elif isinstance(source, OverlayDisk):
        if not IMAGE_ZVOL.match(str(source.base)):
            yield f"{path}.base", "vmadm clones only imgadm images: give /dev/zvol/rdsk/<pool>/<image uuid>"
        if source.size is not None and source.size % MiB:
            yield f"{path}.size", "vmadm sizes image disks in whole MiB (its image_size)"
    elif isinstance(source, FileDisk | BlockDisk) and source.format not in RAW_FORMATS:
        yield f"{path}.format", f"vmadm VMs read raw devices (a zvol is raw) only, not {source.format} images"
    elif not isinstance(source, NewDisk | OverlayDisk | FileDisk | BlockDisk):
        yield f"{path}.type", f"vmadm VMs cannot reach {source.type} storage"


def _bus_message(brand: Brand, bus: str, models: dict[str, str]) -> str:
    return f"the {brand} brand has no {bus} model; use one of {', '.join(models)}"
