"""CD-ROM drives: always read-only, with an ISO in the tray (a host file or a Ceph RBD image) or empty."""

from lxml import etree

from vmhost.render.libvirt.controllers import ScsiLayout, drive_address
from vmhost.render.libvirt.disk import rbd_source
from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec.cdrom import Cdrom


def cdrom_element(cdrom: Cdrom, layout: ScsiLayout) -> etree._Element:
    node = element("disk", type="network" if cdrom.rbd else "file", device="cdrom")
    sub(node, "driver", name="qemu", type="raw")
    if cdrom.rbd:
        node.append(rbd_source(cdrom.rbd))
    elif cdrom.iso:
        sub(node, "source", file=str(cdrom.iso))
    sub(node, "target", dev=cdrom.target, bus=cdrom.bus)
    if cdrom.boot_order is not None:
        sub(node, "boot", order=cdrom.boot_order)
    sub(node, "readonly")
    address = drive_address(layout, cdrom.target)
    if address is not None:
        node.append(address)
    return node
