"""Firmware, boot order, direct kernel boot and machine type."""

from pathlib import Path
from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel

BootDevice = Literal["hd", "cdrom", "network"]


class KernelBoot(SpecModel):
    """Boot a kernel straight from host files, without a bootloader."""

    kernel: Path
    initrd: Path | None = None
    cmdline: str = Field("", max_length=4096)


class Boot(SpecModel):
    firmware: Literal["bios", "uefi"] = "bios"
    order: list[BootDevice] = Field(
        default_factory=list,
        description="Device classes to try in order. Mutually exclusive with per-device boot_order.",
    )
    menu: bool = False
    kernel: KernelBoot | None = None
    machine: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.-]*$",
        description="QEMU machine type, e.g. 'pc' or 'q35'. Default: the hypervisor's default.",
    )
