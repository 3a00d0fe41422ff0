"""What the vmadm dialect does with every property of a kvm or bhyve create payload (proptable.js), machine-readable:
MAPPED to a spec field (libvirt and Xen act on it), KEPT in a `smartos` block (only the SmartOS driver acts on
it), IGNORED (host bookkeeping that changes nothing for the guest), REFUSED (no counterpart: a problem naming
the payload path). docs/vmadm-fields.md is this module's `markdown()`; tests keep both complete and true.

Run `python -m vmhost.dialects.vmadm.fields > docs/vmadm-fields.md` after a change.
"""

MAPPED = {
    "alias": "name (without alias: `vm-<uuid>`)",
    "uuid": "uuid",
    "ram": "memory (MiB; default 256)",
    "vcpus": "cpu.vcpus",
    "cpu_shares": "cpu.shares (2-10000, else refused)",
    "cpu_type": "cpu.mode (host: host-passthrough; qemu64)",
    "autoboot": "autostart",
    "boot": "boot.order from `order=` (c disk, d CD-ROM, n network); `once=` is kept as smartos.boot_once",
    "bootrom": "boot.firmware",
    "vnc_port": "graphics (VNC; -1: none; 0: a random port)",
    "vnc_password": "graphics.password",
    "vga": "graphics.video (std: vga, cirrus, qxl; others refused)",
    "hostname": "cloud_init.hostname",
    "resolvers": "nics.0.dns.nameservers (at most 3)",
    "routes": "nics.N.routes (the NIC whose static address reaches the gateway)",
    "customer_metadata": "labels; root_authorized_keys, user-script and cloud-init:* go to cloud_init",
    "internal_metadata": "vmhost's own record only (vmhost:spec, vmhost:owner); other keys refused",
    "disks": "disks (media disk) and cdroms (media cdrom)",
    "nics": "nics",
    "disks.*.model": "disks.N.bus / cdroms.N.bus (virtio, ide, scsi, ahci: sata)",
    "disks.*.media": "disk or CD-ROM",
    "disks.*.boot": "disks.N.boot_order 1 (one boot disk, as vmadm insists)",
    "disks.*.size": "source new (MiB); beside image_uuid (with flexible_disk_size) the grown image disk's size",
    "disks.*.image_uuid": "source image (vmhost's image store, by the UUID given at import); else an overlay on "
    "the imgadm zvol /dev/zvol/rdsk/<zpool>/<uuid>",
    "disks.*.image_size": "must be the image's size (vmadm refuses another); taken from the image when left out",
    "disks.*.path": "cdroms.N.iso, or with nocreate source file/block",
    "disks.*.nocreate": "source file (or block, for /dev/...) of path",
    "disks.*.zpool": "the zpool of the image zvol an overlay is based on",
    "disks.*.pci_slot": "disks.N.pci_address on bus 0 (bhyve's reserved devices 0, 6, 30, 31 and slot 1 refused)",
    "nics.*.nic_tag": "nics.N.source (a bridge)",
    "nics.*.mac": "nics.N.mac",
    "nics.*.model": "nics.N.model",
    "nics.*.mtu": "nics.N.mtu",
    "nics.*.primary": "the first NIC (a later primary is refused)",
    "nics.*.allowed_ips": "nics.N.allowed_ips (single IPv4 addresses)",
    "nics.*.ips": "nics.N.addresses, dhcp (dhcp), dhcp6 (addrconf)",
    "nics.*.ip": "nics.N.addresses with netmask, or dhcp",
    "nics.*.netmask": "with ip",
    "nics.*.gateways": "nics.N.gateway4 / gateway6",
    "nics.*.gateway": "nics.N.gateway4 / gateway6",
    "nics.*.vlan_id": "0 only (no VLAN tagging in specs; another is refused)",
}
KEPT = {
    "tags": "smartos.tags",
    "flexible_disk_size": "smartos.flexible_disk_size (bhyve); allows disks.*.size beside image_uuid",
    "pci_devices": "smartos.pci_devices (bhyve; path, pci_slot); libvirt and Xen refuse them",
    "disks.*.refreservation": "disks.N.smartos.refreservation",
    "disks.*.compression": "disks.N.smartos.compression",
    "disks.*.block_size": "disks.N.smartos.block_size (empty volumes only, as vmadm)",
    "nics.*.allowed_dhcp_cids": "nics.N.smartos.allowed_dhcp_cids (kvm); libvirt and Xen refuse them",
    "pci_devices.*.path": "smartos.pci_devices.N.path",
    "pci_devices.*.pci_slot": "smartos.pci_devices.N.pci_slot",
}
IGNORED = {
    "brand": "chooses the payload's rules; the SmartOS driver renders its configured vmadm_brand",
    "owner_uuid": "Triton accounting",
    "billing_id": "Triton accounting",
    "package_name": "Triton package bookkeeping (deprecated)",
    "package_version": "Triton package bookkeeping (deprecated)",
    "do_not_inventory": "Triton inventory",
    "archive_on_delete": "SmartOS archiving of deleted zones",
    "zpool": "where vmadm puts the zone; vmhost's disks live where its config says",
    "zfs_storage_pool_name": "older name of zpool",
    "quota": "the zone root's ZFS quota",
    "max_physical_memory": "zone memory cap around the guest (ram + overhead)",
    "max_locked_memory": "zone cap, defaults to max_physical_memory",
    "max_swap": "zone cap, defaults to max_physical_memory",
    "max_lwps": "zone cap on threads of the emulator",
    "zfs_io_priority": "zone I/O scheduling weight",
    "disk_driver": "the default of disks.*.model, applied",
    "nic_driver": "the default of nics.*.model, applied",
    "disks.*.image_name": "deprecated; the image is found by image_uuid",
}
REFUSED = {
    "cpu_cap": "no CPU cap in specs (0 passes)",
    "firewall_enabled": "no SmartOS firewall (fwadm) on other hosts",
    "indestructible_zoneroot": "no zone datasets",
    "indestructible_delegated": "no zone datasets",
    "limit_priv": "zone privileges",
    "max_shm_memory": "zone limit",
    "max_msg_ids": "zone limit",
    "max_sem_ids": "zone limit",
    "max_shm_ids": "zone limit",
    "zfs_snapshot_limit": "zone dataset limit",
    "zfs_filesystem_limit": "zone dataset limit",
    "zfs_root_recsize": "zone dataset property",
    "zfs_root_compression": "zone dataset property",
    "internal_metadata_namespaces": "no metadata service namespaces",
    "image_uuid": "a zone's image; HVM images are per disk (disks.*.image_uuid)",
    "zonename": "no zones",
    "qemu_opts": "raw qemu arguments",
    "qemu_extra_opts": "raw qemu arguments",
    "spice_opts": "SPICE is not rendered from vmadm payloads",
    "spice_password": "SPICE is not rendered from vmadm payloads",
    "spice_port": "SPICE is not rendered from vmadm payloads",
    "virtio_txburst": "qemu virtio-net tuning with no libvirt counterpart",
    "virtio_txtimer": "qemu virtio-net tuning with no libvirt counterpart",
    "bhyve_extra_opts": "raw bhyve arguments",
    "com1": "bhyve serial port wiring",
    "com2": "bhyve serial port wiring",
    "add_pci_devices": "give pci_devices at create",
    "disks.*.guest_block_size": "no guest sector size in specs",
    "disks.*.notrim": "no discard setting in specs",
    "disks.*.uuid": "disks have no UUID in specs",
    "disks.*.dangerous_allow_shrink": "update only",
    "nics.*.allow_dhcp_spoofing": "no spoofing switches in specs (libvirt's clean-traffic filter is allowed_ips)",
    "nics.*.allow_ip_spoofing": "no spoofing switches in specs",
    "nics.*.allow_mac_spoofing": "no spoofing switches in specs",
    "nics.*.allow_restricted_traffic": "no spoofing switches in specs",
    "nics.*.allow_unfiltered_promisc": "no spoofing switches in specs",
    "nics.*.blocked_outgoing_ports": "no port filter in specs",
    "nics.*.dhcp_server": "no per-NIC DHCP server switch",
    "nics.*.interface": "SmartOS names the guest's interfaces (netN)",
    "nics.*.network_uuid": "Triton networks",
    "nics.*.vrrp_vrid": "no VRRP",
    "nics.*.vrrp_primary_ip": "no VRRP",
}
TABLES = (
    ("mapped", "spec field", MAPPED),
    ("kept for SmartOS", "spec field", KEPT),
    ("ignored", "why that is safe", IGNORED),
    ("refused", "why", REFUSED),
)
ZONE_BRANDS_NOTE = (
    "Zone brands (joyent, joyent-minimal, lx, builder): checked by property name (and by type where the HVM "
    "brands share the property), so a bad property is still named, then refused with vmhost's message: vmhost "
    "runs no illumos zones. Unknown brands are vmadm's `bad_brand`."
)


def markdown() -> str:
    lines = [
        "# vmadm payload fields",
        "",
        "What `vmhost create|validate --dialect vmadm` does with each property of a kvm or bhyve create payload",
        "(smartos-live proptable.js at 059ec27268b3). Generated from vmhost/dialects/vmadm/fields.py.",
        "",
        ZONE_BRANDS_NOTE,
        "",
        "| property | what vmhost does | where / why |",
        "| --- | --- | --- |",
    ]
    for what, _column, table in TABLES:
        lines += [f"| `{name}` | {what} | {detail} |" for name, detail in sorted(table.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
