"""Item 4: a local unprivileged user reads no VM data: not an owned disk, not a VM directory's listing, not a
container's config.json or definition (they hold its environment), not a console log, not an image's setuid file.

The user is `nobody` (setpriv, no supplementary groups); each test first shows that this user can read a
world-readable file, so a refusal below is the file modes at work, not setpriv failing.
"""

import grp
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conformance.busybox import busybox_layer, entry, layer, write_layout
from tests.conformance.runc_harness import wait_for_log
from tests.integration.conftest import wait_for_console

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=30, check=False)


def assert_nobody_cannot(*argv: str) -> None:
    result = as_nobody(*argv)
    assert result.returncode != 0, f"nobody could run {argv}: {result.stdout[:200]!r}"
    assert "Permission denied" in result.stderr, result.stderr


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def nobody_can_read_public_files() -> None:
    assert as_nobody("cat", "/etc/hostname").returncode == 0


def test_owned_disks_are_root_only_and_qemu_still_boots_from_them(engine, guest_spec, vm_name, data_dir):
    name = vm_name("modes")
    base = data_dir / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "8M"], check=True)
    base.chmod(0o644)
    disks = [
        {"source": {"type": "new", "size": "16MiB"}},
        {"source": {"type": "overlay", "base": str(base), "size": "20MiB"}},
    ]
    record = engine.create(guest_spec(name, disks=disks), start=True)
    seen = wait_for_console(engine, name, f"VMHOST-BLK vdb {20 * 2**20}")
    assert f"VMHOST-BLK vda {16 * 2**20}" in seen  # QEMU, as libvirt-qemu, opened both 0600 disks
    log = engine.console_log_path(name)
    vm_dir = data_dir / "vms" / record.uuid
    qemu_gid = grp.getgrnam("libvirt-qemu").gr_gid  # the default hypervisor_group, Debian's QEMU group
    for directory in (data_dir / "vms", vm_dir, vm_dir / "disks"):
        assert (mode(directory), directory.stat().st_gid) == (0o710, qemu_gid), directory
    for disk in map(Path, record.owned_paths):
        assert mode(disk) == 0o600, disk
        assert_nobody_cannot("cat", str(disk))
    assert_nobody_cannot("ls", str(data_dir / "vms"))
    assert_nobody_cannot("ls", str(vm_dir))
    assert_nobody_cannot("cat", str(log))
    engine.stop(name)
    for disk in map(Path, record.owned_paths):
        assert mode(disk) == 0o600
        assert_nobody_cannot("cat", str(disk))


def setuid_layout(directory: Path) -> Path:
    probe = entry("bin/suid-probe", content=b"#!/bin/sh\necho root\n", mode=0o4755)
    config = {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/tmp"}
    return write_layout(directory, [busybox_layer(), layer([probe])], config, as_tarball=True)


def test_container_config_env_log_and_setuid_rootfs_are_unreachable(engine, vm_name, tmp_path):
    name = vm_name("ct-modes")
    document = {
        "name": name,
        "kind": "container",
        "memory": "48MiB",
        "container": {
            "rootfs": {"type": "oci-layout", "path": str(setuid_layout(tmp_path / "image"))},
            "command": ["sh", "-c", "echo uid=$(id -u); echo DONE; sleep 1000"],
            "env": {"API_SECRET": "hunter2"},
            "uid": 65534,
            "gid": 65534,
        },
    }
    engine.create(document, start=True)
    assert "uid=65534" in wait_for_log(engine, name, "DONE")  # an unprivileged workload runs under 0700 parents
    log = engine.console_log_path(name)
    files = log.parent / "container"
    bundle = files / "bundle"
    probe = bundle / "rootfs" / "bin" / "suid-probe"
    assert "hunter2" in (bundle / "config.json").read_text()
    assert mode(files) == mode(bundle) == 0o700
    assert mode(bundle / "config.json") == mode(files / "definition.json") == 0o600
    assert mode(log) == 0o640
    runc_state = engine.config.data_dir / "containers"
    assert mode(runc_state) == mode(runc_state / "index") == mode(runc_state / "runc") == 0o700
    assert mode(probe) & stat.S_ISUID  # the image's own modes, for the container; unreachable from the host
    for path in (
        bundle / "config.json",
        files / "definition.json",
        log,
        probe,
        runc_state / "runc" / name / "state.json",
    ):
        assert_nobody_cannot("cat", str(path))
    assert_nobody_cannot(str(probe))
    assert_nobody_cannot("ls", str(log.parent))
