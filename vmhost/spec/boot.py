"""Firmware, boot order, direct kernel boot and machine type."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vmhost.spec.base import SpecModel

BootDevice = Literal["hd", "cdrom", "network"]


class KernelBoot(SpecModel):
    """Boot a kernel straight from host files, without a bootloader."""

    kernel: Path = Field(description="Absolute path of the kernel image on the host.")
    initrd: Path | None = Field(None, description="Absolute path of the initrd on the host.")
    cmdline: str = Field("", max_length=4096, description="Kernel command line.")


class Boot(SpecModel):
    """How the VM boots."""

    firmware: Literal["bios", "uefi"] = Field("bios", description="uefi needs OVMF on the host.")
    order: list[BootDevice] = Field(
        default_factory=list,
        description="Device classes to try in order. Mutually exclusive with per-device boot_order.",
    )
    menu: bool = Field(False, description="Show the firmware boot menu.")
    menu_timeout: int | None = Field(
        None, ge=0, le=65535, description="Milliseconds the boot menu waits for a key (needs menu)."
    )
    kernel: KernelBoot | None = Field(None, description="Direct kernel boot instead of a bootloader.")
    machine: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.-]*$",
        description="QEMU machine type, e.g. 'pc' or 'q35'. Default: the hypervisor's default.",
    )

    @model_validator(mode="after")
    def _timeout_needs_menu(self) -> "Boot":
        if self.menu_timeout is not None and not self.menu:
            raise ValueError("menu_timeout needs menu: true")
        return self
