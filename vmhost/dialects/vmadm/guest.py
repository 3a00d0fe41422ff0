"""What a vmadm payload tells the guest (addresses, gateways, resolvers, hostname, keys, scripts, cloud-init
documents) as a spec's per-NIC guest settings and cloud_init block.

SmartOS hands these to the guest through its metadata service; vmhost hands the same through the NoCloud seed.
"""

import ipaddress
import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from vmhost.dialects.vmadm import values
from vmhost.dialects.vmadm.validate import DYNAMIC_IPS
from vmhost.spec.cloud_init import HOSTNAME_PATTERN, ssh_key
from vmhost.spec.guest_net import MAX_NAMESERVERS

Document = dict[str, Any]
Report = Callable[[str, str], None]
"""problem(path, message)"""

USER_SCRIPT = "/var/lib/cloud/scripts/per-boot/99_user_script"
"""Where cloud-init's SmartOS datasource puts user-script: run at every boot, as SmartOS runs it."""
ROOT_KEYS = "root_authorized_keys"
USER_SCRIPT_KEY = "user-script"
CLOUD_INIT_PREFIX = "cloud-init:"
CLOUD_INIT_KEYS = {"cloud-init:user-data": "user_data", "cloud-init:network-config": "network_config"}
GUEST_KEYS = frozenset({ROOT_KEYS, USER_SCRIPT_KEY})
NIC_GUEST_KEYS = ("ips", "ip", "netmask", "gateway", "gateways")


def is_guest_key(key: str) -> bool:
    """customer_metadata keys that configure the guest rather than label the VM."""
    return key in GUEST_KEYS or key.startswith(CLOUD_INIT_PREFIX)


def nic_guest(path: str, nic: dict[str, Any], problem: Report) -> Document:
    """ips (CIDR, dhcp, addrconf), or the older ip/netmask; gateways (or the older gateway)."""
    entry: Document = {}
    addresses: list[str] = []
    for item in values.list_items(nic.get("ips", [])) or []:
        if item == "dhcp":
            entry["dhcp"] = True
        elif item == "addrconf":
            entry["dhcp6"] = True
        else:
            addresses.append(item)
    if "ip" in nic:
        addresses += _legacy_address(path, nic, entry, problem)
    if addresses:
        entry["addresses"] = addresses
    gateways = values.list_items(nic.get("gateways", [])) or []
    gateways += [str(nic["gateway"])] if "gateway" in nic else []
    for version, key in ((4, "gateway4"), (6, "gateway6")):
        found = [g for g in dict.fromkeys(gateways) if _version(g) == version]
        if len(found) > 1:
            problem(f"{path}.gateways", f"vmhost gives a NIC one IPv{version} gateway, not {', '.join(found)}")
        elif found:
            entry[key] = found[0]
    for gateway in gateways:
        if _version(gateway) is None:
            problem(f"{path}.gateways", f"{gateway!r} is not an IP address")
    return entry


def _legacy_address(path: str, nic: dict[str, Any], entry: Document, problem: Report) -> list[str]:
    ip = str(nic["ip"])
    if ip in DYNAMIC_IPS:
        entry["dhcp" if ip == "dhcp" else "dhcp6"] = True
        return []
    if "netmask" not in nic:
        problem(f"{path}.netmask", "is needed with a static ip (or give ips in CIDR form)")
        return []
    try:
        return [str(ipaddress.ip_interface(f"{ip}/{nic['netmask']}"))]
    except ValueError:
        problem(f"{path}.ip", f"{ip}/{nic['netmask']} is not an address with a netmask")
        return []


def _version(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return None


def resolvers(doc: Document, value: Any, problem: Report) -> None:
    """vmadm's resolvers are the VM's; vmhost gives them to the first NIC's dns."""
    servers = values.list_items(value) or []
    if not servers:
        return
    if len(servers) > MAX_NAMESERVERS:
        problem("resolvers", f"at most {MAX_NAMESERVERS} resolvers (the guest's resolver reads no more)")
    nics = doc.get("nics") or []
    if not nics:
        problem("resolvers", "vmhost gives resolvers to the guest with a NIC: add one")
        return
    nics[0]["dns"] = {"nameservers": servers}


def hostname(doc: Document, value: Any, problem: Report) -> None:
    if not re.match(HOSTNAME_PATTERN, str(value)):
        problem("hostname", f"must be a host name (letters, digits and '-', at most 63), got {value!r}")
        return
    doc.setdefault("cloud_init", {})["hostname"] = str(value)


def metadata(doc: Document, metadata: dict[str, Any], problem: Report) -> None:
    """root_authorized_keys -> root's keys, user-script -> a per-boot script, cloud-init:* -> raw documents."""
    block: Document = {}
    where = "customer_metadata"
    if ROOT_KEYS in metadata:
        keys = [line.strip() for line in str(metadata[ROOT_KEYS]).splitlines() if line.strip()]
        for key in keys:
            try:
                ssh_key(key)
            except ValueError as exc:
                problem(f"{where}.{ROOT_KEYS}", str(exc))
        if keys:
            block["users"] = [{"name": "root", "ssh_authorized_keys": keys}]
    if USER_SCRIPT_KEY in metadata:
        script = str(metadata[USER_SCRIPT_KEY])
        block["write_files"] = [{"path": USER_SCRIPT, "content": script, "permissions": "0755"}]
    for key in sorted(k for k in metadata if k.startswith(CLOUD_INIT_PREFIX)):
        if key not in CLOUD_INIT_KEYS:
            problem(f"{where}.{key}", f"vmhost's seed carries only {' and '.join(CLOUD_INIT_KEYS)}")
            continue
        block[CLOUD_INIT_KEYS[key]] = str(metadata[key])
    if "user_data" in block and ("users" in block or "write_files" in block):
        problem(
            f"{where}.cloud-init:user-data",
            "vmhost cannot merge it with root_authorized_keys or user-script: put those into the user-data",
        )
    if "network_config" in block and any(_configures_guest(nic) for nic in doc.get("nics") or []):
        problem(
            f"{where}.cloud-init:network-config",
            "vmhost cannot merge it with the NICs' ips, gateways and the resolvers: use one or the other",
        )
    if block:
        doc.setdefault("cloud_init", {}).update(block)


def _configures_guest(nic: Document) -> bool:
    return any(key in nic for key in ("addresses", "dhcp", "dhcp6", "gateway4", "gateway6", "dns"))


def derived_name(doc: Document) -> str:
    """vmadm needs no alias; vmhost names such a VM after its uuid (made now when the payload has none)."""
    uuid = doc.setdefault("uuid", str(uuidlib.uuid4()))
    return f"vm-{uuid}"


def routes(doc: Document, value: dict[str, Any], problem: Report) -> None:
    """vmadm's routes ({destination: gateway}) are the VM's; each goes to the NIC whose static addresses reach
    its gateway. Routes through a NIC (`nics[N]`, `macs[...]`) name no gateway and have no counterpart."""
    nics = doc.get("nics") or []
    for destination, gateway in value.items():
        where = f"routes.{destination}"
        try:
            network = ipaddress.ip_network(destination, strict=False)
            via = ipaddress.ip_address(str(gateway))
        except ValueError:
            problem(where, f"vmhost routes go to a network via a gateway address, not via {gateway!r}")
            continue
        owner = next((nic for nic in nics if any(via in ipaddress.ip_interface(a).network for a in _static(nic))), None)
        if owner is None:
            problem(where, f"no NIC has a static address in the subnet of gateway {via}")
            continue
        owner.setdefault("routes", []).append({"to": str(network), "via": str(via)})


def _static(nic: Document) -> list[str]:
    return [address for address in nic.get("addresses", []) if _is_interface(address)]


def _is_interface(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True
