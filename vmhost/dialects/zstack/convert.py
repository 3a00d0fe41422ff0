"""ZStack's StartVmCmd as a vmhost spec document (its disks, CD-ROMs and NICs: devices.py).

Pure functions: no host access, so every mapping can be tested on its own. The input keeps ZStack's own
field names; the output is a dict that `vmhost.spec.parse_spec` accepts. What cannot be expressed in a
vmhost spec is refused with a SpecError whose problem paths name the ZStack field, never silently dropped.
Fields vmhost has no use for (cpuSpeed, hostManagementIp, timeout, VDIMonitorNumber, ...) are ignored,
as ZStack's own agent ignores fields it does not know.
"""

import re
from collections.abc import Callable, Mapping
from functools import partial

from vmhost.dialects.zstack.devices import cdroms_of, disks_of, machine_of, nics_of
from vmhost.dialects.zstack.values import (
    LOOPBACK,
    NAME_LABEL,
    Command,
    Document,
    Unmappable,
    addons_of,
    choice,
    fallback_name,
    flag,
    integer,
    is_set,
    json_list,
    json_object,
    optional_integer,
    vm_uuid,
)
from vmhost.spec import Problem, SpecError
from vmhost.spec.vm import NAME_PATTERN

HOTPLUG_MEMORY_SLOTS = 16
DESCRIPTION_LIMIT = 1024
BOOT_DEVICES = ("hd", "cdrom", "network")
VIDEO_TYPES = ("cirrus", "vga", "qxl", "virtio")
CONSOLE_MODES = ("vnc", "spice")
HOST_CPU_MODES = ("host-model", "host-passthrough")
BOOT_MODES = {"Legacy": "bios", "UEFI": "uefi"}
LOCALTIME_TIMERS = [
    {"name": "rtc", "tickpolicy": "catchup"},
    {"name": "pit", "tickpolicy": "delay"},
    {"name": "hpet", "present": False},
]
USB_ADDON_FIELDS = 8


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


# ---- cpu and memory ------------------------------------------------------------------------------


def _hotplug(cmd: Command) -> bool:
    """ZStack's useNuma means "prepare for CPU and memory hotplug" (one NUMA cell, ceilings above boot)."""
    return flag(cmd.get("useNuma"))


def _cpu(cmd: Command) -> Document:
    vcpus = integer(cmd.get("cpuNum"), "cpuNum")
    cpu: Document = {"vcpus": vcpus}
    max_vcpus = optional_integer(cmd, "maxVcpuNum") if _hotplug(cmd) else None
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
        for i, rule in enumerate(json_list(addons_of(cmd).get("cpuPinning"), "addons.cpuPinning"))
    ]
    if pinning:
        cpu["pinning"] = pinning
    return {"cpu": cpu}


def _topology(cmd: Command, vcpus: int, ceiling: int) -> Document | None:
    """socketNum x cpuOnSocket x threadsPerCore, sized for the boot vCPUs as ZStack sizes it.

    The guest topology must hold the hotplug ceiling, so with hotplug on, sockets are added for the
    hot-pluggable vCPUs (ZStack's agent does the same with its fixed 32 sockets x 4 cores).
    """
    sockets = optional_integer(cmd, "socketNum")
    cores = optional_integer(cmd, "cpuOnSocket")
    threads = optional_integer(cmd, "threadsPerCore") or 1
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
    return {"vcpu": integer(mapping.get("vCpu"), f"{path}.vCpu"), "host_cpus": mapping.get("pCpuSet")}


def _memory(cmd: Command) -> Document:
    memory: Document = {"size": integer(cmd.get("memory"), "memory")}
    max_memory = optional_integer(cmd, "maxMemory") if _hotplug(cmd) else None
    if max_memory is not None and max_memory > memory["size"]:
        memory["max_size"] = max_memory
        memory["slots"] = HOTPLUG_MEMORY_SLOTS
    if addons_of(cmd).get("useMemBalloon") is False:
        memory["balloon"] = False
    if flag(cmd.get("useHugePage")):
        memory["hugepages"] = True
    return {"memory": memory}


# ---- boot ----------------------------------------------------------------------------------------


def _boot(cmd: Command) -> Document:
    """bootDev becomes boot.order only when no device carries its own bootOrder (libvirt takes one or the other,
    and ZStack's newer agents ignore bootDev in favour of the per-device orders)."""
    boot: Document = {}
    mode = cmd.get("bootMode")
    if mode:
        if mode not in BOOT_MODES:
            raise Unmappable("bootMode", f"must be Legacy or UEFI; got {mode!r} (vmhost has no CSM firmware)")
        boot["firmware"] = BOOT_MODES[mode]
    if flag(cmd.get("secureBoot")):
        raise Unmappable("secureBoot", "secure boot is not supported by vmhost")
    machine = machine_of(cmd)
    if machine:
        boot["machine"] = machine
    if flag(cmd.get("useBootMenu")):
        boot["menu"] = True
    devices = [choice(d, f"bootDev.{i}", BOOT_DEVICES) for i, d in enumerate(json_list(cmd.get("bootDev"), "bootDev"))]
    if devices and not _devices_carry_boot_order(cmd):
        boot["order"] = list(dict.fromkeys(devices))
    return {"boot": boot}


def _devices_carry_boot_order(cmd: Command) -> bool:
    """Malformed devices are left to the sections that convert them, which name them in their problems."""
    devices = [cmd.get("rootVolume"), *json_list(cmd.get("cdRoms"), "cdRoms"), *json_list(cmd.get("nics"), "nics")]
    return any(isinstance(d, Mapping) and is_set(d.get("bootOrder")) for d in devices)


# ---- display, devices, platform ------------------------------------------------------------------


def _display(cmd: Command, listen: str) -> Document:
    """consoleMode vnc|spice with its password; no console at all when noConsole is set or no mode is given.

    ZStack's agent listens on 0.0.0.0; vmhost listens where the caller says (loopback by default) because a
    console on every address is reachable by anyone who can reach the host.
    """
    mode = cmd.get("consoleMode")
    if not mode or addons_of(cmd).get("noConsole") is True:
        return {}
    graphics: Document = {"type": choice(mode, "consoleMode", CONSOLE_MODES), "listen": listen}
    if cmd.get("consolePassword"):
        graphics["password"] = cmd["consolePassword"]
    if cmd.get("videoType"):
        graphics["video"] = choice(cmd["videoType"], "videoType", VIDEO_TYPES)
    if mode == "spice":
        graphics["sound"] = True  # ZStack always gives SPICE guests a sound card
    return {"graphics": graphics}


def _guest_agent(cmd: Command) -> Document:
    """The channel addon asks for the org.qemu.guest_agent.0 port; libvirt chooses the host socket itself."""
    return {"guest_agent": bool(addons_of(cmd).get("channel"))}


def _passthrough(cmd: Command) -> Document:
    addons = addons_of(cmd)
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
    clock: Document = {"offset": choice(offset, "clock", ("utc", "localtime"))}
    if offset == "localtime":
        clock["timers"] = LOCALTIME_TIMERS  # ZStack's timer tuning for Windows guests
    features = {
        "acpi": flag(cmd.get("acpi", True)),
        "hyperv": flag(cmd.get("emulateHyperV")),
        "hide_kvm": flag(cmd.get("kvmHiddenState")),
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
        disks_of,
        cdroms_of,
        nics_of,
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
