"""Golden vmadm payloads for representative specs, per brand, and what a payload cannot carry.

The goldens carry no owner: vmhost's record in internal_metadata is the whole spec, which changes with every
spec field added (test_the_record_in_internal_metadata_is_the_spec_and_owner covers it).

After an intended change to the renderer, regenerate and review the diff:

    .venv/bin/pytest tests/unit/test_render_vmadm.py --regenerate-golden

Every golden payload must also pass vmhost's own `vmadm validate` rules (vmhost/dialects/vmadm).
"""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Golden
from vmhost.dialects.vmadm import validate_payload
from vmhost.render.vmadm import payload_json, problems, render_payload
from vmhost.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden" / "vmadm"
IMAGE = "/dev/zvol/rdsk/zones/5cf2ad7a-e9d1-4a3c-9c1b-0a5f0b8b3a11"

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "minimal-bhyve": ("bhyve", {"name": "minimal", "uuid": "00000000-0000-4000-8000-000000000001", "memory": "512MiB"}),
    "full-bhyve": (
        "bhyve",
        {
            "name": "full",
            "uuid": "00000000-0000-4000-8000-000000000002",
            "memory": "2GiB",
            "labels": {"team": "web", "env": "prod"},
            "cpu": {"vcpus": 4, "shares": 200},
            "boot": {"firmware": "uefi"},
            "disks": [
                {"source": {"type": "overlay", "base": IMAGE, "size": "10GiB"}},
                {"source": {"type": "new", "size": "20GiB"}},
                {"source": {"type": "block", "path": "/dev/zvol/rdsk/zones/data0"}, "bus": "sata"},
            ],
            "cdroms": [{"iso": "/zones/iso/installer.iso"}],
            "nics": [
                {"type": "bridge", "source": "external", "mac": "52:54:00:00:00:01", "mtu": 9000},
                {
                    "type": "network",
                    "source": "internal",
                    "mac": "52:54:00:00:00:02",
                    "model": "e1000",
                    "allowed_ips": ["192.0.2.50"],
                },
            ],
            "graphics": {"type": "vnc", "port": 5905, "password": "s3cret!"},
        },
    ),
    "install-kvm": (
        "kvm",
        {
            "name": "install",
            "uuid": "00000000-0000-4000-8000-000000000003",
            "memory": "1GiB",
            "cpu": {"vcpus": 2, "mode": "host-passthrough"},
            "disks": [{"source": {"type": "new", "size": "8GiB"}, "bus": "ide"}],
            "cdroms": [{"iso": "/zones/iso/debian.iso", "bus": "ide", "boot_order": 1}],
            "nics": [{"type": "bridge", "source": "admin", "mac": "52:54:00:00:00:03", "model": "rtl8139"}],
            "graphics": {"type": "vnc", "video": "cirrus"},
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, golden: Golden) -> None:
    brand, document = CASES[case]
    spec = parse_spec(dict(document))
    assert problems(spec, brand) == []  # type: ignore[arg-type]
    rendered = payload_json(render_payload(spec, brand))  # type: ignore[arg-type]
    path = GOLDEN / f"{case}.json"
    golden(path, rendered)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rendered_payload_passes_vmadm_validate(case: str) -> None:
    brand, _document = CASES[case]
    payload = json.loads((GOLDEN / f"{case}.json").read_text())
    result = validate_payload(payload)
    assert result.ok, result.report()
    assert result.report() == f"VALID 'create' payload for {brand} brand VMs."


def render(brand: str, **fields: Any) -> dict[str, Any]:
    spec = parse_spec({"name": "vm", "memory": "512MiB", **fields})
    return render_payload(spec, brand)  # type: ignore[arg-type]


def problem_paths(brand: str, **fields: Any) -> list[str]:
    return [path for path, _ in problems(parse_spec({"name": "vm", "memory": "512MiB", **fields}), brand)]  # type: ignore[arg-type]


def test_autoboot_is_always_false_so_vmhost_starts_the_vm_itself() -> None:
    assert render("bhyve", autostart=True)["autoboot"] is False


def test_memory_is_rendered_as_ram_in_mib() -> None:
    assert render("kvm", memory="3GiB")["ram"] == 3072


def test_headless_vm_has_vnc_disabled() -> None:
    assert render("bhyve")["vnc_port"] == -1


def test_vnc_without_port_asks_vmadm_for_a_random_one() -> None:
    assert render("bhyve", graphics={"type": "vnc"})["vnc_port"] == 0


def test_first_nic_is_primary_and_the_others_are_not() -> None:
    nics = render("bhyve", nics=[{"type": "bridge", "source": "a"}, {"type": "bridge", "source": "b"}])["nics"]
    assert [nic.get("primary") for nic in nics] == [True, None]


def test_the_boot_flag_follows_the_boot_order() -> None:
    disks = render(
        "bhyve",
        boot={"order": ["cdrom", "hd"]},
        disks=[{"source": {"type": "new", "size": "1GiB"}}],
        cdroms=[{"iso": "/zones/iso/x.iso"}],
    )["disks"]
    assert [(d["media"], d["boot"]) for d in disks] == [("disk", False), ("cdrom", True)]


def test_kvm_booting_from_cdrom_gets_the_dc_boot_order() -> None:
    payload = render("kvm", cdroms=[{"iso": "/zones/iso/x.iso", "bus": "ide", "boot_order": 1}])
    assert payload["boot"] == "order=dc"


def test_disk_bus_becomes_the_brand_model() -> None:
    assert (
        render("bhyve", disks=[{"source": {"type": "new", "size": "1GiB"}, "bus": "sata"}])["disks"][0]["model"]
        == "ahci"
    )
    assert (
        render("kvm", disks=[{"source": {"type": "new", "size": "1GiB"}, "bus": "scsi"}])["disks"][0]["model"] == "scsi"
    )


def test_a_bus_the_brand_lacks_is_a_problem() -> None:
    assert problem_paths("bhyve", disks=[{"source": {"type": "new", "size": "1GiB"}, "bus": "ide"}]) == ["disks.0.bus"]
    assert problem_paths("kvm", disks=[{"source": {"type": "new", "size": "1GiB"}, "bus": "sata"}]) == ["disks.0.bus"]


def test_an_overlay_on_a_plain_file_cannot_be_an_image_clone() -> None:
    disk = {"source": {"type": "overlay", "base": "/srv/images/debian.qcow2", "size": "10GiB"}}
    assert problem_paths("bhyve", disks=[disk]) == ["disks.0.source.base"]


def test_an_image_overlay_without_a_size_leaves_image_size_to_vmadm_which_reads_it_from_the_image() -> None:
    disks = [{"source": {"type": "overlay", "base": IMAGE}}]
    assert problem_paths("bhyve", disks=disks) == []
    assert "image_size" not in render("bhyve", disks=disks)["disks"][0]


def test_a_grown_image_overlay_is_size_with_flexible_disk_size_on_bhyve_else_image_size() -> None:
    disks = [{"source": {"type": "overlay", "base": IMAGE, "size": "20GiB"}}]
    flexible = render("bhyve", disks=disks, smartos={"flexible_disk_size": 20480})["disks"][0]
    assert (flexible["size"], "image_size" in flexible) == (20480, False)
    assert render("kvm", disks=disks)["disks"][0]["image_size"] == 20480


def test_a_qcow2_file_disk_is_a_problem_because_vmadm_reads_raw_devices() -> None:
    disk = {"source": {"type": "file", "path": "/zones/img/a.qcow2", "format": "qcow2"}}
    assert problem_paths("bhyve", disks=[disk]) == ["disks.0.source.format"]


def test_a_nic_source_outside_the_nic_tag_pattern_is_a_problem() -> None:
    assert problem_paths("bhyve", nics=[{"type": "bridge", "source": "br-0"}]) == ["nics.0.source"]


def test_rtl8139_is_a_kvm_model_only() -> None:
    nic = {"type": "bridge", "source": "admin", "model": "rtl8139"}
    assert problem_paths("bhyve", nics=[nic]) == ["nics.0.model"]
    assert problem_paths("kvm", nics=[nic]) == []


def test_tcg_uefi_on_kvm_and_pinning_are_problems() -> None:
    paths = problem_paths(
        "kvm", accel="tcg", boot={"firmware": "uefi"}, cpu={"pinning": [{"vcpu": 0, "host_cpus": "1"}]}
    )
    assert paths == ["accel", "boot.firmware", "cpu.pinning"]


def test_a_label_ending_in_pw_is_a_problem_because_vmadm_hides_it() -> None:
    assert problem_paths("bhyve", labels={"db_pw": "x"}) == ["labels.db_pw"]


def test_the_recorded_spec_keeps_the_vnc_password_masked() -> None:
    spec = parse_spec({"name": "vm", "memory": "512MiB", "graphics": {"type": "vnc", "password": "hunter2"}})
    payload = render_payload(spec, "bhyve", owner="/data")
    assert payload["vnc_password"] == "hunter2"
    assert "hunter2" not in payload["internal_metadata"]["vmhost:spec"]


def test_the_record_in_internal_metadata_is_the_spec_and_owner() -> None:
    spec = parse_spec({"name": "vm", "memory": "512MiB"})
    metadata = render_payload(spec, "bhyve", owner="/data")["internal_metadata"]
    assert metadata["vmhost:owner"] == "/data"
    assert json.loads(metadata["vmhost:spec"]) == spec.model_dump(mode="json")
    assert "internal_metadata" not in render_payload(spec, "bhyve")
