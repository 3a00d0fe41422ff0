"""Network interfaces as xl vif specifications (xl-network-configuration(5)): bridged only."""

from vmhost.render.xen.context import Problems
from vmhost.render.xen.domain import domain_type
from vmhost.render.xen.values import Settings, strings
from vmhost.spec import VMSpec
from vmhost.spec.nic import Nic

QEMU_MODELS = {"virtio": "virtio-net-pci", "e1000": "e1000", "rtl8139": "rtl8139"}
"""An HVM vif's model is the QEMU device libxl asks for (-device MODEL); PVH guests use netfront."""
KIB = 1024


def vif_settings(spec: VMSpec) -> Settings:
    hvm = domain_type(spec) == "hvm"
    return {"vif": strings(vif_spec(nic, hvm) for nic in spec.nics)} if spec.nics else {}


def vif_spec(nic: Nic, hvm: bool) -> str:
    """A bridged NIC (the only kind vif_problems lets through): xl's vif-bridge script plugs it in."""
    parts = {"mac": nic.mac, "bridge": nic.source}
    if hvm:
        parts["model"] = QEMU_MODELS[nic.model]
    if nic.tap:
        parts["vifname"] = nic.tap
    if nic.mtu:
        parts["mtu"] = str(nic.mtu)
    outbound = nic.bandwidth.outbound if nic.bandwidth else None
    if outbound:
        parts["rate"] = f"{outbound.average_kib_s * KIB}B/s"
    return ",".join(f"{key}={value}" for key, value in parts.items())


def vif_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    for index, nic in enumerate(spec.nics):
        where = f"nics.{index}"
        if nic.type != "bridge":
            problems.append((f"{where}.type", f"the xen driver attaches NICs to host bridges only, not {nic.type}"))
        if nic.allowed_ips:
            problems.append((f"{where}.allowed_ips", "IP filtering is not supported on the xen driver"))
        bandwidth = nic.bandwidth
        if bandwidth and bandwidth.inbound:
            problems.append(
                (f"{where}.bandwidth.inbound", "xl limits only traffic from the guest (bandwidth.outbound)")
            )
        outbound = bandwidth.outbound if bandwidth else None
        if outbound and (outbound.peak_kib_s or outbound.burst_kib):
            problems.append((f"{where}.bandwidth.outbound", "xl's vif rate has no peak or burst"))
    return problems
