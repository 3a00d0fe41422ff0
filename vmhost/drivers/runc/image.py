"""Local OCI image layouts (a directory, or a tarball of one): find the image, read its config, unpack its layers.

No registry is ever contacted here: images pulled from one (vmhost/storage/registry.py) arrive as layouts too.
Layers are applied in order with their whiteouts honoured (`.wh.NAME` removes NAME, `.wh..wh..opq` empties the
directory of what lower layers put there). Every path a layer writes is resolved inside the root filesystem,
symlinks included, so a layer cannot write outside it.
"""

import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from vmhost.errors import HostResourceError
from vmhost.render.oci import ImageConfig
from vmhost.spec.container import ImageRootfs, OciLayoutRootfs, Rootfs

REF_ANNOTATION = "org.opencontainers.image.ref.name"
INDEX_TYPES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
LAYER_TYPES = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINK_HOPS = 40
STORE_REF = "latest"
"""What a layout of the image store is asked for: it holds one image without a ref name, which any ref finds."""
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


class ImageError(HostResourceError):
    """The layout is missing, malformed, or lacks the requested image."""


@dataclass(frozen=True)
class Image:
    manifest_digest: str
    config: ImageConfig
    layers: list[dict[str, Any]]


class _Layout:
    """Blobs and index of a layout, read from a directory or straight out of a tarball."""

    def __init__(self, path: Path):
        self.path = path
        self._tar = tarfile.open(path) if path.is_file() else None  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    @contextlib.contextmanager
    def open(self, relative: str) -> Iterator[IO[bytes]]:
        if self._tar is None:
            if not (self.path / relative).is_file():
                raise FileNotFoundError(relative)
            with (self.path / relative).open("rb") as handle:
                yield handle
            return
        member = self._tar.extractfile(self._member(relative))
        if member is None:
            raise FileNotFoundError(relative)
        with member:
            yield member

    def _member(self, relative: str) -> tarfile.TarInfo:
        assert self._tar is not None
        for name in (relative, f"./{relative}"):
            with contextlib.suppress(KeyError):
                return self._tar.getmember(name)
        raise FileNotFoundError(relative)

    def json(self, relative: str) -> Any:
        with self.open(relative) as handle:
            return json.load(handle)

    def blob(self, descriptor: dict[str, Any]) -> Any:
        """A JSON blob, checked against its digest."""
        with self.open(_blob_path(descriptor)) as handle:
            data = handle.read()
        algorithm, _, expected = str(descriptor["digest"]).partition(":")
        if algorithm == "sha256" and hashlib.sha256(data).hexdigest() != expected:
            raise ImageError(f"blob {descriptor['digest']} in {self.path} does not match its digest")
        return json.loads(data)


def _blob_path(descriptor: dict[str, Any]) -> str:
    algorithm, _, digest = str(descriptor.get("digest", "")).partition(":")
    if not algorithm.isalnum() or not digest.isalnum():
        raise ImageError(f"malformed digest {descriptor.get('digest')!r}")
    return f"blobs/{algorithm}/{digest}"


def _pick(index: dict[str, Any], ref: str, where: Path) -> dict[str, Any]:
    manifests = index.get("manifests", [])
    named = [m for m in manifests if m.get("annotations", {}).get(REF_ANNOTATION) == ref]
    if not named and len(manifests) == 1 and REF_ANNOTATION not in manifests[0].get("annotations", {}):
        named = manifests
    if not named:
        refs = sorted(m.get("annotations", {}).get(REF_ANNOTATION, "?") for m in manifests)
        raise ImageError(f"{where} has no image {ref!r} (it has: {', '.join(refs) or 'none'})")
    return dict(named[0])


def _for_this_host(index: dict[str, Any], where: Path) -> dict[str, Any]:
    arch = ARCHITECTURES.get(platform.machine(), platform.machine())
    for manifest in index.get("manifests", []):
        wanted = manifest.get("platform", {})
        if wanted.get("os", "linux") == "linux" and wanted.get("architecture", arch) == arch:
            return dict(manifest)
    raise ImageError(f"{where} has no linux/{arch} image")


def _read(layout: _Layout, ref: str) -> Image:
    descriptor = _pick(layout.json("index.json"), ref, layout.path)
    if descriptor.get("mediaType") in INDEX_TYPES:
        descriptor = _for_this_host(layout.blob(descriptor), layout.path)
    manifest = layout.blob(descriptor)
    config = layout.blob(manifest["config"]).get("config") or {}
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") not in LAYER_TYPES:
            raise ImageError(f"layer {layer.get('digest')} of {layout.path} is {layer.get('mediaType')}: unsupported")
    return Image(
        manifest_digest=str(descriptor["digest"]),
        config=ImageConfig(
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            env=list(config.get("Env") or []),
            workdir=str(config.get("WorkingDir") or ""),
        ),
        layers=list(manifest.get("layers", [])),
    )


def source(rootfs: Rootfs) -> tuple[Path, str] | None:
    """The layout (and the image's ref in it) a rootfs is unpacked from; None for a directory used in place, or an
    image of the store the engine did not resolve. A pulled layout holds one image, found without a ref name."""
    if isinstance(rootfs, OciLayoutRootfs):
        return rootfs.path, rootfs.ref
    if isinstance(rootfs, ImageRootfs) and rootfs.layout is not None:
        return rootfs.layout, STORE_REF
    return None


def inspect(path: Path, ref: str) -> Image:
    """The image `ref` of the layout at `path`, without unpacking it; ImageError says what is wrong."""
    if not path.exists():
        raise ImageError(f"{path} does not exist")
    try:
        layout = _Layout(path)
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"{path} is neither an OCI layout directory nor a readable tarball of one: {exc}") from None
    try:
        return _read(layout, ref)
    except FileNotFoundError as exc:
        raise ImageError(f"{path} is not an OCI image layout: {exc.args[0]} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, tarfile.TarError) as exc:
        raise ImageError(f"{path} is not a readable OCI image layout: {exc}") from None
    finally:
        layout.close()


def unpack(path: Path, ref: str, rootfs: Path) -> Image:
    """Unpack the image's layers, in order, into the (new, empty) directory `rootfs`."""
    image = inspect(path, ref)
    rootfs.mkdir(mode=0o755)
    layout = _Layout(path)
    try:
        for layer in image.layers:
            with layout.open(_blob_path(layer)) as blob, tarfile.open(fileobj=blob, mode="r|*") as tar:
                for member in tar:
                    _apply(tar, member, rootfs)
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"cannot unpack {path} into {rootfs}: {exc}") from None
    finally:
        layout.close()
    return image


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, rootfs: Path) -> None:
    parent_name, _, base = member.name.rstrip("/").rpartition("/")
    parent = _resolve(rootfs, parent_name)
    if base == OPAQUE:
        for child in parent.iterdir() if parent.is_dir() else []:
            _remove(child)
        return
    if base.startswith(WHITEOUT):
        _remove(parent / base.removeprefix(WHITEOUT))
        return
    if base in ("", ".", ".."):
        return
    target = parent / base
    if not (member.isdir() and target.is_dir() and not target.is_symlink()):
        _remove(target)
    parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        target.mkdir(exist_ok=True)
    elif member.isreg():
        source = tar.extractfile(member)
        with source or io.BytesIO() as data, target.open("wb") as out:
            shutil.copyfileobj(data, out)
    elif member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        os.link(_resolve(rootfs, member.linkname), target)
    elif member.isfifo():
        os.mkfifo(target)
    else:
        return  # device nodes: runc makes /dev itself
    os.lchown(target, member.uid, member.gid)
    if not member.issym():
        os.chmod(target, stat.S_IMODE(member.mode))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _resolve(rootfs: Path, name: str) -> Path:
    """`name` inside `rootfs`, following symlinks as the container would see them (never leaving rootfs)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = rootfs.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise ImageError(f"too many symlinks resolving {name} in the image")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return rootfs.joinpath(*resolved)
