"""CD-ROM drives: always read-only, with an ISO in the tray or empty."""

from lxml import etree

from vmhost.render.libvirt.controllers import ScsiLayout, drive_address
from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec.cdrom import Cdrom


def cdrom_element(cdrom: Cdrom, layout: ScsiLayout) -> etree._Element:
    node = element("disk", type="file", device="cdrom")
    sub(node, "driver", name="qemu", type="raw")
    if cdrom.iso:
        sub(node, "source", file=str(cdrom.iso))
    sub(node, "target", dev=cdrom.target, bus=cdrom.bus)
    if cdrom.boot_order is not None:
        sub(node, "boot", order=cdrom.boot_order)
    sub(node, "readonly")
    address = drive_address(layout, cdrom.target)
    if address is not None:
        node.append(address)
    return node
