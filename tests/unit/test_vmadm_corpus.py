"""The payloads of SmartOS's own vmadm tests (tests/unit/vmadm_payloads/, one file per test file of smartos-live
src/vm/tests at 059ec27268b3, each payload named by its test), taken the way a real client sends them.

Each one either converts, renders libvirt XML that libvirt's schema accepts and that says what the payload says
(vCPUs, memory, disks with their buses, sizes and PCI slots, CD-ROMs, NICs, VNC), and renders back to a SmartOS
payload that vmadm would accept and that still carries what vmadm acts on (tags, boot strings, pci_slot,
pci_devices, refreservation, compression, block_size, allowed_dhcp_cids, flexible_disk_size); or it is refused
with vmadm's own findings (`pci_devices.0.path`), or with vmhost's message naming the payload path.
"""

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from vmhost.dialects.vmadm import DialectError, convert, fields, payload_to_spec, validate_payload
from vmhost.dialects.vmadm.proptable import TABLES, TOP
from vmhost.dialects.vmadm.validation import KINDS
from vmhost.render.libvirt import RenderContext, render_domain, validate_domain_xml
from vmhost.render.vmadm import problems, render_payload
from vmhost.spec import VMSpec, parse_spec
from vmhost.spec.smartos import foreign_problems, parse_pci_slot
from vmhost.spec.units import MiB

CORPUS = Path(__file__).parent / "vmadm_payloads"
IMAGES = {
    "71101322-43a5-11e1-8f01-cf2a3031a7f4": ("ubuntu-10.04", 5120),
    "462d1d03-8457-e134-a408-cf9ea2b9be96": ("centos-7-bhyve", 10240),
    "45d86edd-8cf4-6c7c-4ef1-8e27b24c550e": ("uefi-test", 10240),
}
"""The images the tests install (vmtest.CURRENT_*), as vmhost's image store would list them: name, MiB."""
BUSES = {"virtio": "virtio", "ide": "ide", "scsi": "scsi", "ahci": "sata"}
SMARTOS_DISK_KEYS = ("refreservation", "compression", "block_size")


def _entries() -> list[Any]:
    found = []
    for path in sorted(CORPUS.glob("*.json")):
        document = json.loads(path.read_text())
        assert document["source"].startswith("TritonDataCenter/smartos-live@059ec27268b3:src/vm/tests/")
        found += [pytest.param(entry, id=f"{path.stem}: {entry['test']}") for entry in document["payloads"]]
    return found


ENTRIES = _entries()


def images(uuid: str) -> dict[str, Any] | None:
    if uuid not in IMAGES:
        return None
    name, mib = IMAGES[uuid]
    return {"name": name, "virtual_size": mib * MiB}


def test_the_corpus_has_at_least_50_payloads_from_smartos_tests() -> None:
    assert len(ENTRIES) >= 50
    expectations = {entry.values[0]["expect"] for entry in ENTRIES}
    assert expectations == {"converts", "vmadm", "refused", "zone"}


@pytest.mark.parametrize("entry", ENTRIES)
def test_payload(entry: dict[str, Any]) -> None:
    payload = entry["payload"]
    if entry["expect"] == "converts":
        spec = parse_spec(payload_to_spec(json.loads(json.dumps(payload)), images))
        _check_libvirt(payload, spec, entry.get("libvirt_refused", []))
        _check_smartos(payload)
        return
    with pytest.raises(DialectError) as caught:
        payload_to_spec(json.loads(json.dumps(payload)), images)
    validation, paths = caught.value.validation, [p.path for p in caught.value.problems]
    if entry["expect"] == "refused":
        assert validation.ok, "a vmhost refusal is not reported as a vmadm finding"
        assert paths == entry["paths"]
        return
    findings = validation.as_vmadm()
    for kind, expected in entry["vmadm"].items():
        assert findings[kind] == expected, kind
    assert set(paths) >= {path for kind in KINDS for path in findings.get(kind, [])}
    if entry["expect"] == "zone":
        assert validation.zone_brand == payload["brand"]
        assert "SmartOS zone brand" in dict((p.path, p.message) for p in caught.value.problems)["brand"]


# ---- libvirt ------------------------------------------------------------------------------------


def _check_libvirt(payload: dict[str, Any], spec: VMSpec, refused: list[str]) -> None:
    """Schema-valid XML that says what the payload says; SmartOS-only guest settings refused by name."""
    assert [path for path, _ in foreign_problems(spec)] == refused
    created = {d.target: Path(f"/var/lib/vmhost/disks/{d.target}.qcow2") for d in spec.disks if d.target}
    domain = render_domain(spec, RenderContext(accel="kvm", console_log=Path("/log/c.log"), disk_paths=created))
    assert validate_domain_xml(domain) == []
    assert int(domain.findtext("vcpu") or 0) == int(payload.get("vcpus", 1))
    assert int(domain.findtext("memory") or 0) == int(payload.get("ram", 256)) * 1024
    disks = [d for d in payload.get("disks", []) if d.get("media", "disk") == "disk"]
    cdroms = [d for d in payload.get("disks", []) if d.get("media") == "cdrom"]
    _check_disks(payload, disks, spec, domain.findall("devices/disk[@device='disk']"))
    rendered_cdroms = domain.findall("devices/disk[@device='cdrom']")
    assert [c.find("source").get("file") for c in rendered_cdroms] == [c["path"] for c in cdroms]  # type: ignore[union-attr]
    _check_nics(payload, domain.findall("devices/interface"))
    vnc = domain.findall("devices/graphics[@type='vnc']")
    assert len(vnc) == (0 if int(payload.get("vnc_port", 0)) == -1 else 1)


def _check_disks(payload: dict[str, Any], disks: list[Any], spec: VMSpec, rendered: list[Any]) -> None:
    assert len(rendered) == len(disks)
    driver = payload.get("disk_driver")
    for disk, node, spec_disk in zip(disks, rendered, spec.disks, strict=True):
        assert node.find("target").get("bus") == BUSES[disk.get("model", driver)]
        _check_size(disk, spec_disk)
        address = node.find("address[@type='pci']")
        if "pci_slot" in disk:
            _bus, slot, function = parse_pci_slot(disk["pci_slot"])
            assert (int(address.get("slot"), 16), int(address.get("function"), 16)) == (slot, function)
        else:
            assert address is None


def _check_size(disk: dict[str, Any], spec_disk: Any) -> None:
    """As vmadm sizes it: its size (an empty volume, or an image grown with flexible_disk_size), else the
    image's (image_size, when given, is that)."""
    source = spec_disk.source
    assert source.size == (int(disk["size"]) * MiB if "size" in disk else None)
    if "image_uuid" in disk:
        assert source.image == IMAGES[disk["image_uuid"]][0]


def _check_nics(payload: dict[str, Any], rendered: list[Any]) -> None:
    nics = payload.get("nics", [])
    assert len(rendered) == len(nics)
    for nic, node in zip(nics, rendered, strict=True):
        assert node.find("source").get("bridge") == nic["nic_tag"]
        assert node.find("model").get("type") == nic.get("model", payload.get("nic_driver"))
        if "mac" in nic:
            assert node.find("mac").get("address") == nic["mac"]


# ---- SmartOS ------------------------------------------------------------------------------------


def _check_smartos(payload: dict[str, Any]) -> None:
    """On a SmartOS host (no vmhost image store: imgadm has the images) the spec renders back to a payload vmadm
    accepts and that still carries what vmadm acts on."""
    brand = payload["brand"]
    spec = parse_spec(payload_to_spec(json.loads(json.dumps(payload))))
    assert problems(spec, brand) == []
    again = render_payload(spec, brand)
    assert validate_payload(again).ok, validate_payload(again).as_vmadm()
    for key in ("tags", "flexible_disk_size", "pci_devices"):
        if key in payload:
            assert again[key] == payload[key], key
    assert again.get("boot") == payload.get("boot")
    assert (again["ram"], again["vcpus"]) == (int(payload.get("ram", 256)), int(payload.get("vcpus", 1)))
    for disk, rendered in zip(payload.get("disks", []), again["disks"], strict=True):
        _check_smartos_disk(payload, disk, rendered)
    for nic, rendered in zip(payload.get("nics", []), again["nics"], strict=True):
        assert rendered["nic_tag"] == nic["nic_tag"]
        assert rendered.get("allowed_dhcp_cids") == nic.get("allowed_dhcp_cids")


def _check_smartos_disk(payload: dict[str, Any], disk: dict[str, Any], rendered: dict[str, Any]) -> None:
    assert rendered["model"] == disk.get("model", payload.get("disk_driver"))
    assert rendered["media"] == disk.get("media", "disk")
    for key in ("image_uuid", "size", "image_size", "path"):
        assert rendered.get(key) == disk.get(key), key
    for key in SMARTOS_DISK_KEYS:
        assert rendered.get(key) == (int(disk[key]) if key != "compression" and key in disk else disk.get(key)), key
    if "pci_slot" in disk:
        assert parse_pci_slot(rendered["pci_slot"]) == parse_pci_slot(disk["pci_slot"])
    assert bool(rendered["boot"]) == bool(disk.get("boot")) or not any(d.get("boot") for d in payload["disks"])


def test_a_payload_whose_disk_has_no_vmhost_bus_fails_the_libvirt_check() -> None:
    """The check itself can fail: a CD-ROM path that went missing is caught."""
    payload = {"brand": "kvm", "disks": [{"media": "cdrom", "path": "/x.iso", "model": "ide"}]}
    spec = parse_spec(payload_to_spec(payload))
    with pytest.raises(AssertionError):
        _check_libvirt({**payload, "disks": [{"media": "cdrom", "path": "/y.iso", "model": "ide"}]}, spec, [])


def test_xml_of_a_bhyve_data_disk_in_function_1_marks_function_0_multifunction() -> None:
    payload = {
        "brand": "bhyve",
        "disks": [
            {"size": 512, "model": "virtio", "pci_slot": "0:4:0", "boot": True},
            {"size": 512, "model": "virtio", "pci_slot": "4:1"},
        ],
    }
    spec = parse_spec(payload_to_spec(payload))
    paths = {"vda": Path("/a"), "vdb": Path("/b")}
    domain = render_domain(spec, RenderContext(accel="kvm", console_log=Path("/l"), disk_paths=paths))
    addresses = [etree.tostring(a).decode() for a in domain.findall("devices/disk/address")]
    assert addresses == [
        '<address type="pci" multifunction="on" domain="0x0000" bus="0x00" slot="0x04" function="0x0"/>',
        '<address type="pci" domain="0x0000" bus="0x00" slot="0x04" function="0x1"/>',
    ]


# ---- the field table ----------------------------------------------------------------------------


def _table_of(name: str) -> list[str]:
    return [what for what, _column, table in fields.TABLES if name in table]


def _proptable_names() -> list[str]:
    """Every create-time property of kvm or bhyve payloads, sub-properties as `disks.*.size`."""
    names = [key for key, prop in TOP.items() if "create" in prop.actions]
    names += [
        f"{table}.*.{key}" for table, props in TABLES.items() for key, prop in props.items() if "add" in prop.actions
    ]
    return names


def test_every_proptable_property_is_in_exactly_one_table() -> None:
    assert {name: _table_of(name) for name in _proptable_names() if len(_table_of(name)) != 1} == {}


def test_every_property_the_corpus_sends_is_in_the_table() -> None:
    sent = set()
    for entry in ENTRIES:
        payload = entry.values[0]["payload"]
        if payload.get("brand") in ("bhyve", "kvm") and entry.values[0]["expect"] != "vmadm":
            sent |= {key for key in payload if key not in ("disks", "nics", "pci_devices")}
            sent |= {
                f"{k}.*.{sub}" for k in ("disks", "nics", "pci_devices") for item in payload.get(k, []) for sub in item
            }
    assert sorted(name for name in sent if not _table_of(name)) == []


def test_the_table_says_what_the_converter_does() -> None:
    top = {name for what, _c, table in fields.TABLES for name in table if "." not in name and what != "refused"}
    assert top <= set(convert.CONVERTERS)
    assert set(fields.REFUSED) & set(convert.CONVERTERS) == {"cpu_cap"}  # refused when not 0
    for prefix, keys in (("disks", convert.DISK_KEYS), ("nics", convert.NIC_KEYS)):
        taken = {
            name.split(".*.")[1]
            for what, _c, table in fields.TABLES
            for name in table
            if name.startswith(f"{prefix}.*.") and what != "refused"
        }
        refused = {name.split(".*.")[1] for name in fields.REFUSED if name.startswith(f"{prefix}.*.")}
        assert (taken <= keys, refused & keys) == (True, set())


def test_docs_vmadm_fields_is_the_generated_table() -> None:
    docs = Path(__file__).parents[2] / "docs" / "vmadm-fields.md"
    assert docs.read_text() == fields.markdown(), "run: python -m vmhost.dialects.vmadm.fields > docs/vmadm-fields.md"
