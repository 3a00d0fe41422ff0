"""Snapshots on libvirt 9.0: full ones are internal (in the qcow2 disks, with the memory state of a running VM),
disk-only ones external qcow2 overlays at paths the engine names. Reverting and deleting an external snapshot
is not something libvirt 9.0 does (it refuses both), so the engine does those with merge_layer and files."""

import time
from collections.abc import Mapping
from pathlib import Path

import libvirt
from lxml import etree

from vmhost.drivers.libvirt.errors import translate
from vmhost.errors import HypervisorError, NotFound
from vmhost.render.libvirt.nodes import element, sub

COMMIT_TIMEOUT = 300.0
"""How long an active block commit may take to reach its ready phase (the overlay's data copied down)."""
AGENT_DOWN = (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_AGENT_UNSYNCED)


def snapshot_xml(snapshot: str, layers: Mapping[str, Path], disks: list[str]) -> str:
    """<domainsnapshot>: internal for every disk, or external into `layers` (other disks left out)."""
    root = element("domainsnapshot")
    sub(root, "name", snapshot)
    if layers:
        listed = sub(root, "disks")
        for target in disks:
            if target in layers:
                disk = sub(listed, "disk", name=target, snapshot="external", type="file")
                sub(disk, "driver", type="qcow2")
                sub(disk, "source", file=str(layers[target]))
            else:
                sub(listed, "disk", name=target, snapshot="no")
    return etree.tostring(root, encoding="unicode")


def create(dom: libvirt.virDomain, snapshot: str, layers: Mapping[str, Path], quiesce: bool) -> None:
    """Full: internal, the memory too when the domain runs. Disk-only: ATOMIC, so a failure leaves no overlay
    in the chain; QUIESCE asks the guest agent to freeze (libvirt thaws afterwards)."""
    name = dom.name()
    flags = 0
    if layers:
        flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
        if quiesce:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    xml = snapshot_xml(snapshot, layers, _disk_targets(dom))
    try:
        dom.snapshotCreateXML(xml, flags)
    except libvirt.libvirtError as exc:
        if quiesce and exc.get_error_code() in AGENT_DOWN:
            raise HypervisorError(
                f"cannot quiesce {name}: its QEMU guest agent does not respond, so its filesystems cannot be frozen",
                exc.get_error_message(),
            ) from None
        raise translate(exc, name, f"take snapshot {snapshot} of") from None


def names(dom: libvirt.virDomain) -> list[str]:
    """Oldest first (libvirt lists them in no particular order; creationTime orders them)."""
    try:
        snapshots = dom.listAllSnapshots(0)
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), "list the snapshots of") from None
    return [s.getName() for s in sorted(snapshots, key=_created)]


def _created(snapshot: libvirt.virDomainSnapshot) -> tuple[int, str]:
    xml = etree.fromstring(snapshot.getXMLDesc(0).encode())
    return int(xml.findtext("creationTime") or 0), snapshot.getName()


def revert(dom: libvirt.virDomain, snapshot: str) -> None:
    current = _lookup(dom, snapshot)
    if current is None:
        raise NotFound(f"{dom.name()} has no snapshot {snapshot} in libvirt")
    try:
        dom.revertToSnapshot(current, 0)
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), f"revert to snapshot {snapshot}") from None


def delete(dom: libvirt.virDomain, snapshot: str) -> None:
    """An internal snapshot with its data; an external one's metadata only (libvirt 9.0 deletes no external
    snapshot's files: the engine merged them already)."""
    current = _lookup(dom, snapshot)
    if current is None:
        return
    external = etree.fromstring(current.getXMLDesc(0).encode()).find("disks/disk[@snapshot='external']") is not None
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY if external else 0
    try:
        current.delete(flags)
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), f"delete snapshot {snapshot} of") from None


def _lookup(dom: libvirt.virDomain, snapshot: str) -> libvirt.virDomainSnapshot | None:
    try:
        return dom.snapshotLookupByName(snapshot, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise translate(exc, dom.name(), f"look up snapshot {snapshot} of") from None


def merge(dom: libvirt.virDomain, target: str, overlay: Path) -> None:
    """Active commit of the top `overlay` into its backing image, then pivot: QEMU writes to that image again.
    A commit left running by a dead agent is taken over (its ready phase is awaited, then pivoted)."""
    name = dom.name()
    if top_of(dom, target, live=True) != overlay:
        return
    try:
        if not dom.blockJobInfo(target, 0):
            flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE | libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW
            dom.blockCommit(target, None, None, 0, flags)
        _wait_ready(dom, target)
        dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
    except libvirt.libvirtError as exc:
        raise translate(exc, name, f"merge {overlay.name} of disk {target} of") from None
    deadline = time.monotonic() + COMMIT_TIMEOUT
    while top_of(dom, target, live=True) == overlay:  # the pivot completes asynchronously
        if time.monotonic() > deadline:
            raise HypervisorError(f"the pivot of disk {target} of {name} off {overlay} did not complete")
        time.sleep(0.05)


def _wait_ready(dom: libvirt.virDomain, target: str) -> None:
    """An active commit is ready when cur == end (it then mirrors new writes until the pivot)."""
    deadline = time.monotonic() + COMMIT_TIMEOUT
    while True:
        info = dom.blockJobInfo(target, 0)
        if not info:
            raise HypervisorError(f"the block commit of disk {target} of {dom.name()} ended before its pivot")
        if info["end"] > 0 and info["cur"] == info["end"]:
            return
        if time.monotonic() > deadline:
            raise HypervisorError(f"the block commit of disk {target} of {dom.name()} did not finish in time")
        time.sleep(0.05)


def top_of(dom: libvirt.virDomain, target: str, live: bool) -> Path | None:
    """The file at the top of disk `target`'s chain, live or in the persistent definition."""
    flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
    try:
        xml = etree.fromstring(dom.XMLDesc(flags).encode())
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), "query") from None
    source = xml.find(f"devices/disk[@device='disk']/target[@dev='{target}']/../source")
    path = source.get("file") if source is not None else None
    return Path(path) if path else None


def _disk_targets(dom: libvirt.virDomain) -> list[str]:
    try:
        xml = etree.fromstring(dom.XMLDesc(0).encode())
    except libvirt.libvirtError as exc:
        raise translate(exc, dom.name(), "query") from None
    return [str(t.get("dev")) for t in xml.iterfind("devices/disk[@device='disk']/target")]
