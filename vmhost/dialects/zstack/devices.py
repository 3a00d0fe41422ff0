"""ZStack's VolumeTO, cdRoms and NicTO as vmhost disks, CD-ROMs and NICs (for StartVmCmd and the attach commands)."""

from collections.abc import Callable, Mapping
from typing import Any

from vmhost.dialects.zstack.values import (
    Command,
    Document,
    Unmappable,
    addons_of,
    choice,
    flag,
    is_set,
    json_list,
    json_object,
)
from vmhost.spec import Problem, SpecError

BITS_PER_KIB = 8 * 1024
CEPH_USER = "zstack"
NIC_MODELS = ("virtio", "e1000", "rtl8139")
VOLUME_QOS_LIMITS = {
    "totalBandwidth": "total_bytes_sec",
    "readBandwidth": "read_bytes_sec",
    "writeBandwidth": "write_bytes_sec",
    "totalIops": "total_iops_sec",
    "readIops": "read_iops_sec",
    "writeIops": "write_iops_sec",
}
ISCSI_PREFIX = "iscsi://"
CEPH_PREFIXES = ("ceph://", "rbd:")


def machine_of(cmd: Command) -> str | None:
    machine = cmd.get("machineType")
    return str(machine) if machine else None


def legacy_bus(machine: str | None) -> str:
    """The bus ZStack gives non-virtio disks and CD-ROMs: IDE on i440fx ("pc"), SATA on q35."""
    return "sata" if machine and "q35" in machine else "ide"


# ---- disks ---------------------------------------------------------------------------------------


def disk_from_volume(volume: Mapping[str, Any], path: str, machine: str | None, qos: Mapping[str, Any]) -> Document:
    """One VolumeTO as a vmhost disk; `qos` is the VolumeQos addon (keyed by volumeUuid), `machine` picks the
    bus for non-virtio disks. Also used for /vm/attachdatavolume."""
    disk: Document = {"source": volume_source(volume, path), "bus": _volume_bus(volume, machine)}
    if volume.get("cacheMode"):
        disk["cache"] = volume["cacheMode"]
    if flag(volume.get("shareable")):
        disk["shareable"] = True
    if disk["bus"] == "virtio-scsi" and volume.get("wwn"):
        disk["wwn"] = volume["wwn"]
    limits = _io_limits(
        json_object(qos.get(str(volume.get("volumeUuid"))), f"addons.VolumeQos.{volume.get('volumeUuid')}")
    )
    if limits:
        disk["io_limits"] = limits
    return disk


def _volume_bus(volume: Mapping[str, Any], machine: str | None) -> str:
    if flag(volume.get("useVirtioSCSI")):
        return "virtio-scsi"
    if flag(volume.get("useVirtio")):
        return "virtio"
    return legacy_bus(machine)


def volume_source(volume: Mapping[str, Any], path: str) -> Document:
    """Where a volume's bytes live, from deviceType and installPath."""
    install_path = volume.get("installPath")
    if not isinstance(install_path, str) or not install_path:
        raise Unmappable(f"{path}.installPath", "is required")
    device_type = volume.get("deviceType") or "file"
    convert = SOURCES.get(device_type)
    if convert is None:
        raise Unmappable(
            f"{path}.deviceType",
            f"{device_type} volumes are not supported (supported: {', '.join(SOURCES)})",
        )
    return convert(volume, install_path, path)


def _file_source(volume: Mapping[str, Any], install_path: str, _path: str) -> Document:
    return {"type": "file", "path": install_path, "format": volume.get("format") or "auto"}


def _block_source(_volume: Mapping[str, Any], install_path: str, _path: str) -> Document:
    return {"type": "block", "path": install_path}


def _ceph_source(volume: Mapping[str, Any], install_path: str, path: str) -> Document:
    """ceph://pool/image (ZStack's form) or rbd:pool/image[:options] (QEMU's); monitors from monInfo."""
    prefix = next((p for p in CEPH_PREFIXES if install_path.startswith(p)), None)
    parts = install_path[len(prefix) :].partition(":")[0].split("/") if prefix else []
    if len(parts) != 2 or not all(parts):
        raise Unmappable(f"{path}.installPath", f"must be ceph://pool/image or rbd:pool/image, got {install_path!r}")
    source: Document = {"type": "rbd", "pool": parts[0], "image": parts[1], "monitors": _monitors(volume, path)}
    if volume.get("secretUuid"):
        source["auth"] = {"username": CEPH_USER, "secret_uuid": volume["secretUuid"]}
    return source


def _monitors(volume: Mapping[str, Any], path: str) -> list[str]:
    """monInfo [{hostname, port}] as ZStack sends it, or a plain monitors list of 'host[:port]'."""
    if volume.get("monitors"):
        return [str(m) for m in json_list(volume["monitors"], f"{path}.monitors")]
    monitors = []
    for index, info in enumerate(json_list(volume.get("monInfo"), f"{path}.monInfo")):
        mon = json_object(info, f"{path}.monInfo.{index}")
        monitors.append(f"{mon.get('hostname')}:{mon['port']}" if mon.get("port") else str(mon.get("hostname")))
    if not monitors:
        raise Unmappable(f"{path}.monInfo", "ceph volumes need their monitors (monInfo)")
    return monitors


def _iscsi_source(volume: Mapping[str, Any], install_path: str, path: str) -> Document:
    """iscsi://host:port/target-iqn/lun."""
    parts = install_path[len(ISCSI_PREFIX) :].split("/") if install_path.startswith(ISCSI_PREFIX) else []
    if len(parts) != 3 or not parts[2].isdigit():
        raise Unmappable(f"{path}.installPath", f"must be iscsi://host:port/target/lun, got {install_path!r}")
    if volume.get("chapUsername") or volume.get("chapPassword"):
        raise Unmappable(
            f"{path}.chapPassword",
            "CHAP credentials cannot be passed in a command; vmhost needs them in a libvirt secret",
        )
    return {"type": "iscsi", "portal": parts[0], "target": parts[1], "lun": int(parts[2])}


SOURCES: dict[str, Callable[[Mapping[str, Any], str, str], Document]] = {
    "file": _file_source,
    "block": _block_source,
    "ceph": _ceph_source,
    "iscsi": _iscsi_source,
}


def _io_limits(qos: Mapping[str, Any]) -> Document:
    """VolumeQos in bytes/s and IOPS, libvirt's own units; unset limits (null, 0, -1) are left out."""
    return {ours: qos[theirs] for theirs, ours in VOLUME_QOS_LIMITS.items() if is_set(qos.get(theirs))}


def _volumes(cmd: Command) -> list[tuple[str, Mapping[str, Any]]]:
    """Root first, then data volumes by deviceId: the guest sees them in ZStack's order."""
    root = cmd.get("rootVolume")
    if root is None:
        raise Unmappable("rootVolume", "is required")
    return [("rootVolume", json_object(root, "rootVolume")), *_by_device_id(cmd, "dataVolumes")]


def _by_device_id(cmd: Command, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The devices of a list field with their ZStack paths, in deviceId order (the order ZStack gives the guest)."""
    devices = [(f"{key}.{i}", json_object(d, f"{key}.{i}")) for i, d in enumerate(json_list(cmd.get(key), key))]
    return sorted(devices, key=lambda pair: _device_id(pair[1]))


def _device_id(device: Mapping[str, Any]) -> int:
    device_id = device.get("deviceId")
    return device_id if is_set(device_id) else 0


def disks_of(cmd: Command) -> Document:
    qos = json_object(addons_of(cmd).get("VolumeQos"), "addons.VolumeQos")
    disks = []
    for path, volume in _volumes(cmd):
        disk = disk_from_volume(volume, path, machine_of(cmd), qos)
        if path == "rootVolume" and is_set(volume.get("bootOrder")):
            disk["boot_order"] = volume["bootOrder"]  # ZStack honours a bootOrder on the root volume only
        disks.append(disk)
    return {"disks": disks}


def cdroms_of(cmd: Command) -> Document:
    """cdRoms in deviceId order (an empty one is an empty tray); the 2.x bootIso when there are none."""
    cdroms = _by_device_id(cmd, "cdRoms")
    boot_iso = cmd.get("bootIso")
    if not cdroms and isinstance(boot_iso, Mapping) and boot_iso.get("path"):
        cdroms = [("bootIso", boot_iso)]
    return {"cdroms": [_cdrom(cdrom, path, legacy_bus(machine_of(cmd))) for path, cdrom in cdroms]}


def _cdrom(cdrom: Mapping[str, Any], path: str, bus: str) -> Document:
    drive: Document = {"bus": bus}
    iso = cdrom.get("path")
    if iso and not flag(cdrom.get("isEmpty")):
        if not str(iso).startswith("/"):
            raise Unmappable(f"{path}.path", f"only ISO files on this host are supported, got {iso!r}")
        drive["iso"] = iso
    if is_set(cdrom.get("bootOrder")):
        drive["boot_order"] = cdrom["bootOrder"]
    return drive


# ---- nics ----------------------------------------------------------------------------------------


def nics_of(cmd: Command) -> Document:
    qos = json_object(addons_of(cmd).get("NicQos"), "addons.NicQos")
    return {"nics": [_nic(nic, path, qos) for path, nic in _by_device_id(cmd, "nics")]}


def nic_from_to(nic: Mapping[str, Any], path: str, qos: Mapping[str, Any]) -> Document:
    """One NicTO as a vmhost NIC, as at start (also used for /vm/attachnic); `qos` is the NicQos addon."""
    return _nic(nic, path, qos)


def _nic(nic: Mapping[str, Any], path: str, qos: Mapping[str, Any]) -> Document:
    """A NicTO on a host bridge; nicInternalName (vnicN.M) becomes the tap so ZStack's host-side rules find it."""
    if nic.get("pciDeviceAddress"):
        raise Unmappable(f"{path}.pciDeviceAddress", "SR-IOV (VF) NICs are not supported")
    if not nic.get("bridgeName"):
        raise Unmappable(f"{path}.bridgeName", "is required (vmhost attaches ZStack NICs to host bridges)")
    model = _nic_model(nic, path)
    converted: Document = {"type": "bridge", "source": nic["bridgeName"], "model": model}
    if nic.get("mac"):
        converted["mac"] = nic["mac"]
    if nic.get("nicInternalName"):
        converted["tap"] = nic["nicInternalName"]
    if is_set(nic.get("mtu")):
        converted["mtu"] = nic["mtu"]
    queues = json_object(nic.get("vHostAddOn"), f"{path}.vHostAddOn").get("queueNum")
    if model == "virtio" and is_set(queues) and queues > 1:
        converted["queues"] = queues
    if is_set(nic.get("bootOrder")):
        converted["boot_order"] = nic["bootOrder"]
    qos_path = f"addons.NicQos.{nic.get('uuid')}"
    bandwidth = _bandwidth(json_object(qos.get(str(nic.get("uuid"))), qos_path), qos_path)
    if bandwidth:
        converted["bandwidth"] = bandwidth
    return converted


def _nic_model(nic: Mapping[str, Any], path: str) -> str:
    """driverType when the management node sends it (newer ones do), else useVirtio: virtio or e1000."""
    if nic.get("driverType"):
        return choice(nic["driverType"], f"{path}.driverType", NIC_MODELS)
    return "virtio" if flag(nic.get("useVirtio")) else "e1000"


def _bandwidth(qos: Mapping[str, Any], path: str) -> Document:
    """NicQos is in bits/s; libvirt (and vmhost) take KiB/s, so divide by 8*1024 as ZStack's agent does."""
    bandwidth: Document = {}
    for direction, key in (("inbound", "inboundBandwidth"), ("outbound", "outboundBandwidth")):
        bits = qos.get(key)
        if not is_set(bits):
            continue
        if bits < BITS_PER_KIB:
            raise Unmappable(f"{path}.{key}", f"{bits} bit/s is below the smallest limit, 8192 bit/s (1 KiB/s)")
        bandwidth[direction] = {"average_kib_s": bits // BITS_PER_KIB}
    return bandwidth


def data_volume_disk(cmd: Command, machine: str | None) -> Document:
    """The disk for an AttachDataVolumeCmd {volume, vmInstanceUuid, addons}."""
    try:
        volume = json_object(cmd.get("volume"), "volume")
        if not volume:
            raise Unmappable("volume", "is required")
        return disk_from_volume(
            volume, "volume", machine, json_object(addons_of(cmd).get("VolumeQos"), "addons.VolumeQos")
        )
    except Unmappable as exc:
        raise SpecError([Problem(exc.path, exc.problem)]) from None


def source_identity(source: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two disk sources the same storage, whatever their other settings (format, auth)."""
    keys = {"file": ("path",), "block": ("path",), "rbd": ("pool", "image"), "iscsi": ("portal", "target", "lun")}
    kind = source.get("type")
    return (kind, *(str(source.get(key)) for key in keys.get(str(kind), ())))
