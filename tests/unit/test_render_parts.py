"""Focused tests of renderer semantics that the golden files show but do not explain."""

from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from vmhost.render.libvirt import RenderContext, domain_xml, read_metadata, render_domain, validate_domain_xml
from vmhost.render.libvirt import schema as schema_module
from vmhost.render.libvirt.context import METADATA_NS
from vmhost.render.libvirt.disk import split_host_port
from vmhost.spec import parse_spec

NS = {"v": METADATA_NS}


def render(host_accel: str = "kvm", /, ctx: dict[str, Any] | None = None, **fields: Any) -> etree._Element:
    """Render a small spec with the given fields; host_accel is the context's accel, not the spec's."""
    spec = parse_spec({"name": "t", "memory": "512MiB", **fields})
    return render_domain(spec, RenderContext(accel=host_accel, console_log=Path("/log/t.log"), **(ctx or {})))  # type: ignore[arg-type]


def attr(root: etree._Element, xpath: str) -> list[str]:
    return [str(value) for value in root.xpath(xpath, namespaces=NS)]  # type: ignore[union-attr]


# --- domain type, cpu -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctx_accel", "spec_accel", "expected"),
    [("kvm", None, "kvm"), ("tcg", None, "qemu"), ("kvm", "tcg", "qemu"), ("tcg", "kvm", "kvm")],
)
def test_domain_type_follows_spec_accel_then_context(ctx_accel: str, spec_accel: str | None, expected: str) -> None:
    assert render(ctx_accel, accel=spec_accel).get("type") == expected


def test_auto_cpu_is_host_model_under_kvm_and_absent_under_tcg() -> None:
    assert attr(render("kvm"), "/domain/cpu/@mode") == ["host-model"]
    assert render("tcg").find("cpu") is None


def test_auto_cpu_under_tcg_keeps_topology_without_mode() -> None:
    cpu = render("tcg", cpu={"vcpus": 4, "topology": {"sockets": 2, "cores": 2}}).find("cpu")
    assert cpu is not None
    assert cpu.get("mode") is None
    assert cpu.find("topology") is not None


def test_named_cpu_model_is_custom_with_fallback() -> None:
    root = render(cpu={"mode": "Haswell-noTSX"})
    assert attr(root, "/domain/cpu/@mode") == ["custom"]
    assert attr(root, "/domain/cpu/@match") == ["exact"]
    assert attr(root, "/domain/cpu/model[@fallback='allow']/text()") == ["Haswell-noTSX"]


def test_vcpu_hotplug_sets_current_below_ceiling() -> None:
    root = render(cpu={"vcpus": 2, "max_vcpus": 6})
    assert attr(root, "/domain/vcpu/text()") == ["6"]
    assert attr(root, "/domain/vcpu/@current") == ["2"]
    assert attr(render(cpu={"vcpus": 2}), "/domain/vcpu/@current") == []


# --- memory -----------------------------------------------------------------------------------------------------


def test_memory_hotplug_without_numa_gets_one_cell_with_all_vcpus_and_memory() -> None:
    root = render(memory={"size": "1GiB", "max_size": "4GiB", "slots": 4}, cpu={"vcpus": 3})
    assert attr(root, "/domain/maxMemory/@slots") == ["4"]
    assert attr(root, "/domain/maxMemory/text()") == [str(4 * 1024 * 1024)]
    assert attr(root, "/domain/cpu/numa/cell/@cpus") == ["0-2"]
    assert attr(root, "/domain/cpu/numa/cell/@memory") == [str(1024 * 1024)]


def test_balloon_is_always_explicit() -> None:
    assert attr(render(memory={"size": "512MiB", "balloon": False}), "//memballoon/@model") == ["none"]
    assert attr(render(), "//memballoon/@model") == ["virtio"]


# --- boot -------------------------------------------------------------------------------------------------------


def test_default_boot_is_first_disk() -> None:
    assert attr(render(), "/domain/os/boot/@dev") == ["hd"]


def test_no_os_boot_when_a_device_has_a_boot_order_or_kernel_boot() -> None:
    nic = {"type": "bridge", "source": "br0", "boot_order": 1}
    assert attr(render(nics=[nic]), "/domain/os/boot") == []
    assert attr(render(nics=[nic]), "//interface/boot/@order") == ["1"]
    assert attr(render(boot={"kernel": {"kernel": "/k"}}), "/domain/os/boot") == []


# --- disks and controllers ---------------------------------------------------------------------------------------


def _file(bus: str) -> dict[str, Any]:
    return {"source": {"type": "file", "path": "/img", "format": "raw"}, "bus": bus}


def test_scsi_devices_get_dense_controllers_virtio_scsi_first() -> None:
    root = render(disks=[_file("scsi"), _file("virtio-scsi"), _file("scsi")], cdroms=[{"bus": "scsi"}])
    assert attr(root, "//controller[@type='scsi']/@model") == ["virtio-scsi", "lsilogic"]
    assert attr(root, "//controller[@type='scsi']/@index") == ["0", "1"]
    addresses = {
        dev: (controller, unit)
        for dev, controller, unit in zip(
            attr(root, "//disk/target/@dev"),
            attr(root, "//disk/address/@controller"),
            attr(root, "//disk/address/@unit"),
            strict=True,
        )
    }
    assert addresses == {"sdb": ("0", "0"), "sda": ("1", "0"), "sdc": ("1", "1"), "sdd": ("1", "2")}


def test_lsilogic_only_starts_at_index_zero_and_overflows_to_a_second_controller() -> None:
    root = render(disks=[_file("scsi")] * 8)
    assert attr(root, "//controller[@type='scsi']/@index") == ["0", "1"]
    assert attr(root, "//disk/address/@unit") == ["0", "1", "2", "3", "4", "5", "6", "0"]
    assert validate_domain_xml(root) == []


def test_no_scsi_controller_without_scsi_devices() -> None:
    assert attr(render(disks=[_file("virtio"), _file("sata")]), "//controller[@type='scsi']") == []


def test_auto_format_comes_from_the_context() -> None:
    disk = {"source": {"type": "file", "path": "/img"}}
    root = render(disks=[disk], ctx={"disk_formats": {"vda": "qcow2"}})
    assert attr(root, "//disk/driver/@type") == ["qcow2"]


@pytest.mark.parametrize(
    ("disk", "ctx", "message"),
    [
        ({"source": {"type": "file", "path": "/img"}}, {}, r"vda \(/img\): format 'auto' was not resolved"),
        ({"source": {"type": "file", "path": "/img"}}, {"disk_formats": {"vda": "vhdx"}}, "cannot use vhdx"),
        ({"source": {"type": "new", "size": "1GiB"}}, {}, r"vda \(new\): the engine gave no image path"),
        ({"source": {"type": "overlay", "base": "/b"}}, {}, r"vda \(overlay\): the engine gave no image path"),
    ],
)
def test_unresolvable_disks_raise_naming_the_disk(disk: dict[str, Any], ctx: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render(disks=[disk], ctx=ctx)


def test_overlay_is_always_qcow2_and_new_keeps_its_format() -> None:
    disks = [
        {"source": {"type": "overlay", "base": "/b"}},
        {"source": {"type": "new", "size": "1GiB", "format": "raw"}},
    ]
    root = render(disks=disks, ctx={"disk_paths": {"vda": Path("/d/a"), "vdb": Path("/d/b")}})
    assert attr(root, "//disk/driver/@type") == ["qcow2", "raw"]
    assert attr(root, "//disk/source/@file") == ["/d/a", "/d/b"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mon1", ("mon1", 6789)),
        ("mon1:3300", ("mon1", 3300)),
        ("192.0.2.1:1", ("192.0.2.1", 1)),
        ("2001:db8::1", ("2001:db8::1", 6789)),
        ("[2001:db8::1]", ("2001:db8::1", 6789)),
        ("[2001:db8::1]:3300", ("2001:db8::1", 3300)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value, 6789) == expected


# --- nics -------------------------------------------------------------------------------------------------------


def test_multiqueue_names_vhost_only_under_kvm() -> None:
    nic = {"type": "bridge", "source": "br0", "queues": 4}
    assert attr(render("kvm", nics=[nic]), "//interface/driver/@name") == ["vhost"]
    assert attr(render("tcg", nics=[nic]), "//interface/driver/@name") == []
    assert attr(render("tcg", nics=[nic]), "//interface/driver/@queues") == ["4"]


# --- features ---------------------------------------------------------------------------------------------------


def test_hidden_kvm_only_under_kvm() -> None:
    assert attr(render("kvm", features={"hide_kvm": True}), "//features/kvm/hidden/@state") == ["on"]
    assert attr(render("tcg", features={"hide_kvm": True}), "//features/kvm") == []


def test_no_features_element_when_every_feature_is_off() -> None:
    assert render(features={"acpi": False, "apic": False, "pae": False}).find("features") is None


# --- metadata and secrets ---------------------------------------------------------------------------------------


def test_read_metadata_round_trips_labels_and_owned_disks() -> None:
    spec = parse_spec(
        {
            "name": "t",
            "memory": "512MiB",
            "labels": {"b": "2", "a": 'x < y & "z"'},
            "disks": [{"source": {"type": "new", "size": "1GiB"}}, {"source": {"type": "block", "path": "/dev/sdz"}}],
        }
    )
    ctx = RenderContext(
        accel="kvm",
        console_log=Path("/log"),
        disk_paths={"vda": Path("/var/lib/vmhost/t-vda.qcow2")},
        owner="/var/lib/vmhost",
    )
    assert read_metadata(domain_xml(spec, ctx)) == {
        "labels": {"a": 'x < y & "z"', "b": "2"},
        "owned_disks": ["/var/lib/vmhost/t-vda.qcow2"],
        "spec": spec.model_dump(mode="json"),
        "owner": "/var/lib/vmhost",
    }


def test_read_metadata_is_none_for_foreign_domains() -> None:
    assert read_metadata("<domain type='kvm'><name>x</name></domain>") is None
    assert read_metadata("<domain><metadata><other xmlns='urn:x'/></metadata></domain>") is None


def test_read_metadata_does_not_expand_entities() -> None:
    hostile = (
        '<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]><domain><metadata>'
        f'<i:instance xmlns:i="{METADATA_NS}"><i:labels><i:label key="k">&e;</i:label></i:labels>'
        "</i:instance></metadata></domain>"
    )
    metadata = read_metadata(hostile)
    assert metadata is not None
    assert "root:" not in metadata["labels"]["k"]


def test_password_is_in_passwd_attribute_and_never_in_metadata() -> None:
    password = "Zq9!x7"
    spec = parse_spec(
        {"name": "t", "memory": "512MiB", "labels": {"role": "db"}, "graphics": {"type": "vnc", "password": password}}
    )
    root = render_domain(spec, RenderContext(accel="kvm", console_log=Path("/log")))
    assert attr(root, "//graphics/@passwd") == [password]
    metadata = root.find("metadata")
    assert metadata is not None
    assert password not in etree.tostring(metadata, encoding="unicode")
    assert domain_xml(spec, RenderContext(accel="kvm", console_log=Path("/log"))).count(password) == 1


# --- schema -----------------------------------------------------------------------------------------------------


def test_schema_errors_name_line_and_path() -> None:
    root = render()
    etree.SubElement(root.find("devices"), "bogus")  # type: ignore[arg-type]
    errors = validate_domain_xml(root)
    assert errors
    assert all(error.startswith("line ") for error in errors)


def test_missing_schema_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(schema_module, "DOMAIN_RNG", tmp_path / "missing.rng")
    schema_module._domain_schema.cache_clear()
    try:
        with pytest.raises(schema_module.SchemaMissingError, match=r"missing\.rng"):
            validate_domain_xml(render())
    finally:
        schema_module._domain_schema.cache_clear()
