"""Local OCI image layouts: finding the image, its config, and unpacking layers with whiteouts, safely."""

import tarfile

import pytest

from tests.conformance.busybox import busybox_layout, entry, layer, write_layout
from vmhost.drivers.runc import image


def test_busybox_layout_unpacks_with_its_config(tmp_path):
    layout = busybox_layout(tmp_path / "busybox")
    unpacked = image.unpack(layout, "latest", tmp_path / "rootfs")
    assert (tmp_path / "rootfs" / "bin" / "busybox").stat().st_mode & 0o111
    assert (tmp_path / "rootfs" / "bin" / "sh").readlink().name == "busybox"
    assert unpacked.config.cmd == ["sh"]
    assert unpacked.config.env == ["PATH=/bin", "IMAGE=busybox"]
    assert unpacked.config.workdir == "/tmp"
    assert unpacked.manifest_digest.startswith("sha256:")


def test_a_tarball_of_a_layout_reads_like_the_directory(tmp_path):
    tarball = busybox_layout(tmp_path / "busybox", as_tarball=True)
    assert tarball.suffix == ".tar"
    image.unpack(tarball, "latest", tmp_path / "rootfs")
    assert (tmp_path / "rootfs" / "bin" / "busybox").is_file()


def test_layers_apply_in_order_and_whiteouts_remove_lower_files(tmp_path):
    lower = layer(
        [
            entry("etc", tarfile.DIRTYPE, mode=0o755),
            entry("etc/keep", content=b"1"),
            entry("etc/gone", content=b"2"),
            entry("cache", tarfile.DIRTYPE, mode=0o755),
            entry("cache/old", content=b"3"),
        ]
    )
    upper = layer(
        [
            entry("etc/.wh.gone"),
            entry("etc/keep", content=b"new"),
            entry("cache/.wh..wh..opq"),
            entry("cache/fresh", content=b"4"),
        ]
    )
    layout = write_layout(tmp_path / "layout", [lower, upper], {"Cmd": ["true"]})
    rootfs = tmp_path / "rootfs"
    image.unpack(layout, "latest", rootfs)
    assert (rootfs / "etc" / "keep").read_bytes() == b"new"
    assert not (rootfs / "etc" / "gone").exists()
    assert sorted(p.name for p in (rootfs / "cache").iterdir()) == ["fresh"]


def test_a_layer_cannot_write_outside_the_rootfs_through_a_symlink_or_dotdot(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = layer(
        [
            entry("escape", tarfile.SYMTYPE, link=str(outside)),
            entry("escape/planted", content=b"x"),
            entry("../../dotdot", content=b"y"),
        ]
    )
    layout = write_layout(tmp_path / "layout", [hostile], {"Cmd": ["true"]})
    rootfs = tmp_path / "rootfs"
    image.unpack(layout, "latest", rootfs)
    assert list(outside.iterdir()) == []
    assert (rootfs / str(outside).lstrip("/") / "planted").read_bytes() == b"x"
    assert (rootfs / "dotdot").read_bytes() == b"y"


def test_unknown_ref_names_the_refs_the_layout_has(tmp_path):
    layout = busybox_layout(tmp_path / "busybox")
    with pytest.raises(image.ImageError, match=r"no image 'v2' \(it has: latest\)"):
        image.inspect(layout, "v2")


def test_a_directory_that_is_no_layout_is_refused_clearly(tmp_path):
    with pytest.raises(image.ImageError, match=r"not an OCI image layout: index\.json is missing"):
        image.inspect(tmp_path, "latest")
    with pytest.raises(image.ImageError, match="does not exist"):
        image.inspect(tmp_path / "missing", "latest")


def test_a_blob_that_does_not_match_its_digest_is_refused(tmp_path):
    layout = busybox_layout(tmp_path / "busybox")
    index = (layout / "index.json").read_text()
    manifest = next(p for p in (layout / "blobs" / "sha256").iterdir() if p.name in index)
    manifest.write_text(manifest.read_text().replace("schemaVersion", "schemaversion"))
    with pytest.raises(image.ImageError, match="does not match its digest"):
        image.inspect(layout, "latest")
