"""ZStack's StartVmCmd (and its VolumeTO / NicTO parts) as a vmhost spec document.

Pure functions: no host access, so every mapping can be tested on its own. The input keeps ZStack's own
field names; the output is a dict that `vmhost.spec.parse_spec` accepts. What cannot be expressed in a
vmhost spec is refused with a SpecError whose problem paths name the ZStack field, never silently dropped.
Fields vmhost has no use for (cpuSpeed, hostManagementIp, timeout, VDIMonitorNumber, ...) are ignored,
as ZStack's own agent ignores fields it does not know.
"""

import re
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeGuard

from vmhost.errors import VmhostError
from vmhost.spec import Problem, SpecError
from vmhost.spec.vm import NAME_PATTERN

LOOPBACK = "127.0.0.1"
NAME_LABEL = "zstack.vm-name"
FALLBACK_NAME_PREFIX = "zs-"
HOTPLUG_MEMORY_SLOTS = 16
BITS_PER_KIB = 8 * 1024
CEPH_USER = "zstack"
DESCRIPTION_LIMIT = 1024

BOOT_DEVICES = ("hd", "cdrom", "network")
NIC_MODELS = ("virtio", "e1000", "rtl8139")
VIDEO_TYPES = ("cirrus", "vga", "qxl", "virtio")
CONSOLE_MODES = ("vnc", "spice")
HOST_CPU_MODES = ("host-model", "host-passthrough")
BOOT_MODES = {"Legacy": "bios", "UEFI": "uefi"}
VOLUME_QOS_LIMITS = {
    "totalBandwidth": "total_bytes_sec",
    "readBandwidth": "read_bytes_sec",
    "writeBandwidth": "write_bytes_sec",
    "totalIops": "total_iops_sec",
    "readIops": "read_iops_sec",
    "writeIops": "write_iops_sec",
}
LOCALTIME_TIMERS = [
    {"name": "rtc", "tickpolicy": "catchup"},
    {"name": "pit", "tickpolicy": "delay"},
    {"name": "hpet", "present": False},
]
USB_ADDON_FIELDS = 8
ISCSI_PREFIX = "iscsi://"
CEPH_PREFIXES = ("ceph://", "rbd:")

Command = Mapping[str, Any]
Document = dict[str, Any]


class Unmappable(VmhostError):
    """One ZStack field that has no vmhost equivalent (or a malformed value); `path` is ZStack's name for it."""

    code = "unmappable"

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.problem = message


# ---- identity ------------------------------------------------------------------------------------


def vm_uuid(value: object, path: str = "vmInstanceUuid") -> str:
    """ZStack writes UUIDs as 32 hex digits; vmhost stores the canonical dashed form."""
    if not isinstance(value, str):
        raise Unmappable(path, "is required (a VM UUID)")
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise Unmappable(path, f"must be a UUID, got {value!r}") from None


def zstack_uuid(canonical: str) -> str:
    """The form the management node uses as its key in replies (vmsync states, checkstate)."""
    return uuidlib.UUID(canonical).hex


def fallback_name(canonical_uuid: str) -> str:
    """A vmhost name for a VM whose ZStack name is unusable (characters, length) or already taken."""
    return FALLBACK_NAME_PREFIX + zstack_uuid(canonical_uuid)


def _identity(cmd: Command) -> Document:
    """ZStack names are free text and need not be unique; the original is kept as label and description."""
    canonical = vm_uuid(cmd.get("vmInstanceUuid"))
    zstack_name = cmd.get("vmName")
    if zstack_name is not None and not isinstance(zstack_name, str):
        raise Unmappable("vmName", f"must be text, got {zstack_name!r}")
    zstack_name = zstack_name or ""
    usable = re.fullmatch(NAME_PATTERN, zstack_name) is not None
    return {
        "uuid": canonical,
        "name": zstack_name if usable else fallback_name(canonical),
        "description": zstack_name[:DESCRIPTION_LIMIT],
        "labels": {NAME_LABEL: zstack_name},
    }


# ---- value helpers -------------------------------------------------------------------------------


def _integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unmappable(path, f"must be a whole number, got {value!r}")
    return value


def _optional_integer(cmd: Command, key: str) -> int | None:
    value = cmd.get(key)
    return None if value is None else _integer(value, key)


def _flag(value: object) -> bool:
    """Older management nodes send some booleans as the strings "true"/"false"."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def json_object(value: object, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Unmappable(path, f"must be an object, got {value!r}")
    return value


def json_list(value: object, path: str) -> list[Any]:
    """A JSON list; ZStack sends null or [] for "none" interchangeably."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Unmappable(path, f"must be a list, got {value!r}")
    return value


def _choice(value: object, path: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise Unmappable(path, f"must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _addons(cmd: Command) -> Mapping[str, Any]:
    return json_object(cmd.get("addons"), "addons")


def is_set(value: object) -> TypeGuard[int]:
    """ZStack marks "not set" with null, 0 or -1."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# ---- cpu and memory ------------------------------------------------------------------------------


def _hotplug(cmd: Command) -> bool:
    """ZStack's useNuma means "prepare for CPU and memory hotplug" (one NUMA cell, ceilings above boot)."""
    return _flag(cmd.get("useNuma"))


def _cpu(cmd: Command) -> Document:
    vcpus = _integer(cmd.get("cpuNum"), "cpuNum")
    cpu: Document = {"vcpus": vcpus}
    max_vcpus = _optional_integer(cmd, "maxVcpuNum") if _hotplug(cmd) else None
    if max_vcpus is not None and max_vcpus > vcpus:
        cpu["max_vcpus"] = max_vcpus
    topology = _topology(cmd, vcpus, cpu.get("max_vcpus", vcpus))
    if topology:
        cpu["topology"] = topology
    mode = _cpu_mode(cmd)
    if mode:
        cpu["mode"] = mode
    shares = json_object(cmd.get("priorityConfigStruct"), "priorityConfigStruct").get("cpuShares")
    if is_set(shares):
        cpu["shares"] = shares
    pinning = [
        _pin(rule, f"addons.cpuPinning.{i}")
        for i, rule in enumerate(json_list(_addons(cmd).get("cpuPinning"), "addons.cpuPinning"))
    ]
    if pinning:
        cpu["pinning"] = pinning
    return {"cpu": cpu}


def _topology(cmd: Command, vcpus: int, ceiling: int) -> Document | None:
    """socketNum x cpuOnSocket x threadsPerCore, sized for the boot vCPUs as ZStack sizes it.

    The guest topology must hold the hotplug ceiling, so with hotplug on, sockets are added for the
    hot-pluggable vCPUs (ZStack's agent does the same with its fixed 32 sockets x 4 cores).
    """
    sockets = _optional_integer(cmd, "socketNum")
    cores = _optional_integer(cmd, "cpuOnSocket")
    threads = _optional_integer(cmd, "threadsPerCore") or 1
    if sockets is None and cores is None:
        return None
    if sockets is None or cores is None:
        raise Unmappable("socketNum", "socketNum and cpuOnSocket must be given together")
    per_socket = cores * threads
    if sockets * per_socket != vcpus:
        raise Unmappable("socketNum", f"{sockets} sockets x {cores} cores x {threads} threads is not cpuNum ({vcpus})")
    if ceiling % per_socket:
        raise Unmappable("maxVcpuNum", f"{ceiling} vCPUs do not fill whole sockets of {per_socket}")
    return {"sockets": ceiling // per_socket, "cores": cores, "threads": threads}


def _cpu_mode(cmd: Command) -> str | None:
    nested = cmd.get("nestedVirtualization") or "none"
    if nested == "none":
        return None
    if nested in HOST_CPU_MODES:
        return str(nested)
    if nested == "custom":
        model = cmd.get("vmCpuModel")
        if not isinstance(model, str) or not model:
            raise Unmappable("vmCpuModel", "is required when nestedVirtualization is custom")
        return model
    raise Unmappable("nestedVirtualization", f"must be none, host-model, host-passthrough or custom; got {nested!r}")


def _pin(rule: object, path: str) -> Document:
    mapping = json_object(rule, path)
    return {"vcpu": _integer(mapping.get("vCpu"), f"{path}.vCpu"), "host_cpus": mapping.get("pCpuSet")}


def _memory(cmd: Command) -> Document:
    memory: Document = {"size": _integer(cmd.get("memory"), "memory")}
    max_memory = _optional_integer(cmd, "maxMemory") if _hotplug(cmd) else None
    if max_memory is not None and max_memory > memory["size"]:
        memory["max_size"] = max_memory
        memory["slots"] = HOTPLUG_MEMORY_SLOTS
    if _addons(cmd).get("useMemBalloon") is False:
        memory["balloon"] = False
    if _flag(cmd.get("useHugePage")):
        memory["hugepages"] = True
    return {"memory": memory}


# ---- boot ----------------------------------------------------------------------------------------


def _machine(cmd: Command) -> str | None:
    machine = cmd.get("machineType")
    return str(machine) if machine else None


def _legacy_bus(machine: str | None) -> str:
    """The bus ZStack gives non-virtio disks and CD-ROMs: IDE on i440fx ("pc"), SATA on q35."""
    return "sata" if machine and "q35" in machine else "ide"


def _boot(cmd: Command) -> Document:
    """bootDev becomes boot.order only when no device carries its own bootOrder (libvirt takes one or the other,
    and ZStack's newer agents ignore bootDev in favour of the per-device orders)."""
    boot: Document = {}
    mode = cmd.get("bootMode")
    if mode:
        if mode not in BOOT_MODES:
            raise Unmappable("bootMode", f"must be Legacy or UEFI; got {mode!r} (vmhost has no CSM firmware)")
        boot["firmware"] = BOOT_MODES[mode]
    if _flag(cmd.get("secureBoot")):
        raise Unmappable("secureBoot", "secure boot is not supported by vmhost")
    machine = _machine(cmd)
    if machine:
        boot["machine"] = machine
    if _flag(cmd.get("useBootMenu")):
        boot["menu"] = True
    devices = [_choice(d, f"bootDev.{i}", BOOT_DEVICES) for i, d in enumerate(json_list(cmd.get("bootDev"), "bootDev"))]
    if devices and not _devices_carry_boot_order(cmd):
        boot["order"] = list(dict.fromkeys(devices))
    return {"boot": boot}


def _devices_carry_boot_order(cmd: Command) -> bool:
    """Malformed devices are left to the sections that convert them, which name them in their problems."""
    devices = [cmd.get("rootVolume"), *json_list(cmd.get("cdRoms"), "cdRoms"), *json_list(cmd.get("nics"), "nics")]
    return any(isinstance(d, Mapping) and is_set(d.get("bootOrder")) for d in devices)


# ---- disks ---------------------------------------------------------------------------------------


def disk_from_volume(volume: Mapping[str, Any], path: str, machine: str | None, qos: Mapping[str, Any]) -> Document:
    """One VolumeTO as a vmhost disk; `qos` is the VolumeQos addon (keyed by volumeUuid), `machine` picks the
    bus for non-virtio disks. Also used for /vm/attachdatavolume."""
    disk: Document = {"source": volume_source(volume, path), "bus": _volume_bus(volume, machine)}
    if volume.get("cacheMode"):
        disk["cache"] = volume["cacheMode"]
    if _flag(volume.get("shareable")):
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
    if _flag(volume.get("useVirtioSCSI")):
        return "virtio-scsi"
    if _flag(volume.get("useVirtio")):
        return "virtio"
    return _legacy_bus(machine)


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


def _disks(cmd: Command) -> Document:
    qos = json_object(_addons(cmd).get("VolumeQos"), "addons.VolumeQos")
    disks = []
    for path, volume in _volumes(cmd):
        disk = disk_from_volume(volume, path, _machine(cmd), qos)
        if path == "rootVolume" and is_set(volume.get("bootOrder")):
            disk["boot_order"] = volume["bootOrder"]  # ZStack honours a bootOrder on the root volume only
        disks.append(disk)
    return {"disks": disks}


def _cdroms(cmd: Command) -> Document:
    """cdRoms in deviceId order (an empty one is an empty tray); the 2.x bootIso when there are none."""
    cdroms = _by_device_id(cmd, "cdRoms")
    boot_iso = cmd.get("bootIso")
    if not cdroms and isinstance(boot_iso, Mapping) and boot_iso.get("path"):
        cdroms = [("bootIso", boot_iso)]
    return {"cdroms": [_cdrom(cdrom, path, _legacy_bus(_machine(cmd))) for path, cdrom in cdroms]}


def _cdrom(cdrom: Mapping[str, Any], path: str, bus: str) -> Document:
    drive: Document = {"bus": bus}
    iso = cdrom.get("path")
    if iso and not _flag(cdrom.get("isEmpty")):
        if not str(iso).startswith("/"):
            raise Unmappable(f"{path}.path", f"only ISO files on this host are supported, got {iso!r}")
        drive["iso"] = iso
    if is_set(cdrom.get("bootOrder")):
        drive["boot_order"] = cdrom["bootOrder"]
    return drive


# ---- nics ----------------------------------------------------------------------------------------


def _nics(cmd: Command) -> Document:
    qos = json_object(_addons(cmd).get("NicQos"), "addons.NicQos")
    return {"nics": [_nic(nic, path, qos) for path, nic in _by_device_id(cmd, "nics")]}


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
        return _choice(nic["driverType"], f"{path}.driverType", NIC_MODELS)
    return "virtio" if _flag(nic.get("useVirtio")) else "e1000"


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


# ---- display, devices, platform ------------------------------------------------------------------


def _display(cmd: Command, listen: str) -> Document:
    """consoleMode vnc|spice with its password; no console at all when noConsole is set or no mode is given.

    ZStack's agent listens on 0.0.0.0; vmhost listens where the caller says (loopback by default) because a
    console on every address is reachable by anyone who can reach the host.
    """
    mode = cmd.get("consoleMode")
    if not mode or _addons(cmd).get("noConsole") is True:
        return {}
    graphics: Document = {"type": _choice(mode, "consoleMode", CONSOLE_MODES), "listen": listen}
    if cmd.get("consolePassword"):
        graphics["password"] = cmd["consolePassword"]
    if cmd.get("videoType"):
        graphics["video"] = _choice(cmd["videoType"], "videoType", VIDEO_TYPES)
    if mode == "spice":
        graphics["sound"] = True  # ZStack always gives SPICE guests a sound card
    return {"graphics": graphics}


def _guest_agent(cmd: Command) -> Document:
    """The channel addon asks for the org.qemu.guest_agent.0 port; libvirt chooses the host socket itself."""
    return {"guest_agent": bool(_addons(cmd).get("channel"))}


def _passthrough(cmd: Command) -> Document:
    addons = _addons(cmd)
    pci = [
        _pci(entry, f"addons.pciDevice.{i}")
        for i, entry in enumerate(json_list(addons.get("pciDevice"), "addons.pciDevice"))
    ]
    usb = [
        _usb(entry, f"addons.usbDevice.{i}")
        for i, entry in enumerate(json_list(addons.get("usbDevice"), "addons.usbDevice"))
    ]
    return {"passthrough": {"pci": pci, "usb": usb}} if pci or usb else {}


def _pci(entry: object, path: str) -> Document:
    """ "address,specUuid"; ZStack detaches the device from its host driver itself, so managed is off."""
    if not isinstance(entry, str) or not entry:
        raise Unmappable(path, f"must be 'address[,specUuid]', got {entry!r}")
    return {"address": entry.split(",")[0], "managed": False}


def _usb(entry: object, path: str) -> Document:
    """ "bus:device:vendor:product:version:PassThrough:..."; Redirect (USB over TCP) has no vmhost equivalent."""
    fields = entry.split(":") if isinstance(entry, str) else []
    if len(fields) != USB_ADDON_FIELDS:
        raise Unmappable(path, f"must be ZStack's bus:device:vendor:product:version:mode:port:host, got {entry!r}")
    if fields[5] != "PassThrough":
        raise Unmappable(path, f"USB mode {fields[5]!r} is not supported (only PassThrough)")
    return {"bus": int(fields[0]), "device": int(fields[1])}


def _platform(cmd: Command) -> Document:
    offset = cmd.get("clock") or "utc"
    clock: Document = {"offset": _choice(offset, "clock", ("utc", "localtime"))}
    if offset == "localtime":
        clock["timers"] = LOCALTIME_TIMERS  # ZStack's timer tuning for Windows guests
    features = {
        "acpi": _flag(cmd.get("acpi", True)),
        "hyperv": _flag(cmd.get("emulateHyperV")),
        "hide_kvm": _flag(cmd.get("kvmHiddenState")),
    }
    return {"clock": clock, "features": features}


# ---- the whole command ---------------------------------------------------------------------------


def start_vm_spec(cmd: Command, console_listen: str = LOOPBACK) -> Document:
    """The spec for one StartVmCmd; a SpecError lists every field that could not be mapped."""
    if not isinstance(cmd, Mapping):
        raise SpecError([Problem("", f"a StartVmCmd must be a JSON object, got {type(cmd).__name__}")])
    sections: list[Callable[[Command], Document]] = [
        _identity,
        _cpu,
        _memory,
        _boot,
        _disks,
        _cdroms,
        _nics,
        partial(_display, listen=console_listen),
        _guest_agent,
        _passthrough,
        _platform,
    ]
    document: Document = {}
    problems: list[Problem] = []
    for section in sections:
        try:
            document.update(section(cmd))
        except Unmappable as exc:
            problems.append(Problem(exc.path, exc.problem))
    if problems:
        raise SpecError(problems)
    return document


def data_volume_disk(cmd: Command, machine: str | None) -> Document:
    """The disk for an AttachDataVolumeCmd {volume, vmInstanceUuid, addons}."""
    try:
        volume = json_object(cmd.get("volume"), "volume")
        if not volume:
            raise Unmappable("volume", "is required")
        return disk_from_volume(
            volume, "volume", machine, json_object(_addons(cmd).get("VolumeQos"), "addons.VolumeQos")
        )
    except Unmappable as exc:
        raise SpecError([Problem(exc.path, exc.problem)]) from None


def source_identity(source: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two disk sources the same storage, whatever their other settings (format, auth)."""
    keys = {"file": ("path",), "block": ("path",), "rbd": ("pool", "image"), "iscsi": ("portal", "target", "lun")}
    kind = source.get("type")
    return (kind, *(str(source.get(key)) for key in keys.get(str(kind), ())))
