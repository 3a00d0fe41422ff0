"""Disks: where the bytes live (source), how the guest sees them (bus, target) and QoS."""

import re
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.units import ByteSize, MiB

DiskBus = Literal["virtio", "virtio-scsi", "scsi", "sata", "ide"]
DiskFormat = Literal["qcow2", "raw"]
ExistingFormat = Literal["auto", "qcow2", "raw", "vmdk", "vdi", "vhdx", "qed"]
CacheMode = Literal["default", "none", "writethrough", "writeback", "directsync", "unsafe"]

HOST_PORT_RE = re.compile(r"^[A-Za-z0-9.:\[\]-]+(:\d{1,5})?$")
IQN_RE = re.compile(r"^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9A-Fa-f]{16}|naa\.[0-9A-Fa-f]{16,32})$")
CEPH_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def absolute_path(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError(f"must be an absolute path, got {str(value)!r}")
    if ".." in value.parts:
        raise ValueError("must not contain '..'")
    return value


def host_port(value: str) -> str:
    if not HOST_PORT_RE.match(value):
        raise ValueError(f"must be 'host' or 'host:port', got {value!r}")
    return value


class SecretRef(SpecModel):
    """Credentials held in a libvirt secret (never the secret value itself)."""

    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    secret_uuid: UUID = Field(description="UUID of the libvirt secret holding the password/key.")


class NewDisk(SpecModel):
    """An empty disk vmhost creates for this VM and deletes with it."""

    type: Literal["new"]
    size: ByteSize
    format: DiskFormat = "qcow2"

    @field_validator("size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < MiB:
            raise ValueError("must be at least 1MiB")
        return value


class OverlayDisk(SpecModel):
    """A qcow2 overlay vmhost creates on top of a base image; the base is never modified or deleted."""

    type: Literal["overlay"]
    base: Path
    size: ByteSize | None = Field(None, description="Virtual size; default: the base image's size.")

    _abs = field_validator("base")(absolute_path)


class FileDisk(SpecModel):
    """An existing image file owned by the user; vmhost never deletes it."""

    type: Literal["file"]
    path: Path
    format: ExistingFormat = Field("auto", description="'auto' asks qemu-img info.")

    _abs = field_validator("path")(absolute_path)


class BlockDisk(SpecModel):
    """An existing host block device."""

    type: Literal["block"]
    path: Path

    _abs = field_validator("path")(absolute_path)


class IscsiDisk(SpecModel):
    type: Literal["iscsi"]
    portal: str = Field(description="'host' or 'host:port' (default port 3260).")
    target: str = Field(description="Target IQN, e.g. 'iqn.2024-01.com.example:storage'.")
    lun: int = Field(0, ge=0, le=16383)
    auth: SecretRef | None = Field(None, description="CHAP credentials.")

    _portal = field_validator("portal")(host_port)

    @field_validator("target")
    @classmethod
    def _iqn(cls, value: str) -> str:
        if not IQN_RE.match(value):
            raise ValueError(f"must be an iSCSI name (iqn./eui./naa.), got {value!r}")
        return value


class RbdDisk(SpecModel):
    type: Literal["rbd"]
    pool: str = Field(pattern=CEPH_NAME_RE.pattern)
    image: str = Field(pattern=CEPH_NAME_RE.pattern)
    monitors: list[str] = Field(min_length=1, description="Ceph monitors as 'host' or 'host:port'.")
    auth: SecretRef | None = None

    @field_validator("monitors")
    @classmethod
    def _monitors(cls, value: list[str]) -> list[str]:
        return [host_port(m) for m in value]


DiskSource = Annotated[NewDisk | OverlayDisk | FileDisk | BlockDisk | IscsiDisk | RbdDisk, Field(discriminator="type")]


class IoLimits(SpecModel):
    """Per-disk throttling; a total limit excludes the read/write limits of the same kind."""

    total_bytes_sec: int | None = Field(None, ge=1)
    read_bytes_sec: int | None = Field(None, ge=1)
    write_bytes_sec: int | None = Field(None, ge=1)
    total_iops_sec: int | None = Field(None, ge=1)
    read_iops_sec: int | None = Field(None, ge=1)
    write_iops_sec: int | None = Field(None, ge=1)


class Disk(SpecModel):
    source: DiskSource
    bus: DiskBus = "virtio"
    target: str | None = Field(
        None,
        pattern=r"^(vd|sd|hd)[a-z]{1,2}$",
        description="Guest device name (vda, sdb, hdc); assigned in order when omitted.",
    )
    cache: CacheMode = "default"
    readonly: bool = False
    shareable: bool = False
    serial: str | None = Field(None, max_length=20, pattern=r"^[A-Za-z0-9_.+-]+$")
    wwn: str | None = Field(None, pattern=r"^(0x)?[0-9a-fA-F]{16}$", description="16 hex digits (scsi/sata/ide).")
    boot_order: int | None = Field(None, ge=1, le=255)
    io_limits: IoLimits | None = None
