"""The vmadm dialect: payloads checked as `vmadm validate` checks them (one test per documented rule), and
converted into vmhost specs."""

import json
from typing import Any

import pytest

from tests.unit.test_render_vmadm import CASES
from vmhost.dialects import to_spec_document, validate_document
from vmhost.dialects.vmadm import DialectError, payload_to_spec, validate_payload
from vmhost.render.vmadm import render_payload
from vmhost.spec import SpecError, parse_spec

IMAGE = "5cf2ad7a-e9d1-4a3c-9c1b-0a5f0b8b3a11"
NIC = {"nic_tag": "external", "model": "virtio"}
DISK = {"model": "virtio", "size": 10240}


def payload(**fields: Any) -> dict[str, Any]:
    return {"brand": "bhyve", "alias": "web", **fields}


def findings(action: str = "create", brand: str | None = None, **fields: Any) -> dict[str, Any]:
    return validate_payload(payload(**fields), action, brand).as_vmadm()


# ---- brand and top-level properties -----------------------------------------------------------


def test_minimal_hvm_payload_is_valid() -> None:
    assert validate_payload({"brand": "kvm"}).report() == "VALID 'create' payload for kvm brand VMs."


def test_payload_without_brand_is_missing_brand() -> None:
    assert validate_payload({}).missing_properties == ["brand"]


def test_a_zone_brand_is_refused_in_vmhost_words_not_as_a_bad_brand() -> None:
    result = validate_payload({"brand": "joyent"})
    assert result.as_vmadm() == {"bad_values": [], "bad_properties": [], "missing_properties": []}
    assert not result.ok
    assert [p.path for p in result.problems()] == ["brand"]
    assert "SmartOS zone brand" in result.report()


def test_an_invalid_zone_payload_still_names_its_bad_property() -> None:
    result = validate_payload({"brand": "lx", "dataset_name": "x", "nics": [{"nic_tag": "admin", "mtu": 500}]})
    assert (result.bad_properties, result.bad_values) == (["dataset_name"], ["nics.*.mtu"])


def test_an_unknown_brand_is_a_bad_brand() -> None:
    assert validate_payload({"brand": "gorilla"}).as_vmadm() == {"bad_brand": "gorilla"}


def test_unknown_property_is_a_bad_property() -> None:
    assert findings(dataset_name="x")["bad_properties"] == ["dataset_name"]


def test_kvm_only_property_is_a_bad_property_for_bhyve() -> None:
    assert findings(vga="std")["bad_properties"] == ["vga"]


def test_bhyve_only_property_is_a_bad_property_for_kvm() -> None:
    assert findings(brand="kvm", bootrom="uefi")["bad_properties"] == ["bootrom"]


def test_create_only_property_is_a_bad_property_in_an_update() -> None:
    assert findings("update", "bhyve", uuid="00000000-0000-4000-8000-000000000001")["bad_properties"] == [
        "brand",
        "uuid",
    ]


def test_update_members_are_bad_properties_in_a_create() -> None:
    assert findings(update_nics=[{"mac": "52:54:00:00:00:01"}])["bad_properties"] == ["update_nics"]


def test_non_integer_ram_is_a_bad_value() -> None:
    assert findings(ram="lots")["bad_values"] == ["ram"]


def test_integer_given_as_a_string_is_accepted_like_javascript_number() -> None:
    assert validate_payload(payload(ram="1024")).ok


def test_boolean_is_not_an_integer() -> None:
    assert findings(vcpus=True)["bad_values"] == ["vcpus"]


def test_zero_vcpus_is_a_bad_value() -> None:
    assert findings(vcpus=0)["bad_values"] == ["vcpus"]


def test_max_swap_below_256_is_a_bad_value() -> None:
    assert findings(max_swap=128)["bad_values"] == ["max_swap"]


def test_invalid_autoboot_is_a_bad_value_and_one_is_deprecated_but_accepted() -> None:
    assert findings(autoboot="aardvark")["bad_values"] == ["autoboot"]
    assert validate_payload(payload(autoboot="1")).ok


def test_non_string_alias_is_a_bad_value() -> None:
    assert findings(alias=42)["bad_values"] == ["alias"]


def test_uppercase_uuid_is_a_bad_value() -> None:
    assert findings(uuid="5CF2AD7A-E9D1-4A3C-9C1B-0A5F0B8B3A11")["bad_values"] == ["uuid"]


def test_nested_customer_metadata_is_a_bad_value() -> None:
    assert findings(customer_metadata={"a": {"b": "c"}})["bad_values"] == ["customer_metadata"]


def test_resolver_that_is_not_an_ip_is_a_bad_value() -> None:
    assert findings(resolvers=["8.8.8.8", "dns.example"])["bad_values"] == ["resolvers"]
    assert validate_payload(payload(resolvers="8.8.8.8,2001:db8::1")).ok


def test_vnc_password_longer_than_8_is_a_bad_value() -> None:
    assert findings(vnc_password="123456789")["bad_values"] == ["vnc_password"]


def test_vnc_port_below_minus_one_is_a_bad_value() -> None:
    assert findings(vnc_port=-2)["bad_values"] == ["vnc_port"]


def test_bootrom_path_is_a_bad_value_at_create() -> None:
    assert findings(bootrom="/uefi-debug.bin")["bad_values"] == ["bootrom"]


def test_cpu_type_outside_qemu64_and_host_is_a_bad_value() -> None:
    assert findings(brand="kvm", cpu_type="Skylake")["bad_values"] == ["cpu_type"]


# ---- disks ------------------------------------------------------------------------------------


def test_disk_model_outside_the_brand_list_is_a_bad_value() -> None:
    assert findings(disks=[{**DISK, "model": "ide"}])["bad_values"] == ["disks.*.model"]
    assert findings(brand="kvm", disks=[{**DISK, "model": "ahci"}])["bad_values"] == ["disks.*.model"]


def test_disk_without_model_or_disk_driver_is_missing_disks_model() -> None:
    assert findings(disks=[{"size": 1024}])["missing_properties"] == ["disks.*.model"]
    assert validate_payload(payload(disk_driver="virtio", disks=[{"size": 1024}])).ok


def test_image_disk_without_image_size_is_valid_as_vmadm_takes_it_from_the_image() -> None:
    assert validate_payload(payload(disks=[{"model": "virtio", "image_uuid": IMAGE}])).ok


def test_image_disk_with_block_size_is_a_bad_property() -> None:
    disk = {"model": "virtio", "image_uuid": IMAGE, "image_size": 10240, "block_size": 8192}
    assert findings(disks=[disk])["bad_properties"] == ["disks.0.block_size"]


def test_image_disk_with_size_is_a_bad_property_unless_flexible_disk_size() -> None:
    disk = {"model": "virtio", "image_uuid": IMAGE, "image_size": 10240, "size": 20480}
    assert findings(disks=[disk])["bad_properties"] == ["disks.0.size"]
    assert validate_payload(payload(flexible_disk_size=40960, disks=[disk])).ok


def test_disk_without_image_or_size_is_missing_its_size() -> None:
    assert findings(disks=[DISK, {"model": "virtio"}])["missing_properties"] == ["disks.1.size"]


def test_disk_without_image_may_not_give_image_size() -> None:
    assert findings(disks=[{**DISK, "image_size": 10}])["bad_properties"] == ["disks.0.image_size"]


def test_disk_path_needs_nocreate() -> None:
    assert findings(disks=[{**DISK, "path": "/dev/zvol/rdsk/zones/x"}])["bad_properties"] == ["disks.0.path"]
    assert validate_payload(payload(disks=[{"model": "virtio", "path": "/dev/x", "nocreate": True}])).ok


def test_cdrom_may_give_a_path_without_a_size() -> None:
    assert validate_payload(payload(disks=[{"model": "ahci", "media": "cdrom", "path": "/x.iso"}])).ok


def test_block_size_that_is_not_a_power_of_two_is_a_bad_value() -> None:
    assert findings(disks=[{**DISK, "block_size": 3000}])["bad_values"] == ["disks.*.block_size"]


def test_bhyve_only_disk_property_is_a_bad_property_for_kvm() -> None:
    assert findings(brand="kvm", disks=[{**DISK, "model": "ide", "notrim": True}])["bad_properties"] == [
        "disks.*.notrim"
    ]


def test_add_disks_in_an_update_follows_the_same_rules() -> None:
    update = {"add_disks": [{"model": "virtio", "image_uuid": IMAGE, "image_size": 5120, "size": 5120}]}
    assert validate_payload(update, "update", "kvm").bad_properties == ["add_disks.0.size"]


# ---- nics -------------------------------------------------------------------------------------


def test_nic_without_nic_tag_is_missing_nics_nic_tag() -> None:
    assert findings(nics=[{"model": "virtio"}])["missing_properties"] == ["nics.*.nic_tag"]


def test_nic_tag_outside_its_pattern_is_a_bad_value() -> None:
    assert findings(nics=[{**NIC, "nic_tag": "br-0"}])["bad_values"] == ["nics.*.nic_tag"]


def test_nic_without_model_or_nic_driver_is_missing_nics_model() -> None:
    assert findings(nics=[{"nic_tag": "admin"}])["missing_properties"] == ["nics.*.model"]


def test_vlan_above_4095_is_a_bad_value() -> None:
    assert findings(nics=[{**NIC, "vlan_id": 4096}])["bad_values"] == ["nics.*.vlan_id"]
    assert validate_payload(payload(nics=[{**NIC, "vlan_id": 4095}])).ok


@pytest.mark.parametrize("mtu", [500, 10000, 1500.3, "Ah Elbereth", {"hello": "world"}])
def test_mtu_outside_576_to_9000_or_not_an_integer_is_a_bad_value(mtu: Any) -> None:
    assert findings(nics=[{**NIC, "mtu": mtu}, {**NIC, "mtu": mtu}])["bad_values"] == ["nics.*.mtu"]


@pytest.mark.parametrize("mtu", [576, 1500, 9000, "2323"])
def test_mtu_within_576_to_9000_is_valid(mtu: Any) -> None:
    assert validate_payload(payload(nics=[{**NIC, "mtu": mtu}])).ok


def test_second_primary_nic_is_a_bad_value() -> None:
    assert findings(nics=[{**NIC, "primary": True}, {**NIC, "primary": True}])["bad_values"] == ["nics.*.primary"]


def test_nics_that_are_not_an_array_of_objects_are_a_bad_value() -> None:
    assert findings(nics={})["bad_values"] == ["nics"]


def test_unknown_nic_property_is_a_bad_property() -> None:
    assert findings(nics=[{**NIC, "physical": "net0"}])["bad_properties"] == ["nics.*.physical"]


def test_ips_need_a_routing_prefix_or_dhcp() -> None:
    assert findings(nics=[{**NIC, "ips": ["10.0.0.5"]}])["bad_values"] == ["nics.*.ips"]
    assert validate_payload(payload(nics=[{**NIC, "ips": ["10.0.0.5/24", "addrconf"]}])).ok


def test_allowed_ips_is_not_updatable_and_is_named_as_vmjs_checks_update_nics() -> None:
    update = {"update_nics": [{"mac": "52:54:00:00:00:01", "allowed_ips": ["10.0.0.1"]}]}
    assert validate_payload(update, "update", "bhyve").bad_properties == ["nics.*.allowed_ips"]


def test_update_nics_needs_the_mac_that_finds_the_nic() -> None:
    assert validate_payload({"update_nics": [{"mtu": 1500}]}, "update", "kvm").missing_properties == [
        "update_nics.*.mac"
    ]


def test_update_payload_with_set_and_remove_members_is_valid() -> None:
    update = {"set_customer_metadata": {"a": "b"}, "remove_nics": ["52:54:00:00:00:01"], "ram": 2048}
    assert validate_payload(update, "update", "bhyve").report() == "VALID 'update' payload for bhyve brand VMs."


# ---- printing -----------------------------------------------------------------------------------


def test_an_invalid_payload_prints_vmadm_json_with_two_space_indent() -> None:
    result = validate_payload(payload(ram="x", nics=[{"model": "virtio"}], bogus=1))
    assert result.report() == json.dumps(
        {"bad_values": ["ram"], "bad_properties": ["bogus"], "missing_properties": ["nics.*.nic_tag"]}, indent=2
    )


# ---- conversion -------------------------------------------------------------------------------


def test_alias_that_is_not_a_vmhost_name_is_refused_in_vmhost_words_not_vmadm_ones() -> None:
    with pytest.raises(DialectError) as caught:
        payload_to_spec(payload(alias="my web"))
    assert [str(p) for p in caught.value.problems] == [
        "alias: must be a vmhost VM name (^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$, not a UUID); got 'my web'"
    ]
    assert caught.value.validation.ok  # vmadm itself takes any string: no bad_values entry vmadm would not report
    assert isinstance(caught.value, SpecError)


def test_payload_without_alias_is_named_after_its_uuid() -> None:
    uuid = "3a1f0d2e-5b6c-4d7e-8f90-a1b2c3d4e5f6"
    doc = payload_to_spec({"brand": "bhyve", "uuid": uuid})
    assert (doc["name"], doc["uuid"]) == (f"vm-{uuid}", uuid)
    made = payload_to_spec({"brand": "bhyve"})
    assert made["name"] == f"vm-{made['uuid']}"
    assert parse_spec(made).name == made["name"]  # a valid vmhost name, not a UUID


def test_minimal_payload_gets_vmadm_defaults_and_vnc_on() -> None:
    spec = parse_spec(payload_to_spec(payload()))
    assert (spec.name, spec.memory.size, spec.cpu.vcpus) == ("web", 256 * 2**20, 1)
    assert spec.graphics is not None and spec.graphics.type == "vnc"


def test_image_disk_becomes_an_overlay_on_the_image_zvol() -> None:
    doc = payload_to_spec(payload(disks=[{"model": "virtio", "image_uuid": IMAGE, "image_size": 10240, "boot": True}]))
    assert doc["disks"] == [
        {
            "bus": "virtio",
            "source": {"type": "overlay", "base": f"/dev/zvol/rdsk/zones/{IMAGE}", "size": "10240MiB"},
            "boot_order": 1,
        }
    ]


def test_payload_properties_a_spec_cannot_carry_are_problems_naming_the_payload_path() -> None:
    with pytest.raises(DialectError) as caught:
        payload_to_spec(payload(cpu_cap=200, nics=[{**NIC, "vlan_id": 5, "ips": ["10.0.0.5/24"]}]))
    assert [p.path for p in caught.value.problems] == ["cpu_cap", "nics.0.vlan_id"]
    assert caught.value.validation.ok


def test_host_bookkeeping_is_left_out() -> None:
    doc = payload_to_spec(payload(owner_uuid="00000000-0000-0000-0000-000000000000", quota=10, zfs_io_priority=30))
    assert set(doc) == {"name", "memory", "graphics"}


def test_autoboot_becomes_autostart() -> None:
    assert payload_to_spec(payload(autoboot=True))["autostart"] is True


def test_registry_knows_vmhost_and_vmadm() -> None:
    assert to_spec_document({"name": "x"}, "vmhost") == {"name": "x"}
    assert to_spec_document(payload(), "vmadm")["name"] == "web"
    with pytest.raises(SpecError):
        to_spec_document({}, "xml")


def test_validate_document_reports_like_vmadm_validate() -> None:
    assert validate_document(payload(), "vmadm") == (True, "VALID 'create' payload for bhyve brand VMs.")
    ok, report = validate_document(payload(nics=[{**NIC, "vlan_id": 4096}]), "vmadm")
    assert (ok, json.loads(report)["bad_values"]) == (False, ["nics.*.vlan_id"])
    assert validate_document(payload(cpu_cap=100), "vmadm") == (False, "cpu_cap: vmhost specs have no CPU cap")


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_render_convert_render_is_the_same_payload(case: str) -> None:
    brand, document = CASES[case]
    spec = parse_spec(dict(document))
    rendered = render_payload(spec, brand)  # type: ignore[arg-type]
    again = parse_spec(payload_to_spec(rendered))
    assert render_payload(again, brand) == rendered  # type: ignore[arg-type]
    assert (again.name, again.uuid, again.memory, again.cpu.vcpus, again.labels) == (
        spec.name,
        spec.uuid,
        spec.memory,
        spec.cpu.vcpus,
        spec.labels,
    )
    assert [n.mac for n in again.nics] == [n.mac for n in spec.nics]
