"""StartVmCmd bodies as a real ZStack management node and ZStack's own agent tests build them.

Every body is written for vmhost, modelled on public sources (their field names, and example values where a source
gives them), named per case:
- Z: zstackio/zstack @ 5a29293b: plugin/kvm/.../KVMAgentCommands.java (StartVmCmd, vdiCmd, NicTO, CdRomTO),
  VolumeTO.java, KVMHost.java (startVm, setStartVmCpuTopology, completeNicInfo, addons),
  plugin/ceph/.../CephPrimaryStorageFactory.java (KVMCephVolumeTO, KvmCephCdRomTO: monInfo, secretUuid),
  header/.../volume/VolumeQos.java (the six QoS keys, -1 for "no limit"), VmOvsNicConstant.java (NIC types).
- U: zstackio/zstack-utility @ f7b496e8: kvmagent/kvmagent/test/utils/vm_utils.py (startVmCmdBody,
  start_vm_data_vol and its iothread/multi-queue builders), test/utils/volume_utils.py
  (start_vm_sharedblock_data_vol), the vm_plugin_testsuite cases (test_cpu_topology, test_vm_max_vcpu,
  test_vm_cpu_model, test_vm_hv_features, test_start_vm_stop_vm_destroy_vm), test/ovsDpdk/test_vmoperate_l2ovsdpdk.py,
  and kvmagent/plugins/vm_plugin.py (which fields the agent reads, and how).

Each case says what vmhost must do with it: convert (and the test checks the rendered domain against the body), or
refuse it naming the ZStack field `refused`.
"""

import copy
from dataclasses import dataclass
from typing import Any

VM = "0b42630f37d8417480eced62ad89719f"
ROOT = "d387b4534faf4553a50a8a632cf12e35"
DATA = "5b0e8f6e2a3c4d1e9f7a6b5c4d3e2f10"
DATA2 = "6c1f907f3b4d5e2fa08b7c6d5e4f3021"
NIC = "8f9ef2e5061a4b28b5f79ff24ab0c0ce"
NIC2 = "9a0b1c2d3e4f40516273849506a7b8c9"
ACCOUNT = "36c27e8ff05c4780bf6d2fa65700f22e"
ISO_IMAGE = "f1d2a3b4c5d6e7f8091a2b3c4d5e6f70"
CEPH_SECRET = "7c3a93e4-5a0b-4a51-9d4a-13b2d1c0f3a1"
CEPH_POOL = "pri-c-4b8e2a1f0c9d4e7f8a6b5c4d3e2f1a0b"
HOST_MEMORY = 6702710784
"""A host's total physical memory as KVMHost.startVm sends it in maxMemory (from ovsDpdk's test): not MiB-aligned."""

Body = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One corpus body and what vmhost must do with it."""

    name: str
    source: str
    body: Body
    refused: str | None = None


# ---- the two starting points -------------------------------------------------------------------------------------


def ut_body() -> Body:
    """U: vm_utils.startVmCmdBody on x86_64 (useNuma on, Legacy boot, cirrus), a LocalStorage path for the image."""
    return {
        "vmInstanceUuid": VM,
        "vmInternalId": 1,
        "vmName": "vm-for-ut",
        "imagePlatform": "Linux",
        "imageArchitecture": "x86_64",
        "memory": 2147483648,
        "maxMemory": 4294967296,
        "maxVcpuNum": 128,
        "cpuNum": 1,
        "cpuSpeed": 0,
        "vmCpuVendorId": None,
        "socketNum": None,
        "cpuOnSocket": None,
        "threadsPerCore": None,
        "bootDev": ["hd"],
        "rootVolume": {
            "installPath": f"/local_ps/rootVolumes/acct-{ACCOUNT}/vol-{ROOT}/{ROOT}.qcow2",
            "deviceId": 0,
            "deviceType": "file",
            "volumeUuid": ROOT,
            "useVirtio": True,
            "useVirtioSCSI": False,
            "shareable": False,
            "cacheMode": "none",
            "wwn": "0x000fb964dbc7a10a",
            "bootOrder": 1,
            "physicalBlockSize": 0,
        },
        "bootIso": [],
        "cdRoms": [],
        "dataVolumes": [],
        "cacheVolumes": [],
        "nics": [
            {
                "mac": "fa:62:4a:61:6c:00",
                "bridgeName": "br_eth0",
                "physicalInterface": "eth0",
                "uuid": NIC,
                "nicInternalName": "vnic1.0",
                "deviceId": 0,
                "useVirtio": True,
                "bootOrder": 0,
                "mtu": 1500,
                "driverType": "virtio",
                "vHostAddOn": {"queueNum": 1},
            }
        ],
        "timeout": 300,
        "addons": {
            "channel": {"socketPath": f"/var/lib/libvirt/qemu/{VM}", "targetName": "org.qemu.guest_agent.0"},
            "usbDevice": [],
        },
        "instanceOfferingOnlineChange": False,
        "nestedVirtualization": "none",
        "hostManagementIp": "10.0.245.48",
        "clock": "utc",
        "useNuma": True,
        "useBootMenu": True,
        "createPaused": False,
        "kvmHiddenState": False,
        "vmPortOff": False,
        "emulateHyperV": False,
        "hypervClock": False,
        "vendorId": "zstack.io",
        "additionalQmp": True,
        "isApplianceVm": False,
        "systemSerialNumber": "4f3e9046-776d-4095-8edd-909523ede46d",
        "bootMode": "Legacy",
        "fromForeignHypervisor": False,
        "machineType": "pc",
        "useHugePage": False,
        "chassisAssetTag": "www.zstack.io",
        "priorityConfigStruct": {"vmUuid": VM, "cpuShares": 512, "oomScoreAdj": 0},
        "coloPrimary": False,
        "coloSecondary": False,
        "consoleLogToFile": False,
        "useColoBinary": False,
        "consoleMode": "vnc",
        "MemAccess": "private",
        "videoType": "cirrus",
        "spiceStreamingMode": "off",
        "VDIMonitorNumber": 1,
        "pciePortNums": 28,
        "predefinedPciBridgeNum": 1,
        "kvmHostAddons": {"qcow2Options": " -o cluster_size=2097152 "},
        "x2apic": True,
        "acpi": True,
    }


def mn_body() -> Body:
    """Z: every StartVmCmd field as KVMHost.startVm fills it for a Linux VM on LocalStorage, NUMA off.

    Without NUMA the management node sends socketNum 1 x cpuOnSocket cpuNum (setStartVmCpuTopology), maxVcpuNum 0
    (Java's int default), maxMemory = the host's total physical memory, consoleMode vnc, acpi true, timeout 300,
    the channel addon, and the fields Gson writes as null when unset.
    """
    return {
        "kvmHostAddons": {"qcow2Options": " -o cluster_size=2097152 "},
        "consoleMode": "vnc",
        "videoType": "cirrus",
        "soundType": "ich6",
        "spiceStreamingMode": "off",
        "VDIMonitorNumber": 1,
        "consolePassword": None,
        "qxlMemory": None,
        "spiceChannels": None,
        "accountUuid": ACCOUNT,
        "vmInstanceUuid": VM,
        "vmInternalId": 42,
        "vmName": "web-1",
        "imagePlatform": "Linux",
        "imageArchitecture": "x86_64",
        "memory": 4294967296,
        "maxMemory": HOST_MEMORY,
        "reservedMemory": 0,
        "cpuNum": 2,
        "maxVcpuNum": 0,
        "cpuSpeed": 0,
        "socketNum": 1,
        "cpuOnSocket": 2,
        "threadsPerCore": 1,
        "bootDev": ["hd"],
        "rootVolume": {
            "resourceUuid": ROOT,
            "deviceAddress": None,
            "installPath": f"/local_ps/rootVolumes/acct-{ACCOUNT}/vol-{ROOT}/{ROOT}.qcow2",
            "deviceId": 0,
            "deviceType": "file",
            "volumeUuid": ROOT,
            "useVirtio": True,
            "useVirtioSCSI": False,
            "shareable": False,
            "cacheMode": "none",
            "aioNative": False,
            "wwn": "0x000fb964dbc7a10a",
            "bootOrder": 1,
            "physicalBlockSize": 0,
            "type": "Root",
            "format": "qcow2",
            "primaryStorageType": "LocalStorage",
            "multiQueues": None,
            "ioThreadId": 0,
            "ioThreadPin": None,
            "controllerIndex": 0,
        },
        "memBalloon": {"resourceUuid": "b7c6a5f4e3d24c1b0a9f8e7d6c5b4a39", "deviceAddress": None},
        "cdRoms": [],
        "dataVolumes": [],
        "cacheVolumes": [],
        "nics": [
            {
                "resourceUuid": NIC,
                "deviceAddress": None,
                "mac": "fa:62:4a:61:6c:00",
                "ips": ["192.168.10.21"],
                "bridgeName": "br_eth0",
                "physicalInterface": "eth0",
                "uuid": NIC,
                "nicInternalName": "vnic42.0",
                "deviceId": 0,
                "metaData": "32",
                "useVirtio": True,
                "bootOrder": 0,
                "mtu": 1500,
                "driverType": "virtio",
                "vHostAddOn": {"queueNum": 1, "rxBufferSize": 256, "txBufferSize": 256},
                "pci": None,
                "type": "VNIC",
                "state": "enable",
                "vlanId": None,
                "pciDeviceAddress": None,
                "ipForTf": None,
                "l2NetworkUuid": "1e2d3c4b5a6978877665544332211000",
                "srcPath": None,
                "cleanTraffic": False,
                "isolated": False,
            }
        ],
        "timeout": 300,
        "addons": {
            "channel": {"socketPath": f"/var/lib/libvirt/qemu/{VM}", "targetName": "org.qemu.guest_agent.0"},
        },
        "instanceOfferingOnlineChange": False,
        "nestedVirtualization": "host-model",
        "hostManagementIp": "10.0.245.48",
        "clock": "utc",
        "clockTrack": None,
        "useNuma": False,
        "MemAccess": None,
        "noSharePages": None,
        "usbRedirect": False,
        "enableSecurityElement": False,
        "useBootMenu": True,
        "bootMenuSplashTimeout": 30000,
        "createPaused": False,
        "kvmHiddenState": False,
        "vmPortOff": False,
        "vmCpuModel": None,
        "emulateHyperV": False,
        "hypervClock": False,
        "vendorId": "zstack.io",
        "suspendToRam": False,
        "suspendToDisk": False,
        "additionalQmp": True,
        "isApplianceVm": False,
        "systemSerialNumber": "6c00c26e-a14f-424f-952d-9b1f29a3f9ae",
        "bootMode": "Legacy",
        "secureBoot": False,
        "fromForeignHypervisor": False,
        "machineType": "pc",
        "pciePortNums": None,
        "predefinedPciBridgeNum": None,
        "useHugePage": False,
        "chassisAssetTag": "www.zstack.io",
        "priorityConfigStruct": {"vmUuid": VM, "cpuShares": 512, "oomScoreAdj": 0},
        "memorySnapshotPath": None,
        "coloPrimary": False,
        "coloSecondary": False,
        "consoleLogToFile": False,
        "acpi": True,
        "x2apic": True,
        "cpuHypervisorFeature": True,
        "oemStrings": [],
        "useColoBinary": False,
        "vmCpuVendorId": None,
        "qemu64BitPciMmioSetup": None,
    }


def data_volume(uuid: str, device_id: int, **fields: Any) -> Body:
    """U: vm_utils.start_vm_data_vol (LocalStorage qcow2, virtio), with the uuid and path filled in."""
    return {
        "resourceUuid": uuid,
        "primaryStorageType": "LocalStorage",
        "volumeUuid": uuid,
        "installPath": f"/local_ps/dataVolumes/acct-{ACCOUNT}/vol-{uuid}/{uuid}.qcow2",
        "useVirtio": True,
        "format": "qcow2",
        "cacheMode": "none",
        "useVirtioSCSI": False,
        "deviceType": "file",
        "deviceId": device_id,
        "bootOrder": 0,
        "physicalBlockSize": 0,
        "shareable": False,
        "wwn": "0x000f6c46e4c236bf",
        "type": "Data",
        "controllerIndex": 0,
        "ioThreadId": 0,
        **fields,
    }


def _with(body: Body, **changes: Any) -> Body:
    updated = copy.deepcopy(body)
    updated.update(copy.deepcopy(changes))
    return updated


def _addons(body: Body, **addons: Any) -> Body:
    updated = copy.deepcopy(body)
    updated["addons"] = {**updated.get("addons", {}), **copy.deepcopy(addons)}
    return updated


def _root(body: Body, **fields: Any) -> Body:
    updated = copy.deepcopy(body)
    updated["rootVolume"] = {**updated["rootVolume"], **copy.deepcopy(fields)}
    return updated


def _nic(body: Body, **fields: Any) -> Body:
    updated = copy.deepcopy(body)
    updated["nics"][0] = {**updated["nics"][0], **copy.deepcopy(fields)}
    return updated


MONITORS = [
    {"hostname": "172.20.0.11", "port": 6789},
    {"hostname": "172.20.0.12", "port": 6789},
    {"hostname": "172.20.0.13", "port": 6789},
]


def ceph_volume(uuid: str, device_id: int, **fields: Any) -> Body:
    """Z: KVMCephVolumeTO as CephPrimaryStorageFactory.convertVolumeToCephIfNeeded makes it: deviceType ceph,
    installPath ceph://pool/image, the connected monitors and the primary storage's KVM secret uuid."""
    return {
        "resourceUuid": uuid,
        "installPath": f"ceph://{CEPH_POOL}/{uuid}",
        "deviceId": device_id,
        "deviceType": "ceph",
        "volumeUuid": uuid,
        "useVirtio": True,
        "useVirtioSCSI": False,
        "shareable": False,
        "cacheMode": "none",
        "wwn": "0x000f1a2b3c4d5e6f",
        "bootOrder": 0,
        "physicalBlockSize": 0,
        "type": "Data",
        "format": "raw",
        "primaryStorageType": "Ceph",
        "controllerIndex": 0,
        "ioThreadId": 0,
        "monInfo": copy.deepcopy(MONITORS),
        "secretUuid": CEPH_SECRET,
        **fields,
    }


def sharedblock_volume(uuid: str, device_id: int, **fields: Any) -> Body:
    """U: volume_utils.start_vm_sharedblock_data_vol: deviceType file, a /dev/<vg>/<lv> path, format qcow2."""
    return {
        "resourceUuid": uuid,
        "installPath": f"/dev/0d1c2b3a49584f6e8d7c6b5a49382716/{uuid}",
        "deviceId": device_id,
        "deviceType": "file",
        "volumeUuid": uuid,
        "useVirtio": True,
        "useVirtioSCSI": False,
        "shareable": False,
        "cacheMode": "none",
        "wwn": "0x000f6c46e4c236bf",
        "bootOrder": 0,
        "physicalBlockSize": 0,
        "type": "Data",
        "format": "qcow2",
        "primaryStorageType": "SharedBlock",
        "controllerIndex": 0,
        "ioThreadId": 0,
        **fields,
    }


# ---- the cases ---------------------------------------------------------------------------------------------------


def _cases() -> list[Case]:
    ut, mn = ut_body(), mn_body()
    return [
        Case("ut-default", "U: vm_utils.startVmCmdBody (x86_64), as every vm_plugin_testsuite case starts", ut),
        Case("mn-linux-localstorage", "Z: KVMHost.startVm for a Linux VM on LocalStorage, NUMA off", mn),
        Case(
            "mn-data-volumes",
            "Z: KVMHost.startVm (data volumes virtio unless platform Other, sorted by deviceId); "
            "U: vm_utils.start_vm_data_vol",
            _with(mn, dataVolumes=[data_volume(DATA, 1), data_volume(DATA2, 2, format="raw", cacheMode="writeback")]),
        ),
        Case(
            "q35-uefi-sata",
            "U: test_start_vm_stop_vm_destroy_vm.test_start_uefi_iso_with_data_volume (q35, root not virtio, a "
            "cdRom, NFS data volumes at deviceId 3 and 4), with bootMode UEFI as KVMHost sets it from its tag",
            _root(
                _with(
                    ut,
                    machineType="q35",
                    bootMode="UEFI",
                    secureBoot=False,
                    cdRoms=[
                        {
                            "bootOrder": 0,
                            "imageUuid": ISO_IMAGE,
                            "isEmpty": False,
                            "deviceId": 0,
                            "resourceUuid": ISO_IMAGE,
                            "path": f"/nfs_ps/{ISO_IMAGE}/centos-7.iso",
                        }
                    ],
                    dataVolumes=[
                        data_volume(DATA, 3, primaryStorageType="NFS", useVirtio=False, wwn="0x000f9d3e8f07f623"),
                        data_volume(DATA2, 4, primaryStorageType="NFS", useVirtio=False, wwn="0x000f9d3e8f07f623"),
                    ],
                ),
                useVirtio=False,
            ),
        ),
        Case(
            "windows-hyperv",
            "Z: KVMHost.startVm for a Windows guest (clock localtime, emulateHyperV, the 2 x cpuNum/2 topology hack, "
            "no virtio tag: IDE root); U: test_vm_hv_features (emulateHyperV + hypervClock + localtime)",
            _root(
                _with(
                    mn,
                    imagePlatform="Windows",
                    clock="localtime",
                    emulateHyperV=True,
                    hypervClock=True,
                    vendorId="Microsoft Hv",
                    cpuNum=4,
                    socketNum=2,
                    cpuOnSocket=2,
                    nestedVirtualization="none",
                    videoType="vga",
                ),
                useVirtio=False,
            ),
        ),
        Case(
            "platform-other-ide",
            "Z: KVMHost.startVm for platform Other (no virtio anywhere, at most 3 data volumes and CD-ROMs); "
            "U: vm_plugin make_volumes (hd_device_address_deduplicate), e1000 NIC",
            _nic(
                _root(
                    _with(
                        mn,
                        imagePlatform="Other",
                        dataVolumes=[data_volume(DATA, 1, useVirtio=False)],
                        consolePassword="pw-1234",
                    ),
                    useVirtio=False,
                ),
                useVirtio=False,
                driverType="e1000",
            ),
        ),
        Case(
            "ceph-root-and-scsi-data",
            "Z: CephPrimaryStorageFactory.convertVolumeToCephIfNeeded (KVMCephVolumeTO) and the ceph_secret_key/uuid "
            "addons; U: vm_plugin VirtioCeph / VirtioSCSICeph, make_addons (creates the secret)",
            _addons(
                _with(
                    mn,
                    rootVolume=ceph_volume(ROOT, 0, type="Root", bootOrder=1),
                    dataVolumes=[
                        ceph_volume(DATA, 1, useVirtio=False, useVirtioSCSI=True, shareable=True),
                    ],
                ),
                ceph_secret_key="AQBx2xdkAAAAABAAl5yYVzPmMdJ3ROs/8n3O6g==",
                ceph_secret_uuid=CEPH_SECRET,
            ),
        ),
        Case(
            "ceph-iso",
            "Z: CephPrimaryStorageFactory.convertCdRomToCephIfNeeded (KvmCephCdRomTO: ceph:// path, monInfo, "
            "secretUuid); U: vm_plugin IsoCeph",
            _with(
                mn,
                rootVolume=ceph_volume(ROOT, 0, type="Root", bootOrder=2),
                bootDev=["cdrom", "hd"],
                cdRoms=[
                    {
                        "resourceUuid": ISO_IMAGE,
                        "path": f"ceph://{CEPH_POOL}/{ISO_IMAGE}",
                        "imageUuid": ISO_IMAGE,
                        "primaryStorageUuid": CEPH_POOL.removeprefix("pri-c-"),
                        "protocol": None,
                        "deviceId": 0,
                        "isEmpty": False,
                        "bootOrder": 1,
                        "monInfo": copy.deepcopy(MONITORS),
                        "secretUuid": CEPH_SECRET,
                    }
                ],
            ),
        ),
        Case(
            "iscsi-root",
            "Z: KVMHost.getVolumeTOType (installPath iscsi://... → deviceType iscsi); "
            "U: vm_plugin iscsibased_volume (iscsi://host:port/target/lun, VirtioIscsi)",
            _root(
                mn,
                deviceType="iscsi",
                installPath="iscsi://172.20.0.30:3260/iqn.2016-03.io.zstack:vol-d387b453/1",
                format="raw",
                primaryStorageType="ISCSI",
            ),
        ),
        Case(
            "sharedblock-qcow2",
            "U: volume_utils.start_vm_sharedblock_data_vol and vm_plugin file_volume_check (deviceType file with a "
            "/dev/ path is a block device; its driver format is the volume's, qcow2)",
            _with(
                mn,
                rootVolume=sharedblock_volume(ROOT, 0, type="Root", bootOrder=1),
                dataVolumes=[sharedblock_volume(DATA, 1), sharedblock_volume(DATA2, 2, format="raw")],
            ),
        ),
        Case(
            "block-lun-virtio-scsi",
            "Z: VolumeTO deviceType block, root on virtio-scsi by its volume tag (KVMHost.startVm); "
            "U: vm_plugin block_volume (raw, virtio-scsi target with the wwn)",
            _with(
                _root(mn, useVirtio=False, useVirtioSCSI=True),
                dataVolumes=[
                    data_volume(
                        DATA,
                        1,
                        deviceType="block",
                        installPath="/dev/disk/by-id/wwn-0x6001405f2e3d4c5b",
                        format="raw",
                        useVirtio=False,
                        useVirtioSCSI=True,
                        wwn="0x6001405f2e3d4c5b",
                        primaryStorageType="Block",
                    )
                ],
            ),
        ),
        Case(
            "volume-and-nic-qos",
            "Z: header/volume/VolumeQos.java (readBandwidth..totalIOPS, -1 = no limit) in addons.VolumeQos keyed by "
            "volume uuid; NicQos in bit/s; U: Vm.set_volume_qos, Vm._add_qos_to_interface",
            _addons(
                _with(mn, dataVolumes=[data_volume(DATA, 1)]),
                VolumeQos={
                    ROOT: {
                        "readBandwidth": -1,
                        "writeBandwidth": -1,
                        "totalBandwidth": 104857600,
                        "readIOPS": -1,
                        "writeIOPS": -1,
                        "totalIOPS": 2000,
                    },
                    DATA: {
                        "readBandwidth": 52428800,
                        "writeBandwidth": 20971520,
                        "totalBandwidth": -1,
                        "readIOPS": 1000,
                        "writeIOPS": 500,
                        "totalIOPS": -1,
                    },
                },
                NicQos={NIC: {"inboundBandwidth": 104857600, "outboundBandwidth": 52428800}},
            ),
        ),
        Case(
            "iothread-virtio-scsi",
            "U: vm_utils.create_startvm_body_jsonobject_with_virtio_scsi_volume_iothread (ioThreadNum 1, "
            "ioThreadPins, a virtio-scsi data volume with ioThreadId and controllerIndex)",
            _addons(
                _with(
                    ut,
                    dataVolumes=[
                        data_volume(DATA, 1, useVirtioSCSI=True, ioThreadId=1, controllerIndex=1, ioThreadPin="0-1")
                    ],
                ),
                ioThreadNum=1,
                ioThreadPins=[{"ioThreadId": 1, "pin": "0-1", "volumeUuid": DATA}],
            ),
        ),
        Case(
            "iothread-virtio-multiqueue",
            "U: vm_utils.build_virtio_vol_with_iothreadpin + create_vm_with_vols (two pinned iothreads) and "
            "create_startvm_body_jsonobject_with_volume_multi_queues (multiQueues)",
            _addons(
                _with(
                    ut,
                    dataVolumes=[
                        data_volume(DATA, 1, ioThreadId=1, ioThreadPin="0"),
                        data_volume(DATA2, 2, ioThreadId=2, ioThreadPin="1", multiQueues="4"),
                    ],
                ),
                ioThreadNum=2,
                ioThreadPins=[
                    {"ioThreadId": 1, "pin": "0", "volumeUuid": DATA},
                    {"ioThreadId": 2, "pin": "1", "volumeUuid": DATA2},
                ],
            ),
        ),
        Case(
            "spice-vdi",
            "Z: vdiCmd fields as KVMHost.startVm sets them (soundType, qxlMemory tag, spiceStreamingMode, "
            "VDIMonitorNumber, usbRedirect); U: vm_plugin make_spice, make_video (one qxl per monitor), make_sound, "
            "make_usb_redirect (spicevmc redirdevs)",
            _with(
                mn,
                consoleMode="spice",
                consolePassword="vdi-pass",
                videoType="qxl",
                VDIMonitorNumber=2,
                qxlMemory={"ram": "65536", "vram": "65536", "vgamem": "16384"},
                spiceStreamingMode="filter",
                soundType="ich9",
                usbRedirect=True,
            ),
        ),
        Case(
            "vnc-virtio-video-no-console-password",
            "Z: KVMHost.startVm (consoleMode always vnc, consolePassword null when the VM has none); "
            "U: vm_plugin make_vnc, make_video (virtio)",
            _with(mn, videoType="virtio", consolePassword=None),
        ),
        Case(
            "vnc-and-spice",
            "U: vm_plugin make_graphic_console (consoleMode vncAndSpice: a VNC and a SPICE display), make_sound",
            _with(mn, consoleMode="vncAndSpice", videoType="qxl", consolePassword="both-1"),
            refused="consoleMode",
        ),
        Case(
            "usb-passthrough",
            "U: vm_plugin make_usb_device (addons.usbDevice 'bus:device:vendor:product:version:PassThrough::')",
            _addons(mn, usbDevice=["001:004:046d:c52b:2.0:PassThrough::", "002:003:0781:5567:3.0:PassThrough::"]),
        ),
        Case(
            "usb-redirect-tcp",
            "U: vm_plugin make_usb_device (mode Redirect: a tcp redirdev to host:port from the entry)",
            _addons(mn, usbDevice=["001:005:0951:1666:2.0:Redirect:4000:172.20.0.50"]),
            refused="addons.usbDevice.0",
        ),
        Case(
            "pci-passthrough-q35-uefi",
            "U: vm_plugin make_pci_device (addons.pciDevice 'address,specUuid', vfio, managed no); "
            "Z: KVMHost.startVm q35 (pciePortNums, predefinedPciBridgeNum) with UEFI",
            _addons(
                _with(mn, machineType="q35", bootMode="UEFI", pciePortNums=28, predefinedPciBridgeNum=1),
                pciDevice=["0000:3b:00.0,2d4e6f8091a24b3c8d5e6f708192a3b4", "0000:3b:00.1,"],
            ),
        ),
        Case(
            "numa-hotplug-topology",
            "U: test_vm_max_vcpu (useNuma, maxVcpuNum 64 = socketNum 64 x cpuOnSocket 1 x threadsPerCore 1, "
            "cpuNum 2); Z: setStartVmCpuTopology sets maxVcpuNum to the topology's product",
            _with(ut, maxVcpuNum=64, socketNum=64, cpuOnSocket=1, threadsPerCore=1, cpuNum=2),
        ),
        Case(
            "numa-host-total-memory",
            "Z: KVMHost.startVm maxMemory = the host's total physical memory (not MiB-aligned; value from "
            "U: test_vmoperate_l2ovsdpdk), useNuma without a topology tag (agent picks the topology)",
            _with(ut, cpuNum=4, memory=4294967296, maxMemory=HOST_MEMORY),
        ),
        Case(
            "cpu-passthrough-smbios-bootmenu",
            "U: test_vm_cpu_model (host-passthrough, NUMA off), vm_plugin make_os (bootmenu timeout), make_sysinfo "
            "(serial, chassis asset tag), make_cpu_features (x2apic off: ZSTAC-50418)",
            _with(
                mn,
                nestedVirtualization="host-passthrough",
                x2apic=False,
                bootMenuSplashTimeout=5000,
                systemSerialNumber="1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9",
                chassisAssetTag="rack-12-slot-3",
            ),
        ),
        Case(
            "cpu-custom-model",
            "U: test_vm_cpu_model custom 'pentium' (NUMA off); Z: KVMHost.startVm (nestedVirtualization custom when "
            "the configured cpu mode is a model name)",
            _with(mn, nestedVirtualization="custom", vmCpuModel="pentium"),
        ),
        Case(
            "cdrom-install-boot-order",
            "Z: KVMHost.startVm cdRoms (CdRomTO, empty trays isEmpty) and deviceBootOrderOperator (cdrom first); "
            "two NICs in deviceId order",
            _with(
                _root(mn, bootOrder=2),
                bootDev=["cdrom", "hd"],
                cdRoms=[
                    {
                        "resourceUuid": ISO_IMAGE,
                        "path": f"/local_ps/imagecache/iso/{ISO_IMAGE}/{ISO_IMAGE}.iso",
                        "imageUuid": ISO_IMAGE,
                        "primaryStorageUuid": None,
                        "protocol": None,
                        "deviceId": 0,
                        "isEmpty": False,
                        "bootOrder": 1,
                    },
                    {"resourceUuid": None, "path": None, "imageUuid": None, "deviceId": 1, "isEmpty": True},
                ],
                nics=[
                    {
                        **mn["nics"][0],
                        "deviceId": 1,
                        "mac": "fa:62:4a:61:6c:01",
                        "nicInternalName": "vnic42.1",
                        "bridgeName": "br_eth1_100",
                        "vlanId": "100",
                        "uuid": NIC2,
                        "resourceUuid": NIC2,
                    },
                    mn["nics"][0],
                ],
            ),
        ),
        Case(
            "nic-multiqueue-pxe",
            "Z: KVMHost.completeNicInfo (vHostAddOn.queueNum from vm.nic.multiqueue.num) and "
            "deviceBootOrderOperator (network first); U: vm_plugin _build_interface_xml (queues, boot order)",
            _nic(
                _with(_root(mn, bootOrder=2), bootDev=["network", "hd"]),
                bootOrder=1,
                vHostAddOn={"queueNum": 4, "rxBufferSize": 1024, "txBufferSize": 1024},
            ),
        ),
        Case(
            "vhost-user-nic",
            "U: test_vmoperate_l2ovsdpdk (NicTO type from ovs.OvsDpdkSupportVnic, MemAccess shared); "
            "Z: VmOvsNicConstant.ACCEL_TYPE_VHOST_USER_SPACE",
            _nic(
                _with(mn, MemAccess="shared", useNuma=True, maxVcpuNum=128, socketNum=None, cpuOnSocket=None),
                type="dpdkvhostuserclient",
                bridgeName="br_enp101s0f0",
                physicalInterface="enp101s0f0",
            ),
            refused="nics.0.type",
        ),
        Case(
            "sriov-vf-nic",
            "U: vm_plugin _build_interface_xml (pciDeviceAddress without srcPath: a vfio hostdev interface, "
            "vlan tag from vlanId); the NIC type an SR-IOV plugin sets is not in the public sources, the agent "
            "keys on pciDeviceAddress alone",
            _nic(mn, pciDeviceAddress="0000:3b:02.1", vlanId="200"),
        ),
        Case(
            "mdev-device",
            "U: vm_plugin make_mdev_device (addons.mdevDevice: mdev uuids as vfio-pci hostdevs)",
            _addons(mn, mdevDevice=["83b8f4f2509f382f3c1e6e0d2b1a0f9e"]),
            refused="addons.mdevDevice",
        ),
        Case(
            "nic-link-down",
            "Z: NicTO.state (the NIC's state, disable when the user turned it off); "
            "U: vm_plugin _build_interface_xml (state disable: <link state='down'/>)",
            _nic(mn, state="disable"),
            refused="nics.0.state",
        ),
        Case(
            "nic-clean-traffic",
            "Z: KVMHost.completeNicInfo (cleanTraffic from the VM's clean-traffic tag, ips for it); "
            "U: vm_plugin _build_interface_xml (clean-traffic filterref with the IPv4 address)",
            _nic(mn, cleanTraffic=True, ips=["192.168.10.21"]),
        ),
        Case(
            "nic-isolated",
            "Z: NicTO.isolated (port isolation on the bridge); U: vm_plugin _build_interface_xml",
            _nic(mn, isolated=True),
            refused="nics.0.isolated",
        ),
        Case(
            "macvlan-nic",
            "U: vm_plugin _build_interface_xml (type MACVLAN: a direct interface on physicalInterface, mode vepa)",
            _nic(mn, type="MACVLAN", physicalInterface="eth1"),
            refused="nics.0.type",
        ),
        Case(
            "ceph-physical-block-size",
            "Z: VolumeTO.physicalBlockSize; U: vm_plugin VirtioCeph (<blockio physical_block_size>)",
            _with(mn, dataVolumes=[ceph_volume(DATA, 1, physicalBlockSize=4096)]),
        ),
        Case(
            "guest-numa-nodes",
            "U: vm_plugin make_cpu without useNuma (addons.numaNodes: guest cells with their CPUs, memory, "
            "preferred host node and distances)",
            _addons(
                _with(mn, cpuNum=4, socketNum=2, cpuOnSocket=2),
                numaNodes=[
                    {"nodeID": 0, "cpus": "0-1", "memorySize": 2147483648, "hostNodeID": 0, "distance": [10, 21]},
                    {"nodeID": 1, "cpus": "2-3", "memorySize": 2147483648, "hostNodeID": 1, "distance": [21, 10]},
                ],
            ),
            refused="addons.numaNodes",
        ),
        Case(
            "crash-action-emulator-pinning",
            "U: vm_plugin make_meta (on_crash from addons.onCrash), make_cpu (addons.emulatorPinning)",
            _addons(mn, onCrash="coredump-restart", emulatorPinning="0-1"),
        ),
        Case(
            "pvpanic",
            "U: vm_plugin make_pvpanic (addons.panicIsa: an ISA pvpanic device at 0x505, panicHyperv)",
            _addons(mn, panicIsa=True, panicHyperv=True),
            refused="addons.panicIsa",
        ),
        Case(
            "user-defined-xml",
            "U: vm_plugin Vm.from_StartVmCmd (addons.userDefinedXml replaces the whole domain XML)",
            _addons(mn, userDefinedXml="PGRvbWFpbiB0eXBlPSdrdm0nLz4="),
            refused="addons.userDefinedXml",
        ),
        Case(
            "clock-track-guest",
            "Z: KVMHost.startVm (clockTrack guest from vm.clock.track for Windows); U: vm_plugin make_meta "
            "(rtc timer track)",
            _with(mn, imagePlatform="Windows", clock="localtime", clockTrack="guest"),
        ),
        Case(
            "vmport-off",
            "Z: KVMHost.startVm (vmPortOff from vm.vmPortOff); U: vm_plugin make_features (<vmport state='off'/>)",
            _with(mn, vmPortOff=True),
        ),
        Case(
            "colo-primary",
            "Z: StartVmCmd coloPrimary (fault-tolerance primary); U: vm_plugin (quorum disks, COLO QEMU arguments)",
            _with(mn, coloPrimary=True),
            refused="coloPrimary",
        ),
        Case(
            "memory-snapshot-restore",
            "Z: StartVmCmd memorySnapshotPath; U: vm_plugin _start_vm (restores the guest's memory from the path)",
            _with(mn, memorySnapshotPath=f"/local_ps/memorySnapshots/{VM}/mem.snap"),
            refused="memorySnapshotPath",
        ),
        Case(
            "qemu-command-line",
            "U: vm_plugin make_qemu_commandline (addons.qemuCommandLine: raw QEMU arguments)",
            _addons(mn, qemuCommandLine=["-global", "kvm-pit.lost_tick_policy=discard"]),
            refused="addons.qemuCommandLine",
        ),
        Case(
            "secure-boot",
            "Z: KVMHost.startVm (secureBoot from vm.uefi.secureBoot when bootMode is UEFI)",
            _with(mn, machineType="q35", bootMode="UEFI", secureBoot=True),
            refused="secureBoot",
        ),
        Case(
            "legacy-2x-boot-iso",
            "Z: branch 2.3.0 StartVmCmd (bootIso IsoTO, string usbRedirect); U: vm_plugin still reads cmd.bootIso",
            _with(
                _nic(_root(ut, bootOrder=None), driverType=None),
                cdRoms=[],
                bootIso={"path": f"/local_ps/imagecache/iso/{ISO_IMAGE}.iso", "imageUuid": ISO_IMAGE, "deviceId": 0},
                usbRedirect="false",
                bootDev=["cdrom", "hd"],
            ),
        ),
    ]


CASES: list[Case] = _cases()
"""The corpus, in a stable order; names are unique."""
