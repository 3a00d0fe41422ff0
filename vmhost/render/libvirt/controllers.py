"""Controllers the spec implies: SCSI host adapters for scsi/virtio-scsi devices, and the USB controller.

SCSI devices get explicit drive addresses. Left to itself libvirt derives the controller from the target name
(sda..sdg on controller 0, ...) and picks the controller model on its own, which would ignore the bus the spec
asks for. Controllers are numbered densely (virtio-scsi first, then lsilogic), because libvirt fills any gap
below the highest index with an implicit controller of its default model. virtio-scsi disks that name an
IOThread get a controller of their own run by that IOThread (the IOThread belongs to the controller, not the disk),
one per IOThread, after the shared one. The NoCloud seed CD-ROM sits on the shared virtio-scsi controller (added for it
when the spec has none) at a SCSI target of its own, so no disk ever wants its address.
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec import VMSpec
from vmhost.spec.cdrom import Cdrom

LSILOGIC_UNITS = 7
"""The LSI 53C895A has SCSI IDs 0-7 and is itself ID 7, so it takes seven devices."""
SEED_SCSI_TARGET = 1
"""The seed's SCSI target on the shared virtio-scsi controller; the spec's devices are LUNs of target 0, so a disk
plugged in later (live too) takes the next LUN there and never the seed's address."""


@dataclass(frozen=True)
class DriveAddress:
    controller: int
    unit: int
    target: int = 0


@dataclass(frozen=True)
class ScsiController:
    index: int
    model: str
    iothread: int | None = None


@dataclass(frozen=True)
class ScsiLayout:
    """SCSI controllers, and the drive address of every SCSI device by target."""

    controllers: list[ScsiController]
    addresses: dict[str, DriveAddress]


def scsi_layout(spec: VMSpec, seed: Cdrom | None = None) -> ScsiLayout:
    """virtio-scsi disks sit on the controller they name, else share one per IOThread (the one without first; a
    controller has 16384 LUNs) at the lowest free index; the seed joins the one without; bus 'scsi' devices then
    fill lsilogic ones. Any index left free below the highest gets an empty virtio-scsi controller, so libvirt
    adds none of its own model."""
    virtio = [d for d in spec.disks if d.bus == "virtio-scsi"]
    runs: dict[int, int | None] = {d.controller: d.iothread for d in virtio if d.controller is not None}
    index_of: dict[int | None, int] = {}
    for index, thread in sorted(runs.items()):
        index_of.setdefault(thread, index)
    implicit = {d.iothread for d in virtio if d.controller is None} | ({None} if seed is not None else set())
    for thread in sorted(implicit, key=lambda t: -1 if t is None else t):
        if thread not in index_of:
            index_of[thread] = _lowest_free(runs)
            runs[index_of[thread]] = thread
    addresses: dict[str, DriveAddress] = {}
    units: Counter[int] = Counter()
    for disk in virtio:
        index = disk.controller if disk.controller is not None else index_of[disk.iothread]
        addresses[_target(disk.target)] = DriveAddress(index, units[index])
        units[index] += 1
    if seed is not None:
        addresses[_target(seed.target)] = DriveAddress(index_of[None], 0, target=SEED_SCSI_TARGET)
    controllers = {index: ScsiController(index, "virtio-scsi", thread) for index, thread in runs.items()}
    lsi = [d.target for d in spec.disks if d.bus == "scsi"] + [c.target for c in spec.cdroms if c.bus == "scsi"]
    index = -1
    for position, target in enumerate(lsi):
        if position % LSILOGIC_UNITS == 0:
            index = _lowest_free(controllers)
            controllers[index] = ScsiController(index, "lsilogic")
        addresses[_target(target)] = DriveAddress(index, position % LSILOGIC_UNITS)
    for gap in range(max(controllers, default=-1)):
        controllers.setdefault(gap, ScsiController(gap, "virtio-scsi"))
    return ScsiLayout([controllers[i] for i in sorted(controllers)], addresses)


def _lowest_free(taken: Mapping[int, object]) -> int:
    return next(index for index in range(len(taken) + 1) if index not in taken)


def _target(target: str | None) -> str:
    """parse_spec() assigns every target; a spec that skipped it cannot be addressed."""
    if target is None:
        raise ValueError("disk and cdrom targets must be assigned (use vmhost.spec.parse_spec)")
    return target


def controller_elements(spec: VMSpec, layout: ScsiLayout) -> list[etree._Element]:
    """SCSI controllers, then the USB controller when the spec picks a model (else libvirt's default is kept)."""
    parts = [_scsi_controller(controller) for controller in layout.controllers]
    if spec.usb.controller is not None:
        parts.append(element("controller", type="usb", index=0, model=spec.usb.controller))
    return parts


def _scsi_controller(controller: ScsiController) -> etree._Element:
    node = element("controller", type="scsi", index=controller.index, model=controller.model)
    if controller.iothread is not None:
        sub(node, "driver", iothread=controller.iothread)
    return node


def drive_address(layout: ScsiLayout, target: str | None) -> etree._Element | None:
    """The <address type='drive'> of a SCSI device; None for devices on other buses."""
    address = layout.addresses.get(_target(target))
    if address is None:
        return None
    return element(
        "address", type="drive", controller=address.controller, bus=0, target=address.target, unit=address.unit
    )
