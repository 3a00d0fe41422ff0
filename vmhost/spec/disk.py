"""Disks: where the bytes live (source), how the guest sees them (bus, target) and QoS."""

import re
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.smartos import SmartosDisk
from vmhost.spec.units import ByteSize, MiB

DiskBus = Literal["virtio", "virtio-scsi", "scsi", "sata", "ide"]
DiskFormat = Literal["qcow2", "raw"]
ImageFormat = Literal["qcow2", "raw", "vmdk", "vdi", "qed"]
"""Formats of images users bring (and of the images under them); QEMU opens each as exactly this."""
ExistingFormat = Literal["auto", ImageFormat]
CacheMode = Literal["default", "none", "writethrough", "writeback", "directsync", "unsafe"]

HOST_PORT_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?$"
)
IQN_RE = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")
CEPH_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_SCSI_CONTROLLER = 31
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 2 * 1024 * 1024
"""QEMU's bounds for a block size (hw/block/block.c)."""
SERIAL_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
MAX_SERIAL = 36
"""QEMU's longest SCSI serial (scsi-disk.c MAX_SERIAL_LEN); ZStack's 32-character volume uuids fit."""


def absolute_path(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError(f"must be an absolute path, got {str(value)!r}")
    if ".." in value.parts:
        raise ValueError("must not contain '..'")
    return value


def host_port(value: str) -> str:
    """A host name, IPv4 address or [IPv6] address, with an optional port 1-65535."""
    match = HOST_PORT_RE.match(value)
    if not match:
        raise ValueError(f"must be 'host', 'host:port' or '[ipv6]:port', got {value!r}")
    if match.group("port") and not 1 <= int(match.group("port")) <= 65535:
        raise ValueError(f"port must be 1-65535, got {match.group('port')}")
    return value


class SecretRef(SpecModel):
    """Credentials held in a libvirt secret (never the secret value itself)."""

    username: str = Field(
        description="User name for the storage.", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_+-]+$"
    )
    secret_uuid: UUID = Field(description="UUID of the libvirt secret holding the password/key.")


class BackingImage(SpecModel):
    """One image under a disk's own in its backing chain, with the format QEMU must open it as."""

    type: Literal["file", "block"] = Field("file", description="A file, or a host block device.")
    path: Path = Field(description="Absolute path of the backing image.")
    format: ImageFormat = Field(description="Its image format.")

    _abs = field_validator("path")(absolute_path)


BACKING_DESCRIPTION = (
    "The backing chain under this image, top first, as vmhost read it when the disk was added; rendered "
    "explicitly so that no format is ever probed again. Set by vmhost; every path must be an allowed one."
)


class NewDisk(SpecModel):
    """An empty disk vmhost creates for this VM and deletes with it."""

    type: Literal["new"]
    size: ByteSize = Field(description="Virtual size, at least 1MiB.")
    format: DiskFormat = Field("qcow2", description="Image format.")

    @field_validator("size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < MiB:
            raise ValueError("must be at least 1MiB")
        return value


class OverlayDisk(SpecModel):
    """A qcow2 overlay vmhost creates on top of a base image; the base is never modified or deleted."""

    type: Literal["overlay"]
    base: Path = Field(description="Absolute path of the base image.")
    size: ByteSize | None = Field(None, description="Virtual size; default: the base image's size.")
    backing: list[BackingImage] | None = Field(
        None, max_length=16, description=BACKING_DESCRIPTION + " Starts with the base."
    )

    _abs = field_validator("base")(absolute_path)


IMAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""Names of images in vmhost's image store (`vmhost image import --name`); a UUID is accepted where one is looked up."""


class ImageDisk(SpecModel):
    """A qcow2 overlay vmhost creates on an image of its image store and deletes with the VM; the image stays."""

    type: Literal["image"]
    image: str = Field(pattern=IMAGE_NAME_PATTERN, description="Name or UUID of a disk image in the image store.")
    size: ByteSize | None = Field(None, description="Virtual size, at least the image's; default: the image's size.")
    backing: list[BackingImage] | None = Field(
        None,
        max_length=1,
        description="The image's file and format as the image store recorded them at import. Set by vmhost.",
    )


class FileDisk(SpecModel):
    """An existing image file owned by the user; vmhost never deletes it."""

    type: Literal["file"]
    path: Path = Field(description="Absolute path of the image.")
    format: ExistingFormat = Field(
        "auto", description="'auto' asks qemu-img info once, when the disk is added; the spec then keeps the answer."
    )
    backing: list[BackingImage] | None = Field(None, max_length=16, description=BACKING_DESCRIPTION)

    _abs = field_validator("path")(absolute_path)


class BlockDisk(SpecModel):
    """An existing host block device: the disk itself, or a qcow2 image written on it (a logical volume)."""

    type: Literal["block"]
    path: Path = Field(description="Absolute path of the block device, e.g. /dev/sdb.")
    format: DiskFormat = Field(
        "raw",
        description="What the device holds: raw (the guest's disk) or a qcow2 image; never probed, because the "
        "guest writes the device and could plant a header.",
    )

    _abs = field_validator("path")(absolute_path)


class IscsiDisk(SpecModel):
    """A LUN of an iSCSI target, reached by QEMU directly."""

    type: Literal["iscsi"]
    portal: str = Field(description="'host' or 'host:port' (default port 3260).")
    target: str = Field(description="Target IQN, e.g. 'iqn.2024-01.com.example:storage'.")
    lun: int = Field(0, ge=0, le=16383, description="LUN number.")
    auth: SecretRef | None = Field(None, description="CHAP credentials.")

    _portal = field_validator("portal")(host_port)

    @field_validator("target")
    @classmethod
    def _iqn(cls, value: str) -> str:
        if not IQN_RE.match(value):
            raise ValueError(f"must be an iSCSI name (iqn./eui./naa.), got {value!r}")
        return value


class RbdImage(SpecModel):
    """An image in a Ceph RBD pool (a disk's, or a CD-ROM's ISO)."""

    pool: str = Field(pattern=CEPH_NAME_RE.pattern, description="Ceph pool.")
    image: str = Field(pattern=CEPH_NAME_RE.pattern, description="RBD image name.")
    monitors: list[str] = Field(min_length=1, description="Ceph monitors as 'host' or 'host:port'.")
    auth: SecretRef | None = Field(None, description="cephx credentials.")

    @field_validator("monitors")
    @classmethod
    def _monitors(cls, value: list[str]) -> list[str]:
        return [host_port(m) for m in value]


class RbdDisk(RbdImage):
    """A disk on an image in a Ceph RBD pool."""

    type: Literal["rbd"]


DiskSource = Annotated[
    NewDisk | OverlayDisk | ImageDisk | FileDisk | BlockDisk | IscsiDisk | RbdDisk, Field(discriminator="type")
]


class IoLimits(SpecModel):
    """Per-disk throttling; a total limit excludes the read/write limits of the same kind."""

    total_bytes_sec: int | None = Field(None, ge=1, description="Bytes per second (total).")
    read_bytes_sec: int | None = Field(None, ge=1, description="Bytes per second (read).")
    write_bytes_sec: int | None = Field(None, ge=1, description="Bytes per second (write).")
    total_iops_sec: int | None = Field(None, ge=1, description="I/O operations per second (total).")
    read_iops_sec: int | None = Field(None, ge=1, description="I/O operations per second (read).")
    write_iops_sec: int | None = Field(None, ge=1, description="I/O operations per second (write).")


class Disk(SpecModel):
    """One disk: its source and how the guest sees it."""

    source: DiskSource = Field(description="Where the bytes live; chosen by its `type`.")
    bus: DiskBus = Field("virtio", description="How the guest sees the disk.")
    target: str | None = Field(
        None,
        pattern=r"^(vd|sd|hd)[a-z]{1,2}$",
        description="Guest device name (vda, sdb, hdc); assigned in order when omitted.",
    )
    cache: CacheMode = Field("default", description="Host page cache mode; default leaves it to QEMU.")
    readonly: bool = Field(False, description="Guest may only read.")
    shareable: bool = Field(False, description="May be attached to several VMs at once.")
    serial: str | None = Field(
        None,
        max_length=MAX_SERIAL,
        pattern=SERIAL_RE.pattern,
        description="Serial the guest sees (/dev/disk/by-id), at most 36 characters: SCSI guests read all of them, "
        "virtio, SATA and IDE guests the first 20.",
    )
    wwn: str | None = Field(
        None, pattern=r"^(0x)?[0-9a-fA-F]{16}$", description="16 hex digits (scsi, virtio-scsi and ide buses)."
    )
    boot_order: int | None = Field(None, ge=1, le=255, description="Per-device boot priority (1 first).")
    io_limits: IoLimits | None = Field(None, description="Throughput and IOPS limits.")
    pci_address: str | None = Field(
        None,
        pattern=r"^0000:00:[01][0-9a-f]\.[0-7]$",
        description="Guest PCI address of a virtio disk on the root bus, '0000:00:SS.F'; default: assigned.",
    )
    smartos: SmartosDisk | None = Field(None, description="ZFS volume properties on SmartOS; ignored elsewhere.")
    iothread: int | None = Field(
        None,
        ge=1,
        description="The IOThread (an id of `iothreads`) that serves this disk's I/O: a virtio disk's own; "
        "virtio-scsi disks of one IOThread share a controller run by it.",
    )
    physical_block_size: int | None = Field(
        None,
        ge=MIN_BLOCK_SIZE,
        le=MAX_BLOCK_SIZE,
        description="Physical sector size the guest sees, in bytes (a power of 2, e.g. 4096); default: the emulator's "
        "(512).",
    )
    controller: int | None = Field(
        None,
        ge=0,
        le=MAX_SCSI_CONTROLLER,
        description="Index of the virtio-scsi controller this virtio-scsi disk sits on; default: one controller "
        "per IOThread (and one for disks without), at the lowest free indexes.",
    )

    @field_validator("physical_block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"must be a power of 2, got {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _image_shorthand(cls, value: object) -> object:
        """`{image: NAME, size: SIZE}` is short for `{source: {type: image, image: NAME, size: SIZE}}`."""
        if isinstance(value, dict) and "image" in value and "source" not in value:
            value = dict(value)
            source = {"type": "image", "image": value.pop("image")}
            if "size" in value:
                source["size"] = value.pop("size")
            value["source"] = source
        return value
