"""cloud_init and per-NIC guest networking: validation with paths, secrets masked, the NoCloud seed's rendering
(golden files in tests/unit/golden/cloudinit/<case>/), and the seed CD-ROM in the libvirt and xl renderings."""

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from tests.conftest import Golden
from tests.unit import xlutil
from vmhost.config import HostConfig
from vmhost.engine import resources
from vmhost.render.cloudinit import needs_seed, render_seed, seed_cdrom
from vmhost.render.libvirt import RenderContext, domain_xml, validate_domain_xml
from vmhost.render.xen import XenContext, render_xl_cfg
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.cloud_init import MASKED, keep_masked_secrets
from vmhost.spec.graphics import REVEAL_SECRETS

GOLDEN = Path(__file__).parent / "golden" / "cloudinit"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQyXp74Vt80uS2vFNWN2f/9Mysy06wnB8GXMoB6cu+i alice@example"
HASH = "$6$rounds=4096$saltsalt$Jx0zBqY6Pq3lYHvZkQ8mF0xq3o1bXf1QvR6mR2L9q0w5o7mZzQm1Q2Q3Q4Q5Q6Q7Q8Q9Q0Q1Q2Q3Q4Q5Q6"
SEED_ISO = Path("/var/lib/vmhost/vms/00000000-0000-4000-8000-0000000000c1/seed.iso")


def vm(**fields: Any) -> dict[str, Any]:
    return {"name": "web1", "uuid": "00000000-0000-4000-8000-0000000000c1", "memory": "256MiB", **fields}


def bridge_nic(**fields: Any) -> dict[str, Any]:
    return {"type": "bridge", "source": "br0", "mac": "52:54:00:00:00:01", **fields}


FULL = vm(
    disks=[{"source": {"type": "new", "size": "1GiB"}}],
    nics=[
        bridge_nic(
            addresses=["192.0.2.10/24", "2001:db8::10/64"],
            gateway4="192.0.2.1",
            gateway6="2001:db8::1",
            routes=[
                {"to": "198.51.100.0/24", "via": "192.0.2.254", "metric": 100},
                {"to": "default", "via": "2001:db8::1"},
            ],
            dns={"nameservers": ["192.0.2.53", "192.0.2.54"], "search": ["example.test"]},
            mtu=1400,
            guest_name="eth0",
        ),
        bridge_nic(mac="52:54:00:00:00:02", dhcp=True),
        bridge_nic(mac="52:54:00:00:00:03"),
    ],
    cloud_init={
        "hostname": "web1-guest",
        "users": [
            {"name": "alice", "ssh_authorized_keys": [KEY], "sudo": True, "shell": "/bin/bash", "groups": ["adm"]},
            {"name": "bob", "password_hash": HASH, "sudo": "ALL=(ALL) ALL"},
        ],
        "ssh_authorized_keys": [KEY],
        "write_files": [{"path": "/etc/motd", "content": "hello\n", "permissions": "644", "owner": "root:root"}],
        "runcmd": ["echo hi > /run/hi", ["touch", "/run/argv"]],
        "packages": ["curl"],
    },
)

CASES: dict[str, dict[str, Any]] = {
    "full": FULL,
    "network-only": vm(nics=[bridge_nic(addresses=["10.0.0.5/8"], gateway4="10.0.0.1")]),
    "hostname-only": vm(nics=[bridge_nic()], cloud_init={"hostname": "plain"}),
    "raw": vm(
        nics=[bridge_nic()],
        cloud_init={
            "user_data": "#cloud-config\nbootcmd: [echo raw]\n",
            "network_config": "version: 1\nconfig:\n- type: physical\n  name: eth0\n  subnets: [{type: dhcp}]\n",
        },
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seed_golden(case: str, golden: Golden) -> None:
    seed = render_seed(parse_spec(copy.deepcopy(CASES[case])))
    for name, text in seed.files().items():
        golden(GOLDEN / case / name, text)
        yaml.safe_load(text)  # every file is YAML cloud-init can read


def test_full_seed_says_what_the_spec_says() -> None:
    seed = render_seed(parse_spec(copy.deepcopy(FULL)))
    meta = yaml.safe_load(seed.meta_data)
    assert meta["local-hostname"] == "web1-guest"
    assert seed.user_data.startswith("#cloud-config\n")
    users = yaml.safe_load(seed.user_data)["users"]
    assert users[0] == "default"  # the top-level keys go to the image's default user, which must stay
    assert users[2] == {
        "name": "bob",
        "sudo": "ALL=(ALL) ALL",
        "passwd": HASH,
        "lock_passwd": False,
    }
    eth = yaml.safe_load(seed.network_config)["ethernets"]
    assert list(eth) == ["nic0", "nic1"]  # the third NIC has no guest settings: not configured
    assert eth["nic0"]["match"] == {"macaddress": "52:54:00:00:00:01"}
    assert eth["nic0"]["set-name"] == "eth0"
    assert eth["nic0"]["routes"][1] == {"to": "::/0", "via": "2001:db8::1"}
    assert eth["nic0"]["nameservers"] == {"addresses": ["192.0.2.53", "192.0.2.54"], "search": ["example.test"]}
    assert eth["nic1"]["dhcp4"] is True


def test_instance_id_changes_exactly_when_content_changes() -> None:
    first = render_seed(parse_spec(copy.deepcopy(FULL))).instance_id
    assert render_seed(parse_spec(copy.deepcopy(FULL))).instance_id == first
    changed = copy.deepcopy(FULL)
    changed["cloud_init"]["packages"] = ["curl", "jq"]
    assert render_seed(parse_spec(changed)).instance_id != first
    readdressed = copy.deepcopy(FULL)
    readdressed["nics"][0]["addresses"][0] = "192.0.2.11/24"
    assert render_seed(parse_spec(readdressed)).instance_id != first
    other_vm = copy.deepcopy(FULL) | {"uuid": "00000000-0000-4000-8000-0000000000c2"}
    assert render_seed(parse_spec(other_vm)).instance_id != first


def test_first_nic_asks_dhcp_when_no_nic_has_guest_settings() -> None:
    seed = render_seed(parse_spec(vm(nics=[bridge_nic(), bridge_nic(mac="52:54:00:00:00:02")], cloud_init={})))
    assert yaml.safe_load(seed.network_config) == {
        "version": 2,
        "ethernets": {"nic0": {"match": {"macaddress": "52:54:00:00:00:01"}, "dhcp4": True}},
    }


def test_seed_only_when_there_is_something_to_tell() -> None:
    assert not needs_seed(parse_spec(vm(nics=[bridge_nic(mtu=1400)])))
    assert needs_seed(parse_spec(vm(nics=[bridge_nic(dhcp=True)])))
    assert needs_seed(parse_spec(vm(cloud_init={})))


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(document)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("nic", "expected"),
    [
        ({"addresses": ["192.0.2.10"]}, "nics.0.addresses.0: must be an address in CIDR form"),
        ({"addresses": ["300.0.2.10/24"]}, "nics.0.addresses.0: must be an address in CIDR form"),
        ({"addresses": ["192.0.2.10/24"], "gateway4": "192.0.3.1"}, "nics.0.gateway4: 192.0.3.1 is outside"),
        ({"gateway4": "192.0.2.1", "dhcp": True}, "nics.0.gateway4: 192.0.2.1 is outside"),
        ({"addresses": ["192.0.2.10/24"], "gateway6": "2001:db8::1"}, "nics.0.gateway6: 2001:db8::1 is outside"),
        ({"addresses": ["192.0.2.0/24"]}, "nics.0.addresses.0: 192.0.2.0/24 is the subnet's network"),
        ({"addresses": ["192.0.2.10/24", "192.0.2.10/25"]}, "nics.0.addresses.1: address 192.0.2.10 is given more"),
        (
            {"dns": {"nameservers": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]}},
            "nics.0.dns.nameservers: at most 3",
        ),
        ({"dns": {"search": ["bad_domain!"]}}, "nics.0.dns.search: must be DNS domain names"),
        ({"routes": [{"to": "198.51.100.1/24", "via": "192.0.2.1"}]}, "nics.0.routes.0.to: must be a network"),
        ({"guest_name": "this-name-is-too-long"}, "nics.0.guest_name:"),
    ],
)
def test_bad_guest_network_names_its_path(nic: dict[str, Any], expected: str) -> None:
    found = problems(vm(nics=[bridge_nic(**nic)]))
    assert any(problem.startswith(expected) for problem in found), found


def test_duplicate_addresses_across_nics_name_both() -> None:
    found = problems(
        vm(
            nics=[
                bridge_nic(addresses=["192.0.2.10/24"]),
                bridge_nic(mac="52:54:00:00:00:02", addresses=["192.0.2.10/24"]),
            ]
        )
    )
    assert found == [
        "nics.0.addresses.0: address 192.0.2.10 is given more than once",
        "nics.1.addresses.0: address 192.0.2.10 is given more than once",
    ]


def _blob_of(key_type: str, claimed: str) -> str:
    """A key line whose base64 blob says `key_type` while the line says `claimed`."""
    body = len(key_type).to_bytes(4, "big") + key_type.encode() + b"\0" * 36
    return f"{claimed} {base64.b64encode(body).decode()}"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("AAAAC3NzaC1lZDI1NTE5AAAAIKQyXp74Vt80uS2vFNWN2f", "is not an SSH public key ('<type> <base64>"),
        ("ssh-ed25519", "is not an SSH public key ('<type> <base64>"),
        ("ssh-foo AAAA", "is not an SSH public key ('<type> <base64>"),
        ("ssh-ed25519 not!base64", "its key data is not base64"),
        (_blob_of("ssh-rsa", "ssh-ed25519"), "its key data is not a ssh-ed25519 key"),
        ("ssh-ed25519 AAAA", "its key data is not a ssh-ed25519 key"),
    ],
)
def test_malformed_ssh_key_is_refused_with_its_path(key: str, reason: str) -> None:
    found = problems(vm(cloud_init={"users": [{"name": "alice", "ssh_authorized_keys": [KEY, key]}]}))
    assert len(found) == 1 and found[0].startswith("cloud_init.users.0.ssh_authorized_keys.1: "), found
    assert reason in found[0]
    top = problems(vm(cloud_init={"ssh_authorized_keys": [key]}))
    assert top[0].startswith("cloud_init.ssh_authorized_keys.0: ")


def test_real_key_types_are_accepted() -> None:
    rsa = _blob_of("ssh-rsa", "ssh-rsa")
    spec = parse_spec(vm(cloud_init={"ssh_authorized_keys": [KEY, rsa + " a comment with spaces"]}))
    assert spec.cloud_init is not None and spec.cloud_init.ssh_authorized_keys[1].endswith("a comment with spaces")


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            {"users": [{"name": "alice", "password_hash": "hunter2"}]},
            "cloud_init.users.0.password_hash: must be a crypt",
        ),
        ({"users": [{"name": "Alice"}]}, "cloud_init.users.0.name:"),
        ({"user_data": "#cloud-config\nruncmd: [unclosed\n"}, "cloud_init.user_data: is not valid YAML"),
        ({"user_data": "runcmd: []\n"}, "cloud_init.user_data: must start with '#cloud-config'"),
        ({"user_data": "#cloud-config\n- a list\n"}, "cloud_init.user_data: must be a YAML mapping"),
        ({"network_config": "version: 3\n"}, "cloud_init.network_config: must be a network-config with"),
        ({"network_config": "{{"}, "cloud_init.network_config: is not valid YAML"),
        ({"user_data": "#cloud-config\n{}\n", "runcmd": ["x"]}, "cloud_init.runcmd: cannot be combined with"),
        ({"write_files": [{"path": "relative"}]}, "cloud_init.write_files.0.path:"),
        ({"packages": ["curl; rm -rf /"]}, "cloud_init.packages: must be package names"),
        ({"hostname": "bad_host"}, "cloud_init.hostname:"),
    ],
)
def test_bad_cloud_init_names_its_path(block: dict[str, Any], expected: str) -> None:
    found = problems(vm(cloud_init=block))
    assert any(problem.startswith(expected) for problem in found), found


def test_raw_network_config_excludes_nic_guest_settings() -> None:
    found = problems(vm(nics=[bridge_nic(dhcp=True)], cloud_init={"network_config": "version: 2\nethernets: {}\n"}))
    assert found == [
        "cloud_init.network_config: cannot be combined with the NICs' guest settings "
        "(addresses, dhcp, gateways, routes, dns): use one"
    ]


def test_shell_scripts_pass_as_raw_user_data() -> None:
    seed = render_seed(parse_spec(vm(cloud_init={"user_data": "#!/bin/sh\necho hi\n"})))
    assert seed.user_data == "#!/bin/sh\necho hi\n"


def test_password_hash_is_masked_unless_revealed() -> None:
    spec = parse_spec(copy.deepcopy(FULL))
    shown = spec.model_dump(mode="json")
    assert shown["cloud_init"]["users"][1]["password_hash"] == MASKED
    assert HASH not in spec.model_dump_json() and HASH not in repr(spec) and HASH not in str(spec)
    stored = spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
    assert stored["cloud_init"]["users"][1]["password_hash"] == HASH


def test_masked_hash_sent_back_keeps_the_stored_one() -> None:
    stored = parse_spec(copy.deepcopy(FULL)).model_dump(mode="json", context={REVEAL_SECRETS: True})
    edited = parse_spec(copy.deepcopy(FULL)).model_dump(mode="json")  # what `get` shows
    edited["cloud_init"]["users"].reverse()
    restored = keep_masked_secrets(edited, stored)
    assert restored["cloud_init"]["users"][0]["password_hash"] == HASH
    assert restored["cloud_init"]["users"][1]["password_hash"] is None
    edited["cloud_init"]["users"][0]["password_hash"] = "$6$new$hash"
    assert keep_masked_secrets(edited, stored)["cloud_init"]["users"][0]["password_hash"] == "$6$new$hash"


def test_container_takes_no_cloud_init_and_no_dhcp() -> None:
    container = {
        "kind": "container",
        "name": "c1",
        "memory": "64MiB",
        "container": {
            "rootfs": {"type": "directory", "path": "/srv/rootfs"},
            "network": {
                "mode": "none",
                "dhcp": True,
                "addresses": ["192.0.2.5/24"],
                "dns": {"nameservers": ["192.0.2.1"]},
            },
        },
        "cloud_init": {"hostname": "x"},
    }
    assert problems(container) == [
        "cloud_init: a container has none (VMs only)",
        "container.network.addresses: needs mode bridge (vmhost configures only the veth it makes)",
        "container.network.dhcp: containers get static addresses only (no DHCP client runs in them)",
    ]


def libvirt_devices(spec: dict[str, Any], seed: Path | None = SEED_ISO) -> etree._Element:
    disks = {"vda": Path("/var/lib/vmhost/vms/x/disks/vda.qcow2")}
    xml = domain_xml(
        parse_spec(spec), RenderContext(accel="kvm", console_log=Path("/c.log"), disk_paths=disks, seed_iso=seed)
    )
    document = etree.fromstring(xml)
    validate_domain_xml(document)
    return document.find("devices")


def seed_drive(devices: etree._Element) -> etree._Element:
    (drive,) = [
        d
        for d in devices.iter("disk")
        if d.find("source[@file]") is not None and d.find("source").get("file") == str(SEED_ISO)
    ]
    return drive


def scsi_controllers(devices: etree._Element) -> list[tuple[str | None, str | None]]:
    return [(c.get("index"), c.get("model")) for c in devices.iter("controller") if c.get("type") == "scsi"]


def test_libvirt_attaches_the_seed_read_only_on_virtio_scsi_after_the_spec_cdroms() -> None:
    """Debian's cloud kernel (genericcloud images) has no AHCI and no LSI driver: virtio-scsi is a bus it has."""
    devices = libvirt_devices(copy.deepcopy(FULL) | {"cdroms": [{"iso": "/srv/install.iso"}]})
    drives = [d for d in devices.iter("disk") if d.get("device") == "cdrom"]
    assert [d.find("source").get("file") for d in drives] == ["/srv/install.iso", str(SEED_ISO)]
    assert (
        etree.tostring(seed_drive(devices), encoding="unicode").strip()
        == f"""<disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file="{SEED_ISO}"/>
      <target dev="sdzz" bus="scsi"/>
      <readonly/>
      <address type="drive" controller="0" bus="0" target="1" unit="0"/>
    </disk>"""
    )
    assert scsi_controllers(devices) == [("0", "virtio-scsi")]
    without = libvirt_devices(copy.deepcopy(FULL) | {"cdroms": [{"iso": "/srv/install.iso"}]}, seed=None)
    assert str(SEED_ISO) not in etree.tostring(without, encoding="unicode")
    assert scsi_controllers(without) == []


def scsi_disk(bus: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"bus": bus, "source": {"type": "file", "path": f"/srv/{name}.raw", "format": "raw"}, **fields}


def test_the_seed_shares_the_virtio_scsi_controller_at_a_target_no_disk_takes() -> None:
    spec = vm(
        cloud_init={},
        iothreads={"count": 1},
        disks=[scsi_disk("virtio-scsi", "a", iothread=1), scsi_disk("virtio-scsi", "b"), scsi_disk("scsi", "c")],
    )
    devices = libvirt_devices(spec)
    assert scsi_controllers(devices) == [("0", "virtio-scsi"), ("1", "virtio-scsi"), ("2", "lsilogic")]
    address = seed_drive(devices).find("address")
    assert dict(address.attrib) == {"type": "drive", "controller": "0", "bus": "0", "target": "1", "unit": "0"}
    spec["disks"] += [scsi_disk("virtio-scsi", "d")]  # plugged in later: the next LUN of target 0, not the seed's
    grown = libvirt_devices(spec)
    assert dict(seed_drive(grown).find("address").attrib) == dict(address.attrib)
    added = next(d for d in grown.iter("disk") if d.find("source").get("file") == "/srv/d.raw")
    assert (added.find("target").get("dev"), dict(added.find("address").attrib)) == (
        "sdd",
        {"type": "drive", "controller": "0", "bus": "0", "target": "0", "unit": "1"},
    )


def test_seed_drive_keeps_out_of_the_way_of_disk_names() -> None:
    assert seed_cdrom(parse_spec(vm(cloud_init={})), SEED_ISO).target == "sdzz"  # disks are named from sda up
    named = parse_spec(vm(disks=[scsi_disk("scsi", "x", target="sdzz")], cloud_init={}))
    assert seed_cdrom(named, SEED_ISO).target == "sdzy"  # a spec that takes the name itself: the next one down


def test_xl_cfg_carries_the_seed_as_a_cdrom_xl_parses() -> None:
    spec = parse_spec(copy.deepcopy(FULL))
    disk_paths = {"vda": Path("/var/lib/vmhost/vms/x/disks/vda.qcow2")}
    text = render_xl_cfg(spec, XenContext(disk_paths=disk_paths, seed_iso=SEED_ISO))
    assert f"format=raw, vdev=sdf, access=ro, devtype=cdrom, target={SEED_ISO}" in text
    with xlutil.load().config(text) as config:  # Xen's own parser (libxlutil), as xl reads the file
        seed = config.disk(config.strings("disk")[-1])
    assert (seed.target, seed.format, seed.vdev) == (str(SEED_ISO), "raw", "sdf")
    assert (seed.readwrite, seed.is_cdrom) == (False, True)
    assert "seed.iso" not in render_xl_cfg(spec, XenContext(disk_paths=disk_paths))


@pytest.mark.parametrize(("driver", "seeded"), [("libvirt", True), ("xen", True), ("smartos", False)])
def test_the_engine_plans_a_seed_for_drivers_that_attach_it(driver: str, seeded: bool, tmp_path: Path) -> None:
    plan = resources.plan(parse_spec(vm(cloud_init={})), HostConfig(data_dir=tmp_path, vm_driver=driver))
    assert (plan.seed is not None, plan.resources.seed_iso) == (
        seeded,
        tmp_path / "vms" / "00000000-0000-4000-8000-0000000000c1" / "seed.iso" if seeded else None,
    )
