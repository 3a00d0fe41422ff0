"""The convenience verbs (nic attach/detach, set-vcpus, set-memory, disk resize, cdrom insert/eject) as merge
patches on a VM's spec: thin builders, so that every change goes through the one plan and apply of `update`."""

from typing import Any

from vmhost.errors import NotFound
from vmhost.spec import Problem, SpecError

Spec = dict[str, Any]
OWNED = ("new", "overlay", "image")


def attach_nic(spec: Spec, nic: dict[str, Any]) -> Spec:
    """Validated as at create when the patched spec is parsed (bridge, MAC unique, QoS, filter)."""
    return {"nics": [*spec.get("nics", []), nic]}


def detach_nic(spec: Spec, mac: str) -> Spec:
    wanted = mac.lower().replace("-", ":")
    nics = spec.get("nics", [])
    if all(nic.get("mac") != wanted for nic in nics):
        raise NotFound(f"{spec.get('name')} has no NIC with MAC {mac}")
    return {"nics": [nic for nic in nics if nic.get("mac") != wanted]}


def set_vcpus(spec: Spec, count: int) -> Spec:
    return {"cpu": {"vcpus": count}}


def set_memory(spec: Spec, size: str | int) -> Spec:
    return {"memory": {"size": size}}


def resize_disk(spec: Spec, target: str, size: str | int) -> Spec:
    disks = _with(spec, "disks", target)
    if any(d.get("target") == target and d["source"].get("type") not in OWNED for d in disks):
        why = "only a disk vmhost created (new, overlay, image) can be resized"
        raise SpecError([Problem(f"disks[{target}].source", why)])
    grown = [{**d, "source": {**d["source"], "size": size}} if d.get("target") == target else d for d in disks]
    return {"disks": grown}


def insert_media(spec: Spec, target: str, iso: str) -> Spec:
    return {"cdroms": [{**c, "iso": iso} if c.get("target") == target else c for c in _with(spec, "cdroms", target)]}


def eject_media(spec: Spec, target: str) -> Spec:
    return {"cdroms": [{**c, "iso": None} if c.get("target") == target else c for c in _with(spec, "cdroms", target)]}


def _with(spec: Spec, key: str, target: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = spec.get(key, [])
    if all(item.get("target") != target for item in items):
        what = "disk" if key == "disks" else "CD-ROM drive"
        raise NotFound(f"{spec.get('name')} has no {what} {target}")
    return items
