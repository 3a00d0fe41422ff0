"""Host resources a VM owns (its directory, disks, console log) and the host checks before any are made."""

import os
import shutil
import stat
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from vmhost.drivers.base import Resources
from vmhost.engine.rollback import Rollback
from vmhost.errors import HostResourceError
from vmhost.spec import Problem, VMSpec
from vmhost.spec.disk import BlockDisk, FileDisk, NewDisk, OverlayDisk
from vmhost.storage import qemu_img


@dataclass
class Plan:
    """What a VM needs on this host; `problems` non-empty means nothing may be created."""

    vm_dir: Path
    resources: Resources
    new_disks: list[tuple[Path, NewDisk | OverlayDisk]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def vm_dir(data_dir: Path, uuid: str) -> Path:
    """Everything vmhost keeps for one VM (owned disks, console log) lives here, keyed by UUID."""
    return data_dir / "vms" / uuid


def _readable_file(path: Path, where: str, what: str) -> list[Problem]:
    if not path.exists():
        return [Problem(where, f"{what} {path} does not exist")]
    if not path.is_file():
        return [Problem(where, f"{what} {path} is not a regular file")]
    if not os.access(path, os.R_OK):
        return [Problem(where, f"{what} {path} is not readable")]
    return []


def _probe(path: Path, where: str) -> tuple[str | None, list[Problem]]:
    try:
        return qemu_img.image_info(path).format, []
    except HostResourceError as exc:
        return None, [Problem(where, f"{path} is not a readable disk image ({exc.detail or exc.message})")]


def _existing_disk(source: FileDisk | BlockDisk, where: str) -> tuple[list[Problem], str | None]:
    """Problems with a user-supplied disk, and its format when qemu-img must detect it."""
    if isinstance(source, BlockDisk):
        if not source.path.exists() or not stat.S_ISBLK(source.path.stat().st_mode):
            return [Problem(f"{where}.path", f"{source.path} is not a block device on this host")], None
        return [], None
    problems = _readable_file(source.path, f"{where}.path", "disk file")
    if problems or source.format != "auto":
        return problems, None
    detected, problems = _probe(source.path, f"{where}.path")
    return problems, detected


def _other_file_problems(spec: VMSpec) -> list[Problem]:
    problems = []
    for index, cdrom in enumerate(spec.cdroms):
        if cdrom.iso is not None:
            problems += _readable_file(cdrom.iso, f"cdroms.{index}.iso", "ISO image")
    if spec.boot.kernel:
        problems += _readable_file(spec.boot.kernel.kernel, "boot.kernel.kernel", "kernel")
        if spec.boot.kernel.initrd:
            problems += _readable_file(spec.boot.kernel.initrd, "boot.kernel.initrd", "initrd")
    if spec.console.log_file and not spec.console.log_file.parent.is_dir():
        problems.append(Problem("console.log_file", f"directory {spec.console.log_file.parent} does not exist"))
    return problems


def plan(spec: VMSpec, data_dir: Path) -> Plan:
    """Check every host path the spec names and decide where owned disks go. Touches nothing."""
    directory = vm_dir(data_dir, str(spec.uuid))
    disk_paths: dict[str, Path] = {}
    disk_formats: dict[str, str] = {}
    problems: list[Problem] = []
    new_disks: list[tuple[Path, NewDisk | OverlayDisk]] = []
    for index, disk in enumerate(spec.disks):
        where, source, target = f"disks.{index}.source", disk.source, disk.target
        assert target is not None, "parse_spec assigns every target"
        if isinstance(source, NewDisk | OverlayDisk):
            fmt = source.format if isinstance(source, NewDisk) else "qcow2"
            disk_paths[target] = directory / "disks" / f"{target}.{fmt}"
            new_disks.append((disk_paths[target], source))
            if isinstance(source, OverlayDisk):
                found = _readable_file(source.base, f"{where}.base", "base image")
                problems += found or _probe(source.base, f"{where}.base")[1]
        elif isinstance(source, FileDisk | BlockDisk):
            found, detected = _existing_disk(source, where)
            problems += found
            if detected:
                disk_formats[target] = detected
    problems += _other_file_problems(spec)
    resources = Resources(
        console_log=directory / "console.log", disk_paths=disk_paths, disk_formats=disk_formats, owner=str(data_dir)
    )
    return Plan(vm_dir=directory, resources=resources, new_disks=new_disks, problems=problems)


def allocate(plan: Plan, rollback: Rollback, keep: frozenset[Path] = frozenset()) -> None:
    """Create the VM directory and every owned disk not in `keep`; register their removal on rollback."""
    if not plan.vm_dir.exists():
        plan.vm_dir.mkdir(parents=True, mode=0o711)
        rollback.add(f"remove {plan.vm_dir}", lambda: shutil.rmtree(plan.vm_dir, ignore_errors=True))
    (plan.vm_dir / "disks").mkdir(exist_ok=True, mode=0o711)
    for path, source in plan.new_disks:
        if path in keep:
            continue
        if path.exists():
            raise HostResourceError(f"refusing to overwrite existing disk image {path}")
        rollback.add(f"remove {path}", partial(path.unlink, missing_ok=True))
        if isinstance(source, NewDisk):
            qemu_img.create_image(path, source.format, source.size)
        else:
            qemu_img.create_overlay(path, source.base, source.size)


def release(directory: Path, paths: list[Path]) -> None:
    """Remove owned disks and the VM directory. User-supplied paths are never in `paths`."""
    for path in paths:
        path.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
