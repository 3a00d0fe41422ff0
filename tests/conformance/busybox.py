"""A local OCI image layout built from Debian's busybox-static (no download): what container tests run."""

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "sleep", "echo", "cat", "ls", "ip", "hostname", "id", "env", "kill", "true", "false")


def _blob(layout: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def layer(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A gzipped layer tar from TarInfo entries (regular files come with their content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for entry in entries:
            info, content = entry if isinstance(entry, tuple) else (entry, b"")
            tar.addfile(info, io.BytesIO(content) if info.isreg() else None)
    return gzip.compress(raw.getvalue(), mtime=0)


def entry(name: str, kind: bytes = tarfile.REGTYPE, content: bytes = b"", link: str = "", mode: int = 0o644):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, len(content)
    return (info, content) if kind == tarfile.REGTYPE else info


def busybox_layer() -> bytes:
    entries: list[Any] = [entry("bin", tarfile.DIRTYPE, mode=0o755), entry("tmp", tarfile.DIRTYPE, mode=0o1777)]
    entries.append(entry("bin/busybox", content=BUSYBOX.read_bytes(), mode=0o755))
    entries += [entry(f"bin/{applet}", tarfile.SYMTYPE, link="busybox") for applet in APPLETS]
    return layer(entries)


def write_layout(
    layout: Path, layers: list[bytes], config: dict[str, Any], ref: str = "latest", *, as_tarball: bool = False
) -> Path:
    """An OCI image layout at `layout` (or, with as_tarball, a tarball of one next to it)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    layer_descriptors = [_blob(layout, data, "application/vnd.oci.image.layer.v1.tar+gzip") for data in layers]
    diff_ids = [f"sha256:{hashlib.sha256(gzip.decompress(data)).hexdigest()}" for data in layers]
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_descriptor = _blob(layout, json.dumps(image_config).encode(), "application/vnd.oci.image.config.v1+json")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": layer_descriptors,
    }
    descriptor = _blob(layout, json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    if not as_tarball:
        return layout
    tarball = layout.with_suffix(".tar")
    with tarfile.open(tarball, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(layout)), recursive=False)
    return tarball


def busybox_layout(layout: Path, *, as_tarball: bool = False) -> Path:
    config = {"Env": ["PATH=/bin", "IMAGE=busybox"], "Cmd": ["sh"], "WorkingDir": "/tmp"}
    return write_layout(layout, [busybox_layer()], config, as_tarball=as_tarball)


def busybox_rootfs(rootfs: Path) -> Path:
    """An unpacked busybox root filesystem in a plain directory."""
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir(mode=0o1777)
    (rootfs / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    for applet in APPLETS:
        (rootfs / "bin" / applet).symlink_to("busybox")
    return rootfs
