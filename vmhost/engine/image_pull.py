"""`image pull`: an OCI image from a registry into the image store (kind "oci"), and `container.image` resolved
through the store into the layout the runc driver unpacks (with its whiteout and escape protections).

The pulled layout is checked by the same unpacker before it is registered (one linux image of this host's
architecture, layers it can apply), so an image the host could never run is refused at pull, leaving nothing.
"""

import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from vmhost.drivers.runc import image
from vmhost.engine import images
from vmhost.engine.events import VmEvent
from vmhost.errors import Conflict
from vmhost.spec import Problem, SpecError, VMSpec
from vmhost.spec.container import ImageRootfs
from vmhost.spec.disk import IMAGE_NAME_PATTERN
from vmhost.storage import registry
from vmhost.store.sqlite import ImageRecord, Store

if TYPE_CHECKING:
    from vmhost.engine.core import Core

KIND: images.ImageKind = "oci"
FORMAT = "oci-layout"


def default_name(reference: registry.Reference) -> str:
    """The repository's last component (`…/library/busybox:1.36` -> `busybox`)."""
    return reference.repository.rsplit("/", 1)[-1]


def pull(core: "Core", text: str, name: str | None = None, progress: registry.Progress | None = None) -> ImageRecord:
    """Pull `text` into <image store>/<uuid>.oci and register it as `name` (default: the repository's last
    component); a failure leaves no files and no row. Progress (skopeo's lines) goes to `progress`, else to the
    engine's sink (an API operation's `progress`)."""
    config, store, progress = core.config, core.store, progress or core.progress
    try:
        reference = registry.parse_reference(text)
    except registry.PullError as exc:
        raise SpecError([Problem("reference", exc.message)]) from None
    allowed = config.allowed_registries
    if allowed is not None and not registry.listed(reference.registry, allowed):
        raise SpecError([Problem("reference", f"registry {reference.registry} is not in allowed_registries")])
    name = name or default_name(reference)
    if not re.match(IMAGE_NAME_PATTERN, name):
        raise SpecError([Problem("name", f"{name!r} is not an image name (letters, digits, '.', '_', '-')")])
    if store.find_image(name) is not None:
        raise Conflict(f"an image named {name} already exists; delete it first or pull with another --name")
    image_uuid = str(uuid.uuid4())
    layout = images.store_dir(config) / f"{image_uuid}.oci"
    pulled = registry.pull(
        text,
        layout,
        skopeo=config.skopeo_command,
        insecure_registries=config.insecure_registries,
        max_bytes=config.image_pull_max_bytes,
        timeout=config.image_pull_timeout,
        progress=progress,
    )
    try:
        image.inspect(layout, image.STORE_REF)
        record = images.register_image(
            store,
            name=name,
            kind=KIND,
            path=layout,
            fmt=FORMAT,
            virtual_size=pulled.size,
            sha256=pulled.digest.removeprefix("sha256:"),
            source=f"{reference.name}{f':{reference.tag}' if reference.tag else ''}@{pulled.digest}",
            uuid=image_uuid,
        )
    except BaseException:
        shutil.rmtree(layout, ignore_errors=True)
        raise
    progress(f"pulled {record.source} as {name}")
    core.events.publish(VmEvent(vm="", uuid=image_uuid, type="image", state="pulled", reason=f"image {name}"))
    return record


def resolve_container_image(spec: VMSpec, store: Store) -> list[Problem]:
    """Write the store's layout and digest into a `container.image` rootfs (what the spec recorded is never
    trusted: the store says where the image is); a missing or non-OCI image is a problem naming the field."""
    rootfs = spec.container.rootfs if spec.container else None
    if not isinstance(rootfs, ImageRootfs):
        return []
    record = store.find_image(rootfs.image)
    rootfs.layout = rootfs.digest = None
    if record is None:
        return [Problem("container.rootfs.image", f"no image {rootfs.image} in the image store (vmhost image pull)")]
    if record.kind != KIND:
        return [Problem("container.rootfs.image", f"image {rootfs.image} is a {record.kind} image, not an OCI image")]
    rootfs.layout, rootfs.digest = Path(record.path), f"sha256:{record.sha256}"
    return []
