"""network-config version 2: one `ethernets` entry per NIC with guest settings, matched by MAC address."""

from typing import Any

from vmhost.render.cloudinit.text import dump
from vmhost.spec import VMSpec
from vmhost.spec.guest_net import Route
from vmhost.spec.nic import Nic


def network_config(spec: VMSpec) -> str:
    """The raw network_config when given; else the NICs' settings. Without any, the first NIC asks DHCP (what
    cloud-init's fallback would do), written out so the guest does the same whatever its image's defaults."""
    if spec.cloud_init is not None and spec.cloud_init.network_config is not None:
        return spec.cloud_init.network_config
    ethernets = {f"nic{index}": _ethernet(nic) for index, nic in enumerate(spec.nics) if nic.configures_guest()}
    if not ethernets and spec.nics:
        ethernets = {"nic0": {"match": {"macaddress": spec.nics[0].mac}, "dhcp4": True}}
    return dump({"version": 2, "ethernets": ethernets})


def _ethernet(nic: Nic) -> dict[str, Any]:
    entry: dict[str, Any] = {"match": {"macaddress": nic.mac}}
    if nic.guest_name:
        entry["set-name"] = nic.guest_name
    entry["dhcp4"] = nic.dhcp
    entry["dhcp6"] = nic.dhcp6
    if nic.addresses:
        entry["addresses"] = [str(address) for address in nic.addresses]
    if nic.gateway4:
        entry["gateway4"] = str(nic.gateway4)
    if nic.gateway6:
        entry["gateway6"] = str(nic.gateway6)
    if nic.routes:
        entry["routes"] = [_route(route) for route in nic.routes]
    if nic.dns is not None:
        servers: dict[str, Any] = {}
        if nic.dns.nameservers:
            servers["addresses"] = [str(server) for server in nic.dns.nameservers]
        if nic.dns.search:
            servers["search"] = list(nic.dns.search)
        entry["nameservers"] = servers
    if nic.mtu:
        entry["mtu"] = nic.mtu
    return entry


def _route(route: Route) -> dict[str, Any]:
    default = "::/0" if route.via.version == 6 else "0.0.0.0/0"
    entry: dict[str, Any] = {"to": default if route.to == "default" else route.to, "via": str(route.via)}
    if route.metric is not None:
        entry["metric"] = route.metric
    return entry
