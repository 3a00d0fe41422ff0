"""The image store: disk images imported once (copied or downloaded, hashed, probed) into data_dir/images-store,
recorded in the `images` table, and used by VM disks as the read-only base of an owned qcow2 overlay.

What is decided at import is never decided again: the format qemu-img read then is the format every overlay
names for its backing file, so a guest can never make QEMU open the image as something else.
"""

import re
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from vmhost.config import HostConfig
from vmhost.engine.events import VmEvent
from vmhost.errors import Conflict, HostResourceError, NotFound
from vmhost.host import files
from vmhost.spec import Problem, SpecError, VMSpec
from vmhost.spec.disk import IMAGE_NAME_PATTERN, BackingImage, ImageDisk
from vmhost.spec.units import format_size
from vmhost.storage import image_files, registry
from vmhost.storage.host_paths import HostPaths
from vmhost.store.sqlite import ImageRecord, Store

if TYPE_CHECKING:
    from vmhost.engine.core import Core

ImportFormat = Literal["auto", "qcow2", "raw"]
ImageKind = Literal["disk", "oci"]
ImportProgress = Callable[[int, int | None], None]
"""(bytes so far, total bytes when known): the CLI draws its progress bar from these."""
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
SWEEP_AFTER = 600.0
"""Seconds without a write after which an import's temporary file is taken as abandoned (its process died)."""
EVENT_STEP = 10
"""Percent between two progress events on the event bus (the operation's progress moves at every percent)."""


def store_dir(config: HostConfig) -> Path:
    """data_dir/images-store, 0710 root:hypervisor_group like the VM directories: QEMU must reach an image
    through the overlay on it, by path, and nobody may list the store."""
    directory = config.image_store_dir
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
    files.private_dir(directory, *files.hypervisor_access(config.hypervisor_group))
    return directory


def file_access(config: HostConfig) -> tuple[int, int | None]:
    """Mode and gid of an image file: QEMU reads it through its group, owned by root so that no QEMU can write
    it (libvirt is told not to relabel it). No group (QEMU runs as root): 0600; a group this host lacks: 0644."""
    if not config.hypervisor_group:
        return files.PRIVATE_FILE, None
    gid = files.group_id(config.hypervisor_group)
    return (files.LOG_FILE, gid) if gid is not None else (0o644, None)


def import_image(
    core: "Core",
    source: str,
    name: str,
    *,
    sha256: str | None = None,
    fmt: str = "auto",
    uuid: str | None = None,
    progress: ImportProgress | None = None,
) -> ImageRecord:
    """Copy or download `source` into the store, check it, record it. A refusal (SpecError for bad input,
    HostResourceError for a host or network failure, Conflict for a name in use) leaves no file and no row."""
    image_uuid = _check_request(core, source, name, sha256=sha256, fmt=fmt, uuid=uuid)
    config = core.config
    directory = store_dir(config)
    image_files.sweep(directory, max(SWEEP_AFTER, 4 * config.image_download_timeout))
    report = _reporter(core, name, progress)
    try:
        fetched = image_files.fetch(
            source,
            directory,
            config.image_max_bytes,
            config.image_download_timeout,
            report,
            allowed_hosts=config.allowed_image_hosts,
        )
    except image_files.NotAnImage as exc:
        raise SpecError([Problem("source", str(exc))]) from None
    except HostResourceError as exc:
        raise HostResourceError(f"source: {exc.message}", exc.detail) from None
    try:
        if sha256 is not None and fetched.sha256 != sha256.lower():
            raise SpecError([Problem("sha256", f"the image's sha256 is {fetched.sha256}, not {sha256.lower()}")])
        try:
            probed = image_files.probe(fetched.path, fmt, fetched.size)  # type: ignore[arg-type]
        except image_files.NotAnImage as exc:
            raise SpecError([Problem("source", f"{source}: {exc}")]) from None
        final = directory / f"{image_uuid}.{probed.format}"
        record = ImageRecord(
            name=name,
            uuid=image_uuid,
            kind="disk",
            format=probed.format,
            virtual_size=probed.virtual_size,
            sha256=fetched.sha256,
            source=source,
            path=str(final),
            imported_at=time.time(),
        )
        image_files.place(fetched, final, *file_access(config))
        try:
            core.store.insert_image(record)
        except BaseException:
            final.unlink(missing_ok=True)
            raise
    finally:
        fetched.path.unlink(missing_ok=True)
    core.events.publish(VmEvent(vm="", uuid=image_uuid, type="image", state="imported", reason=f"image {name}"))
    return record


def register_image(
    store: Store,
    *,
    name: str,
    kind: ImageKind,
    path: Path,
    fmt: str,
    virtual_size: int,
    sha256: str,
    source: str,
    uuid: str | None = None,
) -> ImageRecord:
    """Record an image already made inside the store directory (the OCI pull registers its layouts so, with
    kind "oci", fmt "oci-layout"); names follow the import's rules. Conflict when the name or uuid is taken."""
    problems = _name_problems(name)
    if problems:
        raise SpecError(problems)
    record = ImageRecord(
        name=name,
        uuid=uuid or str(uuidlib.uuid4()),
        kind=kind,
        format=fmt,
        virtual_size=virtual_size,
        sha256=sha256,
        source=source,
        path=str(path),
        imported_at=time.time(),
    )
    store.insert_image(record)
    return record


def get_image(store: Store, name_or_uuid: str) -> ImageRecord:
    record = store.find_image(name_or_uuid)
    if record is None:
        raise NotFound(f"no image named {name_or_uuid} in the image store")
    return record


def delete_image(core: "Core", name: str) -> None:
    """Refused (Conflict, naming them) while any VM's disk or container uses the image; then row, then file."""
    record = get_image(core.store, name)
    users = users_of(core.store, record)
    if users:
        raise Conflict(f"image {record.name} is in use by {', '.join(users)}; delete those first")
    core.store.delete_image(record.name)
    image_files.remove(Path(record.path))


def users_of(store: Store, image: ImageRecord) -> list[str]:
    """Names of the VMs whose stored spec uses the image: an image disk naming it (by name, uuid or file), or a
    container whose rootfs is that image (the stored form of `container.image`)."""
    names = {image.name, image.uuid}
    users = []
    for vm in store.list_vms():
        rootfs = (vm.spec.get("container") or {}).get("rootfs") or {}
        by_container = rootfs.get("type") == "image" and (
            rootfs.get("image") in names or rootfs.get("layout") == image.path
        )
        if by_container or any(_uses(disk, image, names) for disk in vm.spec.get("disks", [])):
            users.append(vm.name)
    return users


def _uses(disk: dict[str, Any], image: ImageRecord, names: set[str]) -> bool:
    source = disk.get("source", {})
    backing = source.get("backing") or [{}]
    return source.get("type") == "image" and (source.get("image") in names or backing[0].get("path") == image.path)


def view(record: ImageRecord) -> dict[str, Any]:
    """What `image list/get` and /v1/images show."""
    return {**vars(record), "virtual_size_human": format_size(record.virtual_size)}


def resolve_disks(spec: VMSpec, store: Store) -> list[Problem]:
    """Point every image disk at its image's file and recorded format (read from the store, never from the
    file), checking the image exists, is a disk image, and is no bigger than the disk asks."""
    problems = []
    for index, disk in enumerate(spec.disks):
        source, where = disk.source, f"disks.{index}.source"
        if not isinstance(source, ImageDisk):
            continue
        record = store.find_image(source.image)
        if record is None:
            problems.append(Problem(f"{where}.image", f"no image named {source.image} in the image store"))
        elif record.kind != "disk":
            problems.append(Problem(f"{where}.image", f"image {record.name} is an {record.kind} image, not a disk"))
        elif source.size is not None and source.size < record.virtual_size:
            problems.append(
                Problem(
                    f"{where}.size",
                    f"{format_size(source.size)} is smaller than image {record.name}'s virtual size "
                    f"{format_size(record.virtual_size)}",
                )
            )
        else:
            source.backing = [BackingImage(path=Path(record.path), format=record.format)]
    return problems


def _check_request(core: "Core", source: str, name: str, *, sha256: str | None, fmt: str, uuid: str | None) -> str:
    """Every problem with the request at once (SpecError), before anything is fetched; the image's uuid."""
    problems = _name_problems(name)
    if sha256 is not None and not SHA256_RE.match(sha256):
        problems.append(Problem("sha256", "must be 64 hexadecimal digits"))
    if fmt not in get_args(ImportFormat):
        problems.append(Problem("format", f"must be one of {', '.join(get_args(ImportFormat))}, got {fmt!r}"))
    image_uuid = str(uuidlib.uuid4())
    if uuid is not None:
        try:
            image_uuid = str(uuidlib.UUID(uuid))
        except ValueError:
            problems.append(Problem("uuid", f"must be a UUID, got {uuid!r}"))
    problems += _source_problems(source, HostPaths.of(core.config), core.config.allowed_image_hosts)
    if problems:
        raise SpecError(problems)
    if core.store.find_image(name) is not None:
        raise Conflict(f"name: an image named {name} already exists")
    if core.store.find_image(image_uuid) is not None:
        raise Conflict(f"uuid: an image with uuid {image_uuid} already exists")
    return image_uuid


def _name_problems(name: str) -> list[Problem]:
    if not re.match(IMAGE_NAME_PATTERN, name):
        return [Problem("name", f"must match {IMAGE_NAME_PATTERN}, got {name!r}")]
    try:
        uuidlib.UUID(name)
    except ValueError:
        return []
    return [Problem("name", "must not look like a UUID (images are found by name or uuid)")]


def _source_problems(source: str, paths: HostPaths, allowed_hosts: tuple[str, ...] | None) -> list[Problem]:
    """A URL is http(s) to an allowed host; a local file is an absolute path under allowed_paths (an API caller
    must not copy /etc/shadow into a disk image), refused before anything looks at it."""
    if image_files.is_url(source):
        host = image_files.url_host(source)
        if allowed_hosts is not None and not registry.listed(host, allowed_hosts):
            return [Problem("source", f"{host} is not in allowed_image_hosts (config)")]
        return []
    if "://" in source:
        return [
            Problem("source", f"only http:// and https:// URLs are fetched, not {source.split(':', maxsplit=1)[0]}")
        ]
    path = Path(source)
    if not path.is_absolute():
        return [Problem("source", f"must be an absolute path or an http(s) URL, got {source!r}")]
    refusal = paths.refusal(path, "file")
    if refusal:
        return [Problem("source", refusal)]
    if not path.is_file():
        return [Problem("source", f"{source} is not a regular file")]
    return []


def _reporter(core: "Core", name: str, progress: ImportProgress | None) -> ImportProgress:
    """The caller's progress callback, else the engine's progress sink (an API operation's `progress`) at every
    percent, with an event on the bus every EVENT_STEP percent."""
    if progress is not None:
        return progress
    last = {"percent": -1}

    def report(done: int, total: int | None) -> None:
        percent = done * 100 // total if total else -1
        if total and percent == last["percent"]:
            return
        if not total and done - last.get("done", 0) < 8 << 20 and done:
            return
        last.update(percent=percent, done=done)
        shown = f"{done}/{total if total else '?'} bytes"
        core.progress(f"importing {name}: {shown}")
        if total and percent % EVENT_STEP == 0:
            core.events.publish(
                VmEvent(vm="", uuid="", type="image", state="importing", reason=f"image {name}: {percent}% ({shown})")
            )

    return report
