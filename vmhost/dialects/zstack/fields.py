"""What vmhost does with every field of the ZStack commands it serves: mapped (to which spec field), refused (why),
or ignored (why that is safe). docs/zstack-fields.md is generated from these tables (`markdown_table`), and the
tests check them against the corpus of real command bodies and against the converter itself.

Field names are ZStack's, as the management node sends them:
- `a.b`: key b of object a; `a[]`: every item of list a; `a.<volumeUuid>`: the objects of a map keyed by a uuid.
- An object listed as one entry (memBalloon, addons.channel, kvmHostAddons) is handled as a whole: its keys are
  covered by that entry.
- REFUSED means refused whenever it is set (not null, false, 0, -1 or empty); fields refused only for some values
  are MAPPED, with the values in NOTES.
- GAPS are fields vmhost still drops although that is not safe: known issue-16 leftovers, listed so that the
  table never claims more than the converter does.

Sources: zstackio/zstack @ 5a29293b (KVMAgentCommands.java, VolumeTO.java, KVMHost.startVm) and
zstackio/zstack-utility @ f7b496e8 (kvmagent/plugins/vm_plugin.py: what the agent does with each field).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SPEC_PATH = re.compile(r"[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)*")
"""A mapped field's target that is a spec path (cpu.vcpus, disks[].io_limits) rather than a description."""

# ---- StartVmCmd ----------------------------------------------------------------------------------------------------

_IDENTITY_MAPPED = {
    "vmInstanceUuid": "uuid",
    "vmName": "name",
}
_CPU_MAPPED = {
    "cpuNum": "cpu.vcpus",
    "maxVcpuNum": "cpu.max_vcpus",
    "useNuma": "cpu.max_vcpus",
    "socketNum": "cpu.topology.sockets",
    "cpuOnSocket": "cpu.topology.cores",
    "threadsPerCore": "cpu.topology.threads",
    "nestedVirtualization": "cpu.mode",
    "vmCpuModel": "cpu.mode",
    "x2apic": "cpu.features",
    "cpuHypervisorFeature": "cpu.features",
    "priorityConfigStruct.cpuShares": "cpu.shares",
    "addons.cpuPinning[].vCpu": "cpu.pinning[].vcpu",
    "addons.cpuPinning[].pCpuSet": "cpu.pinning[].host_cpus",
    "addons.emulatorPinning": "cpu.emulator_pinning",
}
_MEMORY_MAPPED = {
    "memory": "memory.size",
    "maxMemory": "memory.max_size",
    "MemAccess": "memory.access",
    "noSharePages": "memory.merge_pages",
    "useHugePage": "memory.hugepages",
    "addons.useMemBalloon": "memory.balloon",
}
_BOOT_MAPPED = {
    "bootDev": "boot.order",
    "bootMode": "boot.firmware",
    "machineType": "boot.machine",
    "useBootMenu": "boot.menu",
    "bootMenuSplashTimeout": "boot.menu_timeout",
}
_DISPLAY_MAPPED = {
    "consoleMode": "graphics.type",
    "consolePassword": "graphics.password",
    "videoType": "graphics.video",
    "soundType": "graphics.sound",
    "VDIMonitorNumber": "graphics.monitors",
    "qxlMemory.ram": "graphics.qxl.ram_kib",
    "qxlMemory.vram": "graphics.qxl.vram_kib",
    "qxlMemory.vgamem": "graphics.qxl.vgamem_kib",
    "spiceStreamingMode": "graphics.streaming",
    "spiceChannels": "graphics",
    "usbRedirect": "usb.redirection",
    "addons.noConsole": "graphics",
    "isApplianceVm": "graphics.tablet",
}
_PLATFORM_MAPPED = {
    "clock": "clock.offset",
    "hypervClock": "clock.timers[].name",
    "emulateHyperV": "features.hyperv",
    "vendorId": "features.hyperv_vendor_id",
    "kvmHiddenState": "features.hide_kvm",
    "vmPortOff": "features.vmport",
    "suspendToRam": "features.suspend_to_mem",
    "suspendToDisk": "features.suspend_to_disk",
    "clockTrack": "clock.timers[].track",
    "addons.onCrash": "lifecycle.on_crash",
    "acpi": "features.acpi",
    "systemSerialNumber": "smbios.serial",
    "chassisAssetTag": "smbios.chassis_asset_tag",
    "oemStrings": "smbios.oem_strings",
}
_DEVICES_MAPPED = {
    "addons.channel": "guest_agent",
    "addons.pciDevice": "passthrough.pci[].address",
    "addons.usbDevice": "passthrough.usb[].bus",
    "addons.ioThreadNum": "iothreads.count",
    "addons.ioThreadPins[].ioThreadId": "iothreads.pins[].id",
    "addons.ioThreadPins[].pin": "iothreads.pins[].host_cpus",
    "addons.VolumeQos.<volumeUuid>.totalBandwidth": "disks[].io_limits.total_bytes_sec",
    "addons.VolumeQos.<volumeUuid>.readBandwidth": "disks[].io_limits.read_bytes_sec",
    "addons.VolumeQos.<volumeUuid>.writeBandwidth": "disks[].io_limits.write_bytes_sec",
    "addons.VolumeQos.<volumeUuid>.totalIOPS": "disks[].io_limits.total_iops_sec",
    "addons.VolumeQos.<volumeUuid>.readIOPS": "disks[].io_limits.read_iops_sec",
    "addons.VolumeQos.<volumeUuid>.writeIOPS": "disks[].io_limits.write_iops_sec",
    "addons.NicQos.<nicUuid>.inboundBandwidth": "nics[].bandwidth.inbound.average_kib_s",
    "addons.NicQos.<nicUuid>.outboundBandwidth": "nics[].bandwidth.outbound.average_kib_s",
    "addons.ceph_secret_uuid": "disks[].source.auth.secret_uuid",
    "addons.ceph_secret_key": "disks[].source.auth.secret_uuid",
}


def _volume_fields(prefix: str, root: bool) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """VolumeTO (rootVolume, dataVolumes[]): mapped, refused and ignored fields under `prefix`."""
    mapped = {
        "installPath": "disks[].source.path",
        "volumeUuid": "disks[].serial",
        "deviceType": "disks[].source.type",
        "format": "disks[].source.format",
        "useVirtio": "disks[].bus",
        "useVirtioSCSI": "disks[].bus",
        "shareable": "disks[].shareable",
        "cacheMode": "disks[].cache",
        "wwn": "disks[].wwn",
        "ioThreadId": "disks[].iothread",
        "ioThreadPin": "iothreads.pins[].host_cpus",
        "monInfo[].hostname": "disks[].source.monitors",
        "monInfo[].port": "disks[].source.monitors",
        "secretUuid": "disks[].source.auth.secret_uuid",
        "physicalBlockSize": "disks[].physical_block_size",
    }
    refused = {
        "chapUsername": "CHAP credentials would have to travel in the command; vmhost takes them from a libvirt secret",
        "chapPassword": "CHAP credentials would have to travel in the command; vmhost takes them from a libvirt secret",
    }
    ignored = {
        "resourceUuid": "the management node's device id (same as volumeUuid), for its address bookkeeping",
        "deviceAddress": "the PCI/drive address of an earlier start; libvirt assigns addresses in device order",
        "type": "Root or Data: the root volume is rootVolume, the data volumes are dataVolumes",
        "primaryStorageType": "which ZStack storage holds the volume; deviceType and installPath say how to open it",
        "aioNative": "an I/O engine choice (native AIO); the guest sees the same disk",
        "multiQueues": "virtio-blk queue count, a performance setting; the guest sees the same disk",
    }
    if root:
        mapped["bootOrder"] = "disks[].boot_order"
        ignored["deviceId"] = "always 0: the root volume is the first disk whatever its deviceId"
        ignored["controllerIndex"] = "the agent gives only data volumes a virtio-scsi controller of their own"
    else:
        mapped["deviceId"] = "disks"
        mapped["controllerIndex"] = "disks[].controller"
        ignored["bootOrder"] = "ZStack's agent honours bootOrder on the root volume only (deviceId 0)"
    return (
        {f"{prefix}.{k}": v for k, v in mapped.items()},
        {f"{prefix}.{k}": v for k, v in refused.items()},
        {f"{prefix}.{k}": v for k, v in ignored.items()},
    )


_ROOT = _volume_fields("rootVolume", root=True)
_DATA = _volume_fields("dataVolumes[]", root=False)

_CDROM_MAPPED = {
    "cdRoms[].deviceId": "cdroms",
    **{
        f"{prefix}.{key}": target
        for prefix in ("cdRoms[]", "bootIso")
        for key, target in {
            "path": "cdroms[].iso",
            "bootOrder": "cdroms[].boot_order",
            "isEmpty": "cdroms[].iso",
            "monInfo[].hostname": "cdroms[].rbd.monitors",
            "monInfo[].port": "cdroms[].rbd.monitors",
            "secretUuid": "cdroms[].rbd.auth.secret_uuid",
        }.items()
    },
}
_CDROM_IGNORED = {
    "bootIso.deviceId": "2.x sends one boot ISO, so there is no order to keep",
    **{
        f"{prefix}.{key}": why
        for prefix in ("cdRoms[]", "bootIso")
        for key, why in {
            "imageUuid": "which ZStack image the ISO is; path says where it is",
            "resourceUuid": "the management node's device id: the agent writes it as the drive's serial so that its "
            "device reports (VirtualDeviceInfo) name the drive; vmhost sends no such reports",
            "primaryStorageUuid": "which ZStack storage caches the ISO; path (and monInfo for Ceph) say how to read it",
            "protocol": "null for file and Ceph ISOs, which path tells apart",
            "deviceAddress": "the drive address of an earlier start; libvirt assigns addresses in device order",
        }.items()
    },
}

_NIC_MAPPED = {
    f"nics[].{key}": target
    for key, target in {
        "mac": "nics[].mac",
        "bridgeName": "nics[].source",
        "nicInternalName": "nics[].tap",
        "deviceId": "nics",
        "useVirtio": "nics[].model",
        "driverType": "nics[].model",
        "bootOrder": "nics[].boot_order",
        "mtu": "nics[].mtu",
        "vHostAddOn.queueNum": "nics[].queues",
        "type": "nics[].type",
        "uuid": "nics[].bandwidth",
        "cleanTraffic": "nics[].allowed_ips",
        "ips": "nics[].allowed_ips",
        "state": "nics",
        "isolated": "nics",
        "pciDeviceAddress": "nics[].source",
        "vlanId": "nics[].vlan",
    }.items()
}
_NIC_IGNORED = {
    f"nics[].{key}": why
    for key, why in {
        "srcPath": "the agent fills it in itself for vhost-user NICs, which are refused by type",
        "resourceUuid": "the management node's device id (same as uuid), for its address bookkeeping",
        "deviceAddress": "the PCI address of an earlier start; libvirt assigns addresses in device order",
        "physicalInterface": "the bridge's uplink, which the management node set up; bridgeName is the attachment",
        "metaData": "the management node's bookkeeping (VNIC metadata); the agent does not read it",
        "vHostAddOn.rxBufferSize": "virtio ring size, only written by the agent with several queues; performance",
        "vHostAddOn.txBufferSize": "virtio ring size, only written by the agent with several queues; performance",
        "pci": "the PCI address of an earlier start; libvirt assigns addresses in device order",
        "ipForTf": "Tungsten Fabric (TFVNIC) NICs only, which are refused by type",
        "l2NetworkUuid": "the management node's network id; bridgeName is the attachment",
    }.items()
}

MAPPED: dict[str, str] = {
    **_IDENTITY_MAPPED,
    **_CPU_MAPPED,
    **_MEMORY_MAPPED,
    **_BOOT_MAPPED,
    **_DISPLAY_MAPPED,
    **_PLATFORM_MAPPED,
    **_DEVICES_MAPPED,
    **_ROOT[0],
    **_DATA[0],
    **_CDROM_MAPPED,
    **_NIC_MAPPED,
}
"""StartVmCmd fields vmhost maps, and the spec field each becomes (or decides: graphics for noConsole)."""

REFUSED: dict[str, str] = {
    **_ROOT[1],
    **_DATA[1],
    "addons.vhostSrcPath": "vhost-user NICs are not supported; they are refused rather than put on a bridge",
    "addons.mdevDevice": "mediated devices (vGPU slices) are not supported",
    "coloPrimary": "COLO fault tolerance (a primary/secondary QEMU pair) is not supported",
    "coloSecondary": "COLO fault tolerance (a primary/secondary QEMU pair) is not supported",
    "useColoBinary": "COLO fault tolerance runs a separate QEMU build, which vmhost does not use",
    "cacheVolumes": "COLO secondary's cache volumes (COLO is not supported)",
    "memorySnapshotPath": "resuming a guest from a memory snapshot is not supported; it would boot afresh",
    "createPaused": "vmhost's start runs the guest; starting it paused is not supported",
    "addons.userDefinedXml": "a whole replacement domain XML cannot be checked against the spec",
    "addons.userDefinedXmlHookScript": "a script that rewrites the domain XML cannot run inside vmhost",
    "addons.qemuCommandLine": "raw QEMU arguments bypass libvirt and the spec",
    "addons.qemuPath": "vmhost runs libvirt's emulator for the host, never a path from the command",
    "addons.loaderRom": "a firmware ROM path from the command; vmhost picks firmware by boot.firmware",
    "addons.storageDevice": "SCSI LUN passthrough (a block device='lun') is not supported",
    "addons.numaNodes": "guest NUMA cells placed on host nodes are not supported",
    "addons.panicIsa": "pvpanic devices are not supported",
    "addons.panicHyperv": "the Hyper-V crash notifier is not supported",
    "secureBoot": "there is no secure-boot firmware setting in vmhost",
    "vmCpuVendorId": "a CPU vendor other than the model's own is not supported",
}
"""StartVmCmd fields vmhost refuses when they are set, and why."""

GAPS: dict[str, str] = {}
"""StartVmCmd fields vmhost drops today although ignoring them is not safe (issue 16 leftovers); each has a
strict-xfail case in tests/unit/test_zstack_corpus.py, and the tests fail once one is no longer dropped."""

IGNORED: dict[str, str] = {
    **_ROOT[2],
    **_DATA[2],
    **_CDROM_IGNORED,
    **_NIC_IGNORED,
    "accountUuid": "the VM owner's account, which the agent passes to Tungsten Fabric only (TFVNIC: refused)",
    "vmInternalId": "ZStack's internal number, only written into the agent's domain metadata",
    "imagePlatform": "the management node turns it into each device's useVirtio; the agent uses it only to pack "
    "IDE units, which libvirt assigns itself",
    "imageArchitecture": "KVMHost.startVm sets it to the host's own architecture, which vmhost renders for",
    "cpuSpeed": "QEMU has no CPU speed setting; ZStack's agent does not read it either",
    "reservedMemory": "the management node's capacity bookkeeping; the agent does not read it",
    "memBalloon": "the balloon's address from an earlier start; vmhost always gives the guest a balloon",
    "timeout": "how long the agent waits for the domain to run; vmhost's start has its own deadline",
    "instanceOfferingOnlineChange": "the management node's flag that the offering may change online; useNuma, "
    "maxVcpuNum and maxMemory carry what the guest needs for it",
    "hostManagementIp": "only written into the agent's domain metadata",
    "additionalQmp": "an extra QMP socket for ZStack's own tools; vmhost reaches QEMU through libvirt",
    "fromForeignHypervisor": "the agent keeps a V2V-imported VM's CD-ROM layout (addons.FIXED_CDROMS); vmhost "
    "renders the CD-ROMs the command lists",
    "consoleLogToFile": "vmhost always logs the serial console to a file of its own",
    "priorityConfigStruct.vmUuid": "the same VM as vmInstanceUuid",
    "priorityConfigStruct.oomScoreAdj": "the host OOM killer's preference for the QEMU process; not guest-visible",
    "kvmHostAddons": "qcow2 options for images the agent creates (cluster size); a start creates none",
    "enableSecurityElement": "a management-node security tag the agent does not read",
    "pciePortNums": "q35 PCIe root ports the agent pre-creates for hotplug; libvirt adds the ports the listed "
    "devices need",
    "predefinedPciBridgeNum": "pci-bridge controllers the agent pre-creates; libvirt adds the bridges it needs",
    "qemu64BitPciMmioSetup": "OVMF's 64-bit MMIO window for large PCI BARs; only with PCI passthrough under UEFI",
    "addons.useDataPlane": "a virtio-blk dataplane (performance) switch; the guest sees the same disk",
    "addons.NativeAio": "native AIO for file volumes, a performance setting",
    "addons.brMode": "the bridge mode for vhost-user NICs (mocbr), which are refused",
    "addons.l3mapping": "ebtables rules for vhost-user NICs in mocbr mode, which are refused",
    "addons.ioThreadPins[].volumeUuid": "which volume the pin was made for; ioThreadId links the two",
}
"""StartVmCmd fields vmhost ignores, and why that is safe."""

NOTES: dict[str, str] = {
    "vmName": "also the description and the label zstack.vm-name; a name vmhost cannot use falls back to zs-<uuid>",
    "useNuma": "hotplug on: maxVcpuNum and maxMemory become the vCPU and memory ceilings",
    "maxMemory": "with useNuma only; the host's total memory, rounded down to whole MiB",
    "socketNum": "must multiply out (with cpuOnSocket and threadsPerCore) to maxVcpuNum (useNuma) or cpuNum",
    "nestedVirtualization": "none: the hypervisor's default model (a bare <cpu>); host-model, host-passthrough; "
    "custom: vmCpuModel",
    "x2apic": "false turns the flag off, except with nestedVirtualization none (as the agent does)",
    "bootMode": "Legacy or UEFI; UEFI_WITH_CSM is refused (no CSM firmware)",
    "spiceChannels": "refused when set: secure SPICE channels need SPICE TLS, which vmhost does not configure",
    "usbRedirect": "needs consoleMode spice (redirection travels over SPICE)",
    "isApplianceVm": "every VM with a console but ZStack's virtual routers gets a USB tablet, as from the agent",
    "addons.usbDevice": "bus:device:vendor:product:version:PassThrough:: entries; mode Redirect is refused",
    "addons.ceph_secret_key": "set into the libvirt secret addons.ceph_secret_uuid before the start, never stored",
    "nics[].type": "VNIC only; vDPA, dpdkvhostuserclient, MACVLAN and TFVNIC are refused",
    "nics[].state": "disable (link down) is refused",
    "nics[].pciDeviceAddress": "an SR-IOV VF: a hostdev NIC on that PCI address",
    "nics[].vlanId": "VF NICs only (the VF's VLAN tag); a bridge NIC's VLAN is its bridge's (br_eth1_100)",
    "nics[].isolated": "true is refused (no bridge port isolation)",
    "nics[].cleanTraffic": "the clean-traffic filter with the NIC's last IPv4 address (ips); without one: refused",
    "clockTrack": "with clock localtime, the rtc timer's track",
    "rootVolume.volumeUuid": "as it comes (32 hex digits); also the key of its addons.VolumeQos entry",
    "dataVolumes[].volumeUuid": "as it comes (32 hex digits); also the key of its addons.VolumeQos entry",
    "rootVolume.deviceType": "file (a /dev/ path is a block device), block, ceph, iscsi; others are refused",
    "dataVolumes[].deviceType": "file (a /dev/ path is a block device), block, ceph, iscsi; others are refused",
}
"""Remarks for the table: units, conditions and the values refused among mapped fields."""

KEYED_MAPS: dict[str, str] = {"addons.VolumeQos": "<volumeUuid>", "addons.NicQos": "<nicUuid>"}
"""Objects keyed by a device's uuid, and the placeholder their keys have in the tables."""


# ---- the other commands served -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldTable:
    """The fields of one command and what vmhost does with each."""

    command: str
    path: str
    mapped: Mapping[str, str]
    refused: Mapping[str, str] = field(default_factory=dict)
    ignored: Mapping[str, str] = field(default_factory=dict)
    gaps: Mapping[str, str] = field(default_factory=dict)


START_VM = FieldTable("StartVmCmd", "/vm/start", MAPPED, REFUSED, IGNORED, GAPS)

_VM = "the VM (its ZStack uuid; a VM vmhost did not start from ZStack is never touched)"
_ABSENT_OK = "the VM (its ZStack uuid; a VM not on this host is already done, as ZStack's agent answers)"
_VM_NICS = "the VM's NICs, for the agent's Tungsten Fabric and OVS-DPDK cleanup; vmhost serves neither kind"


def _prefixed(prefix: str, table: Mapping[str, str], old: str) -> dict[str, str]:
    """StartVmCmd's entries for one device list (dataVolumes[]) as the `prefix` object of another command."""
    return {f"{prefix}{name.removeprefix(old)}": what for name, what in table.items() if name.startswith(old)}


_VOLUME = "dataVolumes[]"
_ATTACH_VOLUME_MAPPED = {
    **{k: v for k, v in _prefixed("volume", MAPPED, _VOLUME).items() if k != "volume.deviceId"},
    "vmInstanceUuid": _VM,
    **{k: v for k, v in MAPPED.items() if k.startswith("addons.VolumeQos.")},
}
_ATTACH_VOLUME_IGNORED = {
    **_prefixed("volume", IGNORED, _VOLUME),
    "volume.deviceId": "a hot-plugged disk comes after the VM's other disks, whatever its deviceId",
}
_VOLUME_IDENTITY = {
    "volume.installPath": "which disk: the one whose storage is this volume's",
    "volume.deviceType": "which disk: the one whose storage is this volume's",
}
_VOLUME_REST = "the disk is found by its storage (installPath, deviceType); its other settings are the attached ones"

DAY_ONE_TABLES: list[FieldTable] = [
    FieldTable(
        "ConnectCmd",
        "/host/connect",
        {
            "hostUuid": "kept and echoed by /host/ping, so the management node notices a restarted agent",
            "sendCommandUrl": "kept and echoed by /host/ping",
        },
        ignored={
            "iptablesRules": "host firewall rules for the agent's own ports; vmhost manages no host firewall",
            "ignoreMsrs": "a kvm module parameter, set on the host by its administrator",
            "pageTableExtensionDisabled": "a kvm module parameter (EPT), set on the host by its administrator",
            "tcpServerPort": "the agent's heartbeat socket to the management node; /host/ping answers instead",
            "version": "the management node's version",
        },
    ),
    FieldTable(
        "PingCmd",
        "/host/ping",
        {},
        ignored={"hostUuid": "the reply carries the uuid /host/connect gave, which the management node compares"},
    ),
    FieldTable("HostCapacityCmd", "/host/capacity", {}),
    FieldTable("EchoCmd", "/host/echo", {}),
    FieldTable(
        "StopVmCmd",
        "/vm/stop",
        {
            "uuid": _ABSENT_OK,
            "type": "grace: ACPI shutdown, forced at the timeout; cold and force: at once",
            "timeout": "seconds before a grace stop is forced (at most max_stop_timeout)",
        },
        ignored={"vmNics": _VM_NICS, "debug": "a memory dump before stopping, for ZStack's debugging"},
    ),
    FieldTable(
        "RebootVmCmd",
        "/vm/reboot",
        {
            "uuid": _VM,
            "timeout": "seconds before the stop half of the reboot is forced",
            "bootDev": "boot.order from this boot on, as the agent redefines the VM with it (hd, cdrom, network); "
            "a VM booting by per-device orders (bootOrder at /vm/start) keeps them, as at /vm/start",
        },
    ),
    FieldTable("DestroyVmCmd", "/vm/destroy", {"uuid": _ABSENT_OK}, ignored={"vmNics": _VM_NICS}),
    FieldTable(
        "PauseVmCmd",
        "/vm/pause",
        {"uuid": _VM},
        ignored={"timeout": "how long the agent waits for libvirt; vmhost's pause returns when it is done"},
    ),
    FieldTable(
        "ResumeVmCmd",
        "/vm/resume",
        {"uuid": _VM},
        ignored={"timeout": "how long the agent waits for libvirt; vmhost's resume returns when it is done"},
    ),
    FieldTable("VmSyncCmd", "/vm/vmsync", {}),
    FieldTable(
        "CheckVmStateCmd",
        "/vm/checkstate",
        {"vmUuids": "the VMs whose states the reply lists"},
        ignored={"hostUuid": "this host"},
    ),
    FieldTable("GetVncPortCmd", "/vm/getvncport", {"vmUuid": _VM}),
    FieldTable(
        "AttachDataVolumeCmd",
        "/vm/attachdatavolume",
        _ATTACH_VOLUME_MAPPED,
        refused=_prefixed("volume", REFUSED, _VOLUME),
        ignored=_ATTACH_VOLUME_IGNORED,
        gaps=_prefixed("volume", GAPS, _VOLUME),
    ),
    FieldTable(
        "DetachDataVolumeCmd",
        "/vm/detachdatavolume",
        {"vmInstanceUuid": _VM, **_VOLUME_IDENTITY},
        ignored={"volume": _VOLUME_REST},
    ),
    FieldTable(
        "MigrateVmCmd",
        "/vm/migrate",
        {
            "vmUuid": _VM,
            "destHostManagementIp": "the destination: the peer_token_files agent whose host is this address",
            "destHostIp": "the destination when destHostManagementIp names no known agent (none: refused)",
            "storageMigrationPolicy": "FullCopy or IncCopy: the VM's own disks are copied whole; null: shared storage",
            "autoConverge": "auto-converge (the guest's vCPUs are slowed until the copy catches up)",
            "bandwidth": "the migration's bandwidth limit, MiB/s",
            "timeout": "seconds before the migration is abandoned",
            "taskContext": "with no timeout, the management node's __messagetimeout__ and __messagedeadline__ "
            "(milliseconds), whichever ends first; a deadline already past is refused",
        },
        refused={
            "migrateFromDestination": "vmhost migrates from the source agent only; send /vm/migrate to the source",
            "downTime": "vmhost has no maximum downtime setting for a migration",
            "disks": "new volumes at other paths: vmhost copies the VM's own disks into its own files",
            "reload": "resuming an earlier storage migration is not supported",
            "vdpaPaths": "vDPA devices are not supported",
        },
        ignored={
            "srcHostIp": "this host",
            "useNuma": "the agent keeps the domain defined at the destination for it; vmhost's destination always "
            "owns the VM",
            "xbzrle": "stream compression, a speed setting: the guest arrives the same",
            "nics": "the NICs travel with the VM's spec",
            "kvmHostAddons": "qcow2 options for images the agent creates; a migration creates none",
        },
    ),
    FieldTable(
        "CreateCephSecretCmd",
        "/vm/createcephsecret",
        {"uuid": "the libvirt secret's uuid", "userKey": "the cephx key set into it (never stored or logged)"},
    ),
]

TABLES: list[FieldTable] = [START_VM, *DAY_ONE_TABLES]
"""Every command vmhost serves but the day-two ones (docs/zstack-day-two.md), in the order of docs/zstack-fields.md."""


# ---- the document ----------------------------------------------------------------------------------------------------


def classification(table: FieldTable, name: str) -> str | None:
    """mapped, refused, ignored or dropped (a gap) for one field name of `table` (None: not listed)."""
    kinds = {"mapped": table.mapped, "refused": table.refused, "ignored": table.ignored, "dropped": table.gaps}
    return next((kind for kind, fields in kinds.items() if name in fields), None)


def markdown_table() -> str:
    """docs/zstack-fields.md: one section per command, one row per field, sorted by field name."""
    lines = [
        "# ZStack fields",
        "",
        "What vmhost does with every field of the ZStack commands it serves (the day-two commands: see",
        "[zstack-day-two.md](zstack-day-two.md)). Generated from `vmhost/dialects/zstack/fields.py` by",
        "`scripts/gen-zstack-fields`; do not edit.",
        "",
        "`a.b`: key b of object a; `a[]`: every item of list a; `<volumeUuid>`: a map keyed by a device's uuid.",
        "*refused* means refused whenever set (not null, false, 0, -1 or empty); values refused among *mapped*",
        "fields are in the notes. *dropped* fields are known gaps: vmhost ignores them although that is not safe",
        "(issue 16 leftovers, each with an expected-failure test).",
    ]
    for table in TABLES:
        lines += ["", f"## {table.command} (`{table.path}`)", "", "| field | vmhost | spec field / why |"]
        lines += ["| --- | --- | --- |"]
        rows = {**table.mapped, **table.refused, **table.ignored, **table.gaps}
        for name in sorted(rows, key=str.lower):
            kind = classification(table, name)
            detail = f"`{rows[name]}`" if kind == "mapped" and SPEC_PATH.fullmatch(rows[name]) else rows[name]
            note = NOTES.get(name) if table is START_VM else None
            lines.append(f"| `{name}` | {kind} | {detail}{f' ({note})' if note else ''} |".replace("\n", " "))
    return "\n".join(lines) + "\n"
