"""Who the domain is: name, UUID, description, and the vmhost metadata used to re-adopt it later."""

import json
from typing import Any, TypedDict

from lxml import etree

from vmhost.render.libvirt.context import METADATA_NS, METADATA_PREFIX, RenderContext
from vmhost.render.libvirt.nodes import element, sub
from vmhost.spec import VMSpec

_NSMAP = {METADATA_PREFIX: METADATA_NS}
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


class VmhostMetadata(TypedDict):
    labels: dict[str, str]
    owned_disks: list[str]
    spec: dict[str, Any] | None
    owner: str


def _ns(tag: str) -> str:
    return f"{{{METADATA_NS}}}{tag}"


def identity_elements(spec: VMSpec) -> list[etree._Element]:
    """<name>, <uuid> and, when there is one, <description>; no <title>, the name already says it."""
    parts = [element("name", spec.name), element("uuid", str(spec.uuid))]
    if spec.description:
        parts.append(element("description", spec.description))
    return parts


def sysinfo_element(spec: VMSpec) -> etree._Element | None:
    """The SMBIOS strings of the spec (os/smbios mode=sysinfo points the firmware at them); None without any."""
    smbios = spec.smbios
    if smbios.is_empty():
        return None
    sysinfo = element("sysinfo", type="smbios")
    if smbios.serial is not None:
        sub(sub(sysinfo, "system"), "entry", smbios.serial, name="serial")
    if smbios.chassis_asset_tag is not None:
        sub(sub(sysinfo, "chassis"), "entry", smbios.chassis_asset_tag, name="asset")
    if smbios.oem_strings:
        oem = sub(sysinfo, "oemStrings")
        for text in smbios.oem_strings:
            sub(oem, "entry", text)
    return sysinfo


def metadata_element(spec: VMSpec, ctx: RenderContext) -> etree._Element:
    """Labels, the disk images vmhost created and the spec, so an agent that lost its store can adopt the VM.

    Only what is safe to show goes here (the spec with its password masked): `virsh dumpxml` prints it to anyone
    with read access.
    """
    metadata = element("metadata")
    instance = etree.SubElement(metadata, _ns("instance"), nsmap=_NSMAP)
    labels = etree.SubElement(instance, _ns("labels"))
    for key, value in sorted(spec.labels.items()):
        sub(labels, _ns("label"), value, key=key)
    for target, path in sorted(ctx.disk_paths.items()):
        sub(instance, _ns("owned-disk"), target=target, path=str(path))
    if ctx.owner:
        sub(instance, _ns("owner"), ctx.owner)
    sub(instance, _ns("spec"), json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":")))
    return metadata


def read_metadata(domain_xml: str) -> VmhostMetadata | None:
    """The vmhost metadata of any domain XML, or None when the domain was not made by vmhost."""
    root = etree.fromstring(domain_xml.encode(), _SAFE_PARSER)
    instance = root.find(f"metadata/{_ns('instance')}")
    if instance is None:
        return None
    labels = {label.get("key", ""): label.text or "" for label in instance.iterfind(f"{_ns('labels')}/{_ns('label')}")}
    disks = [disk.get("path", "") for disk in instance.iterfind(_ns("owned-disk"))]
    spec_text = instance.findtext(_ns("spec"))
    return {
        "labels": labels,
        "owned_disks": disks,
        "spec": json.loads(spec_text) if spec_text else None,
        "owner": instance.findtext(_ns("owner")) or "",
    }
