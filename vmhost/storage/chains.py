"""A user image's format and backing chain, read once when its disk is added, then kept in the spec.

Why once: a guest writes what it likes into its own disk. A raw disk probed again later can carry a qcow2 header
the guest wrote, naming /etc/shadow or /dev/sda as its backing file, which QEMU would then open for the guest.
Why level by level: `qemu-img info` without --backing-chain reads one header and opens no backing file, so a
backing file is checked against the allowed paths before anything opens it.
"""

import os
import stat
from pathlib import Path
from typing import cast, get_args

from vmhost.errors import HostResourceError
from vmhost.spec.disk import BackingImage, ImageFormat
from vmhost.storage import qemu_img
from vmhost.storage.host_paths import HostPaths

FORMATS: tuple[str, ...] = get_args(ImageFormat)
MAX_DEPTH = 16
"""Longer chains are refused (also what stops a loop that the seen-set would not)."""


class Refused(Exception):
    """The image cannot be used as it is; the message says why, naming the image."""


def inspect(path: Path, fmt: str | None, paths: HostPaths) -> tuple[ImageFormat, list[BackingImage]]:
    """The image's format (probed when fmt is None) and every image under it, each checked before it is read."""
    info = _info(path, fmt)
    top = _supported(path, info.format)
    chain: list[BackingImage] = []
    seen = {os.path.realpath(path)}
    while info.backing_file is not None:
        backing = _allowed_backing(path if not chain else chain[-1].path, info.backing_file, paths, seen)
        if len(chain) == MAX_DEPTH:
            raise Refused(f"the backing chain of {path} is longer than {MAX_DEPTH} images")
        info = _info(backing, info.backing_format)
        kind = "block" if stat.S_ISBLK(backing.stat().st_mode) else "file"
        chain.append(BackingImage(type=kind, path=backing, format=_supported(backing, info.format)))
        seen.add(str(backing))
    return top, chain


def _info(path: Path, fmt: str | None) -> qemu_img.ImageInfo:
    try:
        return qemu_img.image_info(path, fmt)
    except HostResourceError as exc:
        raise Refused(f"{path} is not a readable disk image ({exc.detail or exc.message})") from None


def _supported(path: Path, fmt: str) -> ImageFormat:
    if fmt not in FORMATS:
        raise Refused(f"{path} is a {fmt} image; vmhost takes {', '.join(FORMATS)}")
    return cast(ImageFormat, fmt)


def _allowed_backing(image: Path, named: str, paths: HostPaths, seen: set[str]) -> Path:
    """The backing file `image` names, resolved, once it is known to be a plain path the host allows."""
    if not named.startswith("/"):
        raise Refused(f"{image} names backing file {named!r}, which is not a plain host path")
    real = os.path.realpath(named)
    refusal = paths.refusal(Path(named), "backing")
    if refusal:
        raise Refused(f"{image} names backing file {named}: {refusal}")
    if real in seen:
        raise Refused(f"the backing chain of {image} loops back to {real}")
    return Path(real)
