"""Controllers the spec implies: SCSI host adapters for scsi/virtio-scsi devices, and the USB controller.

SCSI devices get explicit drive addresses. Left to itself libvirt derives the controller from the target name
(sda..sdg on controller 0, ...) and picks the controller model on its own, which would ignore the bus the spec
asks for. Controllers are numbered densely (virtio-scsi first, then lsilogic), because libvirt fills any gap
below the highest index with an implicit controller of its default model.
"""

from dataclasses import dataclass

from lxml import etree

from vmhost.render.libvirt.nodes import element
from vmhost.spec import VMSpec

LSILOGIC_UNITS = 7
"""The LSI 53C895A has SCSI IDs 0-7 and is itself ID 7, so it takes seven devices."""


@dataclass(frozen=True)
class DriveAddress:
    controller: int
    unit: int


@dataclass(frozen=True)
class ScsiLayout:
    """SCSI controllers as (index, model), and the drive address of every SCSI device by target."""

    controllers: list[tuple[int, str]]
    addresses: dict[str, DriveAddress]


def scsi_layout(spec: VMSpec) -> ScsiLayout:
    """virtio-scsi disks share one controller (it has 16384 LUNs); bus 'scsi' devices fill lsilogic ones."""
    virtio = [d.target for d in spec.disks if d.bus == "virtio-scsi"]
    lsi = [d.target for d in spec.disks if d.bus == "scsi"] + [c.target for c in spec.cdroms if c.bus == "scsi"]
    controllers: list[tuple[int, str]] = []
    addresses: dict[str, DriveAddress] = {}
    if virtio:
        controllers.append((0, "virtio-scsi"))
        addresses.update({_target(t): DriveAddress(0, unit) for unit, t in enumerate(virtio)})
    first = len(controllers)
    for position, target in enumerate(lsi):
        index, unit = first + position // LSILOGIC_UNITS, position % LSILOGIC_UNITS
        if unit == 0:
            controllers.append((index, "lsilogic"))
        addresses[_target(target)] = DriveAddress(index, unit)
    return ScsiLayout(controllers, addresses)


def _target(target: str | None) -> str:
    """parse_spec() assigns every target; a spec that skipped it cannot be addressed."""
    if target is None:
        raise ValueError("disk and cdrom targets must be assigned (use vmhost.spec.parse_spec)")
    return target


def controller_elements(spec: VMSpec, layout: ScsiLayout) -> list[etree._Element]:
    """SCSI controllers, then the USB controller when the spec picks a model (else libvirt's default is kept)."""
    parts = [element("controller", type="scsi", index=index, model=model) for index, model in layout.controllers]
    if spec.usb.controller is not None:
        parts.append(element("controller", type="usb", index=0, model=spec.usb.controller))
    return parts


def drive_address(layout: ScsiLayout, target: str | None) -> etree._Element | None:
    """The <address type='drive'> of a SCSI device; None for devices on other buses."""
    address = layout.addresses.get(_target(target))
    if address is None:
        return None
    return element("address", type="drive", controller=address.controller, bus=0, target=0, unit=address.unit)
