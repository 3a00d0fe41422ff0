"""Network interfaces: attachment (bridge, libvirt network, macvtap), identity, QoS and anti-spoofing."""

from typing import Literal

from lxml import etree

from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec.nic import Nic, Rate
from vmhost.spec.passthrough import pci_parts

CLEAN_TRAFFIC = "clean-traffic"


def nic_element(nic: Nic, accel: Literal["kvm", "tcg"]) -> etree._Element:
    if nic.type == "hostdev":
        return _vf_element(nic)
    node = element("interface", type=nic.type)
    sub(node, "mac", address=nic.mac)
    _source(node, nic)
    if nic.tap:
        sub(node, "target", dev=nic.tap)
    sub(node, "model", type=nic.model)
    if nic.queues:
        sub(node, "driver", name="vhost" if accel == "kvm" else None, queues=nic.queues)
    if nic.mtu:
        sub(node, "mtu", size=nic.mtu)
    _bandwidth(node, nic)
    _filter(node, nic)
    if nic.boot_order is not None:
        sub(node, "boot", order=nic.boot_order)
    return node


def _vf_element(nic: Nic) -> etree._Element:
    """An SR-IOV VF through vfio; managed: libvirt binds it to vfio-pci and sets its MAC (and VLAN) on the PF."""
    domain, bus, slot, function = pci_parts(nic.source)
    node = element("interface", type="hostdev", managed="yes")
    sub(node, "mac", address=nic.mac)
    sub(
        sub(node, "source"),
        "address",
        type="pci",
        domain=f"0x{domain:04x}",
        bus=f"0x{bus:02x}",
        slot=f"0x{slot:02x}",
        function=f"0x{function:x}",
    )
    sub(node, "driver", name="vfio")
    if nic.vlan is not None:
        sub(sub(node, "vlan"), "tag", id=nic.vlan)
    if nic.boot_order is not None:
        sub(node, "boot", order=nic.boot_order)
    return node


def _source(node: etree._Element, nic: Nic) -> None:
    if nic.type == "bridge":
        sub(node, "source", bridge=nic.source)
    elif nic.type == "network":
        sub(node, "source", network=nic.source)
    else:
        sub(node, "source", dev=nic.source, mode=nic.direct_mode)


def _bandwidth(node: etree._Element, nic: Nic) -> None:
    """KiB/s and KiB are libvirt's own units, so the spec's values go through unchanged."""
    if not nic.bandwidth or not (nic.bandwidth.inbound or nic.bandwidth.outbound):
        return
    bandwidth = sub(node, "bandwidth")
    for direction, rate in (("inbound", nic.bandwidth.inbound), ("outbound", nic.bandwidth.outbound)):
        if rate:
            _rate(bandwidth, direction, rate)


def _rate(parent: etree._Element, direction: str, rate: Rate) -> None:
    sub(parent, direction, average=rate.average_kib_s, peak=rate.peak_kib_s, burst=rate.burst_kib)


def _filter(node: etree._Element, nic: Nic) -> None:
    """clean-traffic with one IP parameter per allowed address, which also pins the source MAC.

    The spec refuses allowed_ips on direct (macvtap) NICs: libvirt would silently drop the filter there.
    """
    if not nic.allowed_ips:
        return
    filterref = sub(node, "filterref", filter=CLEAN_TRAFFIC)
    for ip in nic.allowed_ips:
        sub(filterref, "parameter", name="IP", value=str(ip))
