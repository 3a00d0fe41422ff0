"""ZStack's VolumeTO, cdRoms and NicTO as vmhost disks, CD-ROMs and NICs (for StartVmCmd and the attach commands)."""

import base64
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from vmhost.dialects.zstack.values import (
    Command,
    Document,
    Unmappable,
    addons_of,
    choice,
    flag,
    integer,
    is_set,
    json_list,
    json_object,
)
from vmhost.spec import Problem, SpecError
from vmhost.spec.cpu import CPUSET_RE
from vmhost.spec.disk import MAX_SERIAL, SERIAL_RE
from vmhost.spec.iothreads import IoThreadPin, IoThreads

BITS_PER_KIB = 8 * 1024
CEPH_USER = "zstack"
NIC_MODELS = ("virtio", "e1000", "rtl8139")
VHOST_USER_NIC_TYPES = ("vDPA", "dpdkvhostuserclient")
VOLUME_QOS_LIMITS = {
    "totalBandwidth": "total_bytes_sec",
    "readBandwidth": "read_bytes_sec",
    "writeBandwidth": "write_bytes_sec",
    "totalIOPS": "total_iops_sec",
    "readIOPS": "read_iops_sec",
    "writeIOPS": "write_iops_sec",
}
"""ZStack's VolumeQos (header/volume/VolumeQos.java) as its agent reads it (Vm.set_volume_qos)."""
ISCSI_PREFIX = "iscsi://"
CEPH_PREFIXES = ("ceph://", "rbd:")
HOST_DEVICES = "/dev/"
BLOCK_FORMATS = ("raw", "qcow2")


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
    iothread = _volume_iothread(volume, path, disk["bus"])
    if iothread is not None:
        disk["iothread"] = iothread
        if disk["bus"] == "virtio-scsi" and volume.get("controllerIndex") is not None:
            disk["controller"] = integer(volume["controllerIndex"], f"{path}.controllerIndex")
    if volume.get("cacheMode"):
        disk["cache"] = volume["cacheMode"]
    if flag(volume.get("shareable")):
        disk["shareable"] = True
    if disk["bus"] == "virtio-scsi" and volume.get("wwn"):
        disk["wwn"] = volume["wwn"]
    serial = _volume_serial(volume, path)
    if serial is not None:
        disk["serial"] = serial
    if is_set(volume.get("physicalBlockSize")):
        disk["physical_block_size"] = volume["physicalBlockSize"]  # ZStack sets it for Ceph volumes (4 KiB objects)
    qos_path = f"addons.VolumeQos.{volume.get('volumeUuid')}"
    limits = _io_limits(json_object(qos.get(str(volume.get("volumeUuid"))), qos_path), qos_path)
    if limits:
        disk["io_limits"] = limits
    return disk


def _volume_serial(volume: Mapping[str, Any], path: str) -> str | None:
    """Vm.set_volume_serial_id: the agent gives every disk its volumeUuid as serial, which is how guests and
    ZStack's guest tools find a volume (/dev/disk/by-id/virtio-<uuid>; virtio shows the first 20 characters)."""
    uuid = volume.get("volumeUuid")
    if uuid is None:
        return None
    if not isinstance(uuid, str) or not SERIAL_RE.fullmatch(uuid) or len(uuid) > MAX_SERIAL:
        raise Unmappable(
            f"{path}.volumeUuid",
            f"becomes the disk's serial, so it must be 1 to {MAX_SERIAL} letters, digits or _.+-; got {uuid!r}",
        )
    return uuid


def _volume_iothread(volume: Mapping[str, Any], path: str, bus: str) -> int | None:
    """ioThreadId as ZStack's agent uses it: a virtio disk's own IOThread, or the IOThread of the controller a
    virtio-scsi data volume gets; the agent ignores it on IDE/SATA disks and on a virtio-scsi root volume."""
    thread = volume.get("ioThreadId")
    if thread is None or thread in (0, -1):  # ZStack's "not set"
        return None
    thread = integer(thread, f"{path}.ioThreadId")
    if bus == "virtio" or (bus == "virtio-scsi" and path != "rootVolume"):
        return thread
    return None


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


def _file_source(volume: Mapping[str, Any], install_path: str, path: str) -> Document:
    """A file, or (SharedBlock logical volumes) a device under /dev/ sent as a file: QEMU opens that as a block
    device, as ZStack's agent does since QEMU 6 removed block devices from the file driver."""
    if install_path.startswith(HOST_DEVICES):
        return _block_source(volume, install_path, path)
    return {"type": "file", "path": install_path, "format": volume.get("format") or "auto"}


def _block_source(volume: Mapping[str, Any], install_path: str, path: str) -> Document:
    """A host block device holding the guest's disk (raw) or a qcow2 image (SharedBlock thin volumes); the
    format comes from the command, never from the device's header, which the guest can write."""
    fmt = volume.get("format") or "raw"
    return {"type": "block", "path": install_path, "format": choice(fmt, f"{path}.format", BLOCK_FORMATS)}


def _ceph_source(volume: Mapping[str, Any], install_path: str, path: str) -> Document:
    return {"type": "rbd", **ceph_image(volume, install_path, path, "installPath")}


def ceph_image(device: Mapping[str, Any], location: str, path: str, key: str) -> Document:
    """ceph://pool/image (ZStack's form) or rbd:pool/image[:options] (QEMU's); monitors from monInfo, cephx by
    the secretUuid the agent created from addons.ceph_secret_key. An ISO's @snapshot suffix is dropped, as
    ZStack's agent drops it (the ISO image itself is read-only)."""
    prefix = next((p for p in CEPH_PREFIXES if location.startswith(p)), None)
    parts = location[len(prefix) :].partition(":")[0].partition("@")[0].split("/") if prefix else []
    if len(parts) != 2 or not all(parts):
        raise Unmappable(f"{path}.{key}", f"must be ceph://pool/image or rbd:pool/image, got {location!r}")
    image: Document = {"pool": parts[0], "image": parts[1], "monitors": _monitors(device, path)}
    if device.get("secretUuid"):
        image["auth"] = {"username": CEPH_USER, "secret_uuid": device["secretUuid"]}
    return image


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


def _io_limits(qos: Mapping[str, Any], path: str) -> Document:
    """VolumeQos in bytes/s and IOPS, libvirt's own units; unset limits (null, 0, -1) are left out. A total
    limit with a read or write one of the same kind is refused (libvirt refuses it when the agent passes it on)."""
    limits = {ours: qos[theirs] for theirs, ours in VOLUME_QOS_LIMITS.items() if is_set(qos.get(theirs))}
    for theirs, ours in VOLUME_QOS_LIMITS.items():
        if qos.get(theirs) is not None and not is_set(qos.get(theirs)) and qos.get(theirs) not in (0, -1):
            raise Unmappable(f"{path}.{theirs}", f"must be a whole number (0 or -1: no limit), got {qos[theirs]!r}")
        kind = ours.partition("_")[2]
        if ours.startswith("total_") and ours in limits and ({f"read_{kind}", f"write_{kind}"} & limits.keys()):
            raise Unmappable(f"{path}.{theirs}", "cannot be combined with a read or write limit of the same kind")
    return limits


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
    """The volumes as disks, and the IOThreads they run in."""
    qos = json_object(addons_of(cmd).get("VolumeQos"), "addons.VolumeQos")
    disks = []
    volumes = _volumes(cmd)
    for path, volume in volumes:
        disk = disk_from_volume(volume, path, machine_of(cmd), qos)
        if path == "rootVolume" and is_set(volume.get("bootOrder")):
            disk["boot_order"] = volume["bootOrder"]  # ZStack honours a bootOrder on the root volume only
        disks.append(disk)
    document: Document = {"disks": disks}
    iothreads = _iothreads(cmd, [(path, volume, disk) for (path, volume), disk in zip(volumes, disks, strict=True)])
    if iothreads:
        document["iothreads"] = iothreads
    return document


def _iothreads(cmd: Command, volumes: list[tuple[str, Mapping[str, Any], Document]]) -> Document:
    """addons.ioThreadNum IOThreads, pinned by addons.ioThreadPins [{ioThreadId, pin}] (and a volume's own
    ioThreadPin); every ioThreadId a disk uses must be one of them, since libvirt refuses a disk whose IOThread
    the domain lacks."""
    addons = addons_of(cmd)
    count = addons.get("ioThreadNum")
    count = 0 if count is None else integer(count, "addons.ioThreadNum")
    pins: dict[int, str] = {}
    for index, entry in enumerate(json_list(addons.get("ioThreadPins"), "addons.ioThreadPins")):
        pin = json_object(entry, f"addons.ioThreadPins.{index}")
        thread = integer(pin.get("ioThreadId"), f"addons.ioThreadPins.{index}.ioThreadId")
        pins[thread] = _cpuset(pin.get("pin"), f"addons.ioThreadPins.{index}.pin")
    for path, volume, _disk in volumes:
        own, own_pin = volume.get("ioThreadId"), volume.get("ioThreadPin")
        if is_set(own) and own_pin:
            cpus = _cpuset(own_pin, f"{path}.ioThreadPin")
            if pins.setdefault(own, cpus) != cpus:
                raise Unmappable(f"{path}.ioThreadPin", f"{cpus!r} differs from the pin of IOThread {own}")
    if len(pins) > count:
        raise Unmappable("addons.ioThreadNum", f"{count} IOThreads cannot hold the {len(pins)} pinned ones")
    try:
        threads = IoThreads(count=count, pins=[IoThreadPin(id=t, host_cpus=c) for t, c in pins.items()]).ids
    except ValidationError as exc:
        raise Unmappable("addons.ioThreadPins", exc.errors()[0]["msg"]) from None
    for path, _volume, disk in volumes:
        if disk.get("iothread") is not None and disk["iothread"] not in threads:
            raise Unmappable(f"{path}.ioThreadId", f"IOThread {disk['iothread']} is not among the VM's {threads}")
    _check_controllers(volumes)
    if not count:
        return {}
    return {"count": count, "pins": [{"id": t, "host_cpus": c} for t, c in sorted(pins.items())]}


def _cpuset(value: object, path: str) -> str:
    if not isinstance(value, str) or not CPUSET_RE.match(value):
        raise Unmappable(path, f"must be a host CPU list such as '0-3,6', got {value!r}")
    return value


def _check_controllers(volumes: list[tuple[str, Mapping[str, Any], Document]]) -> None:
    """ZStack gives the virtio-scsi data volumes of an IOThread their own controller at controllerIndex, run by
    that IOThread: two IOThreads cannot share one."""
    controllers: dict[int, tuple[str, int]] = {}
    for path, _volume, disk in volumes:
        if disk.get("controller") is None:
            continue
        seen = controllers.setdefault(disk["controller"], (path, disk["iothread"]))
        if seen[1] != disk["iothread"]:
            problem = f"controller {disk['controller']} already runs IOThread {seen[1]} ({seen[0]})"
            raise Unmappable(f"{path}.controllerIndex", problem)


def cdroms_of(cmd: Command) -> Document:
    """cdRoms in deviceId order (an empty one is an empty tray); the 2.x bootIso when there are none."""
    cdroms = _by_device_id(cmd, "cdRoms")
    boot_iso = cmd.get("bootIso")
    if not cdroms and isinstance(boot_iso, Mapping) and boot_iso.get("path"):
        cdroms = [("bootIso", boot_iso)]
    return {"cdroms": [_cdrom(cdrom, path, legacy_bus(machine_of(cmd))) for path, cdrom in cdroms]}


def _cdrom(cdrom: Mapping[str, Any], path: str, bus: str) -> Document:
    """An ISO on this host, a Ceph ISO (ceph://pool/image with monInfo and secretUuid), or an empty tray."""
    drive: Document = {"bus": bus}
    iso = cdrom.get("path")
    if iso and not flag(cdrom.get("isEmpty")):
        if str(iso).startswith(CEPH_PREFIXES):
            drive["rbd"] = ceph_image(cdrom, str(iso), path, "path")
        elif str(iso).startswith("/"):
            drive["iso"] = iso
        else:
            raise Unmappable(f"{path}.path", f"only ISO files on this host and Ceph ISOs are supported, got {iso!r}")
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
    """A NicTO on a host bridge; nicInternalName (vnicN.M) becomes the tap so ZStack's host-side rules find it.
    With a pciDeviceAddress it is an SR-IOV VF whatever its type, as ZStack's agent reads it (except the
    OVS-DPDK kinds, whose vhost-user backend the agent creates)."""
    if nic.get("pciDeviceAddress") and nic.get("type") not in VHOST_USER_NIC_TYPES:
        return _vf_nic(nic, path, qos)
    if nic.get("type") not in (None, "", "VNIC"):
        raise Unmappable(f"{path}.type", f"{nic['type']} NICs are not supported (only VNIC, a NIC on a host bridge)")
    if nic.get("state") == "disable":
        raise Unmappable(f"{path}.state", "vmhost cannot plug a NIC with its link down")
    if flag(nic.get("isolated")):
        raise Unmappable(f"{path}.isolated", "bridge port isolation is not supported")
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
    allowed = _clean_traffic(nic, path)
    if allowed:
        converted["allowed_ips"] = allowed
    return converted


def _vf_nic(nic: Mapping[str, Any], path: str, qos: Mapping[str, Any]) -> Document:
    """pciDeviceAddress (without srcPath): the VF itself, through vfio, with the NIC's MAC and vlanId, as ZStack's
    agent writes it; no model, MTU or shaping, which belong to emulated NICs."""
    if nic.get("srcPath"):
        raise Unmappable(f"{path}.srcPath", "a VF behind a vhost-user socket (vDPA) is not supported")
    if json_object(qos.get(str(nic.get("uuid"))), f"addons.NicQos.{nic.get('uuid')}"):
        raise Unmappable(f"addons.NicQos.{nic.get('uuid')}", "libvirt cannot shape an SR-IOV VF's traffic")
    converted: Document = {"type": "hostdev", "source": nic["pciDeviceAddress"]}
    if nic.get("mac"):
        converted["mac"] = nic["mac"]
    vlan = nic.get("vlanId")
    if vlan not in (None, "", -1, "-1"):
        converted["vlan"] = integer(int(vlan) if isinstance(vlan, str) and vlan.isdigit() else vlan, f"{path}.vlanId")
    if is_set(nic.get("bootOrder")):
        converted["boot_order"] = nic["bootOrder"]
    return converted


def _clean_traffic(nic: Mapping[str, Any], path: str) -> list[str]:
    """cleanTraffic: libvirt's clean-traffic filter with the NIC's IPv4 address (the last one, as ZStack's agent
    takes it); vmhost's allowed_ips renders the same filter. Filtering by MAC alone has no vmhost form."""
    if not flag(nic.get("cleanTraffic")):
        return []
    ips = nic.get("ips")
    ipv4 = [str(ip) for ip in ips if _is_ipv4(ip)] if isinstance(ips, list) else []
    if not ipv4:
        raise Unmappable(f"{path}.cleanTraffic", f"needs an IPv4 address in {path}.ips (vmhost filters by MAC and IP)")
    return [ipv4[-1]]


def _is_ipv4(value: object) -> bool:
    try:
        return isinstance(ipaddress.ip_address(str(value)), ipaddress.IPv4Address)
    except ValueError:
        return False


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


def device_fields(cmd: Command) -> dict[str, str]:
    """Each converted device's spec path (disks.1, cdroms.0, nics.2) and the ZStack device it came from, in the
    order the sections above convert them, so a spec problem can be reported under ZStack's field."""
    fields = {f"disks.{i}": path for i, (path, _) in enumerate(_volumes(cmd))}
    fields |= {f"cdroms.{i}": path for i, (path, _) in enumerate(_by_device_id(cmd, "cdRoms"))}
    fields |= {f"nics.{i}": path for i, (path, _) in enumerate(_by_device_id(cmd, "nics"))}
    return fields


# ---- ceph key ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CephKey:
    """The cephx key a start carries for the libvirt secret its Ceph volumes and ISOs name; repr hides it."""

    uuid: UUID
    key: str = field(repr=False)


def ceph_key(cmd: Command) -> CephKey | None:
    """addons.ceph_secret_uuid/ceph_secret_key, which ZStack's agent sets into a libvirt secret before it defines
    the VM (only when both are given, as the agent does)."""
    addons = addons_of(cmd)
    uuid, key = addons.get("ceph_secret_uuid"), addons.get("ceph_secret_key")
    if not uuid or not key:
        return None
    return ceph_key_of(uuid, key, "addons.ceph_secret_uuid", "addons.ceph_secret_key")


def ceph_key_of(uuid: object, key: object, uuid_path: str, key_path: str) -> CephKey:
    """A secret UUID and a base64 cephx key, each checked under its ZStack field; the key is never quoted."""
    try:
        secret_uuid = UUID(str(uuid))
    except ValueError:
        raise Unmappable(uuid_path, f"must be a UUID, got {uuid!r}") from None
    if not isinstance(key, str) or not _is_base64(key):
        raise Unmappable(key_path, "must be a base64 cephx key (the value is not shown)")
    return CephKey(secret_uuid, key)


def _is_base64(text: str) -> bool:
    try:
        return bool(base64.b64decode(text, validate=True))
    except ValueError:  # binascii.Error, or characters outside ASCII
        return False
