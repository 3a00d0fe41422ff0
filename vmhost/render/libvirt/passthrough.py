"""Host PCI (vfio) and USB devices handed to the guest."""

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub, yes_no
from vmhost.spec.passthrough import PciDevice, UsbDevice


def pci_hostdev(device: PciDevice) -> etree._Element:
    """managed='yes' lets libvirt unbind the device from its host driver and rebind it afterwards."""
    domain, bus, slot, function = device.parts
    node = element("hostdev", mode="subsystem", type="pci", managed=yes_no(device.managed))
    sub(
        sub(node, "source"),
        "address",
        domain=f"0x{domain:04x}",
        bus=f"0x{bus:02x}",
        slot=f"0x{slot:02x}",
        function=f"0x{function:x}",
    )
    return node


def usb_hostdev(device: UsbDevice) -> etree._Element:
    """By vendor/product the device is found wherever it is plugged; by bus/device, only at that position."""
    node = element("hostdev", mode="subsystem", type="usb")
    source = sub(node, "source")
    if device.vendor and device.product:
        sub(source, "vendor", id=device.vendor)
        sub(source, "product", id=device.product)
    else:
        sub(source, "address", bus=device.bus, device=device.device)
    return node
