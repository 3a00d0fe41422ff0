"""Which host paths a spec may name: files under the configured roots, and the block devices the operator listed.

vmhost runs as root and hands every path a spec names to QEMU, virtlogd or runc, which open it with root's
reach. So each path is checked after resolving symlinks and '..' (a link under a root that points elsewhere is
refused), and before anything else looks at it (a refusal says nothing about whether the file exists).
"""

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vmhost.config import HostConfig
from vmhost.spec import Problem, VMSpec
from vmhost.spec.container import DirectoryRootfs, OciLayoutRootfs
from vmhost.spec.disk import BlockDisk, FileDisk, OverlayDisk

Kind = Literal["file", "block", "backing"]
"""file: under a root; block: an allowed block device; backing: either, depending on what is there."""


@dataclass(frozen=True)
class HostPaths:
    """roots: directories files may sit under; block_devices: exact device paths or '*'-ended prefixes;
    data_dir: vmhost's own state, reachable only through a root inside it (state.db, api-token, VM disks);
    image_store: the image store, allowed only as a backing file (overlays on its images), never as a disk."""

    roots: tuple[Path, ...]
    block_devices: tuple[str, ...]
    data_dir: Path
    image_store: Path | None = None

    @classmethod
    def of(cls, config: HostConfig) -> "HostPaths":
        return cls(config.path_roots, config.allowed_block_devices, config.data_dir, config.image_store_dir)

    def refusal(self, path: Path, kind: Kind) -> str | None:
        """Why a spec may not name `path`, or None when it may."""
        real = Path(os.path.realpath(path))
        if kind == "block" or (kind == "backing" and _is_block_device(real)):
            return self._block_refusal(path, real)
        if kind == "backing" and self.image_store and real.is_relative_to(os.path.realpath(self.image_store)):
            return None
        return self._file_refusal(path, real)

    def _file_refusal(self, path: Path, real: Path) -> str | None:
        data_dir = Path(os.path.realpath(self.data_dir))
        granting = [root for root in map(os.path.realpath, self.roots) if real.is_relative_to(root)]
        if real.is_relative_to(data_dir):
            granting = [root for root in granting if Path(root).is_relative_to(data_dir)]
        if granting:
            return None
        where = "vmhost's own data directory" if real.is_relative_to(data_dir) else "outside the allowed paths"
        roots = ", ".join(map(str, self.roots)) or "none"
        return f"{_shown(path, real)} is {where} (allowed: {roots}; config allowed_paths)"

    def _block_refusal(self, path: Path, real: Path) -> str | None:
        if not self.block_devices:
            return (
                f"block device {_shown(path, real)} refused: no block device is allowed (config allowed_block_devices)"
            )
        for entry in self.block_devices:
            if entry.endswith("*") and str(real).startswith(entry[:-1]):
                return None
            if not entry.endswith("*") and real == Path(os.path.realpath(entry)):
                return None
        listed = ", ".join(self.block_devices)
        return f"block device {_shown(path, real)} is not allowed (allowed: {listed}; config allowed_block_devices)"


def _shown(path: Path, real: Path) -> str:
    return str(path) if real == path else f"{path} (which resolves to {real})"


def _is_block_device(path: Path) -> bool:
    try:
        return stat.S_ISBLK(path.stat().st_mode)
    except OSError:
        return False


def named_paths(spec: VMSpec) -> Iterator[tuple[str, Path, Kind]]:
    """Every host path the spec names, with its field path and what kind of path it must be."""
    yield from _disk_paths(spec)
    for index, cdrom in enumerate(spec.cdroms):
        if cdrom.iso is not None:
            yield f"cdroms.{index}.iso", cdrom.iso, "file"
    if spec.boot.kernel:
        yield "boot.kernel.kernel", spec.boot.kernel.kernel, "file"
        if spec.boot.kernel.initrd:
            yield "boot.kernel.initrd", spec.boot.kernel.initrd, "file"
    if spec.console.log_file:
        yield "console.log_file", spec.console.log_file, "file"
    if spec.container:
        if isinstance(spec.container.rootfs, DirectoryRootfs | OciLayoutRootfs):
            yield "container.rootfs.path", spec.container.rootfs.path, "file"
        for index, mount in enumerate(spec.container.mounts):
            yield f"container.mounts.{index}.source", mount.source, "file"


def _disk_paths(spec: VMSpec) -> Iterator[tuple[str, Path, Kind]]:
    for index, disk in enumerate(spec.disks):
        where, source = f"disks.{index}.source", disk.source
        if isinstance(source, FileDisk):
            yield f"{where}.path", source.path, "file"
        elif isinstance(source, BlockDisk):
            yield f"{where}.path", source.path, "block"
        elif isinstance(source, OverlayDisk):
            yield f"{where}.base", source.base, "file"
        for number, image in enumerate(getattr(source, "backing", None) or []):
            yield f"{where}.backing.{number}.path", image.path, "block" if image.type == "block" else "backing"


def problems(spec: VMSpec, paths: HostPaths) -> list[Problem]:
    """One problem per named path the host does not allow."""
    found = []
    for where, path, kind in named_paths(spec):
        refusal = paths.refusal(path, kind)
        if refusal:
            found.append(Problem(where, refusal))
    return found
