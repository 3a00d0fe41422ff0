"""ZStack's StartVmCmd as a vmhost spec document (its disks, CD-ROMs and NICs: devices.py).

Pure functions: no host access, so every mapping can be tested on its own. The input keeps ZStack's own
field names; the output is a dict that `vmhost.spec.parse_spec` accepts. What cannot be expressed in a
vmhost spec is refused with a SpecError whose problem paths name the ZStack field, never silently dropped.
Fields vmhost has no use for (cpuSpeed, hostManagementIp, timeout, ...) are ignored, as ZStack's own agent
ignores fields it does not know; fields.py (docs/zstack-fields.md) lists what happens to each field.
"""

import re
from collections.abc import Callable, Mapping
from functools import partial

from vmhost.dialects.zstack.devices import cdroms_of, device_fields, disks_of, machine_of, nics_of
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
from vmhost.spec import Problem, SpecError, VMSpec, parse_spec
from vmhost.spec.units import MiB
from vmhost.spec.vm import NAME_PATTERN

HOTPLUG_MEMORY_SLOTS = 16
DESCRIPTION_LIMIT = 1024
BOOT_DEVICES = ("hd", "cdrom", "network")
VIDEO_TYPES = ("cirrus", "vga", "qxl", "virtio")
CONSOLE_MODES = ("vnc", "spice")
HOST_CPU_MODES = ("host-model", "host-passthrough")
BOOT_MODES = {"Legacy": "bios", "UEFI": "uefi"}
LOCALTIME_TIMERS: list[Document] = [{"name": "pit", "tickpolicy": "delay"}, {"name": "hpet", "present": False}]
"""After the rtc (catchup), ZStack's timer tuning for Windows guests."""
USB_ADDON_FIELDS = 8
USB_REDIRECT_CHANNELS = 4
CLOCK_TRACKS = ("boot", "guest", "wall", "realtime")
CRASH_ACTIONS = ("destroy", "restart", "preserve", "coredump-destroy", "coredump-restart")
DEFAULT_CRASH_ACTION = "preserve"
"""vm_plugin.py make_meta: on_crash is addons.onCrash, or preserve when it is unset."""
REFUSED_WHEN_SET = {
    "coloPrimary": "COLO fault tolerance is not supported",
    "coloSecondary": "COLO fault tolerance is not supported",
    "useColoBinary": "COLO's own QEMU build is not supported",
    "cacheVolumes": "COLO cache volumes are not supported",
    "memorySnapshotPath": "resuming from a memory snapshot is not supported; the guest would boot afresh",
    "createPaused": "vmhost starts guests running, not paused",
    "addons.userDefinedXml": "a whole domain XML bypasses vmhost's spec; describe the VM in the command's fields",
    "addons.userDefinedXmlHookScript": "scripts rewriting the domain XML are not run",
    "addons.qemuCommandLine": "raw QEMU arguments are not passed through",
    "addons.qemuPath": "vmhost runs the host's one emulator",
    "addons.loaderRom": "firmware ROM files are not supported (bootMode picks BIOS or UEFI)",
    "addons.storageDevice": "SCSI LUN passthrough is not supported",
    "addons.numaNodes": "guest NUMA cells pinned to host nodes are not supported",
    "addons.panicIsa": "a pvpanic device is not supported",
    "addons.panicHyperv": "the Hyper-V crash notifier is not supported",
}
SOUND_MODELS = ("ich6", "ich9", "ac97")  # ZStack's soundType values (its global config validates them)
SPICE_STREAMING = ("off", "all", "filter")


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
    cpu["mode"] = _cpu_mode(cmd)
    features = _cpu_features(cmd)
    if features:
        cpu["features"] = features
    return {"cpu": cpu | _host_placement(cmd)}


def _host_placement(cmd: Command) -> Document:
    """Weight (priorityConfigStruct.cpuShares) and host CPUs of the vCPUs and of QEMU's own threads."""
    placement: Document = {}
    shares = json_object(cmd.get("priorityConfigStruct"), "priorityConfigStruct").get("cpuShares")
    if is_set(shares):
        placement["shares"] = shares
    pinning = [
        _pin(rule, f"addons.cpuPinning.{i}")
        for i, rule in enumerate(json_list(addons_of(cmd).get("cpuPinning"), "addons.cpuPinning"))
    ]
    if pinning:
        placement["pinning"] = pinning
    if addons_of(cmd).get("emulatorPinning"):
        placement["emulator_pinning"] = str(addons_of(cmd)["emulatorPinning"])
    return placement


def _topology(cmd: Command, vcpus: int, ceiling: int) -> Document | None:
    """socketNum x cpuOnSocket x threadsPerCore, as ZStack's management node sizes it.

    With useNuma the management node sizes the topology for maxVcpuNum (the hotplug ceiling), which libvirt
    requires; older ones size it for cpuNum, and then sockets are added for the hot-pluggable vCPUs. Without
    socketNum ZStack's agent picks 32 sockets x 4 cores for the ceiling; vmhost leaves the topology to libvirt.
    """
    sockets = optional_integer(cmd, "socketNum")
    cores = optional_integer(cmd, "cpuOnSocket")
    threads = optional_integer(cmd, "threadsPerCore") or 1
    if sockets is None and cores is None:
        return None
    if sockets is None or cores is None:
        raise Unmappable("socketNum", "socketNum and cpuOnSocket must be given together")
    per_socket = cores * threads
    if sockets * per_socket == ceiling:
        return {"sockets": sockets, "cores": cores, "threads": threads}
    if sockets * per_socket != vcpus:
        wanted = f"maxVcpuNum ({ceiling}) or cpuNum ({vcpus})" if ceiling != vcpus else f"cpuNum ({vcpus})"
        raise Unmappable("socketNum", f"{sockets} sockets x {cores} cores x {threads} threads is not {wanted}")
    if ceiling % per_socket:
        raise Unmappable("maxVcpuNum", f"{ceiling} vCPUs do not fill whole sockets of {per_socket}")
    return {"sockets": ceiling // per_socket, "cores": cores, "threads": threads}


def _cpu_mode(cmd: Command) -> str:
    """none is a bare <cpu> (the emulator's default model, no host flags), as ZStack's agent writes it.
    vmCpuVendorId would make the model lie about its vendor (the agent passes it on QEMU's command line)."""
    vendor = cmd.get("vmCpuVendorId")
    if vendor not in (None, "", "None"):
        raise Unmappable("vmCpuVendorId", f"a CPU vendor other than the model's ({vendor!r}) is not supported")
    nested = cmd.get("nestedVirtualization") or "none"
    if nested == "none":
        return "default"
    if nested in HOST_CPU_MODES:
        return str(nested)
    if nested == "custom":
        model = cmd.get("vmCpuModel")
        if not isinstance(model, str) or not model:
            raise Unmappable("vmCpuModel", "is required when nestedVirtualization is custom")
        return model
    raise Unmappable("nestedVirtualization", f"must be none, host-model, host-passthrough or custom; got {nested!r}")


def _cpu_features(cmd: Command) -> Document:
    """x2apic: false and cpuHypervisorFeature: false turn those flags off, except on the default model, where
    ZStack's agent sets no flags (libvirt takes none without a model)."""
    if (cmd.get("nestedVirtualization") or "none") == "none":
        return {}
    features: Document = {}
    if cmd.get("x2apic") is not None and not flag(cmd.get("x2apic")):
        features["x2apic"] = "disable"
    if cmd.get("cpuHypervisorFeature") is not None and not flag(cmd.get("cpuHypervisorFeature")):
        features["hypervisor"] = "disable"
    return features


def _pin(rule: object, path: str) -> Document:
    mapping = json_object(rule, path)
    return {"vcpu": integer(mapping.get("vCpu"), f"{path}.vCpu"), "host_cpus": mapping.get("pCpuSet")}


def _memory(cmd: Command) -> Document:
    memory: Document = {"size": integer(cmd.get("memory"), "memory")}
    max_memory = optional_integer(cmd, "maxMemory") if _hotplug(cmd) else None
    if max_memory is not None:
        ceiling = max_memory - max_memory % MiB  # the host's total memory, in bytes, rarely whole MiB
        if ceiling > memory["size"]:
            memory["max_size"] = ceiling
            memory["slots"] = HOTPLUG_MEMORY_SLOTS
    if addons_of(cmd).get("useMemBalloon") is False:
        memory["balloon"] = False
    if flag(cmd.get("useHugePage")):
        memory["hugepages"] = True
    if flag(cmd.get("noSharePages")):
        memory["merge_pages"] = False
    if choice(cmd.get("MemAccess") or "private", "MemAccess", ("private", "shared")) == "shared":
        memory["access"] = "shared"
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
        timeout = optional_integer(cmd, "bootMenuSplashTimeout")
        if timeout is not None:
            boot["menu_timeout"] = timeout
    devices = boot_devices(cmd)
    if devices and not _devices_carry_boot_order(cmd):
        boot["order"] = devices
    return {"boot": boot}


def boot_devices(cmd: Command) -> list[str]:
    """bootDev (StartVmCmd, RebootVmCmd) as boot.order's device classes, first occurrence kept."""
    devices = [choice(d, f"bootDev.{i}", BOOT_DEVICES) for i, d in enumerate(json_list(cmd.get("bootDev"), "bootDev"))]
    return list(dict.fromkeys(devices))


def reboot_boot_order(devices: list[str], spec: VMSpec) -> list[str] | None:
    """The boot order a reboot's bootDev gives the VM from now on, or None to keep the one it has.

    Vm.reboot puts bootDev into the definition it starts again, so it lasts beyond this boot. As at /vm/start,
    per-device boot orders win (libvirt takes one or the other; the agent's redefinition would be refused), and
    no bootDev keeps the VM's order (the management node always sends one, at least hd)."""
    orders = (
        [d.boot_order for d in spec.disks] + [c.boot_order for c in spec.cdroms] + [n.boot_order for n in spec.nics]
    )
    devices_ordered = any(order is not None for order in orders)
    if not devices or devices_ordered or devices == spec.boot.order:
        return None
    return devices


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
    if not flag(cmd.get("isApplianceVm")):
        graphics["tablet"] = True  # ZStack's agent gives every VM but its virtual routers a USB tablet
    if cmd.get("consolePassword"):
        graphics["password"] = cmd["consolePassword"]
    if cmd.get("videoType"):
        graphics["video"] = choice(cmd["videoType"], "videoType", VIDEO_TYPES)
    if graphics.get("video") == "qxl":
        graphics.update(_qxl(cmd))
    if mode == "spice":
        graphics.update(_spice(cmd))
    return {"graphics": graphics}


def _qxl(cmd: Command) -> Document:
    """VDIMonitorNumber qxl adapters (one per screen) with qxlMemory {ram, vram, vgamem} in KiB, as ZStack's
    agent writes them; the management node sends qxlMemory's numbers as text."""
    qxl: Document = {}
    monitors = optional_integer(cmd, "VDIMonitorNumber")
    if monitors is not None and monitors > 1:
        qxl["monitors"] = monitors
    memory = json_object(cmd.get("qxlMemory"), "qxlMemory")
    if memory:
        qxl["qxl"] = {f"{key}_kib": _kib_text(memory.get(key), f"qxlMemory.{key}") for key in ("ram", "vram", "vgamem")}
    return qxl


def _kib_text(value: object, path: str) -> int:
    """The management node's system tags give qxlMemory as text ("65536"); a number is taken too."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return integer(value, path)


def _spice(cmd: Command) -> Document:
    """ZStack always gives SPICE guests a sound card (soundType, ich6 when unset) and sets the streaming mode.

    spiceChannels asks for TLS-only channels; vmhost configures no SPICE TLS, so they are refused rather than
    served in the clear (ZStack's agent drops them silently on a host without TLS).
    """
    spice: Document = {"sound": choice(cmd.get("soundType") or "ich6", "soundType", SOUND_MODELS)}
    if cmd.get("spiceStreamingMode"):
        spice["streaming"] = choice(cmd["spiceStreamingMode"], "spiceStreamingMode", SPICE_STREAMING)
    if json_list(cmd.get("spiceChannels"), "spiceChannels"):
        raise Unmappable("spiceChannels", "secure SPICE channels need SPICE TLS, which vmhost does not configure")
    return spice


def _usb_redirect(cmd: Command) -> Document:
    """usbRedirect: ZStack's four spicevmc redirection devices (two USB 2, two USB 3 on its agent)."""
    if not flag(cmd.get("usbRedirect")):
        return {}
    if cmd.get("consoleMode") != "spice" or addons_of(cmd).get("noConsole") is True:
        raise Unmappable("usbRedirect", "USB redirection travels over SPICE; it needs consoleMode spice")
    return {"usb": {"redirection": USB_REDIRECT_CHANNELS}}


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
    if json_list(addons.get("mdevDevice"), "addons.mdevDevice"):
        raise Unmappable("addons.mdevDevice", "mediated devices (vGPU slices) are not supported")
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


def _vhost_user(cmd: Command) -> Document:
    """addons.vhostSrcPath turns every NIC into a vhost-user port on that socket in ZStack's agent; vmhost
    refuses it rather than attach the NICs to bridges instead (nics.N.type refuses the OVS-DPDK kinds)."""
    if addons_of(cmd).get("vhostSrcPath"):
        raise Unmappable("addons.vhostSrcPath", "vhost-user NICs are not supported (only NICs on host bridges)")
    return {}


def _platform(cmd: Command) -> Document:
    offset = cmd.get("clock") or "utc"
    clock: Document = {"offset": choice(offset, "clock", ("utc", "localtime"))}
    hyperv = flag(cmd.get("emulateHyperV"))
    hyperv_clock = flag(cmd.get("hypervClock"))
    timers = _localtime_timers(cmd) if offset == "localtime" else []
    if hyperv_clock and (offset == "localtime" or hyperv):
        timers.append({"name": "hypervclock", "present": True})
    if timers:
        clock["timers"] = timers
    features: Document = {
        "acpi": flag(cmd.get("acpi", True)),
        "hyperv": hyperv,
        "hide_kvm": flag(cmd.get("kvmHiddenState")),
        "suspend_to_mem": flag(cmd.get("suspendToRam")),  # the agent always writes both, "no" when unset
        "suspend_to_disk": flag(cmd.get("suspendToDisk")),
    }
    if flag(cmd.get("vmPortOff")):
        features["vmport"] = False
    if hyperv and hyperv_clock:
        features["hyperv_synic"] = True
    if hyperv and cmd.get("vendorId"):
        features["hyperv_vendor_id"] = cmd["vendorId"]
    return {"clock": clock, "features": features, **_smbios(cmd), **_on_crash(cmd)}


def _localtime_timers(cmd: Command) -> list[Document]:
    """ZStack's timer tuning for Windows guests; clockTrack guest keeps the rtc on the guest's own time."""
    rtc: Document = {"name": "rtc", "tickpolicy": "catchup"}
    if cmd.get("clockTrack"):
        rtc["track"] = choice(cmd["clockTrack"], "clockTrack", CLOCK_TRACKS)
    return [rtc, *LOCALTIME_TIMERS]


def _on_crash(cmd: Command) -> Document:
    """addons.onCrash as libvirt's on_crash; unset, preserve, as ZStack's agent writes it: a crashed guest stays
    for inspection (a memory dump) and the management node sees it Crashed, where destroy would make it vanish."""
    action = addons_of(cmd).get("onCrash") or DEFAULT_CRASH_ACTION
    return {"lifecycle": {"on_crash": choice(action, "addons.onCrash", CRASH_ACTIONS)}}


def _refused(cmd: Command) -> Document:
    """Fields that would change what runs in ways vmhost does not offer; each is refused whenever it is set."""
    addons = addons_of(cmd)
    for key, why in REFUSED_WHEN_SET.items():
        name = key.removeprefix("addons.")
        value = addons.get(name) if key.startswith("addons.") else cmd.get(key)
        if value not in (None, False, "", [], {}, 0, -1, "false"):
            raise Unmappable(key, why)
    return {}


def _smbios(cmd: Command) -> Document:
    """systemSerialNumber, with chassisAssetTag and oemStrings beside it; ZStack's agent writes none of them
    without a serial."""
    serial = cmd.get("systemSerialNumber")
    if not serial:
        return {}
    smbios: Document = {"serial": serial}
    if cmd.get("chassisAssetTag") is not None:
        smbios["chassis_asset_tag"] = cmd["chassisAssetTag"]
    oem = json_list(cmd.get("oemStrings"), "oemStrings")
    if oem:
        smbios["oem_strings"] = oem
    return {"smbios": smbios}


# ---- the whole command ---------------------------------------------------------------------------

SPEC_FIELDS = {
    "uuid": "vmInstanceUuid",
    "name": "vmName",
    "description": "vmName",
    "labels": "vmName",
    "cpu": "cpuNum",
    "cpu.max_vcpus": "maxVcpuNum",
    "cpu.topology": "socketNum",
    "cpu.mode": "nestedVirtualization",
    "cpu.features": "x2apic",
    "cpu.shares": "priorityConfigStruct.cpuShares",
    "cpu.pinning": "addons.cpuPinning",
    "cpu.emulator_pinning": "addons.emulatorPinning",
    "memory": "memory",
    "memory.max_size": "maxMemory",
    "memory.slots": "maxMemory",
    "memory.access": "MemAccess",
    "boot": "bootDev",
    "boot.firmware": "bootMode",
    "boot.machine": "machineType",
    "boot.menu_timeout": "bootMenuSplashTimeout",
    "disks": "dataVolumes",
    "cdroms": "cdRoms",
    "nics": "nics",
    "iothreads": "addons.ioThreadNum",
    "graphics": "consoleMode",
    "graphics.password": "consolePassword",
    "graphics.video": "videoType",
    "graphics.sound": "soundType",
    "graphics.monitors": "VDIMonitorNumber",
    "graphics.qxl": "qxlMemory",
    "graphics.streaming": "spiceStreamingMode",
    "graphics.tablet": "isApplianceVm",
    "usb": "usbRedirect",
    "passthrough.pci": "addons.pciDevice",
    "passthrough.usb": "addons.usbDevice",
    "clock": "clock",
    "features": "emulateHyperV",
    "features.acpi": "acpi",
    "features.hide_kvm": "kvmHiddenState",
    "features.hyperv_synic": "hypervClock",
    "features.hyperv_vendor_id": "vendorId",
    "features.vmport": "vmPortOff",
    "features.suspend_to_mem": "suspendToRam",
    "features.suspend_to_disk": "suspendToDisk",
    "lifecycle": "addons.onCrash",
    "smbios": "systemSerialNumber",
    "smbios.chassis_asset_tag": "chassisAssetTag",
    "smbios.oem_strings": "oemStrings",
}
"""Spec paths and the ZStack field each comes from (the longest prefix of a problem's path wins)."""


def start_vm_spec(cmd: Command, console_listen: str = LOOPBACK) -> Document:
    """The spec for one StartVmCmd; a SpecError lists every field that could not be mapped.

    The document is validated here too, so that a value the spec refuses (a vendorId too long, a bridge name
    no host can have) is reported under the ZStack field it came from, with vmhost's path beside it.
    """
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
        _usb_redirect,
        _vhost_user,
        _platform,
        _refused,
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
    try:
        parse_spec(document)
    except SpecError as exc:
        fields = SPEC_FIELDS | device_fields(cmd)
        raise SpecError([_in_zstack_words(problem, fields) for problem in exc.problems]) from None
    return document


def _in_zstack_words(problem: Problem, fields: Mapping[str, str]) -> Problem:
    matches = [p for p in fields if problem.path == p or problem.path.startswith(p + ".")]
    if not matches:
        return problem
    return Problem(fields[max(matches, key=len)], f"{problem.message} (vmhost: {problem.path})")
