"""The image store without a hypervisor: the spec form of image disks, the vmadm mapping of image_uuid, the
import rules (real qemu-img), and image disks planned and made on the fake driver."""

import grp
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.driver import FakeHypervisor
from tests.fakes.engines import engine_on, spec
from vmhost.config import HostConfig
from vmhost.dialects import to_spec_document
from vmhost.dialects.vmadm import DialectError, payload_to_spec
from vmhost.engine import Engine
from vmhost.engine.images import file_access
from vmhost.errors import Conflict
from vmhost.render.libvirt import RenderContext, render_domain
from vmhost.spec import SpecError, parse_spec
from vmhost.spec.disk import BackingImage, ImageDisk
from vmhost.storage.host_paths import HostPaths

MiB = 1 << 20
IMAGE_UUID = "5cf2ad7a-e9d1-4a3c-9c1b-0a5f0b8b3a11"


def qcow2(path: Path, size: str = "16M", *extra: str) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *extra, str(path), size], check=True)
    return path


def problems(error: SpecError) -> dict[str, str]:
    return {problem.path: problem.message for problem in error.problems}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return engine_on(FakeHypervisor(), tmp_path / "data")


@pytest.fixture
def base(engine: Engine) -> Path:
    """A 16 MiB qcow2 under the allowed paths (the fake engine allows its data dir)."""
    return qcow2(engine.config.data_dir / "base.qcow2")


def store_files(engine: Engine) -> list[str]:
    return sorted(path.name for path in engine.config.image_store_dir.iterdir())


# ---- spec form ----------------------------------------------------------------------------------------------


def test_an_image_disk_names_an_image_and_a_size() -> None:
    vm = parse_spec(spec("a", disks=[{"source": {"type": "image", "image": "debian-12", "size": "10GiB"}}]))
    source = vm.disks[0].source
    assert isinstance(source, ImageDisk)
    assert (source.image, source.size, source.backing) == ("debian-12", 10 << 30, None)


def test_the_shorthand_is_the_same_disk_and_keeps_the_other_disk_fields() -> None:
    short = parse_spec(spec("a", disks=[{"image": "debian-12", "size": "10GiB", "bus": "sata"}]))
    long = parse_spec(
        spec("a", disks=[{"source": {"type": "image", "image": "debian-12", "size": "10GiB"}, "bus": "sata"}])
    )
    assert short.disks == long.disks


def test_an_image_disk_without_size_takes_the_images_size_later() -> None:
    source = parse_spec(spec("a", disks=[{"image": "debian-12"}])).disks[0].source
    assert isinstance(source, ImageDisk) and source.size is None


def test_a_bad_image_name_and_size_are_named_by_path() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec("a", disks=[{"image": "no/such", "size": "lots"}]))
    assert set(problems(caught.value)) == {"disks.0.source.image", "disks.0.source.size"}


# ---- vmadm ----------------------------------------------------------------------------------------------------


def vmadm(*disks: dict[str, Any]) -> dict[str, Any]:
    return {"brand": "bhyve", "alias": "web", "disks": list(disks)}


def store_of(**images: int) -> Any:
    """A lookup as the CLI builds it: image views by uuid (all named after their key)."""
    return lambda uuid: next(({"name": n, "virtual_size": s} for n, s in images.items() if uuid == IMAGE_UUID), None)


def test_vmadm_image_uuid_starts_from_the_store_image_with_that_uuid_at_its_size() -> None:
    doc = payload_to_spec(vmadm({"model": "virtio", "image_uuid": IMAGE_UUID, "boot": True}), store_of(deb=10 * MiB))
    assert doc["disks"] == [{"bus": "virtio", "source": {"type": "image", "image": "deb"}, "boot_order": 1}]


def test_vmadm_size_with_flexible_disk_size_grows_the_image_disk() -> None:
    payload = {**vmadm({"model": "virtio", "image_uuid": IMAGE_UUID, "size": 20}), "flexible_disk_size": 20}
    doc = payload_to_spec(payload, store_of(deb=10 * MiB))
    assert doc["disks"][0]["source"] == {"type": "image", "image": "deb", "size": 20 * MiB}


@pytest.mark.parametrize("image_size", [5, 20])
def test_vmadm_image_size_other_than_the_images_is_refused_at_image_size_as_vmadm_does(image_size: int) -> None:
    with pytest.raises(DialectError) as caught:
        payload_to_spec(
            vmadm({"model": "virtio", "image_uuid": IMAGE_UUID, "image_size": image_size}), store_of(deb=10 * MiB)
        )
    assert [p.path for p in caught.value.problems] == ["disks.0.image_size"]
    assert "is the size of image deb (10 MiB)" in caught.value.problems[0].message


def test_vmadm_size_below_the_image_is_a_vmhost_problem_at_size() -> None:
    payload = {**vmadm({"model": "virtio", "image_uuid": IMAGE_UUID, "size": 5}), "flexible_disk_size": 20}
    with pytest.raises(DialectError) as caught:
        payload_to_spec(payload, store_of(deb=10 * MiB))
    assert [p.path for p in caught.value.problems] == ["disks.0.size"]
    assert "smaller than image deb (10 MiB)" in caught.value.problems[0].message


def test_vmadm_unknown_image_uuid_is_a_vmhost_message_not_a_vmadm_finding() -> None:
    payload = vmadm({"model": "virtio", "size": 1024}, {"model": "virtio", "image_uuid": IMAGE_UUID})
    with pytest.raises(DialectError) as caught:
        to_spec_document(payload, "vmadm", lambda uuid: None)
    assert [p.path for p in caught.value.problems] == ["disks.1.image_uuid"]
    assert IMAGE_UUID in caught.value.problems[0].message
    assert caught.value.validation.ok and caught.value.validation.missing_properties == []


def test_vmadm_without_a_store_leaves_the_image_size_to_imgadm_as_vmadm_does() -> None:
    doc = payload_to_spec(vmadm({"model": "virtio", "image_uuid": IMAGE_UUID}))
    assert doc["disks"][0]["source"] == {"type": "overlay", "base": f"/dev/zvol/rdsk/zones/{IMAGE_UUID}"}


def test_an_image_disk_renders_as_an_overlay_whose_image_libvirt_must_not_relabel() -> None:
    vm = parse_spec(spec("a", disks=[{"image": "deb"}]))
    source = vm.disks[0].source
    assert isinstance(source, ImageDisk)
    source.backing = [BackingImage(path=Path("/s/x.qcow2"), format="qcow2")]
    root = render_domain(vm, RenderContext(accel="tcg", console_log=Path("/l"), disk_paths={"vda": Path("/d/vda")}))
    [disk] = root.findall("devices/disk")
    assert (disk.find("driver").get("type"), disk.find("source").get("file")) == ("qcow2", "/d/vda")
    backing = disk.find("backingStore")
    assert (backing.find("format").get("type"), backing.find("source").get("file")) == ("qcow2", "/s/x.qcow2")
    label = backing.find("source/seclabel")
    assert (label.get("model"), label.get("relabel")) == ("dac", "no")
    assert len(backing.find("backingStore")) == 0  # the chain ends there: nothing is read from the header


# ---- host paths -----------------------------------------------------------------------------------------------


def test_the_store_is_allowed_as_a_backing_file_only(tmp_path: Path) -> None:
    paths = HostPaths((tmp_path / "images",), (), tmp_path, tmp_path / "images-store")
    image = tmp_path / "images-store" / "x.qcow2"
    assert paths.refusal(image, "backing") is None
    assert paths.refusal(image, "file") is not None


# ---- import rules ---------------------------------------------------------------------------------------------


def test_a_local_image_is_copied_recorded_and_kept_private(engine: Engine, base: Path) -> None:
    record = engine.import_image(str(base), "base")
    assert base.exists()
    assert (record.format, record.virtual_size, record.source, record.kind) == ("qcow2", 16 * MiB, str(base), "disk")
    stored = Path(record.path)
    assert stored.parent == engine.config.image_store_dir and stored.read_bytes() == base.read_bytes()
    qemu_group = grp.getgrnam("libvirt-qemu").gr_gid  # the default hypervisor_group, made by setup
    assert (stored.stat().st_uid, stored.stat().st_gid, stat.S_IMODE(stored.stat().st_mode)) == (0, qemu_group, 0o640)
    store = engine.config.image_store_dir.stat()
    assert (store.st_gid, stat.S_IMODE(store.st_mode)) == (qemu_group, 0o710)
    assert engine.get_image(record.uuid) == engine.get_image("base") == record


@pytest.mark.parametrize(
    ("content", "fmt", "reason"),
    [
        (b"", "auto", "empty"),
        (b"hello world\n", "auto", "512-byte sectors"),
        (b"#!/bin/sh\n" + b"echo hi\n" * 64 + b"x" * (1024 - 10 - 8 * 64), "auto", "looks like text"),
        (b"\0" * 4096, "qcow2", "cannot open it as qcow2"),
    ],
)
def test_what_is_no_disk_image_is_refused_and_leaves_nothing(
    engine: Engine, content: bytes, fmt: str, reason: str
) -> None:
    path = engine.config.data_dir / "file.img"
    path.write_bytes(content)
    with pytest.raises(SpecError) as caught:
        engine.import_image(str(path), "bad", fmt=fmt)
    assert reason in problems(caught.value)["source"]
    assert store_files(engine) == [] and engine.list_images() == []


def test_a_raw_image_of_whole_sectors_is_taken(engine: Engine) -> None:
    path = engine.config.data_dir / "disk.raw"
    path.write_bytes(b"\0" * MiB)
    assert engine.import_image(str(path), "raw").format == "raw"


def test_image_files_are_root_owned_and_qemu_reads_them_through_its_group_if_any(tmp_path: Path) -> None:
    assert file_access(HostConfig(data_dir=tmp_path, hypervisor_group="")) == (0o600, None)
    assert file_access(HostConfig(data_dir=tmp_path, hypervisor_group="no-such-group-here")) == (0o644, None)
    assert file_access(HostConfig(data_dir=tmp_path)) == (0o640, grp.getgrnam("libvirt-qemu").gr_gid)


def test_a_text_file_is_taken_as_raw_only_when_asked(engine: Engine) -> None:
    path = engine.config.data_dir / "notes.txt"
    path.write_bytes(b"a" * 1024)
    assert engine.import_image(str(path), "notes", fmt="raw").format == "raw"


def test_a_qcow2_with_a_backing_file_is_refused(engine: Engine) -> None:
    evil = qcow2(engine.config.data_dir / "evil.qcow2", "1M", "-b", "/etc/passwd", "-F", "raw")
    with pytest.raises(SpecError) as caught:
        engine.import_image(str(evil), "evil")
    assert "backing file /etc/passwd" in problems(caught.value)["source"]
    assert store_files(engine) == [] and engine.list_images() == []


def test_a_qcow2_keeping_its_data_in_an_external_file_is_refused(engine: Engine) -> None:
    data = engine.config.data_dir / "data.raw"
    image = qcow2(engine.config.data_dir / "split.qcow2", "1M", "-o", f"data_file={data}")
    with pytest.raises(SpecError) as caught:
        engine.import_image(str(image), "split")
    assert f"external file {data}" in problems(caught.value)["source"]
    assert store_files(engine) == []


def test_a_source_outside_the_allowed_paths_is_refused_before_it_is_read(engine: Engine) -> None:
    with pytest.raises(SpecError) as caught:
        engine.import_image("/etc/shadow", "shadow")
    assert "outside the allowed paths" in problems(caught.value)["source"]


def test_a_bad_request_lists_every_problem(engine: Engine, base: Path) -> None:
    with pytest.raises(SpecError) as caught:
        engine.import_image(str(base), "0f6e39b8-7c39-4f3f-9d7e-0d9d6c1b2a3e", sha256="abc", fmt="vmdk", uuid="x")
    assert set(problems(caught.value)) == {"name", "sha256", "format", "uuid"}


def test_a_checksum_mismatch_leaves_nothing(engine: Engine, base: Path) -> None:
    with pytest.raises(SpecError) as caught:
        engine.import_image(str(base), "base", sha256="0" * 64)
    assert "sha256" in problems(caught.value)
    assert store_files(engine) == [] and engine.list_images() == []


def test_an_import_sweeps_what_a_killed_import_left_but_not_what_one_is_writing(engine: Engine, base: Path) -> None:
    store = engine.config.image_store_dir
    engine.import_image(str(base), "first")
    abandoned, live = store / ".import-dead.tmp", store / ".import-live.tmp"
    abandoned.write_bytes(b"x")
    live.write_bytes(b"x")
    os.utime(abandoned, (0, 0))
    engine.import_image(str(base), "second")
    assert not abandoned.exists() and live.exists()


def test_a_name_in_use_is_a_conflict_and_the_uuid_can_be_given(engine: Engine, base: Path) -> None:
    assert engine.import_image(str(base), "base", uuid=IMAGE_UUID.upper()).uuid == IMAGE_UUID
    with pytest.raises(Conflict, match="name: an image named base"):
        engine.import_image(str(base), "base")
    with pytest.raises(Conflict, match="uuid: "):
        engine.import_image(str(base), "other", uuid=IMAGE_UUID)
    assert len(store_files(engine)) == 1


# ---- image disks ----------------------------------------------------------------------------------------------


def test_a_vm_disk_from_an_image_is_an_owned_overlay_grown_to_its_size(engine: Engine, base: Path) -> None:
    image = engine.import_image(str(base), "base")
    engine.create(spec("vm", disks=[{"image": "base", "size": "64MiB"}]))
    disk = engine.get("vm")["disks"][0]
    assert disk["source"] == {
        "type": "image",
        "image": "base",
        "size": "64MiB",
        "backing": [{"type": "file", "path": image.path, "format": "qcow2"}],
    }
    overlay = Path(engine.record("vm").owned_paths[0])
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(overlay)], capture_output=True, check=True).stdout
    )
    assert (info["virtual-size"], info["full-backing-filename"], info["backing-filename-format"]) == (
        64 * MiB,
        image.path,
        "qcow2",
    )


def test_an_unknown_image_or_a_too_small_size_is_refused_and_makes_nothing(engine: Engine, base: Path) -> None:
    engine.import_image(str(base), "base")
    with pytest.raises(SpecError) as caught:
        engine.create(spec("vm", disks=[{"image": "nope"}, {"image": "base", "size": "8MiB"}]))
    found = problems(caught.value)
    assert "no image named nope" in found["disks.0.source.image"]
    assert found["disks.1.source.size"] == "8MiB is smaller than image base's virtual size 16MiB"
    assert engine.store.list_vms() == []
    assert list((engine.config.data_dir / "vms").iterdir()) == []


def test_an_image_in_use_cannot_be_deleted_until_its_vms_are(engine: Engine, base: Path) -> None:
    image = engine.import_image(str(base), "base")
    engine.create(spec("one", disks=[{"image": "base"}]))
    engine.create(spec("two", disks=[{"image": image.uuid}]))
    with pytest.raises(Conflict, match="in use by one, two"):
        engine.delete_image("base")
    engine.delete("one")
    engine.delete("two")
    engine.delete_image("base")
    assert engine.list_images() == [] and store_files(engine) == []
