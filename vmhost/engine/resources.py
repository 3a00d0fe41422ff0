"""Host resources a VM owns (its directory, disks, console log) and the host checks before any are made."""

import os
import shutil
import stat
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from vmhost.config import HostConfig
from vmhost.drivers.base import Resources
from vmhost.engine import snapshot_layers
from vmhost.engine.rollback import Rollback
from vmhost.errors import HostResourceError
from vmhost.host import files
from vmhost.render.cloudinit import Seed, needs_seed, render_seed
from vmhost.spec import Problem, VMSpec
from vmhost.spec.cloud_init import keep_masked_secrets
from vmhost.spec.disk import BackingImage, BlockDisk, FileDisk, ImageDisk, NewDisk, OverlayDisk
from vmhost.storage import chains, host_paths, qemu_img
from vmhost.storage.host_paths import HostPaths
from vmhost.storage.seed import password_hashes, write_seed


@dataclass
class Plan:
    """What a VM needs on this host; `problems` non-empty means nothing may be created.

    resolved: targets whose format or backing chain this plan wrote into the spec, read from the image or
    carried over from the VM's stored spec; the caller stores the spec so that they are never read again.
    """

    vm_dir: Path
    resources: Resources
    new_disks: list[tuple[Path, NewDisk | OverlayDisk | ImageDisk]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    seed: Seed | None = None
    """The NoCloud seed to write to resources.seed_iso; None: the VM has no seed (and must keep none)."""


SEED_ISO = "seed.iso"
SEED_DRIVERS = ("libvirt", "xen")
"""VM drivers that attach the NoCloud seed; SmartOS tells the guest through its metadata service instead."""


def vm_dir(data_dir: Path, uuid: str) -> Path:
    """Everything vmhost keeps for one VM (owned disks, console log) lives here, keyed by UUID."""
    return data_dir / "vms" / uuid


def console_log(spec: VMSpec, data_dir: Path) -> Path:
    """Where the serial console (a container's stdout and stderr) is logged."""
    return spec.console.log_file or vm_dir(data_dir, str(spec.uuid)) / "console.log"


def _readable_file(path: Path, where: str, what: str) -> list[Problem]:
    if not path.exists():
        return [Problem(where, f"{what} {path} does not exist")]
    if not path.is_file():
        return [Problem(where, f"{what} {path} is not a regular file")]
    if not os.access(path, os.R_OK):
        return [Problem(where, f"{what} {path} is not readable")]
    return []


def _unresolved(source: FileDisk | OverlayDisk) -> bool:
    """Whether the image's format or backing chain is still to be read (once) from the image itself."""
    if isinstance(source, OverlayDisk):
        return source.backing is None
    return source.format == "auto" or (source.format != "raw" and source.backing is None)


def _carry_over(spec: VMSpec, known: VMSpec | None) -> list[str]:
    """Give unresolved user images what the stored spec recorded for the same image (an update or a ZStack
    start sends `format: auto` again): read once means never read again."""
    files: dict[Path, FileDisk] = {}
    overlays: dict[tuple[str | None, Path], OverlayDisk] = {}
    for disk in known.disks if known else []:
        if isinstance(disk.source, FileDisk) and not _unresolved(disk.source):
            files[disk.source.path] = disk.source
        elif isinstance(disk.source, OverlayDisk) and not _unresolved(disk.source):
            overlays[(disk.target, disk.source.base)] = disk.source
    carried = []
    for disk in spec.disks:
        source = disk.source
        if isinstance(source, FileDisk) and _unresolved(source):
            old = files.get(source.path)
            if old is not None and source.format in ("auto", old.format):
                source.format, source.backing = old.format, old.backing
                carried.append(str(disk.target))
        elif isinstance(source, OverlayDisk) and _unresolved(source):
            previous = overlays.get((disk.target, source.base))
            if previous is not None:
                source.backing = previous.backing
                carried.append(str(disk.target))
    return carried


def _resolve(source: FileDisk | OverlayDisk, where: str, paths: HostPaths) -> list[Problem]:
    """Read the image's format (when auto) and its backing chain into the spec, refusing chains that leave
    the allowed paths."""
    image = source.base if isinstance(source, OverlayDisk) else source.path
    forced = None if isinstance(source, OverlayDisk) or source.format == "auto" else source.format
    try:
        fmt, backing = chains.inspect(image, forced, paths)
    except chains.Refused as exc:
        return [Problem(where, str(exc))]
    if isinstance(source, OverlayDisk):
        source.backing = [BackingImage(path=source.base, format=fmt), *backing]
    else:
        source.format, source.backing = fmt, None if fmt == "raw" else backing
    return []


def _user_disk(source: FileDisk | BlockDisk | OverlayDisk, where: str, paths: HostPaths) -> tuple[list[Problem], bool]:
    """Problems with a disk the user brings (or an overlay's base), and whether its image was read now."""
    if isinstance(source, BlockDisk):
        if not source.path.exists() or not stat.S_ISBLK(source.path.stat().st_mode):
            return [Problem(f"{where}.path", f"{source.path} is not a block device on this host")], False
        return [], False
    field_name, what = ("base", "base image") if isinstance(source, OverlayDisk) else ("path", "disk file")
    image = source.base if isinstance(source, OverlayDisk) else source.path
    problems = _readable_file(image, f"{where}.{field_name}", what)
    if problems or not _unresolved(source):
        return problems, False
    return _resolve(source, f"{where}.{field_name}", paths), True


def _other_file_problems(spec: VMSpec, refused: set[str]) -> list[Problem]:
    files = [(f"cdroms.{index}.iso", cdrom.iso, "ISO image") for index, cdrom in enumerate(spec.cdroms)]
    if spec.boot.kernel:
        files.append(("boot.kernel.kernel", spec.boot.kernel.kernel, "kernel"))
        files.append(("boot.kernel.initrd", spec.boot.kernel.initrd, "initrd"))
    problems = []
    for where, path, what in files:
        if path is not None and where not in refused:
            problems += _readable_file(path, where, what)
    log_file = spec.console.log_file
    if log_file and "console.log_file" not in refused and not log_file.parent.is_dir():
        problems.append(Problem("console.log_file", f"directory {log_file.parent} does not exist"))
    return problems


def plan(spec: VMSpec, config: HostConfig, known: VMSpec | None = None) -> Plan:
    """Check every host path the spec names (first of all: is it allowed at all) and decide where owned disks go.

    A user image whose format or backing chain the spec does not record yet (format auto, a qcow2 just
    brought, a new overlay's base) is read here, once, and the answer written into the spec; `known` is the
    VM's stored spec, whose records are reused. Creates nothing on the host.
    """
    paths = HostPaths.of(config)
    directory = vm_dir(config.data_dir, str(spec.uuid))
    resolved = _carry_over(spec, known)
    problems = host_paths.problems(spec, paths)
    refused = {problem.path for problem in problems}
    disk_paths: dict[str, Path] = {}
    new_disks: list[tuple[Path, NewDisk | OverlayDisk | ImageDisk]] = []
    for index, disk in enumerate(spec.disks):
        where, source, target = f"disks.{index}.source", disk.source, disk.target
        assert target is not None, "parse_spec assigns every target"
        if isinstance(source, NewDisk | OverlayDisk | ImageDisk):
            fmt = source.format if isinstance(source, NewDisk) else "qcow2"
            disk_paths[target] = directory / "disks" / f"{target}.{fmt}"
            new_disks.append((disk_paths[target], source))
        if isinstance(source, FileDisk | BlockDisk | OverlayDisk) and not any(
            path.startswith(f"{where}.") for path in refused
        ):
            found, read = _user_disk(source, where, paths)
            problems += found
            resolved += [target] if read and not found else []
    problems += _other_file_problems(spec, refused)
    seed = render_seed(spec) if needs_seed(spec) and config.vm_driver in SEED_DRIVERS else None
    resources = Resources(
        console_log=directory / "console.log",
        disk_paths=disk_paths,
        owner=str(config.data_dir),
        seed_iso=directory / SEED_ISO if seed else None,
        disk_layers=snapshot_layers.layers(directory),
    )
    return Plan(
        vm_dir=directory, resources=resources, new_disks=new_disks, problems=problems, resolved=resolved, seed=seed
    )


def allocate(plan: Plan, rollback: Rollback, keep: frozenset[Path] = frozenset()) -> None:
    """Create the VM directory and every owned disk not in `keep`; register their removal on rollback."""
    if not plan.vm_dir.exists():
        files.inherited_dir(plan.vm_dir)
        rollback.add(f"remove {plan.vm_dir}", lambda: shutil.rmtree(plan.vm_dir, ignore_errors=True))
    files.inherited_dir(plan.vm_dir / "disks")
    for path, source in plan.new_disks:
        if path in keep:
            continue
        if path.exists():
            raise HostResourceError(f"refusing to overwrite existing disk image {path}")
        rollback.add(f"remove {path}", partial(path.unlink, missing_ok=True))
        if isinstance(source, NewDisk):
            qemu_img.create_image(path, source.format, source.size)
        else:
            assert source.backing, "plan records the base's (the image's) file and format"
            qemu_img.create_overlay(path, source.backing[0].path, source.backing[0].format, source.size)
    sync_seed(plan)


def with_seed_secrets(document: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A spec the hypervisor recorded (password hashes masked) with the hashes its seed holds put back."""
    hashes = password_hashes(directory / SEED_ISO)
    users = [{"name": name, "password_hash": value} for name, value in hashes.items()]
    return keep_masked_secrets(document, {"cloud_init": {"users": users}})


def sync_seed(plan: Plan) -> None:
    """Make the VM's seed ISO say what its spec says (rebuilt whole: its instance-id follows the content), or
    remove it when the spec no longer asks for one."""
    if plan.seed is None:
        (plan.vm_dir / SEED_ISO).unlink(missing_ok=True)
    else:
        write_seed(plan.seed, plan.vm_dir / SEED_ISO)


def release(directory: Path, paths: list[Path]) -> None:
    """Remove owned disks and the VM directory. User-supplied paths are never in `paths`."""
    for path in paths:
        path.unlink(missing_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
