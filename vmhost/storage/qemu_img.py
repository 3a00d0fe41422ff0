"""Create and inspect disk images with qemu-img (argv lists only)."""

import json
from dataclasses import dataclass
from pathlib import Path

from vmhost.errors import HostResourceError
from vmhost.host import commands, files

QEMU_IMG = "qemu-img"
QEMU_IMG_TIMEOUT = 120.0


@dataclass(frozen=True)
class ImageInfo:
    """What qemu-img read from one image's header; its backing file is named, never opened."""

    format: str
    virtual_size: int
    backing_file: str | None = None
    """As resolved by qemu-img (full-backing-filename): a path, or a protocol string such as json:{...}."""
    backing_format: str | None = None
    """The backing file's format as the header records it; None when the header does not say."""
    data_file: str | None = None
    """A qcow2 external data file (where the guest's bytes really are), named in the header; None: none."""


def _run(argv: list[str]) -> str:
    return commands.run(
        argv,
        QEMU_IMG_TIMEOUT,
        translate=lambda done: HostResourceError(f"qemu-img {argv[1]} failed", detail=done.stderr.strip()),
        missing="qemu-img is not installed (Debian package qemu-utils)",
        timed_out=lambda: HostResourceError(f"qemu-img {argv[1]} did not finish within {QEMU_IMG_TIMEOUT:g}s"),
    ).stdout


def image_info(path: Path, fmt: str | None = None) -> ImageInfo:
    """Read one image's header as `fmt`, or probe its format when fmt is None. Without --backing-chain qemu-img
    does not open the backing file, so a header naming /etc/shadow reads nothing of it; `-U` lets us read images
    a running VM holds open."""
    forced = ["-f", fmt] if fmt else []
    data = json.loads(_run([QEMU_IMG, "info", "-U", *forced, "--output=json", "--", str(path)]))
    return ImageInfo(
        format=data["format"],
        virtual_size=int(data["virtual-size"]),
        backing_file=data.get("full-backing-filename") or data.get("backing-filename"),
        backing_format=data.get("backing-filename-format"),
        data_file=data.get("format-specific", {}).get("data", {}).get("data-file"),
    )


def create_image(path: Path, fmt: str, size: int) -> None:
    """Root-only (0600): libvirt hands the file to QEMU's user while the VM runs (dynamic ownership)."""
    _run([QEMU_IMG, "create", "-q", "-f", fmt, "--", str(path), str(size)])
    path.chmod(files.PRIVATE_FILE)


def create_overlay(path: Path, base: Path, base_format: str, size: int | None) -> None:
    """A qcow2 overlay pinned to the base format the spec recorded (never probed again); root-only (0600)."""
    argv = [QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), "--", str(path)]
    if size is not None:
        argv.append(str(size))
    _run(argv)
    path.chmod(files.PRIVATE_FILE)


def resize_image(path: Path, fmt: str, size: int, *, shrink: bool = False) -> None:
    """Set a stopped VM's image to `size` bytes; `shrink` only to undo a growth nobody has written to yet."""
    _run([QEMU_IMG, "resize", "-q", "-f", fmt, *(["--shrink"] if shrink else []), "--", str(path), str(size)])


def commit_overlay(path: Path) -> None:
    """Write a stopped VM's qcow2 overlay down into the image below it (named in its header, with its format: the
    overlays vmhost has libvirt make record both); the overlay may then go."""
    _run([QEMU_IMG, "commit", "-q", "-d", "-f", "qcow2", "--", str(path)])
