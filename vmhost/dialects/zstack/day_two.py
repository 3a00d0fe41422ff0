"""ZStack's day-two commands on a running VM as JSON merge patches for Engine.update(name, patch, live=True).

Pure functions of (command, the VM's stored spec): no host access. Each returns a Change (the patch and, for
every spec path it touches, the ZStack field behind it, so that a refusal from the engine's plan reaches the
management node in ZStack's words) or None when the VM is already as asked, which ZStack's agent answers with
success too (a NIC whose MAC is plugged, an empty drive ejected). Lists are replaced whole (RFC 7386), so each
patch carries the VM's full list with the one device changed; NICs are matched by MAC, CD-ROM drives by
ZStack's deviceId (their order in the start command), volumes by their storage (installPath).

What vmhost cannot do as ZStack asks is refused with a SpecError naming the ZStack field: never a silent
difference. Fields ZStack's own agent ignores for these commands (accountUuid, kvmHostAddons, isoUuid...) are
ignored here too; docs/zstack-day-two.md lists every field and what happens to it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vmhost.dialects.zstack.devices import nic_from_to, source_identity, volume_source
from vmhost.dialects.zstack.values import Command, Document, Unmappable, addons_of, integer, json_object
from vmhost.spec import Problem, SpecError
from vmhost.spec.units import parse_size

MIB = 2**20
LOCAL_ISO_REFUSED = ("ceph", "cbd", "iscsi://")
GROWN_IN_PLACE = ("file", "rbd")


@dataclass(frozen=True)
class Change:
    """A merge patch and the ZStack field behind each spec path it touches (longest prefix wins). Paths come in
    both forms the engine uses: list indexes from validation (nics.1.source), keys from the plan (nics[MAC])."""

    patch: Document
    fields: Mapping[str, str] = field(default_factory=dict)

    def zstack_field(self, path: str) -> str | None:
        """ZStack's name for a spec path the engine named in a refusal; None when the path is not ours."""
        matches = [prefix for prefix in self.fields if path == prefix or path.startswith((prefix + ".", prefix + "["))]
        return self.fields[max(matches, key=len)] if matches else None


def _converted(convert: Callable[[], Change | None]) -> Change | None:
    """Unmappable (one ZStack field) becomes the SpecError the handlers report, as for /vm/start."""
    try:
        return convert()
    except Unmappable as exc:
        raise SpecError([Problem(exc.path, exc.problem)]) from None


def _devices(spec: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [dict(device) for device in spec.get(key) or []]


# ---- NICs ----------------------------------------------------------------------------------------


def attach_nic(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    """AttachNicCommand {vmUuid, nic: NicTO, accountUuid, addons}: the NIC appended to the VM's NICs."""
    return _converted(lambda: _attach_nic(cmd, spec))


def _attach_nic(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    nic = json_object(cmd.get("nic"), "nic")
    mac = _mac(nic)
    nics = _devices(spec, "nics")
    if any(str(n.get("mac", "")).lower() == mac for n in nics):
        return None  # ZStack's agent, too, answers success for a MAC that is already plugged
    if addons_of(cmd).get("vhostSrcPath"):
        raise Unmappable("addons.vhostSrcPath", "vhost-user NICs are not supported")
    converted = nic_from_to(nic, "nic", json_object(addons_of(cmd).get("NicQos"), "addons.NicQos"))
    return Change({"nics": [*nics, converted]}, {f"nics.{len(nics)}": "nic", f"nics[{mac}]": "nic"})


def _mac(nic: Mapping[str, Any]) -> str:
    mac = nic.get("mac")
    if not isinstance(mac, str) or not mac:
        raise Unmappable("nic.mac", "is required (vmhost finds a VM's NICs by MAC)")
    return mac.lower()


def detach_nic(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    """DetachNicCommand {vmUuid, nic: NicTO}: the NIC with nic.mac removed; not there -> already detached."""
    return _converted(lambda: _detach_nic(cmd, spec))


def _detach_nic(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    mac = _mac(json_object(cmd.get("nic"), "nic"))
    nics = _devices(spec, "nics")
    kept = [n for n in nics if str(n.get("mac", "")).lower() != mac]
    if len(kept) == len(nics):
        return None
    return Change({"nics": kept}, {f"nics[{mac}]": "nic.mac"})


# ---- CPU and memory ------------------------------------------------------------------------------


def change_cpu_memory(cmd: Command, spec: Mapping[str, Any], *, cpu: bool = True, memory: bool = True) -> Change | None:
    """ChangeCpuMemoryCmd {vmUuid, cpuNum, memorySize} (IncreaseCpuCmd and IncreaseMemoryCmd carry one of the
    two): vCPUs and memory (bytes) up to the ceilings the VM started with (maxVcpuNum, maxMemory with useNuma)."""
    return _converted(lambda: _change_cpu_memory(cmd, spec, cpu, memory))


def _change_cpu_memory(cmd: Command, spec: Mapping[str, Any], cpu: bool, memory: bool) -> Change | None:
    patch: Document = {}
    fields: dict[str, str] = {}
    problems: list[Problem] = []
    for wanted, section, convert in ((cpu, "cpu", _vcpus), (memory, "memory", _memory_size)):
        if not wanted:
            continue
        try:
            change = convert(cmd, spec.get(section) or {})
        except Unmappable as exc:
            problems.append(Problem(exc.path, exc.problem))
            continue
        if change is not None:
            patch[section], fields[section] = change
    if problems:
        raise SpecError(problems)
    return Change(patch, fields) if patch else None


def _vcpus(cmd: Command, cpu: Mapping[str, Any]) -> tuple[Document, str] | None:
    count = integer(cmd.get("cpuNum"), "cpuNum")
    current = int(cpu.get("vcpus") or 1)
    ceiling = int(cpu.get("max_vcpus") or current)
    if count < 1:
        raise Unmappable("cpuNum", f"must be at least 1, got {count}")
    if count > ceiling:
        raise Unmappable(
            "cpuNum",
            f"{count} vCPUs is above this VM's ceiling of {ceiling} (maxVcpuNum, with useNuma, when it started); "
            "restart the VM with a higher one",
        )
    return None if count == current else ({"vcpus": count}, "cpuNum")


def _memory_size(cmd: Command, memory: Mapping[str, Any]) -> tuple[Document, str] | None:
    size = integer(cmd.get("memorySize"), "memorySize")
    current = parse_size(memory["size"])
    ceiling = parse_size(memory.get("max_size") or current)
    if size < 1 or size % MIB:
        raise Unmappable("memorySize", f"must be a positive whole number of MiB in bytes, got {size}")
    if size > ceiling:
        raise Unmappable(
            "memorySize",
            f"{size} bytes is above this VM's ceiling of {ceiling} (maxMemory, with useNuma, when it started); "
            "restart the VM with a higher one",
        )
    return None if size == current else ({"size": size}, "memorySize")


# ---- ISO -----------------------------------------------------------------------------------------


def attach_iso(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    """AttachIsoCmd {vmUuid, iso: IsoTO}: the ISO file in the drive of iso.deviceId (media change, no new drive)."""
    return _converted(lambda: _attach_iso(cmd, spec))


def _attach_iso(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    iso = json_object(cmd.get("iso"), "iso")
    if not iso:
        raise Unmappable("iso", "is required")
    path = iso.get("path")
    if not isinstance(path, str) or not path:
        raise Unmappable("iso.path", "is required")
    if path.startswith(LOCAL_ISO_REFUSED) or not path.startswith("/"):
        raise Unmappable("iso.path", f"only ISO files on this host are supported, got {path!r}")
    drives, index = _drive(spec, iso.get("deviceId", 0), "iso.deviceId")
    if index is None:
        count = len(drives)
        raise Unmappable(
            "iso.deviceId",
            f"this VM has {count} CD-ROM drive{'s' if count != 1 else ''} (cdRoms when it started); vmhost changes "
            "the media of an existing drive and adds no drive to a running VM",
        )
    if drives[index].get("iso") == path:
        return None
    drives[index]["iso"] = path
    return Change({"cdroms": drives}, _drive_fields(drives, index, "iso.path"))


def detach_iso(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    """DetachIsoCmd {vmUuid, isoUuid, deviceId}: the drive of deviceId emptied; already empty -> done."""
    return _converted(lambda: _detach_iso(cmd, spec))


def _detach_iso(cmd: Command, spec: Mapping[str, Any]) -> Change | None:
    drives, index = _drive(spec, cmd.get("deviceId", 0), "deviceId")
    if index is None or not drives[index].get("iso"):
        return None
    drives[index]["iso"] = None
    return Change({"cdroms": drives}, _drive_fields(drives, index, "deviceId"))


def _drive_fields(drives: list[dict[str, Any]], index: int, field_name: str) -> dict[str, str]:
    """The drive's paths in both forms: by index (validation) and by target (the plan)."""
    return {f"cdroms.{index}": field_name, f"cdroms[{drives[index].get('target')}]": field_name}


def _drive(spec: Mapping[str, Any], device_id: object, path: str) -> tuple[list[dict[str, Any]], int | None]:
    """The VM's drives and the index of ZStack's deviceId: the start command's cdRoms in deviceId order."""
    number = integer(device_id, path)
    if number < 0:
        raise Unmappable(path, f"must be 0 or more, got {number}")
    drives = _devices(spec, "cdroms")
    return drives, number if number < len(drives) else None


# ---- volumes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """Grow a disk in place, as ZStack's agent does with a block resize of the running disk. ZStack's volumes are
    its own files (or RBD images): their size is the image's, not the spec's, so the spec does not change."""

    target: str
    size: int


def resize_volume(cmd: Command, spec: Mapping[str, Any]) -> Growth:
    """/volume/resize {vmUuid, volume: VolumeTO, size}: the disk whose storage is the volume's, to `size` bytes."""
    try:
        return _resize_volume(cmd, spec)
    except Unmappable as exc:
        raise SpecError([Problem(exc.path, exc.problem)]) from None


def _resize_volume(cmd: Command, spec: Mapping[str, Any]) -> Growth:
    volume = json_object(cmd.get("volume"), "volume")
    index = disk_index(spec, volume_source(volume, "volume"))
    if index is None:
        raise Unmappable("volume.installPath", f"{volume.get('installPath')} is not a volume of this VM")
    size = integer(cmd.get("size"), "size")
    if size < MIB:
        raise Unmappable("size", f"must be at least 1 MiB in bytes, got {size}")
    disk = (spec.get("disks") or [])[index]
    kind = disk["source"].get("type")
    if kind not in GROWN_IN_PLACE:
        raise Unmappable("volume.deviceType", f"a {kind} volume is grown by its storage, not by the hypervisor")
    return Growth(str(disk["target"]), size)


def disk_index(spec: Mapping[str, Any], source: Mapping[str, Any]) -> int | None:
    """Which of the VM's disks is this storage (same file, device, LUN or RBD image), whatever its settings."""
    wanted = source_identity(source)
    for index, disk in enumerate(spec.get("disks") or []):
        if source_identity(disk["source"]) == wanted:
            return index
    return None


# ---- snapshots -----------------------------------------------------------------------------------

SNAPSHOT_MODEL = (
    "ZStack snapshots one volume into an external file at a path the management node chooses, which then becomes "
    "the volume's installPath; vmhost snapshots all of a VM's disks together into overlays it names and keeps as "
    "its own (vmhost snapshot create --disk-only), so it cannot honour this without the management node losing "
    "track of its files"
)
SNAPSHOT_REFUSALS = {
    "/vm/volume/takesnapshot": ("installPath", SNAPSHOT_MODEL),
    "/vm/volumes/takesnapshot": ("snapshotJobs", SNAPSHOT_MODEL),
    "/vm/volume/mergesnapshot": (
        "srcPath",
        "vmhost has no block pull of a chain it did not make: it merges only its own snapshot overlays "
        "(vmhost snapshot delete)",
    ),
    "/vm/volume/blockcommit": (
        "top",
        "vmhost has no block commit of a chain it did not make: it merges only its own snapshot overlays "
        "(vmhost snapshot delete)",
    ),
}
"""ZStack's volume-snapshot paths, refused with the field and the reason (ZStack has no agent path that deletes
a snapshot: its primary-storage agents delete the files)."""


def refused_snapshot(path: str) -> SpecError:
    field_name, reason = SNAPSHOT_REFUSALS[path]
    return SpecError([Problem(field_name, reason)])
