"""NICs: vmadm's nics[]; a bridge or network name becomes the nic_tag, the first NIC is the primary."""

import re
from collections.abc import Iterator
from typing import Any

from vmhost.render.vmadm.brands import Brand
from vmhost.render.vmadm.guest import nic_guest
from vmhost.spec import VMSpec
from vmhost.spec.nic import Nic

NIC_TAG = re.compile(r"^[A-Za-z0-9_/]+$")
NIC_MODELS: dict[Brand, tuple[str, ...]] = {"kvm": ("virtio", "e1000", "rtl8139"), "bhyve": ("virtio", "e1000")}
MTU_RANGE = (576, 9000)


def render_nics(spec: VMSpec) -> list[dict[str, Any]]:
    return [_nic(nic, primary=index == 0) for index, nic in enumerate(spec.nics)]


def _nic(nic: Nic, primary: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"mac": nic.mac, "model": nic.model, "nic_tag": nic.source}
    if nic.mtu is not None:
        entry["mtu"] = nic.mtu
    if nic.allowed_ips:
        entry["allowed_ips"] = [str(ip) for ip in nic.allowed_ips]
    entry.update(nic_guest(nic))
    if nic.smartos is not None and nic.smartos.allowed_dhcp_cids:
        entry["allowed_dhcp_cids"] = list(nic.smartos.allowed_dhcp_cids)
    if primary:
        entry["primary"] = True
    return entry


def nic_problems(spec: VMSpec, brand: Brand) -> Iterator[tuple[str, str]]:
    for index, nic in enumerate(spec.nics):
        path = f"nics.{index}"
        if nic.type == "direct":
            yield f"{path}.type", "vmadm attaches NICs to nic tags, not to macvtap devices; use bridge or network"
        if nic.type == "hostdev":
            yield f"{path}.type", "vmadm attaches NICs to nic tags, not SR-IOV VFs; use bridge or network"
        if nic.vlan is not None:
            yield f"{path}.vlan", "a VF's VLAN tag has no vmadm counterpart (vmadm tags a nic tag's VNIC)"
        if nic.type != "hostdev" and not NIC_TAG.match(nic.source):
            yield f"{path}.source", f"a nic_tag is letters, digits, '_' and '/'; got {nic.source!r}"
        if nic.model not in NIC_MODELS[brand]:
            yield f"{path}.model", f"the {brand} brand has NIC models {', '.join(NIC_MODELS[brand])}"
        if brand == "bhyve" and nic.smartos is not None and nic.smartos.allowed_dhcp_cids:
            yield f"{path}.smartos.allowed_dhcp_cids", "the bhyve brand takes no allowed_dhcp_cids (kvm does)"
        if nic.mtu is not None and not MTU_RANGE[0] <= nic.mtu <= MTU_RANGE[1]:
            yield f"{path}.mtu", f"vmadm accepts an MTU of {MTU_RANGE[0]}-{MTU_RANGE[1]}"
        unsupported = {
            "tap": nic.tap is not None,
            "bandwidth": nic.bandwidth is not None,
            "queues": nic.queues is not None,
            "boot_order": nic.boot_order is not None,
        }
        for field, asked in unsupported.items():
            if asked:
                yield f"{path}.{field}", "a vmadm NIC cannot carry it"
    if brand == "bhyve" and "network" in spec.boot.order[:1]:
        yield "boot.order", "a bhyve payload cannot make the VM boot from the network (kvm's boot string can)"
