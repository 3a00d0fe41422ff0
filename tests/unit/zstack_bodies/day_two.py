"""The day-two commands, field for field as ZStack builds them.

Sources (public): zstackio/zstack @ 5a29293b, plugin/kvm/src/main/java/org/zstack/kvm/KVMAgentCommands.java (the
command classes) and KVMHost.java (how the management node fills them: attachIso, detachIso, doTakeSnapshot);
zstackio/zstack-utility @ f7b496e8, kvmagent/kvmagent/test/utils/vm_utils.py (attach_vm_nic_body,
online_change_cpumem, online_increase_cpu/mem), test/utils/snapshot_utils.py (take_snapshot_cmd_body,
merge_snapshot_cmd_body), test/vm_plugin_testsuite/test_vm_attach_nic.py and kvmagent/plugins/vm_plugin.py (what the
agent reads from each). Each function returns a fresh body; keyword arguments override top-level fields.
"""

from typing import Any

VM = "0b42630f37d8417480eced62ad89719f"
NIC_UUID = "5a9e6f0f1c2b4e8c9c6f1f0d2a3b4c5d"
ROOT_UUID = "d387b4534faf4553a50a8a632cf12e35"
ISO_UUID = "f1d2a3b4c5d6e7f8091a2b3c4d5e6f70"


def attach_nic(vm: str = VM, **fields: Any) -> dict[str, Any]:
    """AttachNicCommand {vmUuid, nic: NicTO, accountUuid, addons}: vm_utils.attach_vm_nic_body as
    test_vm_attach_nic.py fills it (vlanId -1, deviceId 1, type VNIC, vHostAddOn buffers)."""
    return {
        "vmUuid": vm,
        "nic": {
            "mac": "fa:04:93:d1:2c:01",
            "bridgeName": "br_eth0",
            "physicalInterface": "eth0",
            "uuid": NIC_UUID,
            "nicInternalName": "vnic16099.1",
            "deviceId": 1,
            "metaData": 32,
            "useVirtio": True,
            "bootOrder": 0,
            "mtu": 1500,
            "driverType": "virtio",
            "type": "VNIC",
            "vlanId": -1,
            "vHostAddOn": {"queueNum": 1, "rxBufferSize": 256, "txBufferSize": 256},
        },
        "accountUuid": "36c27e8ff05c4780bf6d2fa65700f22e",
        "addons": {},
        **fields,
    }


def detach_nic(vm: str = VM, mac: str = "fa:04:93:d1:2c:01", **fields: Any) -> dict[str, Any]:
    """DetachNicCommand {vmUuid, nic: NicTO}: the management node sends the whole NicTO of the NIC."""
    nic = attach_nic(vm)["nic"]
    nic["mac"] = mac
    return {"vmUuid": vm, "nic": nic, **fields}


def change_cpu_memory(vm: str = VM, cpu_num: int = 2, memory_size: int = 2 * 2**30 + 32 * 2**20) -> dict[str, Any]:
    """ChangeCpuMemoryCmd {vmUuid, cpuNum, memorySize}: test_online_change_cpumem.py adds one vCPU and 32 MiB."""
    return {"vmUuid": vm, "cpuNum": cpu_num, "memorySize": memory_size}


def increase_cpu(vm: str = VM, cpu_num: int = 2) -> dict[str, Any]:
    """IncreaseCpuCmd {vmUuid, cpuNum}."""
    return {"vmUuid": vm, "cpuNum": cpu_num}


def increase_memory(vm: str = VM, memory_size: int = 2 * 2**30 + 32 * 2**20) -> dict[str, Any]:
    """IncreaseMemoryCmd {vmUuid, memorySize} (bytes)."""
    return {"vmUuid": vm, "memorySize": memory_size}


def attach_iso(vm: str = VM, path: str = "/var/lib/zstack/iso/ubuntu.iso", device_id: int = 0) -> dict[str, Any]:
    """AttachIsoCmd {iso: IsoTO, vmUuid} as KVMHost.attachIso fills it (imageUuid, path, deviceId,
    primaryStorageUuid, protocol; resourceUuid from BaseVirtualDeviceTO)."""
    return {
        "vmUuid": vm,
        "iso": {
            "imageUuid": ISO_UUID,
            "path": path,
            "deviceId": device_id,
            "primaryStorageUuid": "9c1d1b0e1b2c4d3e8f7a6b5c4d3e2f10",
            "protocol": None,
            "resourceUuid": None,
        },
    }


def detach_iso(vm: str = VM, device_id: int = 0) -> dict[str, Any]:
    """DetachIsoCmd {vmUuid, isoUuid, deviceId}."""
    return {"vmUuid": vm, "isoUuid": ISO_UUID, "deviceId": device_id}


def root_volume(install_path: str = "/var/lib/zstack/root.qcow2", uuid: str = ROOT_UUID) -> dict[str, Any]:
    """VolumeTO of a LocalStorage root volume, as snapshot_utils.py sends it."""
    return {
        "installPath": install_path,
        "deviceId": 0,
        "deviceType": "file",
        "volumeUuid": uuid,
        "useVirtio": True,
        "useVirtioSCSI": False,
        "shareable": False,
        "cacheMode": "none",
        "wwn": "0x000fb964dbc7a10a",
        "bootOrder": 0,
        "physicalBlockSize": 0,
        "type": "Root",
        "format": "qcow2",
        "primaryStorageType": "LocalStorage",
    }


def resize_volume(vm: str = VM, size: int = 40 * 2**30, volume: dict[str, Any] | None = None) -> dict[str, Any]:
    """/volume/resize {vmUuid, volume: VolumeTO, size}: what vm_plugin.kvm_resize_volume reads."""
    return {"vmUuid": vm, "volume": volume or root_volume(), "size": size}


def take_snapshot(
    vm: str = VM, install_path: str = "/var/lib/zstack/snapshots/s1.qcow2", volume: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TakeSnapshotCmd: snapshot_utils.take_snapshot_cmd_body as vm_utils.take_snapshot fills it, plus the fields
    KVMHost.doTakeSnapshot sets (timeout, primaryStorageUuid)."""
    volume = volume or root_volume()
    return {
        "vmUuid": vm,
        "volumeUuid": volume["volumeUuid"],
        "volume": volume,
        "installPath": install_path,
        "online": True,
        "fullSnapshot": False,
        "volumeInstallPath": volume["installPath"],
        "isBaremetal2InstanceOnlineSnapshot": False,
        "timeout": 1800,
        "primaryStorageUuid": "9c1d1b0e1b2c4d3e8f7a6b5c4d3e2f10",
        "kvmHostAddons": {"qcow2Options": " -o cluster_size=2097152 "},
    }


def merge_snapshot(
    vm: str = VM, src_path: str = "/var/lib/zstack/snapshots/s1.qcow2", dest_path: str = "/var/lib/zstack/root.qcow2"
) -> dict[str, Any]:
    """MergeSnapshotCmd {vmUuid, volume, srcPath, destPath, fullRebase}: snapshot_utils.merge_snapshot_cmd_body."""
    return {
        "vmUuid": vm,
        "volume": root_volume(dest_path),
        "srcPath": src_path,
        "destPath": dest_path,
        "fullRebase": True,
        "kvmHostAddons": {"qcow2Options": " -o cluster_size=2097152 "},
    }
