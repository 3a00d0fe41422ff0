"""Disks vmhost creates versus disks users bring: what the guest sees and what delete removes."""

import subprocess
from pathlib import Path

from tests.integration.conftest import wait_for_console
from vmhost.storage.qemu_img import image_info


def _user_image(directory: Path, name: str, fmt: str, size: str) -> Path:
    path = directory / name
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(path), size], check=True)
    path.chmod(0o644)
    return path


def test_owned_disk_is_created_seen_by_guest_and_removed_by_delete(engine, guest_spec, vm_name):
    name = vm_name("owned")
    record = engine.create(guest_spec(name, disks=[{"source": {"type": "new", "size": "64MiB"}}]), start=True)
    [path] = map(Path, record.owned_paths)
    info = image_info(path)
    assert (info.format, info.virtual_size) == ("qcow2", 64 * 2**20)
    wait_for_console(engine, name, f"VMHOST-BLK vda {64 * 2**20}")
    engine.delete(name)
    assert not path.exists()
    assert not (engine.config.data_dir / "vms" / record.uuid).exists()


def test_user_supplied_disk_survives_delete_and_its_format_is_detected(engine, guest_spec, vm_name, data_dir):
    name = vm_name("userdisk")
    user_disk = _user_image(data_dir, "user.qcow2", "qcow2", "32M")
    engine.create(guest_spec(name, disks=[{"source": {"type": "file", "path": str(user_disk)}}]), start=True)
    wait_for_console(engine, name, f"VMHOST-BLK vda {32 * 2**20}")
    assert engine.record(name).owned_paths == []
    engine.delete(name)
    assert user_disk.exists()
    assert image_info(user_disk).format == "qcow2"


def test_overlay_leaves_its_base_untouched(engine, guest_spec, vm_name, data_dir):
    name = vm_name("overlay")
    base = _user_image(data_dir, "base.raw", "raw", "8M")
    before = base.read_bytes()
    record = engine.create(
        guest_spec(name, disks=[{"source": {"type": "overlay", "base": str(base), "size": "24MiB"}}]), start=True
    )
    wait_for_console(engine, name, f"VMHOST-BLK vda {24 * 2**20}")
    [overlay] = map(Path, record.owned_paths)
    engine.delete(name)
    assert not overlay.exists()
    assert base.read_bytes() == before


def test_disks_on_every_local_bus_are_seen_by_the_guest(engine, guest_spec, vm_name):
    name = vm_name("buses")
    disks = [
        {"source": {"type": "new", "size": "16MiB"}, "bus": "virtio"},
        {"source": {"type": "new", "size": "20MiB", "format": "raw"}, "bus": "virtio-scsi"},
        {"source": {"type": "new", "size": "24MiB"}, "bus": "sata"},
        {"source": {"type": "new", "size": "28MiB"}, "bus": "scsi"},
    ]
    engine.create(guest_spec(name, disks=disks, boot={**guest_spec(name)["boot"], "machine": "q35"}), start=True)
    log = wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    sizes = sorted(int(line.split()[2]) for line in log.splitlines() if line.startswith("VMHOST-BLK"))
    assert sizes == [16 * 2**20, 20 * 2**20, 24 * 2**20, 28 * 2**20]
