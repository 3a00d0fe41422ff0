"""What the snapshot operations share: names, where disk-only overlays live, the rules a VM must meet, the listing.

Full snapshots are the hypervisor's own (libvirt: internal, in the qcow2 disks, with the memory state of a
running VM; SmartOS: ZFS). Disk-only snapshots on libvirt are external qcow2 overlays that vmhost names:
    <vm dir>/snapshots/<seq>-<snapshot>/<target>.qcow2
one directory per snapshot, `seq` ordering them. The files on disk say what the chain is: resources.plan reads
them (layers()), so that every definition vmhost writes (update, restart, recovery) has each disk's top overlay
as its source. Disk-only snapshots form a stack: only the newest one is reverted or deleted (merged).
"""

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmhost.engine import resources
from vmhost.engine.core import GONE, Core
from vmhost.engine.snapshot_layers import layers
from vmhost.engine.states import VmState
from vmhost.engine.stopping import define_from_store
from vmhost.errors import Conflict, NotFound
from vmhost.spec import Problem, SpecError, VMSpec
from vmhost.spec.disk import BlockDisk, Disk, FileDisk, NewDisk
from vmhost.storage import qemu_img
from vmhost.store.sqlite import SnapshotRecord, VmRecord

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
"""Safe as a path component, in libvirt XML and as a vmadm snapname (ZFS: [A-Za-z0-9-_.:%], 64 at most)."""
OVERLAY_DRIVERS = frozenset({"libvirt"})
"""Drivers whose disk-only snapshots are qcow2 overlays vmhost names, merges and reverts (the others snapshot
their storage natively: SmartOS's ZFS)."""


def check_name(snapshot: str) -> None:
    """Before the name reaches libvirt, vmadm or a path."""
    if not NAME.match(snapshot):
        raise SpecError(
            [Problem("snapshot", f"{snapshot!r} is not a snapshot name: 1-63 of A-Z a-z 0-9 . _ - (not first . _ -)")]
        )


def layer_dir_of(record: SnapshotRecord) -> Path | None:
    """The directory of a disk-only snapshot's overlays (None: it has none, e.g. a SmartOS one)."""
    return Path(next(iter(record.layers.values()))).parent if record.layers else None


def overlays_managed(core: Core, name: str) -> bool:
    return core.driver.for_name(name).kind in OVERLAY_DRIVERS


def find(core: Core, record: VmRecord, snapshot: str) -> SnapshotRecord:
    found = core.store.snapshots.get(record.uuid, snapshot)
    if found is None:
        raise NotFound(f"{record.name} has no snapshot {snapshot}")
    return found


def disk_format(disk: Disk) -> str | None:
    """The format of the image the disk opens, or None when it is no file vmhost can put an overlay on."""
    source = disk.source
    if isinstance(source, NewDisk):
        return source.format
    if isinstance(source, FileDisk):
        return None if source.format == "auto" else source.format
    if isinstance(source, BlockDisk) or getattr(source, "type", "") in ("iscsi", "rbd"):
        return None
    return "qcow2"  # overlays and image-store disks: vmhost's own qcow2 overlays


def refusals(spec: VMSpec, disk_only: bool, existing: list[SnapshotRecord]) -> list[str]:
    """Why a libvirt VM cannot have this snapshot (empty: it can)."""
    problems = []
    kinds = {s.disk_only for s in existing}
    if kinds and kinds != {disk_only}:
        other = ", ".join(s.name for s in existing)
        what = "full" if disk_only else "disk-only"
        problems.append(
            f"{spec.name} has {what} snapshots ({other}); a VM's snapshots are all full or all disk-only "
            "(libvirt 9.0 cannot revert one kind under the other): delete them first"
        )
    if not disk_only and spec.boot.firmware == "uefi":
        problems.append(
            f"{spec.name} boots UEFI firmware (pflash): libvirt 9.0 refuses internal snapshots of it; "
            "take a --disk-only snapshot"
        )
    for disk in spec.disks:
        fmt = disk_format(disk)
        if fmt is None:
            kind = getattr(disk.source, "type", "")
            problems.append(f"disk {disk.target} ({kind}) is not an image file vmhost can snapshot")
        elif not disk_only and fmt != "qcow2":
            problems.append(f"disk {disk.target} is {fmt}: a full snapshot needs qcow2 disks (or use --disk-only)")
    if not [d for d in spec.disks if not d.readonly]:
        problems.append(f"{spec.name} has no writable disk to hold a snapshot")
    return problems


def snapshot_targets(spec: VMSpec) -> list[str]:
    """The disks a disk-only snapshot puts an overlay on: every writable one (read-only disks do not change)."""
    return [str(disk.target) for disk in spec.disks if not disk.readonly]


def view(record: SnapshotRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "kind": "disk-only" if record.disk_only else "full",
        "vm_state": record.vm_state,
        "created_at": record.created_at,
        "layers": dict(record.layers),
    }


def list_snapshots(core: Core, name: str) -> list[dict[str, Any]]:
    """The store's snapshots of the VM, oldest first (a read: nothing is written)."""
    record = core.record(name)
    return [view(s) for s in core.store.snapshots.of_vm(record.uuid)]


def refuse_existing(core: Core, record: VmRecord, snapshot: str) -> None:
    if core.store.snapshots.get(record.uuid, snapshot) is not None:
        raise Conflict(f"{record.name} already has a snapshot {snapshot}")


def overlay_paths(directory: Path, targets: list[str]) -> Mapping[str, Path]:
    return {target: directory / f"{target}.qcow2" for target in targets}


def spec_digest(record: VmRecord) -> str:
    return hashlib.sha256(json.dumps(record.spec, sort_keys=True).encode()).hexdigest()


def check_quiesce(spec: VMSpec, disk_only: bool, state: VmState) -> None:
    if not disk_only:
        raise Conflict("--quiesce applies to disk-only snapshots (a full one saves the memory, consistent by itself)")
    if state != VmState.RUNNING:
        raise Conflict(f"cannot quiesce {spec.name}: it is {state.value}, and only a running guest can be frozen")
    if not spec.guest_agent:
        raise Conflict(
            f"cannot quiesce {spec.name}: it has no QEMU guest agent channel (guest_agent: false), so vmhost cannot "
            "freeze its filesystems; take the snapshot without --quiesce (crash-consistent)"
        )


def running(core: Core, name: str) -> bool:
    return core.driver.state(name) not in GONE


def merge_down(core: Core, name: str, layers: Mapping[str, Path]) -> None:
    """Each top overlay into the image below it: active block commit and pivot on a running VM, qemu-img commit
    on a stopped one. Idempotent: an overlay already merged (gone, or no longer the live top) is skipped."""
    live = running(core, name)
    for target, overlay in layers.items():
        if not overlay.exists():
            continue
        core.progress(f"merging {overlay.name} of disk {target}")
        if live:
            core.driver.merge_layer(name, target, overlay)
        else:
            qemu_img.commit_overlay(overlay)


def drop_layers(core: Core, name: str, directory: Path) -> None:
    """Remove a disk-only snapshot's overlay directory, then write the definition without it (its files are
    what resources.plan reads the chain from)."""
    shutil.rmtree(directory, ignore_errors=True)
    define_from_store(core, name)


def newest_disk_only(core: Core, record: VmRecord, snapshot: SnapshotRecord, verb: str) -> None:
    """Disk-only snapshots are a stack: only its top is reverted or merged."""
    stack = [s for s in core.store.snapshots.of_vm(record.uuid) if s.disk_only]
    newer = [s.name for s in stack if s.created_at > snapshot.created_at]
    if newer:
        raise Conflict(
            f"cannot {verb} {snapshot.name} of {record.name}: disk-only snapshots are a stack and "
            f"{', '.join(newer)} is newer; delete the newer ones first"
        )


def image_below(core: Core, spec: VMSpec, target: str, overlay: Path) -> tuple[Path, str]:
    """What `overlay` sits on: the next older overlay of the disk, else the disk's own image (and its format)."""
    vm_directory = resources.vm_dir(core.config.data_dir, str(spec.uuid))
    chain = layers(vm_directory).get(target, ())
    if overlay in chain and chain.index(overlay) > 0:
        return chain[chain.index(overlay) - 1], "qcow2"
    disk = next(d for d in spec.disks if d.target == target)
    plan = resources.plan(spec, core.config, known=spec)
    own = plan.resources.disk_paths.get(target)
    if own is None and isinstance(disk.source, FileDisk):
        own = disk.source.path
    fmt = disk_format(disk)
    if own is None or fmt is None:
        raise Conflict(f"disk {target} of {spec.name} has no image file under its snapshot overlay")
    return own, fmt
