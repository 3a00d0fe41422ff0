"""Host devices given to the guest: PCI (vfio) and USB, plus USB controller and redirection."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel

PCI_ADDRESS_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$")


def pci_address(value: str) -> str:
    """'dddd:bb:ss.f' in lower case; 'bb:ss.f' is in domain 0000."""
    value = value.lower()
    if len(value) == 7:
        value = "0000:" + value
    if not PCI_ADDRESS_RE.match(value):
        raise ValueError(f"must be a PCI address like '0000:03:00.0', got {value!r}")
    return value


def pci_parts(address: str) -> tuple[int, int, int, int]:
    """domain, bus, slot and function of a normalised PCI address."""
    match = PCI_ADDRESS_RE.match(address)
    assert match
    domain, bus, slot, function = match.groups()
    return int(domain, 16), int(bus, 16), int(slot, 16), int(function, 16)


class PciDevice(SpecModel):
    """A host PCI device given to the guest through vfio."""

    address: str = Field(description="Host PCI address 'dddd:bb:ss.f', e.g. '0000:03:00.0'.")
    managed: bool = Field(True, description="Let libvirt detach the device from its host driver (vfio).")

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, value: object) -> object:
        return pci_address(value) if isinstance(value, str) else value

    @property
    def parts(self) -> tuple[int, int, int, int]:
        return pci_parts(self.address)


class UsbDevice(SpecModel):
    """A host USB device, either by position (bus+device) or by identity (vendor+product)."""

    bus: int | None = Field(None, ge=1, le=255, description="Host USB bus number.")
    device: int | None = Field(None, ge=1, le=127, description="Device number on that bus.")
    vendor: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{4}$", description="Vendor id, e.g. 0x046d.")
    product: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{4}$", description="Product id, e.g. 0xc52b.")

    @field_validator("vendor", "product")
    @classmethod
    def _nonzero(cls, value: str | None) -> str | None:
        if value is not None and int(value, 16) == 0:
            raise ValueError("0x0000 is not a USB id")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> "UsbDevice":
        by_position = self.bus is not None and self.device is not None
        by_identity = self.vendor is not None and self.product is not None
        if by_position == by_identity:
            raise ValueError("give either bus and device, or vendor and product")
        return self


class Usb(SpecModel):
    """USB controller and SPICE USB redirection."""

    controller: Literal["qemu-xhci", "nec-xhci", "ich9-ehci1", "piix3-uhci", "none"] | None = Field(
        None, description="Default: the hypervisor's default controller."
    )
    redirection: int = Field(0, ge=0, le=4, description="SPICE USB redirection channels.")


class Passthrough(SpecModel):
    """Host devices given to the guest."""

    pci: list[PciDevice] = Field(default_factory=list, description="PCI devices.")
    usb: list[UsbDevice] = Field(default_factory=list, description="USB devices.")
