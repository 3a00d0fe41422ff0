"""Disks and CD-ROMs as xl disk specifications (xl-disk-configuration(5)).

Every spec is written with keywords and `target=` last: the parser gives target the rest of the string, so
a path may hold commas or '=' without being misread.
"""

from pathlib import Path

from vmhost.render.xen.context import Problems, XenContext
from vmhost.render.xen.values import Settings, strings
from vmhost.spec import VMSpec
from vmhost.spec.cdrom import Cdrom
from vmhost.spec.checks import BUS_PREFIX
from vmhost.spec.disk import BlockDisk, Disk, FileDisk, ImageDisk, NewDisk, OverlayDisk
from vmhost.spec.targets import DEVICE_LIMIT, _letters

XL_FORMATS = frozenset({"raw", "qcow", "qcow2", "vhd", "qed"})
"""libxl_disk_format: what xl's disk parser accepts as format=."""
SEED_PORTS = 6
"""The seed's vdev is sdf first, down to sda, then sdg up: the names the seed had when libvirt put it on SATA."""


def disk_settings(spec: VMSpec, ctx: XenContext) -> Settings:
    specs = [disk_spec(disk, ctx) for disk in spec.disks] + [cdrom_spec(cdrom) for cdrom in spec.cdroms]
    if ctx.seed_iso is not None:
        specs.append(cdrom_spec(seed_cdrom(spec, ctx.seed_iso)))
    return {"disk": strings(specs)} if specs else {}


def seed_cdrom(spec: VMSpec, iso: Path) -> Cdrom:
    """The seed's read-only drive, named away from the names disks get (sda up)."""
    devices: list[Disk | Cdrom] = [*spec.disks, *spec.cdroms]
    used = {device.target for device in devices}
    order = [*reversed(range(SEED_PORTS)), *range(SEED_PORTS, DEVICE_LIMIT + 1)]
    index = next(i for i in order if f"{BUS_PREFIX['sata']}{_letters(i)}" not in used)
    return Cdrom(iso=iso, bus="sata", target=f"{BUS_PREFIX['sata']}{_letters(index)}")


def vdev(target: str | None) -> str:
    """virtio disks (vdX) become Xen PV disks (xvdX); hdX stay IDE and sdX SCSI in an HVM guest."""
    if target is None:
        raise ValueError("a disk without a target: run the spec through parse_spec first")
    return "x" + target if target.startswith("vd") else target


def disk_spec(disk: Disk, ctx: XenContext) -> str:
    path, fmt = _path_and_format(disk, ctx)
    access = "ro" if disk.readonly else "rw"
    return f"format={fmt}, vdev={vdev(disk.target)}, access={access}, target={path}"


def cdrom_spec(cdrom: Cdrom) -> str:
    """An empty drive has no target: xl makes it removable and empty."""
    parts = ["format=raw" if cdrom.iso else "", f"vdev={vdev(cdrom.target)}", "access=ro", "devtype=cdrom"]
    if cdrom.iso:
        parts.append(f"target={cdrom.iso}")
    return ", ".join(part for part in parts if part)


def _path_and_format(disk: Disk, ctx: XenContext) -> tuple[Path, str]:
    """Raises ValueError for what xl cannot open (network disks, formats outside libxl_disk_format)."""
    source, where = disk.source, f"disk {disk.target}"
    if isinstance(source, NewDisk | OverlayDisk | ImageDisk):
        path = ctx.disk_paths.get(str(disk.target))
        if path is None:
            raise ValueError(f"{where} ({source.type}): the engine gave no image path for it")
        return path, source.format if isinstance(source, NewDisk) else "qcow2"
    if isinstance(source, FileDisk):
        fmt = ctx.disk_formats.get(str(disk.target)) if source.format == "auto" else source.format
        if fmt is None:
            raise ValueError(f"{where} ({source.path}): format 'auto' was not resolved by the engine")
        if fmt not in XL_FORMATS:
            raise ValueError(f"{where} ({source.path}): xl cannot use {fmt} images")
        return source.path, fmt
    if isinstance(source, BlockDisk):
        return source.path, source.format
    raise ValueError(f"{where}: xl cannot attach {source.type} disks")


def disk_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    for index, disk in enumerate(spec.disks):
        where, source = f"disks.{index}", disk.source
        if source.type in ("iscsi", "rbd"):
            problems.append((f"{where}.source", f"{source.type} disks are not supported on the xen driver"))
        if isinstance(source, FileDisk) and source.format not in XL_FORMATS | {"auto"}:
            problems.append((f"{where}.source.format", f"xl cannot use {source.format} images"))
        for name in ("io_limits", "serial", "wwn"):
            if getattr(disk, name) is not None:
                problems.append((f"{where}.{name}", f"{name} is not supported on the xen driver"))
        if disk.shareable:
            problems.append((f"{where}.shareable", "shared disks are not supported on the xen driver"))
        if isinstance(source, FileDisk | BlockDisk) and str(source.path).endswith(","):
            problems.append((f"{where}.source.path", TRAILING_COMMA))
    for index, cdrom in enumerate(spec.cdroms):
        if cdrom.iso and str(cdrom.iso).endswith(","):
            problems.append((f"cdroms.{index}.iso", TRAILING_COMMA))
    return problems


TRAILING_COMMA = "xl's disk syntax cannot carry a path ending with ',' (libxlu_disk_l.l strips it from target=)"
