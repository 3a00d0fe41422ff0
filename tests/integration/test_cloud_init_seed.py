"""The NoCloud seed on real libvirt: built as an owned file at create, attached read-only as a virtio-scsi CD-ROM,
rebuilt with a new instance-id when its content changes, removed with the VM; bad input leaves no seed behind; the
password hash never shows in get, list, events, operations or the agent's log."""

import copy
import json
import logging
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from tests.integration.conftest import VOLUMES_DIR, write_json
from vmhost.engine.resources import vm_dir

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQyXp74Vt80uS2vFNWN2f/9Mysy06wnB8GXMoB6cu+i alice@example"
HASH = "$6$seedtest$" + secrets.token_hex(20)
"""Random per run: found anywhere it must not be means it leaked, not that a fixture repeated it."""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Under VOLUMES_DIR, not pytest's temporary root: a concurrent pytest session makes that root 0700, and QEMU
    (as libvirt-qemu) must reach the seed when the VM starts."""
    VOLUMES_DIR.mkdir(mode=0o711, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="vmhost-seed-", dir=VOLUMES_DIR))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    name = "vmhci" + secrets.token_hex(4)
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


def seeded(guest_spec: Any, name: str, bridge: str) -> dict[str, Any]:
    return guest_spec(
        name,
        nics=[
            {
                "type": "bridge",
                "source": bridge,
                "mac": "52:54:00:5e:ed:01",
                "addresses": ["192.0.2.10/24"],
                "gateway4": "192.0.2.1",
                "dns": {"nameservers": ["192.0.2.53", "192.0.2.54"]},
            }
        ],
        cloud_init={
            "hostname": "seeded",
            "users": [{"name": "alice", "ssh_authorized_keys": [KEY], "sudo": True, "password_hash": HASH}],
            "packages": ["curl"],
        },
    )


def iso_files(iso: Path) -> dict[str, str]:
    """The seed's files as the guest's ISO 9660 reader sees them (isoinfo, Joliet names)."""
    listing = subprocess.run(["isoinfo", "-J", "-f", "-i", str(iso)], capture_output=True, text=True, check=True)
    names = sorted(line.strip().lstrip("/") for line in listing.stdout.splitlines() if line.strip())
    return {
        name: subprocess.run(
            ["isoinfo", "-J", "-x", f"/{name}", "-i", str(iso)], capture_output=True, text=True, check=True
        ).stdout
        for name in names
    }


def volume_id(iso: Path) -> str:
    info = subprocess.run(["isoinfo", "-d", "-i", str(iso)], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("Volume id:"))


def seed_cdrom(libvirt_conn: Any, name: str) -> etree._Element:
    domain = etree.fromstring(libvirt_conn.lookupByName(name).XMLDesc(0))
    drives = [d for d in domain.iter("disk") if d.get("device") == "cdrom"]
    found = [
        d for d in drives if (d.find("source") is not None and d.find("source").get("file", "").endswith("seed.iso"))
    ]
    assert len(found) == 1, etree.tostring(domain).decode()
    return found[0]


def test_seed_is_built_attached_rebuilt_and_removed(cli, engine, guest_spec, vm_name, bridge, tmp_path, libvirt_conn):
    name = vm_name("seed")
    spec = seeded(guest_spec, name, bridge)
    result = cli("create", "-f", str(write_json(tmp_path / "spec.json", spec)))
    assert result.returncode == 0, result.stderr
    record = engine.store.get_vm(name)
    assert record is not None
    iso = vm_dir(engine.config.data_dir, record.uuid) / "seed.iso"

    assert stat.S_IMODE(iso.stat().st_mode) == 0o600  # holds a password hash: root only, like the VM's disks
    nobody = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "cat", str(iso)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert nobody.returncode != 0 and "Permission denied" in nobody.stderr
    assert volume_id(iso) == "cidata"
    files = iso_files(iso)
    assert sorted(files) == ["meta-data", "network-config", "user-data"]
    meta = yaml.safe_load(files["meta-data"])
    assert meta["local-hostname"] == "seeded" and meta["instance-id"].startswith("iid-")
    user_data = yaml.safe_load(files["user-data"])
    assert files["user-data"].startswith("#cloud-config\n")
    assert user_data["users"][0]["ssh_authorized_keys"] == [KEY]
    assert user_data["users"][0]["passwd"] == HASH  # the guest gets the hash; nobody else does
    network = yaml.safe_load(files["network-config"])
    assert network["ethernets"]["nic0"]["match"] == {"macaddress": "52:54:00:5e:ed:01"}
    assert network["ethernets"]["nic0"]["addresses"] == ["192.0.2.10/24"]

    cdrom = seed_cdrom(libvirt_conn, name)
    assert cdrom.find("readonly") is not None
    assert cdrom.find("source").get("file") == str(iso)
    assert cdrom.find("target").get("bus") == "scsi"  # on virtio-scsi: Debian's cloud kernel has no AHCI/LSI
    domain = etree.fromstring(libvirt_conn.lookupByName(name).XMLDesc(0))
    controller = cdrom.find("address").get("controller")
    assert domain.find(f"devices/controller[@type='scsi'][@index='{controller}']").get("model") == "virtio-scsi"

    shown = json.loads(cli("get", name).stdout)
    shown.pop("state", None)
    patch = {"cloud_init": {**shown["cloud_init"], "packages": ["curl", "jq"]}}  # edited `get` output, hash masked
    result = cli("update", name, "-f", str(write_json(tmp_path / "patch.json", patch)))
    assert result.returncode == 0, result.stderr
    rebuilt = iso_files(iso)
    assert yaml.safe_load(rebuilt["meta-data"])["instance-id"] != meta["instance-id"]
    assert yaml.safe_load(rebuilt["user-data"])["packages"] == ["curl", "jq"]
    assert yaml.safe_load(rebuilt["user-data"])["users"][0]["passwd"] == HASH  # the masked value kept the hash

    result = cli("start", name)
    assert result.returncode == 0, result.stderr  # QEMU opens the seed drive
    assert seed_cdrom(libvirt_conn, name).find("source").get("file") == str(iso)
    assert cli("kill", name).returncode == 0

    result = cli("update", name, "-f", str(write_json(tmp_path / "drop.json", {"cloud_init": None, "nics": []})))
    assert result.returncode == 0, result.stderr
    assert not iso.exists()
    domain = etree.fromstring(libvirt_conn.lookupByName(name).XMLDesc(0))
    assert not [d for d in domain.iter("disk") if d.get("device") == "cdrom"]

    result = cli("update", name, "-f", str(write_json(tmp_path / "again.json", {"cloud_init": {"hostname": "x"}})))
    assert result.returncode == 0, result.stderr
    assert iso.exists()
    assert cli("delete", name).returncode == 0
    assert not iso.exists() and not iso.parent.exists()


BAD = [
    (
        "malformed key",
        ["cloud_init", "users", 0, "ssh_authorized_keys", 0],
        "ssh-ed25519 AAAA",
        "cloud_init.users.0.ssh_authorized_keys.0",
    ),
    ("address without prefix", ["nics", 0, "addresses", 0], "192.0.2.10", "nics.0.addresses.0"),
    ("gateway off subnet", ["nics", 0, "gateway4"], "198.51.100.1", "nics.0.gateway4"),
    ("plain password", ["cloud_init", "users", 0, "password_hash"], "hunter2", "cloud_init.users.0.password_hash"),
]


@pytest.mark.parametrize(("keys", "value", "path"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_seed_input_leaves_nothing(
    keys, value, path, cli, config, guest_spec, vm_name, bridge, tmp_path, libvirt_conn
):
    name = vm_name("badseed")
    spec = copy.deepcopy(seeded(guest_spec, name, bridge))
    node = spec
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    result = cli("create", "-f", str(write_json(tmp_path / "spec.json", spec)), "--start")
    assert result.returncode == 2, result.stderr
    assert f"  {path}: " in result.stderr, result.stderr
    assert HASH not in result.stderr
    assert name not in [d.name() for d in libvirt_conn.listAllDomains()]
    vms = config.data_dir / "vms"
    assert not list(vms.glob("*/seed.iso")) and not list(vms.glob("*/.seed-*"))
    assert cli("get", name).returncode != 0


def test_password_hash_never_leaves_the_agent(agent, http, guest_spec, vm_name, bridge, caplog):
    caplog.set_level(logging.DEBUG)
    name = vm_name("secret")
    response = http.post("/v1/vms", params={"wait": "true"}, json=seeded(guest_spec, name, bridge))
    assert response.status_code in (200, 201, 202), response.text
    seen = [
        response.text,
        http.get(f"/v1/vms/{name}").text,
        http.get("/v1/vms").text,
        http.get("/v1/events", params={"since": 0}).text,
        http.get("/v1/operations").text,
    ]
    shown = http.get(f"/v1/vms/{name}").json()
    assert shown["cloud_init"]["users"][0]["password_hash"] == "********"
    new_hash = "$6$changed$" + secrets.token_hex(20)
    users = [{**shown["cloud_init"]["users"][0], "password_hash": new_hash}]
    for dry_run in ("true", "false"):  # the plan (before/after) and the applied update both mask it
        changed = http.patch(
            f"/v1/vms/{name}", params={"dry_run": dry_run, "wait": "true"}, json={"cloud_init": {"users": users}}
        )
        assert changed.status_code in (200, 202), changed.text
        assert "cloud_init" in changed.text and new_hash not in changed.text and HASH not in changed.text
    seen += [http.get("/v1/events", params={"since": 0}).text, http.get("/v1/operations").text]
    assert all(new_hash not in text for text in seen) and new_hash not in caplog.text
    assert all(HASH not in text for text in seen)
    assert HASH not in caplog.text
    log_files = list(Path(agent.agent.engine.config.data_dir).rglob("*.log"))
    assert all(HASH not in p.read_text(errors="replace") for p in log_files if p.is_file())


def test_adopted_vm_gets_its_password_hash_back_from_its_seed(engine, guest_spec, vm_name, bridge):
    """libvirt's copy of the spec masks the hash; a store that lost the VM re-learns it from the root-only seed."""
    name = vm_name("adopt")
    engine.create(seeded(guest_spec, name, bridge))
    engine.store.delete_vm(name)
    engine.recover()
    record = engine.store.get_vm(name)
    assert record is not None, "the VM was not adopted"
    assert record.spec["cloud_init"]["users"][0]["password_hash"] == HASH
