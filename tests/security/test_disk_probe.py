"""Issue 12, item 3: a disk's format is read once, when the disk is added, and never probed again.

A guest owns the bytes of its raw disk. If vmhost probed that disk at every redefine (update, recovery, a ZStack
start of a stopped VM), a guest that writes a qcow2 header naming /etc/shadow as its backing file into the disk
would get /etc/shadow opened as its backing store. These tests do exactly that, with real qemu-img and libvirt.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from vmhost.engine import Engine
from vmhost.spec import SpecError
from vmhost.storage import chains, qemu_img
from vmhost.storage.host_paths import HostPaths


def image(path: Path, fmt: str, size: str = "8M", backing: Path | None = None, backing_format: str = "raw") -> Path:
    extra = ["-u", "-b", str(backing), "-F", backing_format] if backing else []
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, *extra, str(path), size], check=True)
    return path


def plant_qcow2_header(disk: Path, backing: str, scratch: Path) -> None:
    """What a malicious guest does to its raw disk: write a qcow2 header naming a host file as backing store."""
    header = image(scratch / "header.qcow2", "qcow2", "8M", Path(backing))
    with disk.open("r+b") as target:
        target.write(header.read_bytes())
    assert qemu_img.image_info(disk).format == "qcow2", "the planted header must fool a probe"


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every image qemu-img is asked about, in order."""
    seen: list[Path] = []
    real = qemu_img.image_info

    def spy(path: Path, fmt: str | None = None) -> qemu_img.ImageInfo:
        seen.append(Path(path))
        return real(path, fmt)

    monkeypatch.setattr(qemu_img, "image_info", spy)
    yield seen


def some_block_device() -> Path:
    """A block device of this host (the machine's own disk or a loop device), to name as a backing file."""
    for path in map(Path, ("/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/loop0")):
        if path.is_block_device():
            return path
    pytest.skip("this host has no block device to name")


def domain_disks(libvirt_conn: Any, name: str) -> list[etree._Element]:
    return etree.fromstring(libvirt_conn.lookupByName(name).XMLDesc(0)).findall("devices/disk[@device='disk']")


def stored_source(engine: Engine, name: str, index: int = 0) -> dict[str, Any]:
    source: dict[str, Any] = engine.record(name).spec["disks"][index]["source"]
    return source


def test_auto_format_is_resolved_at_create_and_stored(engine, guest_spec, vm_name, tmp_path, libvirt_conn):
    disk = image(tmp_path / "guest.img", "raw")
    name = vm_name("auto")
    engine.create(guest_spec(name, disks=[{"source": {"type": "file", "path": str(disk), "format": "auto"}}]))
    assert stored_source(engine, name)["format"] == "raw"
    assert engine.get(name)["disks"][0]["source"]["format"] == "raw"
    [node] = domain_disks(libvirt_conn, name)
    assert node.find("driver").get("type") == "raw"


def redefine_every_way(engine: Engine, name: str, disk: Path) -> None:
    """Update, a ZStack-style update that sends `format: auto` again, and crash recovery of an interrupted update."""
    engine.update(name, {"description": "changed"})
    engine.update(name, {"disks": [{"source": {"type": "file", "path": str(disk), "format": "auto"}}]})
    record = engine.record(name)
    engine.store.begin_operation(record.name, record.uuid, "update")  # as a process killed mid-update left it
    engine.recover()


def test_a_guest_written_qcow2_header_is_never_read_at_redefine(
    engine, guest_spec, vm_name, tmp_path, libvirt_conn, probes
):
    disk = image(tmp_path / "guest.img", "raw")
    name = vm_name("probe")
    engine.create(guest_spec(name, disks=[{"source": {"type": "file", "path": str(disk)}}]))
    plant_qcow2_header(disk, "/etc/shadow", tmp_path)
    probes.clear()

    redefine_every_way(engine, name, disk)

    assert probes == [], "the disk was probed again after create"
    assert stored_source(engine, name)["format"] == "raw"
    [node] = domain_disks(libvirt_conn, name)
    assert node.find("driver").get("type") == "raw"
    assert node.find("backingStore/source") is None
    assert "/etc/shadow" not in libvirt_conn.lookupByName(name).XMLDesc(0)


def test_attach_reads_the_new_disk_once_and_no_other(engine, guest_spec, vm_name, tmp_path, probes):
    first, second = image(tmp_path / "first.img", "raw"), image(tmp_path / "second.img", "raw")
    name = vm_name("attach")
    engine.create(guest_spec(name, disks=[{"source": {"type": "file", "path": str(first)}}]))
    plant_qcow2_header(first, "/dev/sda", tmp_path)
    probes.clear()
    engine.attach_disk(name, {"source": {"type": "file", "path": str(second)}})
    assert probes == [second]
    assert [stored_source(engine, name, i)["format"] for i in (0, 1)] == ["raw", "raw"]


@pytest.mark.parametrize("fmt", ["qcow2", "auto"])
def test_a_qcow2_backed_by_a_host_file_outside_the_roots_is_refused(engine, guest_spec, vm_name, tmp_path, fmt):
    evil = image(tmp_path / "evil.qcow2", "qcow2", backing=Path("/etc/shadow"))
    name = vm_name("evil")
    with pytest.raises(SpecError) as refused:
        engine.create(guest_spec(name, disks=[{"source": {"type": "file", "path": str(evil), "format": fmt}}]))
    [problem] = refused.value.problems
    assert problem.path == "disks.0.source.path"
    assert "/etc/shadow" in problem.message and "outside the allowed paths" in problem.message
    assert engine.store.get_vm(name) is None


def test_attaching_a_qcow2_backed_by_a_block_device_is_refused(engine, guest_spec, vm_name, tmp_path):
    name = vm_name("evil-attach")
    engine.create(guest_spec(name))
    evil = image(tmp_path / "evil.qcow2", "qcow2", backing=some_block_device())
    with pytest.raises(SpecError) as refused:
        engine.attach_disk(name, {"source": {"type": "file", "path": str(evil), "format": "qcow2"}})
    [problem] = refused.value.problems
    assert problem.path == "disks.0.source.path"
    assert str(some_block_device()) in problem.message and "allowed_block_devices" in problem.message
    assert engine.record(name).spec["disks"] == []


def test_an_overlay_on_a_base_backed_from_outside_the_roots_is_refused(engine, guest_spec, vm_name, tmp_path):
    base = image(tmp_path / "base.qcow2", "qcow2", backing=Path("/etc/shadow"))
    with pytest.raises(SpecError) as refused:
        engine.create(guest_spec(vm_name("evil-base"), disks=[{"source": {"type": "overlay", "base": str(base)}}]))
    assert [p.path for p in refused.value.problems] == ["disks.0.source.base"]


def chain_of(node: etree._Element) -> list[tuple[str | None, str | None]]:
    """(format, file) of each backingStore level, ended by (None, None) for the empty terminator."""
    levels = []
    store = node.find("backingStore")
    while store is not None:
        fmt, source = store.find("format"), store.find("source")
        levels.append(
            (fmt.get("type") if fmt is not None else None, source.get("file") if source is not None else None)
        )
        store = store.find("backingStore")
    return levels


def test_a_chain_inside_the_roots_is_recorded_and_defined_with_every_format_explicit(
    engine, guest_spec, vm_name, tmp_path, libvirt_conn, probes
):
    base = image(tmp_path / "base.raw", "raw")
    middle = image(tmp_path / "middle.qcow2", "qcow2", backing=base)
    top = image(tmp_path / "top.qcow2", "qcow2", backing=middle, backing_format="qcow2")
    name = vm_name("chain")
    disks = [
        {"source": {"type": "file", "path": str(top), "format": "qcow2"}},
        {"source": {"type": "overlay", "base": str(base)}},
    ]
    engine.create(guest_spec(name, disks=disks))
    assert stored_source(engine, name)["backing"] == [
        {"type": "file", "path": str(middle), "format": "qcow2"},
        {"type": "file", "path": str(base), "format": "raw"},
    ]
    assert stored_source(engine, name, 1)["backing"] == [{"type": "file", "path": str(base), "format": "raw"}]
    file_disk, overlay = domain_disks(libvirt_conn, name)
    assert chain_of(file_disk) == [("qcow2", str(middle)), ("raw", str(base)), (None, None)]
    assert chain_of(overlay) == [("raw", str(base)), (None, None)]
    probes.clear()
    engine.update(name, {"description": "changed"})
    assert probes == []


def test_a_backing_loop_is_refused(tmp_path):
    first, second = tmp_path / "first.qcow2", tmp_path / "second.qcow2"
    image(first, "qcow2", backing=second, backing_format="qcow2")
    image(second, "qcow2", backing=first, backing_format="qcow2")
    with pytest.raises(chains.Refused, match="loops back"):
        chains.inspect(first, "qcow2", HostPaths(roots=(tmp_path,), block_devices=(), data_dir=tmp_path / "data"))
