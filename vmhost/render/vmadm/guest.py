"""What the guest is told, as SmartOS tells it: NIC ips and gateways, routes, resolvers and hostname in the payload,
user-data and raw network-config under cloud-init's customer_metadata keys (read by cloud-init's SmartOS
datasource through the metadata service)."""

from collections.abc import Iterator
from typing import Any

from vmhost.render.cloudinit.userdata import has_user_data, user_data
from vmhost.spec import VMSpec
from vmhost.spec.nic import Nic

USER_DATA_KEY = "cloud-init:user-data"
NETWORK_CONFIG_KEY = "cloud-init:network-config"


def render_guest(spec: VMSpec, labels: dict[str, str]) -> dict[str, Any]:
    """hostname, resolvers, and customer_metadata: the labels and the cloud-init keys."""
    payload: dict[str, Any] = {}
    block = spec.cloud_init
    if block is not None and block.hostname:
        payload["hostname"] = block.hostname
    routes = {route.to: str(route.via) for nic in spec.nics for route in nic.routes}
    if routes:
        payload["routes"] = routes
    servers = [str(s) for nic in spec.nics if nic.dns for s in nic.dns.nameservers]
    if servers:
        payload["resolvers"] = list(dict.fromkeys(servers))
    metadata: dict[str, str] = {}
    if block is not None and has_user_data(spec):
        metadata[USER_DATA_KEY] = user_data(spec)
    if block is not None and block.network_config is not None:
        metadata[NETWORK_CONFIG_KEY] = block.network_config
    if metadata:
        payload["customer_metadata"] = {**labels, **metadata}
    return payload


def nic_guest(nic: Nic) -> dict[str, Any]:
    """vmadm's ips (CIDR, dhcp, addrconf) and gateways."""
    ips = [str(address) for address in nic.addresses]
    ips += ["dhcp"] if nic.dhcp else []
    ips += ["addrconf"] if nic.dhcp6 else []
    gateways = [str(g) for g in (nic.gateway4, nic.gateway6) if g is not None]
    entry: dict[str, Any] = {}
    if ips:
        entry["ips"] = ips
    if gateways:
        entry["gateways"] = gateways
    return entry


def guest_problems(spec: VMSpec) -> Iterator[tuple[str, str]]:
    for index, nic in enumerate(spec.nics):
        path = f"nics.{index}"
        for number, route in enumerate(nic.routes):
            if route.to == "default":
                yield f"{path}.routes.{number}.to", "vmadm sets default routes with the NIC's gateways"
            if route.metric is not None:
                yield f"{path}.routes.{number}.metric", "vmadm routes carry no metric"
        if nic.guest_name:
            yield f"{path}.guest_name", "SmartOS names the guest's interfaces itself"
        if nic.dns and nic.dns.search:
            yield f"{path}.dns.search", "a vmadm payload carries no search domains (put them in user-data)"
    destinations = [route.to for nic in spec.nics for route in nic.routes]
    if len(destinations) != len(set(destinations)):
        yield "nics", "vmadm's routes are the VM's: one gateway per destination network"
    servers = [tuple(nic.dns.nameservers) for nic in spec.nics if nic.dns and nic.dns.nameservers]
    if len(set(servers)) > 1:
        yield "nics", "vmadm's resolvers are the VM's: give every NIC the same nameservers, or only one NIC"
    for index, user in enumerate(spec.cloud_init.users if spec.cloud_init else []):
        if user.password_hash is not None:
            yield (
                f"cloud_init.users.{index}.password_hash",
                "vmhost's record of a SmartOS VM is guest-readable, so it cannot keep a password hash; use SSH keys",
            )
