"""VM.validate for kvm and bhyve payloads: property types per action and brand (proptable), then the rules
vmadm applies to disks[], nics[] and pci_devices[] (disk sources, models, nic_tag, one primary NIC, device paths
and slots).

Paths follow vmadm: a sub-property that fails for any element is `nics.*.mtu` (also for add_nics, which VM.js
checks as nics); the disk-source and pci_devices rules name the element, `disks.0.size`, `pci_devices.0.path`.
Checks that need the host (a zpool or an image that exists, imgadm filling in a missing image_size) are not made.
Zone brands (joyent, lx, ...) are checked by property name and, where they share it with HVM brands, by type,
then refused: vmhost runs no zones.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from vmhost.dialects.vmadm import values
from vmhost.dialects.vmadm.proptable import (
    BOOTROMS_AT_CREATE,
    DISK_MODELS,
    ELEMENTS,
    HVM,
    TABLES,
    TOP,
    ZONE_BRANDS,
    ZONE_NICS,
    ZONE_TOP,
    Prop,
)
from vmhost.dialects.vmadm.validation import VmadmValidation
from vmhost.spec.smartos import parse_pci_slot

NIC_TAG = re.compile(r"^[A-Za-z0-9_/]+$")
DYNAMIC_IPS = ("dhcp", "addrconf")
MAX_IPS = 20
ACTIONS = ("create", "update")
ANY = Prop(lambda _value: True, brands=ZONE_BRANDS)
"""A zone-only property: its name is known, its type is not checked here."""


@dataclass(frozen=True)
class _Scope:
    """What every rule needs: where findings go, the whole payload, and the brands it is checked for."""

    result: VmadmValidation
    payload: dict[str, Any]
    brands: frozenset[str]


def validate_payload(payload: dict[str, Any], action: str = "create", brand: str | None = None) -> VmadmValidation:
    """`vmadm validate create` takes the brand from the payload; for `validate update <brand>` pass it (without
    one, properties of either HVM brand pass)."""
    brand = payload.get("brand") if action == "create" and brand is None else brand
    result = VmadmValidation(action=action, brand=brand if isinstance(brand, str) else None)
    if brand in ZONE_BRANDS:
        result.zone_brand = str(brand)
    elif brand is not None and brand not in HVM:
        result.bad_brand = str(brand)
        return result
    scope = _Scope(result, payload, frozenset({brand}) if brand else HVM)
    for key, value in payload.items():
        _check_top(scope, key, value)
    if action == "create" and "brand" not in payload:
        result.add("missing_properties", "brand")
    for key in ("nics", "add_nics"):
        if _primary_count(payload.get(key)) > 1:
            result.add("bad_values", f"{key}.*.primary")
    return result


def _allowed(prop: Prop | None, action: str, brands: frozenset[str]) -> bool:
    return prop is not None and action in prop.actions and bool(prop.brands & brands)


def _zone_prop(table: dict[str, Prop], known: frozenset[str], name: str) -> Prop | None:
    """A zone brand's property: typed like the HVM one of the same name, else only known by name."""
    if name not in known:
        return None
    prop = table.get(name)
    return Prop(prop.check, prop.actions, ZONE_BRANDS) if prop is not None else ANY


def _top_prop(scope: _Scope, key: str) -> Prop | None:
    return _zone_prop(TOP, ZONE_TOP, key) if scope.result.zone_brand else TOP.get(key)


def _check_top(scope: _Scope, key: str, value: Any) -> None:
    result, prop = scope.result, _top_prop(scope, key)
    if result.action not in ACTIONS or not _allowed(prop, result.action, scope.brands):
        result.add("bad_properties", key)
    elif prop is not None and not prop.check(value):
        result.add("bad_values", key)
    elif key in ELEMENTS:
        _check_elements(scope, key, value)
    elif key == "bootrom" and result.action == "create" and value not in BOOTROMS_AT_CREATE:
        result.add("bad_values", key)


def _check_elements(scope: _Scope, key: str, elements: list[dict[str, Any]]) -> None:
    """Each element's sub-properties under the name VM.js checks them as (`nics.*.mtu` for add_nics too), then
    the rules of its kind."""
    table_name, sub_action = ELEMENTS[key]
    table = TABLES[table_name]
    for index, element in enumerate(elements):
        for name, value in element.items():
            sub = _zone_prop(table, ZONE_NICS, name) if scope.result.zone_brand else table.get(name)
            if not _allowed(sub, sub_action, scope.brands):
                scope.result.add("bad_properties", f"{table_name}.*.{name}")
            elif sub is not None and not sub.check(value):
                scope.result.add("bad_values", f"{table_name}.*.{name}")
        if table_name == "disks":
            _check_disk(scope, key, index, element, sub_action)
        elif table_name == "nics":
            _check_nic(scope, key, element, sub_action)
        elif sub_action == "add":
            _check_pci_device(scope.result, f"{key}.{index}", element)


def _check_disk(scope: _Scope, key: str, index: int, disk: dict[str, Any], sub_action: str) -> None:
    """Models per brand (kvm: virtio, ide, scsi; bhyve: virtio, ahci, nvme); HVM disks need one (or a
    disk_driver)."""
    result = scope.result
    models = {model for brand in scope.brands for model in DISK_MODELS[brand]}
    if "model" in disk and disk["model"] not in models:
        result.add("bad_values", f"{key}.*.model")
    if sub_action == "update":
        if "path" not in disk:
            result.add("missing_properties", f"{key}.*.path")
        return
    if "model" not in disk and not scope.payload.get("disk_driver"):
        result.add("missing_properties", f"{key}.*.model")
    if disk.get("media", "disk") == "disk":
        _check_disk_source(scope, f"{key}.{index}", disk)


def _check_disk_source(scope: _Scope, path: str, disk: dict[str, Any]) -> None:
    """image_uuid forbids block_size (and size, unless flexible_disk_size); its image_size may be left out (vmadm
    takes it from the installed image; vmhost from its image store). Without an image, size is required,
    image_name/image_size are not allowed, and path needs nocreate.

    A nocreate disk is not required to give a size: nothing is created, so there is nothing to size (an
    inference; the notes state the size rule without this case)."""
    result = scope.result
    nocreate = values.as_boolean(disk.get("nocreate", False))
    if "image_uuid" in disk:
        if "block_size" in disk:
            result.add("bad_properties", f"{path}.block_size")
        if "size" in disk and "flexible_disk_size" not in scope.payload:
            result.add("bad_properties", f"{path}.size")
        return
    if "size" not in disk and not nocreate:
        result.add("missing_properties", f"{path}.size")
    for name in ("image_name", "image_size"):
        if name in disk:
            result.add("bad_properties", f"{path}.{name}")
    if "path" in disk and not nocreate:
        result.add("bad_properties", f"{path}.path")


def _check_nic(scope: _Scope, key: str, nic: dict[str, Any], sub_action: str) -> None:
    """A NIC being added needs a nic_tag and a model (or a nic_driver); one being updated is found by mac."""
    result = scope.result
    if sub_action == "update":
        if "mac" not in nic:
            result.add("missing_properties", f"{key}.*.mac")
    else:
        if "nic_tag" not in nic:
            result.add("missing_properties", f"{key}.*.nic_tag")
        if "model" not in nic and not scope.payload.get("nic_driver") and not result.zone_brand:
            result.add("missing_properties", f"{key}.*.model")
    if "nic_tag" in nic and not (isinstance(nic["nic_tag"], str) and NIC_TAG.match(nic["nic_tag"])):
        result.add("bad_values", f"{key}.*.nic_tag")
    if nic.get("model") == "":
        result.add("bad_values", f"{key}.*.model")
    if "ips" in nic and not _valid_ips(nic["ips"]):
        result.add("bad_values", f"{key}.*.ips")
    if "allowed_ips" in nic and not _valid_networks(nic["allowed_ips"]):
        result.add("bad_values", f"{key}.*.allowed_ips")


def _valid_ips(value: Any) -> bool:
    """Up to 20 of: an address with its routing prefix (CIDR), 'dhcp' or 'addrconf'."""
    items = values.list_items(value)
    if items is None or len(items) > MAX_IPS:
        return False
    return all(item in DYNAMIC_IPS or ("/" in item and _network(item)) for item in items)


def _valid_networks(value: Any) -> bool:
    """allowed_ips: single IPv4/IPv6 addresses or CIDR ranges."""
    items = values.list_items(value)
    return items is not None and all(_network(item) for item in items)


def _network(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def _primary_count(nics: Any) -> int:
    if not values.is_object_array(nics):
        return 0
    return sum(1 for nic in nics if values.as_boolean(nic.get("primary", False)))


def _check_pci_device(result: VmadmValidation, path: str, device: dict[str, Any]) -> None:
    """VM.js validatePCIDevice: a /devices path, a pci_slot parsePCIslot reads, and model 'passthru' if any."""
    if "path" not in device:
        result.add("missing_properties", f"{path}.path")
    elif not str(device["path"]).startswith("/devices"):
        result.add("bad_values", f"{path}.path")
    if "pci_slot" not in device:
        result.add("missing_properties", f"{path}.pci_slot")
    elif not _valid_pci_slot(device["pci_slot"]):
        result.add("bad_values", f"{path}.pci_slot")
    if device.get("model", "passthru") != "passthru":
        result.add("bad_values", f"{path}.model")


def _valid_pci_slot(value: Any) -> bool:
    try:
        parse_pci_slot(str(value))
    except ValueError:
        return False
    return True
