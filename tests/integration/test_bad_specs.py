"""Bad specs through the real CLI: exit 2, every field named, and nothing left behind."""

import copy
import json
import sqlite3
import subprocess

import pytest

from tests.integration.conftest import write_json


def _set(spec, path, value):
    node = spec
    *parents, last = path
    for key in parents:
        node = node[key]
    node[last] = value


DISK = {"source": {"type": "new", "size": "16MiB"}}
NIC = {"type": "bridge", "source": "virbr0"}

BAD_SPECS = [
    ("negative memory", [(["memory"], "-512MiB")], "memory.size"),
    ("memory too small", [(["memory"], "1MiB")], "memory.size"),
    ("memory missing", [(["memory"], None)], "memory"),
    ("unknown bus", [(["disks"], [{**DISK, "bus": "usb"}])], "disks.0.bus"),
    ("duplicate disk targets", [(["disks"], [{**DISK, "target": "vdb"}, {**DISK, "target": "vdb"}])], "disks.1.target"),
    ("target does not fit bus", [(["disks"], [{**DISK, "bus": "sata", "target": "vda"}])], "disks.0.target"),
    (
        "missing disk file",
        [(["disks"], [{"source": {"type": "file", "path": "/nonexistent/disk.img"}}])],
        "disks.0.source.path",
    ),
    ("unknown disk source", [(["disks"], [{"source": {"type": "nfs", "path": "/x"}}])], "disks.0.source"),
    ("malformed MAC", [(["nics"], [{**NIC, "mac": "52:54:00:zz:00:01"}])], "nics.0.mac"),
    ("multicast MAC", [(["nics"], [{**NIC, "mac": "01:54:00:00:00:01"}])], "nics.0.mac"),
    ("bridge does not exist", [(["nics"], [{**NIC, "source": "nosuchbr0"}])], "nics.0.source"),
    (
        "topology does not match vcpus",
        [(["cpu"], {"vcpus": 2, "topology": {"sockets": 1, "cores": 3}})],
        "cpu.topology",
    ),
    ("max_vcpus below vcpus", [(["cpu"], {"vcpus": 4, "max_vcpus": 2})], "cpu.max_vcpus"),
    ("name with a slash", [(["name"], "bad/name")], "name"),
    ("unknown field", [(["colour"], "blue")], "colour"),
    ("relative kernel path", [(["boot", "kernel", "kernel"], "vmlinuz")], "boot.kernel.kernel"),
    ("missing kernel file", [(["boot", "kernel", "kernel"], "/nonexistent/vmlinuz")], "boot.kernel.kernel"),
    ("VNC password too long", [(["graphics"], {"type": "vnc", "password": "123456789"})], "graphics.password"),
    ("sound without SPICE", [(["graphics"], {"type": "vnc", "sound": True})], "graphics.sound"),
    (
        "total and read limits together",
        [(["disks"], [{**DISK, "io_limits": {"total_bytes_sec": 10, "read_bytes_sec": 5}}])],
        "disks.0.io_limits.total_bytes_sec",
    ),
    (
        "boot order given twice ways",
        [(["boot", "order"], ["hd"]), (["disks"], [{**DISK, "boot_order": 1}])],
        "boot.order",
    ),
    ("NUMA cells miss a vCPU", [(["cpu"], {"vcpus": 2}), (["numa"], [{"cpus": "0", "memory": "256MiB"}])], "numa"),
    ("bad PCI address", [(["passthrough"], {"pci": [{"address": "03:00"}]})], "passthrough.pci.0.address"),
    (
        "PCI device not on host",
        [(["passthrough"], {"pci": [{"address": "0000:7f:1f.7"}]})],
        "passthrough.pci.0.address",
    ),
    ("ide on q35", [(["boot", "machine"], "q35"), (["disks"], [{**DISK, "bus": "ide"}])], "disks.0.bus"),
    ("negative vcpus", [(["cpu"], {"vcpus": -1})], "cpu.vcpus"),
]


@pytest.fixture(scope="module", autouse=True)
def _virbr0():
    """A real bridge for the specs that only have one thing wrong elsewhere."""
    created = (
        subprocess.run(["ip", "link", "add", "virbr0", "type", "bridge"], capture_output=True, check=False).returncode
        == 0
    )
    yield
    if created:
        subprocess.run(["ip", "link", "del", "virbr0"], check=False)


@pytest.mark.parametrize(("mutations", "path"), [(m, p) for _, m, p in BAD_SPECS], ids=[d for d, _, _ in BAD_SPECS])
def test_bad_spec_is_refused_with_its_field_named_and_nothing_left(
    mutations, path, cli, guest_spec, vm_name, tmp_path, config, libvirt_conn
):
    name = vm_name("bad")
    spec = copy.deepcopy(guest_spec(name))
    for keys, value in mutations:
        if value is None:
            spec.pop(keys[0])
        else:
            _set(spec, keys, value)
    result = cli("create", "-f", str(write_json(tmp_path / "spec.json", spec)), "--start")
    assert result.returncode == 2, result.stderr
    assert f"  {path}: " in result.stderr, result.stderr
    _assert_nothing_left(config, libvirt_conn, name)


def test_every_problem_is_reported_at_once(cli, guest_spec, vm_name, tmp_path, config, libvirt_conn):
    spec = guest_spec(
        vm_name("many"),
        memory="-1",
        colour="blue",
        disks=[{"source": {"type": "file", "path": "rel"}, "bus": "usb"}],
        nics=[{"type": "bridge", "source": "vmhbr-missing", "mac": "zz"}],
    )
    result = cli("validate", "-f", str(write_json(tmp_path / "spec.json", spec)))
    assert result.returncode == 2
    for path in ("memory.size", "colour", "disks.0.source.path", "disks.0.bus", "nics.0.mac", "nics.0.source"):
        assert f"  {path}: " in result.stderr  # the missing bridge: a bad mac no longer hides it
    assert "invalid spec (6 problems)" in result.stderr


def test_unreadable_document_is_a_usage_error(cli, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = cli("create", "-f", str(broken))
    assert result.returncode == 2
    assert "is not valid JSON" in result.stderr


def _assert_nothing_left(config, libvirt_conn, name):
    assert name not in [d.name() for d in libvirt_conn.listAllDomains()]
    vms_dir = config.data_dir / "vms"
    assert not vms_dir.exists() or not list(vms_dir.iterdir())
    if config.db_path.exists():
        db = sqlite3.connect(config.db_path)
        assert db.execute("SELECT count(*) FROM vms").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM operations").fetchone() == (0,)
        db.close()


def test_bad_update_changes_nothing(cli, guest_spec, vm_name, tmp_path, libvirt_conn):
    name = vm_name("badupdate")
    assert cli("create", "-f", str(write_json(tmp_path / "spec.json", guest_spec(name)))).returncode == 0
    before = libvirt_conn.lookupByName(name).XMLDesc(0)
    patch = {"cpu": {"vcpus": 0}, "disks": [{"source": {"type": "file", "path": "/nonexistent.img"}}]}
    result = cli("update", name, "-f", str(write_json(tmp_path / "patch.json", patch)))
    assert result.returncode == 2
    assert "  cpu.vcpus: " in result.stderr
    assert libvirt_conn.lookupByName(name).XMLDesc(0) == before
    assert json.loads(cli("get", name).stdout)["cpu"]["vcpus"] == 1
    assert cli("delete", name).returncode == 0
