"""Render a VMSpec as a SmartOS `vmadm create` payload (brand bhyve or kvm): pure, deterministic, no host access.

Each module maps one concern; `problems` lists what the spec asks for that a vmadm payload cannot carry, so a
driver can refuse such a spec before anything is made.
"""

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from vmhost.formats.vmadm import OWNER_KEY, SPEC_KEY
from vmhost.render.hooks import DocumentHook, apply_document_hooks
from vmhost.render.vmadm.brands import BRANDS, Brand
from vmhost.render.vmadm.disks import disk_problems, render_disks
from vmhost.render.vmadm.graphics import graphics_problems, render_graphics
from vmhost.render.vmadm.guest import guest_problems, render_guest
from vmhost.render.vmadm.identity import boot_string, identity_problems, render_identity
from vmhost.render.vmadm.metadata import metadata_problems, render_metadata
from vmhost.render.vmadm.nics import nic_problems, render_nics
from vmhost.spec import VMSpec

__all__ = ["BRANDS", "IGNORED_FIELDS", "OWNER_KEY", "SPEC_KEY", "Brand", "payload_json", "problems", "render_payload"]

IGNORED_FIELDS: dict[str, str] = {
    "memory.merge_pages": "illumos has no page merging (KSM): a SmartOS guest's pages are never merged",
    "graphics.tablet": "vmadm gives every VNC VM a USB tablet itself (bhyve's xhci tablet, kvm's usb tablet)",
    "features.vmport": "bhyve has no VMware port, so false is what a bhyve VM has (the kvm brand refuses false)",
    "startup": "the agent's restore order, kept in vmhost's record; vmadm starts nothing (autoboot is false)",
}
"""Spec fields the payload leaves out on purpose, and why: they need nothing from vmadm or are its behaviour
already. Every other field is rendered or is a problem (see `problems`)."""


def render_payload(spec: VMSpec, brand: Brand, owner: str = "", hooks: Sequence[DocumentHook] = ()) -> dict[str, Any]:
    """The create payload for a spec that went through parse_spec() and has no problems(spec, brand), after the
    plugins' render_vmadm hooks (the result must still be JSON and keep vmhost's record).

    With an owner, vmhost's record (the spec and the owner) rides along in internal_metadata.
    """
    payload = render_identity(spec, brand)
    payload.update(render_graphics(spec, brand))
    payload["disks"] = render_disks(spec, brand)
    payload["nics"] = render_nics(spec)
    payload.update(render_metadata(spec, owner))
    payload.update(render_guest(spec, payload.get("customer_metadata", {})))
    boot = boot_string(spec, _boots_from_cdrom(payload["disks"])) if brand == "kvm" else None
    if boot is not None:
        payload["boot"] = boot
    record = {key: value for key, value in payload.get("internal_metadata", {}).items() if key in (SPEC_KEY, OWNER_KEY)}
    apply_document_hooks(spec, payload, hooks, "vmadm payload", partial(_writable, record))
    return payload


def _writable(record: dict[str, Any], payload: dict[str, Any]) -> None:
    """JSON, with vmhost's record in internal_metadata as rendered (adoption and ownership read it)."""
    json.dumps(payload)
    metadata = payload.get("internal_metadata", {})
    if any(metadata.get(key) != value for key, value in record.items()):
        raise ValueError(f"internal_metadata {', '.join(record)} is vmhost's record of the VM; leave it as it is")


def _boots_from_cdrom(disks: list[dict[str, Any]]) -> bool:
    """kvm boots by qemu's order string, not by the disk flag alone."""
    return any(disk.get("boot") and disk.get("media") == "cdrom" for disk in disks)


def problems(spec: VMSpec, brand: Brand) -> list[tuple[str, str]]:
    """(path, message) for every spec feature a `brand` payload cannot carry."""
    found = [
        *identity_problems(spec, brand),
        *disk_problems(spec, brand),
        *nic_problems(spec, brand),
        *graphics_problems(spec, brand),
        *metadata_problems(spec),
        *guest_problems(spec),
    ]
    return sorted(found)


def payload_json(payload: dict[str, Any]) -> str:
    """Stable text (sorted keys, 2-space indent): a changed file always means a changed payload."""
    return json.dumps(payload, indent=2, sort_keys=True) + "\n"
