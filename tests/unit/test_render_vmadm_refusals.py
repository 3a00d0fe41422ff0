"""Every spec field a vmadm payload has no room for is refused by path, never dropped; the ones with a vmadm
counterpart are rendered; the few left out on purpose are listed, with why, in IGNORED_FIELDS.

One case per field, on the brand where the question arises (a field refused on both brands is checked on both).
"""

from pathlib import Path
from typing import Any

import pytest

from tests.smartos_standin import EXECUTABLE, Standin
from vmhost.config import HostConfig
from vmhost.dialects.vmadm import validate_payload
from vmhost.drivers.smartos import VmadmDriver
from vmhost.engine import Engine
from vmhost.render.vmadm import BRANDS, IGNORED_FIELDS, problems, render_payload
from vmhost.spec import SpecError, parse_spec

BASE: dict[str, Any] = {"name": "vm", "uuid": "00000000-0000-4000-8000-0000000000ab", "memory": "512MiB"}
DISK = {"source": {"type": "new", "size": "1GiB"}}
NIC = {"type": "bridge", "source": "external", "mac": "52:54:00:00:00:01"}
HYPERV_CLOCK = {"timers": [{"name": "hypervclock", "present": True}]}
SPICE = {"type": "spice", "port": 5930}

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("cpu.features", {"cpu": {"mode": "host-passthrough", "features": {"x2apic": "disable"}}}, "cpu.features"),
    ("cpu.emulator_pinning", {"cpu": {"emulator_pinning": "0-1"}}, "cpu.emulator_pinning"),
    ("memory.access", {"memory": {"size": "512MiB", "access": "shared"}}, "memory.access"),
    ("smbios.serial", {"smbios": {"serial": "ABC-123"}}, "smbios"),
    ("smbios.oem_strings", {"smbios": {"oem_strings": ["licence:42"]}}, "smbios"),
    ("boot.menu_timeout", {"boot": {"menu": True, "menu_timeout": 3000}}, "boot.menu_timeout"),
    ("graphics.sound", {"graphics": {**SPICE, "sound": "ac97"}}, "graphics.sound"),
    ("graphics.monitors", {"graphics": {"type": "vnc", "video": "qxl", "monitors": 2}}, "graphics.monitors"),
    (
        "graphics.qxl",
        {
            "graphics": {
                "type": "vnc",
                "video": "qxl",
                "qxl": {"ram_kib": 65536, "vram_kib": 65536, "vgamem_kib": 16384},
            }
        },
        "graphics.qxl",
    ),
    ("graphics.streaming", {"graphics": {**SPICE, "streaming": "all"}}, "graphics.streaming"),
    ("nics.type hostdev", {"nics": [{"type": "hostdev", "source": "0000:03:10.1"}]}, "nics.0.type"),
    ("nics.vlan", {"nics": [{"type": "hostdev", "source": "0000:03:10.1", "vlan": 42}]}, "nics.0.vlan"),
    ("iothreads", {"iothreads": {"count": 1}}, "iothreads"),
    ("disks.iothread", {"iothreads": {"count": 1}, "disks": [{**DISK, "iothread": 1}]}, "disks.0.iothread"),
    (
        "disks.source.format qcow2 block",
        {"disks": [{"source": {"type": "block", "path": "/dev/zvol/rdsk/zones/lv0", "format": "qcow2"}}]},
        "disks.0.source.format",
    ),
    ("disks.controller", {"disks": [{**DISK, "bus": "virtio-scsi", "controller": 1}]}, "disks.0.controller"),
    ("disks.physical_block_size", {"disks": [{**DISK, "physical_block_size": 4096}]}, "disks.0.physical_block_size"),
    (
        "features.hyperv_synic",
        {"features": {"hyperv": True, "hyperv_synic": True}, "clock": HYPERV_CLOCK},
        "features.hyperv_synic",
    ),
    (
        "features.hyperv_vendor_id",
        {"features": {"hyperv": True, "hyperv_vendor_id": "vmhost"}},
        "features.hyperv_vendor_id",
    ),
    ("features.suspend_to_mem", {"features": {"suspend_to_mem": False}}, "features.suspend_to_mem"),
    ("features.suspend_to_disk", {"features": {"suspend_to_disk": True}}, "features.suspend_to_disk"),
    (
        "cdroms.rbd",
        {"cdroms": [{"rbd": {"pool": "isos", "image": "installer", "monitors": ["ceph1"]}}]},
        "cdroms.0.rbd",
    ),
]
"""(case, spec fields, the path refused)."""


def problem_paths(brand: str, fields: dict[str, Any]) -> list[str]:
    return [path for path, _ in problems(parse_spec({**BASE, **fields}), brand)]  # type: ignore[arg-type]


def render(brand: str, fields: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec({**BASE, **fields})
    assert problems(spec, brand) == []  # type: ignore[arg-type]
    return render_payload(spec, brand)  # type: ignore[arg-type]


@pytest.mark.parametrize("brand", BRANDS)
@pytest.mark.parametrize(("case", "fields", "path"), REFUSED, ids=[case for case, _, _ in REFUSED])
def test_a_field_vmadm_cannot_carry_is_refused_by_its_path(
    brand: str, case: str, fields: dict[str, Any], path: str
) -> None:
    assert path in problem_paths(brand, fields)


def test_the_emulator_default_cpu_is_kvms_qemu64_and_bhyve_which_shows_the_host_cpu_refuses_it() -> None:
    assert render("kvm", {"cpu": {"mode": "default"}})["cpu_type"] == "qemu64"
    assert problem_paths("bhyve", {"cpu": {"mode": "default"}}) == ["cpu.mode"]


def test_a_bhyve_disk_pci_address_is_its_pci_slot_and_the_kvm_brand_refuses_it() -> None:
    fields = {"disks": [{**DISK, "pci_address": "0000:00:04.1"}]}
    assert render("bhyve", fields)["disks"][0]["pci_slot"] == "0:4:1"
    assert problem_paths("kvm", fields) == ["disks.0.pci_address"]


def test_a_raw_block_disk_is_an_existing_device_vmadm_does_not_create() -> None:
    fields = {"disks": [{"source": {"type": "block", "path": "/dev/zvol/rdsk/zones/data0", "format": "raw"}}]}
    disk = render("bhyve", fields)["disks"][0]
    assert (disk["path"], disk["nocreate"]) == ("/dev/zvol/rdsk/zones/data0", True)


def test_turning_off_the_vmware_port_is_refused_on_kvm_whose_qemu_has_one() -> None:
    assert problem_paths("kvm", {"features": {"vmport": False}}) == ["features.vmport"]


IGNORED_CASES: dict[str, dict[str, Any]] = {
    "memory.merge_pages": {"memory": {"size": "512MiB", "merge_pages": False}},
    "graphics.tablet": {"graphics": {"type": "vnc", "tablet": True}},
    "features.vmport": {"features": {"vmport": False}},
    "startup": {"startup": {"order": 1, "delay": 5, "wait_for": "guest-ready"}},
}
BASELINE: dict[str, dict[str, Any]] = {"graphics.tablet": {"graphics": {"type": "vnc"}}}


def test_every_ignored_field_has_a_case() -> None:
    assert set(IGNORED_CASES) == set(IGNORED_FIELDS)


@pytest.mark.parametrize("field", sorted(IGNORED_CASES))
def test_an_ignored_field_leaves_the_bhyve_payload_as_it_was(field: str) -> None:
    assert render("bhyve", IGNORED_CASES[field]) == render("bhyve", BASELINE.get(field, {}))


@pytest.mark.parametrize("brand", BRANDS)
def test_the_defaults_of_the_new_fields_render_no_problem_and_a_valid_payload(brand: str) -> None:
    payload = render(brand, {"disks": [DISK], "nics": [NIC], "graphics": {"type": "vnc"}})
    result = validate_payload(payload)
    assert result.ok, result.report()


def test_the_engine_refuses_a_qcow2_block_disk_before_vmadm_makes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMADM_STANDIN_STATE", str(tmp_path / "standin"))
    standin = Standin(tmp_path / "standin")
    driver = VmadmDriver(command=str(EXECUTABLE), brand="bhyve")
    engine = Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos", allowed_paths=(tmp_path,)), driver)
    disk = {"source": {"type": "block", "path": str(tmp_path / "lv0"), "format": "qcow2"}}
    with pytest.raises(SpecError, match=r"disks\.0\.source\.format: .*zvol is raw"):
        engine.create({**BASE, "nics": [NIC], "disks": [disk]})
    assert standin.changes() == []
