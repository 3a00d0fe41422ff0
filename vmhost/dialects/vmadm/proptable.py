"""Which properties a kvm or bhyve payload may carry, for which action, and of which type.

Transcribed from the reference notes on proptable.js (PART A3) and checked against proptable.js at
smartos-live 059ec27268b3: top-level properties, then the disks[], nics[] and pci_devices[] sub-properties. The
update-only members (add_nics, set_customer_metadata, ...) are from vmadm(8). The zone brands' names are listed
(not typed) so that a zone payload's unknown property is still named.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vmhost.dialects.vmadm import values

CREATE = frozenset({"create"})
UPDATE = frozenset({"update"})
CREATE_UPDATE = CREATE | UPDATE
ADD = frozenset({"add"})
ADD_UPDATE = frozenset({"add", "update"})
HVM = frozenset({"bhyve", "kvm"})
KVM = frozenset({"kvm"})
BHYVE = frozenset({"bhyve"})


@dataclass(frozen=True)
class Prop:
    check: Callable[[Any], bool]
    actions: frozenset[str] = CREATE_UPDATE
    brands: frozenset[str] = HVM


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], bool]:
    return values.integer_check(minimum, maximum)


def one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _resolvers(value: Any) -> bool:
    items = values.list_items(value)
    return items is not None and all(values.is_ip(item) for item in items)


def _namespaces(value: Any) -> bool:
    items = values.list_items(value)
    return items is not None and all(values.NAMESPACE.match(item) for item in items)


def _short_string(value: Any) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= 8)


KEY_VALUE_SETS = ("customer_metadata", "internal_metadata", "tags", "routes")
STRING = Prop(values.is_string)
BOOLEAN = Prop(values.is_boolean)
COUNT = Prop(integer(0))

TOP: dict[str, Prop] = {
    "alias": STRING,
    "autoboot": BOOLEAN,
    "archive_on_delete": BOOLEAN,
    "billing_id": STRING,
    "boot": STRING,
    "cpu_cap": COUNT,
    "cpu_shares": Prop(integer(0, 65535)),
    "disk_driver": STRING,
    "nic_driver": STRING,
    "do_not_inventory": BOOLEAN,
    "firewall_enabled": BOOLEAN,
    "hostname": STRING,
    "indestructible_zoneroot": BOOLEAN,
    "indestructible_delegated": BOOLEAN,
    "limit_priv": Prop(values.is_list),
    **{
        key: COUNT
        for key in (
            "max_locked_memory",
            "max_lwps",
            "max_physical_memory",
            "max_shm_memory",
            "max_msg_ids",
            "max_sem_ids",
            "max_shm_ids",
            "quota",
            "ram",
            "zfs_io_priority",
            "zfs_snapshot_limit",
            "zfs_filesystem_limit",
            "zfs_root_recsize",
        )
    },
    "max_swap": Prop(integer(256)),
    "owner_uuid": STRING,
    "vcpus": Prop(integer(1)),
    "resolvers": Prop(_resolvers),
    "vnc_password": Prop(_short_string),
    "vnc_port": Prop(integer(-1)),
    "zfs_root_compression": STRING,
    "internal_metadata_namespaces": Prop(_namespaces),
    # create-only
    "brand": Prop(values.is_string, CREATE),  # which brands exist is validate_payload's bad_brand
    "uuid": Prop(values.is_uuid, CREATE),
    "image_uuid": Prop(values.is_uuid, CREATE),
    "zonename": Prop(values.is_string, CREATE),
    "zpool": Prop(values.is_string, CREATE),
    "zfs_storage_pool_name": Prop(values.is_string, CREATE),
    "disks": Prop(values.is_object_array, CREATE),
    "nics": Prop(values.is_object_array, CREATE),
    "customer_metadata": Prop(values.is_flat_object, CREATE),
    "internal_metadata": Prop(values.is_flat_object, CREATE),
    "tags": Prop(values.is_flat_object, CREATE),
    "routes": Prop(values.is_flat_object, CREATE),
    # update-only: the add_/remove_/update_ and set_/remove_ members of vmadm(8) "update"
    **{f"set_{key}": Prop(values.is_flat_object, UPDATE) for key in KEY_VALUE_SETS},
    **{f"remove_{key}": Prop(values.is_list, UPDATE) for key in KEY_VALUE_SETS},
    "add_disks": Prop(values.is_object_array, UPDATE),
    "update_disks": Prop(values.is_object_array, UPDATE),
    "remove_disks": Prop(values.is_list, UPDATE),
    "add_nics": Prop(values.is_object_array, UPDATE),
    "update_nics": Prop(values.is_object_array, UPDATE),
    "remove_nics": Prop(values.is_list, UPDATE),
    # kvm only
    "cpu_type": Prop(one_of("qemu64", "host"), brands=KVM),
    "qemu_opts": Prop(values.is_string, brands=KVM),
    "qemu_extra_opts": Prop(values.is_string, brands=KVM),
    "spice_opts": Prop(values.is_string, brands=KVM),
    "spice_password": Prop(_short_string, brands=KVM),
    "spice_port": Prop(integer(-1), brands=KVM),
    "vga": Prop(one_of("cirrus", "std", "vmware", "qxl", "xenfb"), brands=KVM),
    "virtio_txburst": Prop(integer(), brands=KVM),
    "virtio_txtimer": Prop(integer(), brands=KVM),
    "package_name": Prop(values.is_string, brands=KVM),
    "package_version": Prop(values.is_string, brands=KVM),
    # bhyve only
    "bootrom": Prop(values.is_string, brands=BHYVE),
    "bhyve_extra_opts": Prop(values.is_string, brands=BHYVE),
    "com1": Prop(values.is_string, brands=BHYVE),
    "com2": Prop(values.is_string, brands=BHYVE),
    "flexible_disk_size": Prop(integer(0), brands=BHYVE),
    "pci_devices": Prop(values.is_object_array, brands=BHYVE),
    "add_pci_devices": Prop(values.is_object_array, brands=BHYVE),
    "update_pci_devices": Prop(values.is_object_array, UPDATE, BHYVE),
    "remove_pci_devices": Prop(values.is_list, UPDATE, BHYVE),
}

ELEMENTS: dict[str, tuple[str, str]] = {
    "disks": ("disks", "add"),
    "add_disks": ("disks", "add"),
    "update_disks": ("disks", "update"),
    "nics": ("nics", "add"),
    "add_nics": ("nics", "add"),
    "update_nics": ("nics", "update"),
    "pci_devices": ("pci_devices", "add"),
    "add_pci_devices": ("pci_devices", "add"),
    "update_pci_devices": ("pci_devices", "update"),
}
"""Array property -> (the sub-property table its elements follow, the sub-action they are checked for)."""

BOOTROMS_AT_CREATE = ("bios", "uefi")
DISK_MODELS = {"kvm": ("virtio", "ide", "scsi"), "bhyve": ("virtio", "ahci", "nvme")}


def _block_size(value: Any) -> bool:
    number = values.as_integer(value)
    return number is not None and 512 <= number <= 131072 and values.is_power_of_two(number)


def _guest_block_size(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = value.split("/")
    return len(parts) <= 2 and all(p.isdigit() and values.is_power_of_two(int(p)) for p in parts)


def _compression(value: Any) -> bool:
    gzip = {f"gzip-{level}" for level in range(1, 10)}
    return value in {"on", "off", "gzip", "lz4", "lzjb", "zle", *gzip}


def _list(value: Any) -> bool:
    return values.list_items(value) is not None


def _dhcp_cids(value: Any) -> bool:
    """A list whose every entry passes utils.validCID ('0x', hex digits, even length, at most 512)."""
    items = values.list_items(value)
    return items is not None and all(values.DHCP_CID.match(item) and len(item) <= 512 for item in items)


DISKS: dict[str, Prop] = {
    "boot": Prop(values.is_boolean, ADD_UPDATE),
    "model": Prop(values.is_string, ADD_UPDATE),
    "media": Prop(one_of("disk", "cdrom"), ADD_UPDATE),
    "size": Prop(integer(0), ADD_UPDATE),
    "image_uuid": Prop(values.is_uuid, ADD),
    "image_size": Prop(integer(0), ADD),
    "image_name": Prop(values.is_string, ADD_UPDATE, KVM),
    "block_size": Prop(_block_size, ADD),
    "refreservation": Prop(integer(0), ADD_UPDATE),
    "compression": Prop(_compression, ADD_UPDATE),
    "nocreate": Prop(values.is_boolean, ADD),
    "path": Prop(values.is_string, ADD_UPDATE),
    "zpool": Prop(values.is_string, ADD),
    "pci_slot": Prop(values.is_string, ADD_UPDATE, BHYVE),
    "guest_block_size": Prop(_guest_block_size, ADD_UPDATE, BHYVE),
    "notrim": Prop(values.is_boolean, ADD_UPDATE, BHYVE),
    "uuid": Prop(values.is_uuid, ADD_UPDATE, BHYVE),
    "dangerous_allow_shrink": Prop(values.is_boolean, UPDATE, BHYVE),
}

NIC_FLAGS = (
    "allow_dhcp_spoofing",
    "allow_ip_spoofing",
    "allow_mac_spoofing",
    "allow_restricted_traffic",
    "allow_unfiltered_promisc",
    "primary",
)
NICS: dict[str, Prop] = {
    "nic_tag": Prop(values.is_string, ADD_UPDATE),
    "mac": Prop(values.is_mac, ADD_UPDATE),
    "model": Prop(values.is_string, ADD_UPDATE),
    "ip": Prop(values.is_string, ADD_UPDATE),
    "ips": Prop(_list, ADD_UPDATE),
    "netmask": Prop(values.is_string, ADD_UPDATE),
    "gateway": Prop(values.is_string, ADD_UPDATE),
    "gateways": Prop(_list, ADD_UPDATE),
    "vlan_id": Prop(integer(0, 4095), ADD_UPDATE),
    "mtu": Prop(integer(576, 9000), ADD_UPDATE),
    **{flag: Prop(values.is_boolean, ADD_UPDATE) for flag in NIC_FLAGS},
    "allowed_ips": Prop(_list, ADD),
    "allowed_dhcp_cids": Prop(_dhcp_cids, ADD_UPDATE, KVM),
    "blocked_outgoing_ports": Prop(_list, ADD_UPDATE),
    "dhcp_server": Prop(values.is_boolean, ADD_UPDATE),
    "network_uuid": Prop(values.is_uuid, ADD_UPDATE),
    "interface": Prop(values.is_string, ADD_UPDATE),
    "vrrp_vrid": Prop(integer(0, 255), ADD_UPDATE),
    "vrrp_primary_ip": Prop(values.is_string, ADD_UPDATE),
}
PCI_DEVICES: dict[str, Prop] = {
    "path": Prop(values.is_string, ADD_UPDATE, BHYVE),
    "pci_slot": Prop(values.is_string, ADD_UPDATE, BHYVE),
}
"""pci_devices[]: proptable has no pci_devices.*.model, so a model is a bad property (and, unless 'passthru', a
bad value: VM.js validatePCIDevice)."""
TABLES = {"disks": DISKS, "nics": NICS, "pci_devices": PCI_DEVICES}

ZONE_BRANDS = frozenset({"joyent", "joyent-minimal", "lx", "builder"})
"""SmartOS zone brands (OS containers): vmhost names their bad properties, then refuses them."""
ZONE_TOP = frozenset(
    {
        *("alias", "archive_on_delete", "autoboot", "billing_id", "brand", "cpu_cap", "cpu_shares"),
        *("customer_metadata", "dataset_uuid", "delegate_dataset", "dns_domain", "do_not_inventory", "docker"),
        *("filesystems", "firewall_enabled", "fs_allowed", "hostname", "image_uuid", "indestructible_delegated"),
        *("indestructible_zoneroot", "init_name", "internal_metadata", "internal_metadata_namespaces"),
        *("kernel_version", "limit_priv", "maintain_resolvers", "max_locked_memory", "max_lwps", "max_msg_ids"),
        *("max_physical_memory", "max_sem_ids", "max_shm_ids", "max_shm_memory", "max_swap"),
        *("mdata_exec_timeout", "nics", "nowait", "owner_uuid", "package_name", "package_version", "quota"),
        *("ram", "resolvers", "restart_init", "routes", "tags", "tmpfs", "uuid", "zfs_data_compression"),
        *("zfs_data_recsize", "zfs_filesystem_limit", "zfs_io_priority", "zfs_root_compression"),
        *("zfs_root_recsize", "zfs_snapshot_limit", "zfs_storage_pool_name", "zlog_max_size", "zonename", "zpool"),
    }
)
"""Top-level properties any zone brand takes at create (proptable.js payload.allowed)."""
ZONE_NICS = frozenset({*(name for name in NICS if name != "model"), "dhcp_server"})
"""nics.*.* of the zone brands: the HVM ones without model (allowed_dhcp_cids included)."""
