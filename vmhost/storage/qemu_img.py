"""Create and inspect disk images with qemu-img (argv lists only)."""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vmhost.errors import HostResourceError

QEMU_IMG = "qemu-img"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
    except FileNotFoundError:
        raise HostResourceError("qemu-img is not installed (Debian package qemu-utils)") from None
    if result.returncode != 0:
        raise HostResourceError(f"qemu-img {argv[1]} failed", detail=result.stderr.strip())
    return result.stdout


def image_info(path: Path) -> ImageInfo:
    """Probe an existing image; `-U` lets us read images a running VM holds open."""
    data = json.loads(_run([QEMU_IMG, "info", "-U", "--output=json", "--", str(path)]))
    return ImageInfo(format=data["format"], virtual_size=int(data["virtual-size"]))


def create_image(path: Path, fmt: str, size: int) -> None:
    _run([QEMU_IMG, "create", "-q", "-f", fmt, "--", str(path), str(size)])


def create_overlay(path: Path, base: Path, size: int | None) -> None:
    """A qcow2 overlay whose backing format is pinned, so the base is never re-probed by QEMU."""
    base_format = image_info(base).format
    argv = [QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", base_format, "-b", str(base), "--", str(path)]
    if size is not None:
        argv.append(str(size))
    _run(argv)
