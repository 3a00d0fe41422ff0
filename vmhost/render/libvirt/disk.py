"""Disks: source (file, block device, iSCSI or Ceph RBD), guest bus and target, caching and throttling."""

from pathlib import Path

from lxml import etree

from vmhost.render.libvirt.context import RenderContext
from vmhost.render.libvirt.controllers import ScsiLayout, drive_address
from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec.disk import (
    BlockDisk,
    Disk,
    FileDisk,
    ImageDisk,
    IscsiDisk,
    NewDisk,
    OverlayDisk,
    RbdImage,
    SecretRef,
)

TARGET_BUS = {"virtio": "virtio", "virtio-scsi": "scsi", "scsi": "scsi", "sata": "sata", "ide": "ide"}
ISCSI_PORT = 3260
CEPH_MON_PORT = 6789
LIBVIRT_FORMATS = frozenset(
    {"raw", "qcow2", "qcow", "qed", "vmdk", "vdi", "vpc", "vhd", "cow", "bochs", "cloop", "dmg", "luks"}
)
"""Image formats libvirt 9.0 can name in <driver type>; qemu can open vhdx, but libvirt refuses the name."""
IOTUNE_FIELDS = (
    "total_bytes_sec",
    "read_bytes_sec",
    "write_bytes_sec",
    "total_iops_sec",
    "read_iops_sec",
    "write_iops_sec",
)


def disk_element(disk: Disk, ctx: RenderContext, layout: ScsiLayout) -> etree._Element:
    """One <disk device='disk'>; raises ValueError when the context lacks a path or format the disk needs."""
    kind, fmt = _kind_and_format(disk, ctx)
    layers = ctx.disk_layers.get(str(disk.target), ())
    node = element("disk", type="file" if layers else kind, device="disk")
    driver_format = "qcow2" if layers else fmt
    sub(
        node,
        "driver",
        name="qemu",
        type=driver_format,
        cache=None if disk.cache == "default" else disk.cache,
        iothread=disk.iothread if disk.bus == "virtio" else None,
    )
    if layers:
        node.append(element("source", file=str(layers[-1])))
        node.append(_layered_backing(disk, ctx, layers[:-1], kind, fmt))
    else:
        node.append(_source(disk, ctx))
        backing = _backing_store(disk)
        if backing is not None:
            node.append(backing)
    sub(node, "target", dev=disk.target, bus=TARGET_BUS[disk.bus])
    _iotune(node, disk)
    if disk.physical_block_size is not None:
        sub(node, "blockio", physical_block_size=disk.physical_block_size)
    if disk.boot_order is not None:
        sub(node, "boot", order=disk.boot_order)
    if disk.readonly:
        sub(node, "readonly")
    if disk.shareable:
        sub(node, "shareable")
    if disk.serial:
        sub(node, "serial", disk.serial)
    if disk.wwn:
        sub(node, "wwn", disk.wwn)
    address = drive_address(layout, disk.target)
    if address is not None:
        node.append(address)
    if disk.pci_address is not None:
        node.append(_pci_address(disk.pci_address))
    return node


def _pci_address(address: str) -> etree._Element:
    """A fixed guest slot (e.g. a bhyve payload's 0:4:1). Function 0 is always multifunction, so the guest also
    finds functions 1-7 of its slot (data disks beside the boot disk); alone in its slot that changes nothing."""
    slot, function = address[8:10], address[11]
    multifunction = "on" if function == "0" else None
    attrs = {"domain": "0x0000", "bus": "0x00", "slot": f"0x{slot}", "function": f"0x{function}"}
    return element("address", type="pci", multifunction=multifunction, **attrs)


def _iotune(node: etree._Element, disk: Disk) -> None:
    """The spec's io_limits carry libvirt's own names and units (bytes/s, IO/s)."""
    limits = {name: getattr(disk.io_limits, name) for name in IOTUNE_FIELDS if getattr(disk.io_limits, name, None)}
    if limits:
        iotune = sub(node, "iotune")
        for name, value in limits.items():
            sub(iotune, name, value)


def _kind_and_format(disk: Disk, ctx: RenderContext) -> tuple[str, str]:
    """libvirt's disk type and the image format qemu must open it as (never probed: that is a security hole)."""
    source = disk.source
    if isinstance(source, NewDisk):
        return "file", source.format
    if isinstance(source, OverlayDisk | ImageDisk):
        return "file", "qcow2"
    if isinstance(source, FileDisk):
        fmt = ctx.disk_formats.get(str(disk.target)) if source.format == "auto" else source.format
        if fmt is None:
            raise ValueError(f"disk {disk.target} ({source.path}): format 'auto' was not resolved by the engine")
        if fmt not in LIBVIRT_FORMATS:
            raise ValueError(f"disk {disk.target} ({source.path}): libvirt cannot use {fmt} images")
        return "file", fmt
    if isinstance(source, BlockDisk):
        return "block", source.format
    return "network", "raw"


def _backing_store(disk: Disk) -> etree._Element | None:
    """The backing chain the spec recorded, every format explicit and ended by an empty <backingStore/>, so
    neither libvirt nor QEMU reads a backing file name or format from an image header. None: not recorded (raw
    images, network disks, renderings outside the engine), and libvirt reads the header as before."""
    source = disk.source
    if not isinstance(source, FileDisk | OverlayDisk | ImageDisk) or source.backing is None:
        return None
    if isinstance(source, FileDisk) and source.format == "raw":
        return None
    top = node = element("backingStore")
    for image in source.backing:
        node.set("type", image.type)
        sub(node, "format", type=image.format)
        origin = sub(node, "source", **{"dev" if image.type == "block" else "file": str(image.path)})
        if isinstance(source, ImageDisk):
            # A store image is shared by every VM made from it: libvirt must not chown it to QEMU's user (and
            # never give it back); QEMU reads it through its group (0640 root:hypervisor_group).
            sub(origin, "seclabel", model="dac", relabel="no")
        node = sub(node, "backingStore")
    return top


def _layered_backing(disk: Disk, ctx: RenderContext, below: tuple[Path, ...], kind: str, fmt: str) -> etree._Element:
    """Under the top disk-only snapshot overlay: the older overlays (qcow2, newest first), then the disk's own
    image with its recorded chain; ended by an empty <backingStore/> where vmhost knows the chain ends."""
    top = node = element("backingStore")
    for overlay in reversed(below):
        node.set("type", "file")
        sub(node, "format", type="qcow2")
        sub(node, "source", file=str(overlay))
        node = sub(node, "backingStore")
    node.set("type", kind)
    sub(node, "format", type=fmt)
    node.append(_source(disk, ctx))
    chain = _backing_store(disk)
    if chain is not None:
        node.append(chain)
    elif isinstance(disk.source, NewDisk) or fmt == "raw":
        sub(node, "backingStore")
    return top


def _source(disk: Disk, ctx: RenderContext) -> etree._Element:
    source = disk.source
    if isinstance(source, NewDisk | OverlayDisk | ImageDisk):
        path = ctx.disk_paths.get(str(disk.target))
        if path is None:
            raise ValueError(f"disk {disk.target} ({source.type}): the engine gave no image path for it")
        return element("source", file=str(path))
    if isinstance(source, FileDisk):
        return element("source", file=str(source.path))
    if isinstance(source, BlockDisk):
        return element("source", dev=str(source.path))
    if isinstance(source, IscsiDisk):
        return _network_source("iscsi", f"{source.target}/{source.lun}", [source.portal], ISCSI_PORT, source.auth)
    return rbd_source(source)


def rbd_source(image: RbdImage) -> etree._Element:
    """<source protocol='rbd'> of a disk's or a CD-ROM's Ceph image."""
    return _network_source("rbd", f"{image.pool}/{image.image}", image.monitors, CEPH_MON_PORT, image.auth)


def _network_source(
    protocol: str, name: str, hosts: list[str], default_port: int, auth: SecretRef | None
) -> etree._Element:
    """<source protocol> with one <host> per server and CHAP/cephx credentials by libvirt secret reference."""
    node = element("source", protocol=protocol, name=name)
    for host in hosts:
        hostname, port = split_host_port(host, default_port)
        sub(node, "host", name=hostname, port=port)
    if auth:
        secret_type = "ceph" if protocol == "rbd" else protocol
        sub(sub(node, "auth", username=auth.username), "secret", type=secret_type, uuid=str(auth.secret_uuid))
    return node


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """'host', 'host:port', '[v6]' or '[v6]:port'; a bare IPv6 address (several colons) has no port."""
    if value.startswith("[") and "]" in value:
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else default_port
    host, _, port = value.partition(":")
    if value.count(":") == 1 and port.isdigit():
        return host, int(port)
    return value, default_port
