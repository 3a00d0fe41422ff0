"""The `vmadm update` payload that turns the VM vmadm has into the one vmhost rendered.

A re-define updates the VM in place rather than deleting and re-creating it: `vmadm delete` destroys the zvols
vmadm created for the VM's disks, i.e. the guest's data. disks, nics and metadata are create-only at the top
level, so they change through add_/remove_/update_ and set_/remove_ members. vmadm keys NICs by mac and disks
by path; vmhost's disks carry no path vmadm would know, so disks are matched in order (disks and cdroms each
on their own) and may only be added or removed at the end.
"""

from typing import Any

from vmhost.errors import VmhostError
from vmhost.render.vmadm import OWNER_KEY, SPEC_KEY

UPDATABLE = (
    *("alias", "ram", "vcpus", "cpu_shares", "cpu_type", "bootrom", "vga", "vnc_port", "vnc_password", "boot"),
    "flexible_disk_size",
)
GUEST_RESET: dict[str, Any] = {"hostname": None, "resolvers": []}
"""What the guest is told, updatable in place too, and how it is cleared once vmhost no longer sets it."""
RESET = {"cpu_shares": 100}
"""What a property falls back to when vmhost no longer sets it (vmadm's default); others are cleared (null)."""
NIC_UPDATABLE = ("nic_tag", "model", "mtu", "primary", "ips", "gateways")
DISK_UPDATABLE = ("boot", "model")
DISK_KEPT = ("refreservation", "compression", "pci_slot")
"""Updated only when vmhost sets them: vmadm fills them in itself (refreservation: the size, bhyve pci_slot)."""
Payload = dict[str, Any]


def update_payload(current: Payload, wanted: Payload) -> Payload:
    """Empty when nothing differs."""
    changes: Payload = {}
    for key, cleared in GUEST_RESET.items():
        if current.get(key) != wanted.get(key) and (key in wanted or current.get(key)):
            changes[key] = wanted.get(key, cleared)
    for key in UPDATABLE:
        target = wanted.get(key, RESET.get(key))
        if current.get(key) != target:
            changes[key] = target
    changes.update(_metadata(current, wanted))
    for key in ("routes", "tags"):
        changes.update(_key_values(key, current.get(key, {}), wanted.get(key, {})))
    changes.update(_nics(current.get("nics", []), wanted.get("nics", [])))
    changes.update(_disks(current.get("disks", []), wanted.get("disks", [])))
    return changes


def _metadata(current: Payload, wanted: Payload) -> Payload:
    """customer_metadata is vmhost's labels, all of it; of internal_metadata only vmhost's keys are touched."""
    changes: Payload = {}
    now, want = current.get("customer_metadata", {}), wanted.get("customer_metadata", {})
    if setting := {key: value for key, value in want.items() if now.get(key) != value}:
        changes["set_customer_metadata"] = setting
    if removing := sorted(set(now) - set(want)):
        changes["remove_customer_metadata"] = removing
    now, want = current.get("internal_metadata", {}), wanted.get("internal_metadata", {})
    if setting := {key: value for key, value in want.items() if now.get(key) != value}:
        changes["set_internal_metadata"] = setting
    if removing := sorted(key for key in (OWNER_KEY, SPEC_KEY) if key in now and key not in want):
        changes["remove_internal_metadata"] = removing
    return changes


def _key_values(key: str, now: dict[str, Any], want: dict[str, Any]) -> Payload:
    """routes and tags are create-only too: set_<key> / remove_<key>."""
    changes: Payload = {}
    if setting := {name: value for name, value in want.items() if now.get(name) != value}:
        changes[f"set_{key}"] = setting
    if removing := sorted(set(now) - set(want)):
        changes[f"remove_{key}"] = removing
    return changes


def _nics(current: list[Payload], wanted: list[Payload]) -> Payload:
    now = {nic["mac"].lower(): nic for nic in current}
    want = {nic["mac"].lower(): nic for nic in wanted}
    changes: Payload = {}
    if adding := [nic for mac, nic in want.items() if mac not in now]:
        changes["add_nics"] = adding
    if removing := [mac for mac in now if mac not in want]:
        changes["remove_nics"] = removing
    updating = [update for mac, nic in want.items() if mac in now if (update := _nic_update(now[mac], nic))]
    if updating:
        changes["update_nics"] = updating
    return changes


def _nic_update(now: Payload, want: Payload) -> Payload:
    """Only what changed; allowed_ips cannot be updated (proptable), so a change there is refused."""
    if sorted(now.get("allowed_ips", [])) != sorted(want.get("allowed_ips", [])):
        raise VmhostError(
            f"vmadm cannot update allowed_ips of NIC {want['mac']}; remove the NIC and add it again under a new MAC"
        )
    update = {key: want.get(key) for key in NIC_UPDATABLE if key in want and now.get(key) != want[key]}
    if "mtu" in now and "mtu" not in want:
        update["mtu"] = None
    for key in ("ips", "gateways"):  # the guest is no longer told any
        if now.get(key) and key not in want:
            update[key] = []
    return {"mac": want["mac"], **update} if update else {}


def _disks(current: list[Payload], wanted: list[Payload]) -> Payload:
    adding: list[Payload] = []
    removing: list[str] = []
    updating: list[Payload] = []
    for media in ("disk", "cdrom"):
        now = [disk for disk in current if disk.get("media", "disk") == media]
        want = [disk for disk in wanted if disk.get("media", "disk") == media]
        for index, (have, disk) in enumerate(zip(now, want, strict=False)):
            if not _same_disk(have, disk):
                raise VmhostError(
                    f"the smartos driver cannot replace {media} {index} of a vmadm VM in place; "
                    "disks can only be added or removed at the end"
                )
            keys = [*DISK_UPDATABLE, *(key for key in DISK_KEPT if key in disk)]
            if update := {key: disk[key] for key in keys if have.get(key, False) != disk.get(key, False)}:
                updating.append({"path": have["path"], **update})
        adding += want[len(now) :]
        removing += [disk["path"] for disk in now[len(want) :]]
    changes: Payload = {}
    for key, value in (("add_disks", adding), ("remove_disks", removing), ("update_disks", updating)):
        if value:
            changes[key] = value
    return changes


def _same_disk(have: Payload, want: Payload) -> bool:
    """An image clone by its image, an existing device or ISO by its path, a created zvol by its size."""
    if "image_uuid" in want:
        return bool(have.get("image_uuid") == want["image_uuid"])
    if "path" in want:
        return bool(have.get("path") == want["path"])
    return "image_uuid" not in have and have.get("size") == want.get("size")
