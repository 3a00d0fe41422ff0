"""The spec as pure data: units, defaults, normalisation, and problems named by path (with the fake host: schema,
cross-field and host problems in one answer)."""

import json

import pytest

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import engine_on
from vmhost.spec import SpecError, VMSpec, load_spec_file, parse_spec
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.units import format_size, parse_size

MINIMAL = {"name": "web-1", "memory": "512MiB"}


def problems(document):
    with pytest.raises(SpecError) as failure:
        parse_spec(document)
    return {p.path: p.message for p in failure.value.problems}


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 2**20), ("2GiB", 2 * 2**30), ("1G", 2**30), ("1GB", 10**9), ("64 KiB", 65536), (4096, 4096)],
)
def test_sizes_accept_binary_and_decimal_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["-1MiB", "12 parsecs", "MiB", True, 1.5])
def test_sizes_reject_nonsense(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_sizes_format_in_the_largest_exact_unit():
    assert [format_size(v) for v in (2**30, 1536 * 2**20, 1000)] == ["1GiB", "1536MiB", "1000"]


def test_minimal_spec_gets_safe_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.memory.size == 512 * 2**20
    assert spec.cpu.vcpus == 1
    assert spec.graphics is None
    assert spec.features.acpi
    assert spec.uuid is not None


def test_disks_and_cdroms_get_targets_per_bus_in_order():
    spec = parse_spec(
        {
            **MINIMAL,
            "disks": [
                {"source": {"type": "new", "size": "1GiB"}},
                {"source": {"type": "new", "size": "1GiB"}, "bus": "sata", "target": "sdb"},
                {"source": {"type": "new", "size": "1GiB"}, "bus": "virtio-scsi"},
                {"source": {"type": "new", "size": "1GiB"}},
            ],
            "cdroms": [{"bus": "sata"}, {"bus": "ide"}],
        }
    )
    assert [d.target for d in spec.disks] == ["vda", "sdb", "sda", "vdb"]
    assert [c.target for c in spec.cdroms] == ["sdc", "hda"]


def test_generated_macs_are_locally_administered_unicast():
    spec = parse_spec({**MINIMAL, "nics": [{"type": "bridge", "source": "br0"}] * 2})
    macs = [nic.mac for nic in spec.nics]
    assert len(set(macs)) == 2
    assert all(mac.startswith("52:54:00:") for mac in macs)


def test_mac_is_normalised_to_lower_case_colons():
    spec = parse_spec({**MINIMAL, "nics": [{"type": "bridge", "source": "br0", "mac": "52-54-00-AA-BB-CC"}]})
    assert spec.nics[0].mac == "52:54:00:aa:bb:cc"


def test_password_is_masked_unless_secrets_are_asked_for():
    spec = parse_spec({**MINIMAL, "graphics": {"type": "vnc", "password": "hunter2"}})
    assert "hunter2" not in spec.model_dump_json()
    assert "hunter2" not in repr(spec)
    assert spec.model_dump(mode="json", context={REVEAL_SECRETS: True})["graphics"]["password"] == "hunter2"


def test_stored_form_round_trips():
    spec = parse_spec({**MINIMAL, "disks": [{"source": {"type": "new", "size": "1GiB"}}]})
    stored = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
    assert VMSpec.model_validate(stored) == spec


def test_every_field_problem_is_reported_at_once():
    found = problems(
        {
            "name": "a b",
            "memory": "lots",
            "cpu": {"vcpus": 0},
            "disks": [{"source": {"type": "iscsi", "portal": "x y", "target": "nope"}, "bus": "floppy"}],
            "nics": [{"type": "wifi", "source": "wlan0"}],
            "graphics": {"type": "vnc", "port": 80},
            "surprise": 1,
        }
    )
    assert set(found) == {
        "name",
        "memory.size",
        "cpu.vcpus",
        "disks.0.source.portal",
        "disks.0.source.target",
        "disks.0.bus",
        "nics.0.type",
        "graphics.port",
        "surprise",
    }
    assert found["surprise"] == "is not a known field"
    assert "must be one of" in found["disks.0.bus"]


def test_cross_field_problems_name_their_paths():
    found = problems(
        {
            **MINIMAL,
            "cpu": {"vcpus": 4, "max_vcpus": 2, "pinning": [{"vcpu": 7, "host_cpus": "0"}]},
            "memory": {"size": "1GiB", "slots": 2},
            "disks": [{"source": {"type": "new", "size": "1GiB"}, "bus": "virtio", "wwn": "0x5000c50015ea71ac"}],
            "nics": [{"type": "bridge", "source": "br0", "model": "e1000", "queues": 2}],
            "usb": {"redirection": 1},
        }
    )
    assert set(found) == {
        "cpu.max_vcpus",
        "cpu.pinning.0.vcpu",
        "memory.max_size",
        "disks.0.wwn",
        "nics.0.queues",
        "usb.redirection",
    }


MAC = "52:54:00:00:00:01"
TOPOLOGY_OF_3 = {"sockets": 1, "cores": 3, "threads": 1}


def bridge(**fields):
    return {"type": "bridge", "source": "br0", **fields}


def test_a_bad_name_or_memory_still_lets_every_other_check_run():
    found = problems(
        {
            "name": "a b",
            "memory": "lots",
            "cpu": {"vcpus": 2, "topology": TOPOLOGY_OF_3},
            "nics": [bridge(model="e1000", queues=2)],
        }
    )
    assert set(found) == {"name", "memory.size", "cpu.topology", "nics.0.queues"}


def test_a_missing_name_is_one_problem_among_the_others():
    assert set(problems({"memory": "1GiB", "cpu": {"vcpus": 2, "topology": TOPOLOGY_OF_3}})) == {"name", "cpu.topology"}


def test_one_bad_field_in_a_list_item_hides_only_that_items_own_checks():
    found = problems(
        {
            **MINIMAL,
            "disks": [
                {"source": {"type": "file", "path": "rel"}},
                {"source": {"type": "new", "size": "1GiB"}, "wwn": "0x5000c50015ea71ac"},
            ],
            "nics": [{"type": "wifi", "source": "wlan0"}, bridge(mac=MAC), bridge(mac=MAC, model="e1000", queues=2)],
        }
    )
    assert found == {  # the other items keep their indexes in the document
        "disks.0.source.path": "must be an absolute path, got 'rel'",
        "disks.1.wwn": "only scsi, virtio-scsi and ide disks carry a wwn, not virtio",
        "nics.0.type": "must be one of 'bridge', 'network', 'direct' or 'hostdev'; got 'wifi'",
        "nics.1.mac": f"MAC address used twice: {MAC}",
        "nics.2.mac": f"MAC address used twice: {MAC}",
        "nics.2.queues": "multiqueue needs model virtio",
    }


def test_checks_that_rest_on_a_failed_field_are_left_out_not_guessed_from_defaults():
    found = problems(
        {
            **MINIMAL,
            "cpu": {"vcpus": 0},  # the cells cover vCPUs 0-1: no verdict against the default of 1
            "memory": {"size": "lots", "max_size": "4GiB", "slots": 2},
            "numa": [{"cpus": "0-1", "memory": "1GiB"}],
            "nics": [bridge(addresses=["192.0.2.10"], gateway4="192.0.2.1")],  # no subnet left to hold the gateway
        }
    )
    assert set(found) == {"cpu.vcpus", "memory.size", "nics.0.addresses.0"}


def test_schema_cross_field_and_host_problems_come_in_one_answer(tmp_path):
    engine = engine_on(FakeHypervisor(), tmp_path / "data")
    missing = tmp_path / "data" / "missing.img"
    document = {
        "name": "a b",
        "memory": "lots",
        "cpu": {"vcpus": 2, "topology": TOPOLOGY_OF_3},
        "disks": [{"source": {"type": "file", "path": str(missing), "format": "qcow3"}}],
        "nics": [bridge(mac="zz")],
    }
    with pytest.raises(SpecError) as failure:
        engine.validate(document)
    assert [str(p) for p in failure.value.problems] == [
        "cpu.topology: sockets*cores*threads = 1*3*1 = 3 does not match vcpus (2)",
        "disks.0.source.format: must be one of 'auto', 'qcow2', 'raw', 'vmdk', 'vdi' or 'qed'; got 'qcow3'",
        f"disks.0.source.path: disk file {missing} does not exist",
        "memory.size: must be a size such as '512MiB', '2GiB' or a byte count, got 'lots'",
        "name: 'a b' is not of the allowed form ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        "nics.0.mac: must be six hex pairs like 52:54:00:12:34:56, got 'zz'",
    ]


def test_numa_cells_must_cover_vcpus_and_memory():
    found = problems(
        {**MINIMAL, "cpu": {"vcpus": 2}, "numa": [{"cpus": "0", "memory": "256MiB"}, {"cpus": "0", "memory": "128MiB"}]}
    )
    assert "numa.1.cpus" in found
    assert "numa" in found


def test_usb_device_needs_exactly_one_identity():
    found = problems(
        {**MINIMAL, "passthrough": {"usb": [{"bus": 1, "device": 2, "vendor": "0x1234", "product": "0x5678"}]}}
    )
    assert "passthrough.usb.0" in found


def test_pci_address_short_form_is_completed():
    spec = parse_spec({**MINIMAL, "passthrough": {"pci": [{"address": "03:00.1"}]}})
    assert spec.passthrough.pci[0].address == "0000:03:00.1"
    assert spec.passthrough.pci[0].parts == (0, 3, 0, 1)


def test_a_non_object_document_is_refused():
    assert problems(["not", "a", "spec"]) == {"": "a spec must be a JSON object, got list"}


def test_yaml_and_json_documents_load_alike(tmp_path):
    (tmp_path / "vm.yaml").write_text("name: web-1\nmemory: 512MiB\n")
    (tmp_path / "vm.json").write_text(json.dumps(MINIMAL))
    from_yaml = load_spec_file(tmp_path / "vm.yaml")
    from_json = load_spec_file(tmp_path / "vm.json")
    assert from_yaml.model_dump(exclude={"uuid"}) == from_json.model_dump(exclude={"uuid"})


def test_examples_validate():
    from pathlib import Path

    for example in sorted((Path(__file__).parents[2] / "examples").iterdir()):
        load_spec_file(example)


def test_json_schema_describes_units_and_required_fields():
    schema = VMSpec.model_json_schema()
    assert schema["required"] == ["name", "memory"]
    assert "cpu" in schema["properties"]


def test_spec_reference_in_docs_is_current():
    from pathlib import Path

    from vmhost.spec.reference import markdown_reference

    docs = (Path(__file__).parents[2] / "docs" / "spec.md").read_text()
    assert docs == markdown_reference() + "\n", "run scripts/gen-spec-reference"


NEW = {"source": {"type": "new", "size": "1GiB"}}
DIRECT = {"type": "direct", "source": "eth0"}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"lifecycle": {"on_poweroff": "rename-restart"}}, "lifecycle.on_poweroff"),
        ({"lifecycle": {"on_poweroff": "restart", "on_reboot": "destroy"}}, "lifecycle.on_reboot"),
        ({"boot": {"firmware": "uefi"}, "features": {"acpi": False}}, "features.acpi"),
        ({"disks": [{**NEW, "bus": "sata", "readonly": True}]}, "disks.0.readonly"),
        ({"disks": [{**NEW, "shareable": True}]}, "disks.0.shareable"),
        ({"clock": {"timers": [{"name": "kvmclock", "tickpolicy": "delay"}]}}, "clock.timers.0"),
        ({"clock": {"timers": [{"name": "rtc", "tickpolicy": "merge"}]}}, "clock.timers.0"),
        ({"nics": [{**DIRECT, "mtu": 9000}]}, "nics.0.mtu"),
        ({"nics": [{**DIRECT, "allowed_ips": ["192.0.2.1"]}]}, "nics.0.allowed_ips"),
        ({"nics": [{"type": "bridge", "source": "br0", "allowed_ips": ["2001:db8::1"]}]}, "nics.0.allowed_ips.0"),
        ({"usb": {"controller": "none", "redirection": 1}, "graphics": {"type": "spice"}}, "usb.controller"),
        ({"passthrough": {"usb": [{"vendor": "0x0000", "product": "0x1234"}]}}, "passthrough.usb.0.vendor"),
        ({"passthrough": {"usb": [{"bus": 0, "device": 1}]}}, "passthrough.usb.0.bus"),
        ({"passthrough": {"usb": [{"bus": 1, "device": 2}, {"bus": 1, "device": 2}]}}, "passthrough.usb.1"),
        ({"disks": [{"source": {"type": "file", "path": "/x.vhdx", "format": "vhdx"}}]}, "disks.0.source.format"),
        ({"disks": [{**NEW, "bus": "ide"}] * 3, "cdroms": [{"bus": "ide"}] * 2}, "disks"),
        (
            {"disks": [{"source": {"type": "rbd", "pool": "p", "image": "i", "monitors": ["a:b"]}}]},
            "disks.0.source.monitors",
        ),
        (
            {"disks": [{"source": {"type": "iscsi", "portal": "host:99999", "target": "iqn.2024-01.x:y"}}]},
            "disks.0.source.portal",
        ),
        (
            {
                "disks": [
                    {
                        "source": {
                            "type": "iscsi",
                            "portal": "h",
                            "target": "iqn.2024-01.x:y",
                            "auth": {"username": "a@b", "secret_uuid": "0b0c6a3e-1d2f-4a5b-8c9d-0e1f2a3b4c5d"},
                        }
                    }
                ]
            },
            "disks.0.source.auth.username",
        ),
        (
            {"cpu": {"vcpus": 2}, "numa": [{"cpus": "0", "memory": "1536KiB"}, {"cpus": "1", "memory": "511MiB"}]},
            "numa.0.memory",
        ),
        ({"description": "line\x07bell"}, "description"),
        ({"labels": {"k": "v\x00"}}, "labels"),
        ({"cpu": {"shares": 20000}}, "cpu.shares"),
    ],
)
def test_what_libvirt_would_refuse_is_refused_at_validation(fields, path):
    assert path in problems({**MINIMAL, **fields})


def test_ipv6_and_named_hosts_are_valid_ceph_monitors():
    spec = parse_spec(
        {
            **MINIMAL,
            "disks": [
                {
                    "source": {
                        "type": "rbd",
                        "pool": "p",
                        "image": "i",
                        "monitors": ["[2001:db8::1]:6789", "mon-1.example", "10.0.0.1"],
                    }
                }
            ],
        }
    )
    assert len(spec.disks[0].source.monitors) == 3
