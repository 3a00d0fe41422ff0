"""ZStack StartVmCmd -> vmhost spec, field by field, from the realistic command ZStack's own agent tests send."""

import copy
from typing import Any

import pytest

from tests.unit.zstack_bodies.start_vm_corpus import ut_body
from vmhost.api.zstack.handlers import replacement_patch
from vmhost.dialects.zstack import (
    data_volume_disk,
    fallback_name,
    source_identity,
    start_vm_spec,
    vm_uuid,
    zstack_uuid,
)
from vmhost.engine.merge import merge_patch
from vmhost.spec import SpecError, parse_spec

UUID = "0b42630f37d8417480eced62ad89719f"
CANONICAL = "0b42630f-37d8-4174-80ec-ed62ad89719f"
NIC_UUID = "8f9ef2e5061a4b28b5f79ff24ab0c0ce"
ROOT_UUID = "d387b4534faf4553a50a8a632cf12e35"


def example() -> dict[str, Any]:
    """ZStack's startVmCmdBody (kvmagent/test/utils/vm_utils.py), the corpus's, with a host path for the root image
    and a console password."""
    cmd = ut_body()
    cmd["rootVolume"]["installPath"] = "/var/lib/zstack/root.qcow2"
    cmd["consolePassword"] = "s3cret"
    return cmd


def variant(**changes: Any) -> dict[str, Any]:
    cmd = example()
    cmd.update(copy.deepcopy(changes))
    return cmd


def problems(cmd: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as failure:
        start_vm_spec(cmd)
    return {p.path: p.message for p in failure.value.problems}


def data_volume(device_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "installPath": f"/var/lib/zstack/data-{device_id}.qcow2",
        "deviceId": device_id,
        "deviceType": "file",
        "volumeUuid": f"{device_id:032x}",
        "useVirtio": True,
        "format": "qcow2",
        "type": "Data",
        "primaryStorageType": "LocalStorage",
        **fields,
    }


# ---- the realistic command as a whole ------------------------------------------------------------


def test_realistic_command_converts_to_a_valid_spec():
    spec = parse_spec(start_vm_spec(example()))
    assert spec.name == "vm-for-ut"
    assert str(spec.uuid) == CANONICAL
    assert spec.disks[0].target == "vda"
    assert spec.nics[0].tap == "vnic1.0"


def test_unknown_and_ignored_fields_change_nothing():
    noisy = variant(cpuSpeed=2600, hostManagementIp="192.0.2.1", somethingNew={"x": 1}, timeout=1)
    assert start_vm_spec(noisy) == start_vm_spec(example())


def test_not_an_object_is_refused():
    with pytest.raises(SpecError, match="must be a JSON object"):
        start_vm_spec(["vm"])  # type: ignore[arg-type]


def test_every_problem_is_reported_at_once_by_zstack_field():
    found = problems(variant(cpuNum="two", memory=None, consoleMode="rdp"))
    assert set(found) == {"cpuNum", "memory", "consoleMode"}


# ---- identity ------------------------------------------------------------------------------------


def test_uuid_is_canonical_and_converts_back():
    assert vm_uuid(UUID) == CANONICAL
    assert vm_uuid(CANONICAL) == CANONICAL
    assert zstack_uuid(CANONICAL) == UUID


@pytest.mark.parametrize("bad", [None, "nope", 42])
def test_bad_uuid_is_refused(bad):
    assert "vmInstanceUuid" in problems(variant(vmInstanceUuid=bad))


def test_name_description_and_label_keep_the_zstack_name():
    document = start_vm_spec(example())
    assert document["name"] == "vm-for-ut"
    assert document["description"] == "vm-for-ut"
    assert document["labels"] == {"zstack.vm-name": "vm-for-ut"}


@pytest.mark.parametrize("name", ["web server #1", "数据库", "-leading-dash", "x" * 64, ""])
def test_unusable_names_fall_back_to_the_uuid_and_are_kept_as_label(name):
    document = start_vm_spec(variant(vmName=name))
    assert document["name"] == "zs-" + UUID == fallback_name(CANONICAL)
    assert document["labels"]["zstack.vm-name"] == name
    parse_spec(document)


def test_non_text_name_is_refused():
    assert "vmName" in problems(variant(vmName=7))


# ---- cpu and memory ------------------------------------------------------------------------------


def test_hotplug_ceilings_apply_when_use_numa_is_on():
    document = start_vm_spec(example())
    assert document["cpu"] == {"vcpus": 1, "max_vcpus": 128, "mode": "default", "shares": 512}
    assert document["memory"] == {"size": 2 * 2**30, "max_size": 4 * 2**30, "slots": 16}


def test_ceilings_are_ignored_without_use_numa():
    document = start_vm_spec(variant(useNuma=False))
    assert "max_vcpus" not in document["cpu"]
    assert document["memory"] == {"size": 2 * 2**30}


def test_ceilings_not_above_boot_values_mean_no_hotplug():
    document = start_vm_spec(variant(maxVcpuNum=1, maxMemory=2147483648))
    assert "max_vcpus" not in document["cpu"]
    assert "max_size" not in document["memory"]


def test_topology_from_sockets_and_cores_with_one_thread():
    document = start_vm_spec(variant(useNuma=False, cpuNum=4, socketNum=2, cpuOnSocket=2))
    assert document["cpu"]["topology"] == {"sockets": 2, "cores": 2, "threads": 1}
    parse_spec(document)


def test_topology_threads_per_core_when_given():
    document = start_vm_spec(variant(useNuma=False, cpuNum=8, socketNum=2, cpuOnSocket=2, threadsPerCore=2))
    assert document["cpu"]["topology"] == {"sockets": 2, "cores": 2, "threads": 2}


def test_topology_grows_sockets_to_hold_the_hotplug_ceiling():
    document = start_vm_spec(variant(cpuNum=4, socketNum=1, cpuOnSocket=4, maxVcpuNum=16))
    assert document["cpu"]["topology"] == {"sockets": 4, "cores": 4, "threads": 1}
    parse_spec(document)


def test_topology_that_does_not_match_cpu_num_is_refused():
    assert "socketNum" in problems(variant(useNuma=False, cpuNum=3, socketNum=2, cpuOnSocket=2))


def test_topology_that_cannot_fill_the_ceiling_is_refused():
    assert "maxVcpuNum" in problems(variant(cpuNum=4, socketNum=1, cpuOnSocket=4, maxVcpuNum=18))


def test_half_a_topology_is_refused():
    assert "socketNum" in problems(variant(socketNum=2))


def test_cpu_speed_is_ignored():
    assert start_vm_spec(variant(cpuSpeed=3000))["cpu"] == start_vm_spec(example())["cpu"]


@pytest.mark.parametrize(("nested", "mode"), [("host-model", "host-model"), ("host-passthrough", "host-passthrough")])
def test_nested_virtualization_sets_the_cpu_mode(nested, mode):
    assert start_vm_spec(variant(nestedVirtualization=nested))["cpu"]["mode"] == mode


def test_nested_virtualization_none_is_the_emulators_default_model_as_in_zstack():
    assert start_vm_spec(example())["cpu"]["mode"] == "default"
    assert start_vm_spec(variant(nestedVirtualization=None))["cpu"]["mode"] == "default"


def test_custom_cpu_model():
    document = start_vm_spec(variant(nestedVirtualization="custom", vmCpuModel="Skylake-Server"))
    assert document["cpu"]["mode"] == "Skylake-Server"
    assert "vmCpuModel" in problems(variant(nestedVirtualization="custom"))
    assert "nestedVirtualization" in problems(variant(nestedVirtualization="sometimes"))


def test_cpu_pinning_addon():
    cmd = variant(addons={"cpuPinning": [{"vCpu": 0, "pCpuSet": "2-3"}]})
    assert start_vm_spec(cmd)["cpu"]["pinning"] == [{"vcpu": 0, "host_cpus": "2-3"}]


def test_hugepages_and_no_balloon():
    document = start_vm_spec(variant(useHugePage=True, addons={"useMemBalloon": False}))
    assert document["memory"]["hugepages"] is True
    assert document["memory"]["balloon"] is False


# ---- boot ----------------------------------------------------------------------------------------


def test_boot_firmware_machine_and_menu():
    boot = start_vm_spec(example())["boot"]
    assert boot == {"firmware": "bios", "machine": "pc", "menu": True}


def test_per_device_boot_order_wins_over_boot_dev():
    document = start_vm_spec(example())
    assert "order" not in document["boot"]
    assert document["disks"][0]["boot_order"] == 1


def test_boot_dev_becomes_boot_order_when_no_device_has_one():
    root = {**example()["rootVolume"], "bootOrder": 0}
    document = start_vm_spec(variant(rootVolume=root, bootDev=["cdrom", "hd", "network", "hd"]))
    assert document["boot"]["order"] == ["cdrom", "hd", "network"]
    parse_spec(document)


def test_unknown_boot_device_is_refused():
    root = {**example()["rootVolume"], "bootOrder": 0}
    assert "bootDev.0" in problems(variant(rootVolume=root, bootDev=["floppy"]))


def test_uefi_and_refused_boot_modes():
    assert start_vm_spec(variant(bootMode="UEFI"))["boot"]["firmware"] == "uefi"
    assert "bootMode" in problems(variant(bootMode="UEFI_WITH_CSM"))
    assert "secureBoot" in problems(variant(bootMode="UEFI", secureBoot=True))


def test_boot_menu_off():
    assert "menu" not in start_vm_spec(variant(useBootMenu=False))["boot"]


# ---- disks ---------------------------------------------------------------------------------------


def test_root_volume_as_a_file_disk():
    [disk] = start_vm_spec(example())["disks"]
    assert disk == {
        "source": {"type": "file", "path": "/var/lib/zstack/root.qcow2", "format": "auto"},
        "bus": "virtio",
        "cache": "none",
        "serial": ROOT_UUID,
        "boot_order": 1,
    }


def test_data_volumes_follow_root_in_device_id_order():
    cmd = variant(dataVolumes=[data_volume(3), data_volume(1)])
    disks = start_vm_spec(cmd)["disks"]
    assert [d["source"]["path"] for d in disks] == [
        "/var/lib/zstack/root.qcow2",
        "/var/lib/zstack/data-1.qcow2",
        "/var/lib/zstack/data-3.qcow2",
    ]
    assert disks[1]["source"]["format"] == "qcow2"
    assert "boot_order" not in disks[1]
    assert [d.target for d in parse_spec(start_vm_spec(cmd)).disks] == ["vda", "vdb", "vdc"]


def test_data_volume_boot_order_is_ignored_as_zstack_does():
    disks = start_vm_spec(variant(dataVolumes=[data_volume(1, bootOrder=2)]))["disks"]
    assert "boot_order" not in disks[1]


def test_virtio_scsi_volume_keeps_its_wwn_and_shareable():
    volume = data_volume(1, useVirtio=False, useVirtioSCSI=True, wwn="0x000f6c46e4c236bf", shareable=True, format="raw")
    disk = start_vm_spec(variant(dataVolumes=[volume]))["disks"][1]
    assert (disk["bus"], disk["wwn"], disk["shareable"]) == ("virtio-scsi", "0x000f6c46e4c236bf", True)
    parse_spec(start_vm_spec(variant(dataVolumes=[volume])))


def test_virtio_disks_drop_the_wwn_as_zstack_does():
    assert "wwn" not in start_vm_spec(example())["disks"][0]


@pytest.mark.parametrize(("machine", "bus"), [("pc", "ide"), ("q35", "sata"), (None, "ide")])
def test_non_virtio_disks_use_the_machines_legacy_bus(machine, bus):
    root = {**example()["rootVolume"], "useVirtio": False}
    assert start_vm_spec(variant(rootVolume=root, machineType=machine))["disks"][0]["bus"] == bus


def test_block_volume():
    root = {**example()["rootVolume"], "deviceType": "block", "installPath": "/dev/vg0/root"}
    assert start_vm_spec(variant(rootVolume=root))["disks"][0]["source"] == {
        "type": "block",
        "path": "/dev/vg0/root",
        "format": "raw",
    }


@pytest.mark.parametrize("install_path", ["ceph://pool-a/image-1", "rbd:pool-a/image-1", "rbd:pool-a/image-1:conf=/x"])
def test_ceph_volume_with_monitors_from_mon_info(install_path):
    root = {
        **example()["rootVolume"],
        "deviceType": "ceph",
        "installPath": install_path,
        "monInfo": [{"hostname": "10.0.0.1", "port": 6789}, {"hostname": "10.0.0.2"}],
        "secretUuid": "7c3a93e4-5a0b-4a51-9d4a-13b2d1c0f3a1",
    }
    source = start_vm_spec(variant(rootVolume=root))["disks"][0]["source"]
    assert source == {
        "type": "rbd",
        "pool": "pool-a",
        "image": "image-1",
        "monitors": ["10.0.0.1:6789", "10.0.0.2"],
        "auth": {"username": "zstack", "secret_uuid": "7c3a93e4-5a0b-4a51-9d4a-13b2d1c0f3a1"},
    }
    parse_spec(start_vm_spec(variant(rootVolume=root)))


def test_ceph_volume_with_a_monitors_list():
    root = {**example()["rootVolume"], "deviceType": "ceph", "installPath": "ceph://p/i", "monitors": ["mon1:6789"]}
    assert start_vm_spec(variant(rootVolume=root))["disks"][0]["source"]["monitors"] == ["mon1:6789"]


def test_ceph_volume_errors():
    root = {**example()["rootVolume"], "deviceType": "ceph", "installPath": "ceph://p/i"}
    assert "rootVolume.monInfo" in problems(variant(rootVolume=root))
    root = {**root, "installPath": "ceph://only-pool", "monInfo": [{"hostname": "m"}]}
    assert "rootVolume.installPath" in problems(variant(rootVolume=root))


def test_iscsi_volume():
    root = {
        **example()["rootVolume"],
        "deviceType": "iscsi",
        "installPath": "iscsi://10.0.0.5:3260/iqn.2024-01.io.zstack:vol1/2",
    }
    source = start_vm_spec(variant(rootVolume=root))["disks"][0]["source"]
    assert source == {"type": "iscsi", "portal": "10.0.0.5:3260", "target": "iqn.2024-01.io.zstack:vol1", "lun": 2}
    parse_spec(start_vm_spec(variant(rootVolume=root)))


def test_iscsi_volume_errors():
    root = {**example()["rootVolume"], "deviceType": "iscsi", "installPath": "iscsi://host/iqn.x"}
    assert "rootVolume.installPath" in problems(variant(rootVolume=root))
    root = {**root, "installPath": "iscsi://h:3260/iqn.2024-01.io.zstack:v/0", "chapUsername": "u", "chapPassword": "p"}
    assert "CHAP" in problems(variant(rootVolume=root))["rootVolume.chapPassword"]


@pytest.mark.parametrize("device_type", ["sharedblock", "scsilun", "mini", "quorum", "vhost", "cbd"])
def test_unsupported_device_types_are_refused_by_name(device_type):
    root = {**example()["rootVolume"], "deviceType": device_type}
    assert device_type in problems(variant(rootVolume=root))["rootVolume.deviceType"]


def test_missing_root_volume_or_install_path():
    assert "rootVolume" in problems(variant(rootVolume=None))
    root = {**example()["rootVolume"], "installPath": ""}
    assert "rootVolume.installPath" in problems(variant(rootVolume=root))


def test_volume_qos_becomes_io_limits():
    qos = {ROOT_UUID: {"totalBandwidth": 2000, "totalIOPS": 10000, "readBandwidth": -1}}
    disk = start_vm_spec(variant(addons={"VolumeQos": qos}))["disks"][0]
    assert disk["io_limits"] == {"total_bytes_sec": 2000, "total_iops_sec": 10000}


def test_volume_qos_read_write_limits():
    qos = {ROOT_UUID: {"readBandwidth": 100, "writeBandwidth": 200, "readIOPS": 3, "writeIOPS": 4}}
    disk = start_vm_spec(variant(addons={"VolumeQos": qos}))["disks"][0]
    assert disk["io_limits"] == {"read_bytes_sec": 100, "write_bytes_sec": 200, "read_iops_sec": 3, "write_iops_sec": 4}


def test_attach_data_volume_command_becomes_one_disk():
    cmd = {"vmInstanceUuid": UUID, "volume": data_volume(1), "addons": {"VolumeQos": {f"{1:032x}": {"totalIOPS": 5}}}}
    disk = data_volume_disk(cmd, "pc")
    assert disk["source"] == {"type": "file", "path": "/var/lib/zstack/data-1.qcow2", "format": "qcow2"}
    assert disk["io_limits"] == {"total_iops_sec": 5}
    with pytest.raises(SpecError, match="volume"):
        data_volume_disk({"vmInstanceUuid": UUID}, "pc")


def test_source_identity_ignores_format_and_auth():
    assert source_identity({"type": "file", "path": "/a", "format": "qcow2"}) == source_identity(
        {"type": "file", "path": "/a", "format": "auto"}
    )
    rbd = {"type": "rbd", "pool": "p", "image": "i", "monitors": ["m"]}
    assert source_identity(rbd) == source_identity({**rbd, "auth": {"username": "x"}})
    assert source_identity(rbd) != source_identity({**rbd, "image": "j"})


# ---- cdroms --------------------------------------------------------------------------------------


def test_cdroms_in_device_id_order_with_empty_trays():
    cdroms = [
        {"deviceId": 1, "isEmpty": True, "path": None},
        {"deviceId": 0, "isEmpty": False, "path": "/iso/centos.iso", "bootOrder": 2, "imageUuid": "abc"},
    ]
    document = start_vm_spec(variant(cdRoms=cdroms))
    assert document["cdroms"] == [{"bus": "ide", "iso": "/iso/centos.iso", "boot_order": 2}, {"bus": "ide"}]
    parse_spec(document)


def test_cdroms_use_sata_on_q35():
    cdroms = [{"deviceId": 0, "path": "/iso/a.iso"}]
    assert start_vm_spec(variant(cdRoms=cdroms, machineType="q35"))["cdroms"][0]["bus"] == "sata"


def test_boot_iso_of_old_management_nodes():
    document = start_vm_spec(variant(bootIso={"path": "/iso/old.iso", "deviceId": 0, "imageUuid": "abc"}))
    assert document["cdroms"] == [{"bus": "ide", "iso": "/iso/old.iso"}]


def test_iso_neither_on_a_host_path_nor_in_ceph_is_refused():
    assert "cdRoms.0.path" in problems(variant(cdRoms=[{"deviceId": 0, "path": "nfs://server/iso"}]))
    assert "cdRoms.0.monInfo" in problems(variant(cdRoms=[{"deviceId": 0, "path": "ceph://pool/iso"}]))


# ---- nics ----------------------------------------------------------------------------------------


def test_nic_on_its_bridge_with_tap_mac_model_and_mtu():
    [nic] = start_vm_spec(example())["nics"]
    assert nic == {
        "type": "bridge",
        "source": "br_eth0",
        "model": "virtio",
        "mac": "fa:62:4a:61:6c:00",
        "tap": "vnic1.0",
        "mtu": 1500,
    }


@pytest.mark.parametrize(("use_virtio", "model"), [(True, "virtio"), (False, "e1000")])
def test_nic_model_from_use_virtio_without_driver_type(use_virtio, model):
    nic = {**example()["nics"][0], "driverType": None, "useVirtio": use_virtio}
    assert start_vm_spec(variant(nics=[nic]))["nics"][0]["model"] == model


def test_nic_driver_type_wins_and_is_checked():
    nic = {**example()["nics"][0], "driverType": "rtl8139"}
    assert start_vm_spec(variant(nics=[nic]))["nics"][0]["model"] == "rtl8139"
    nic = {**nic, "driverType": "vhostuser"}
    assert "nics.0.driverType" in problems(variant(nics=[nic]))


def test_nics_in_device_id_order_with_boot_order_and_queues():
    first = {**example()["nics"][0], "deviceId": 1, "mac": "fa:62:4a:61:6c:01", "nicInternalName": "vnic1.1"}
    second = {**example()["nics"][0], "bootOrder": 3, "vHostAddOn": {"queueNum": 4}}
    root = {**example()["rootVolume"], "bootOrder": 1}
    nics = start_vm_spec(variant(nics=[first, second], rootVolume=root))["nics"]
    assert [n["tap"] for n in nics] == ["vnic1.0", "vnic1.1"]
    assert (nics[0]["boot_order"], nics[0]["queues"]) == (3, 4)
    assert "queues" not in nics[1]


def test_nic_qos_is_bits_per_second_turned_into_kib_per_second():
    qos = {NIC_UUID: {"outboundBandwidth": 1024 * 1024 * 8, "inboundBandwidth": 81920}}
    nic = start_vm_spec(variant(addons={"NicQos": qos}))["nics"][0]
    assert nic["bandwidth"] == {"inbound": {"average_kib_s": 10}, "outbound": {"average_kib_s": 1024}}
    parse_spec(start_vm_spec(variant(addons={"NicQos": qos})))


def test_nic_qos_below_one_kib_per_second_is_refused():
    qos = {NIC_UUID: {"outboundBandwidth": 1000}}
    assert f"addons.NicQos.{NIC_UUID}.outboundBandwidth" in problems(variant(addons={"NicQos": qos}))


def test_nic_errors():
    assert "nics.0.bridgeName" in problems(variant(nics=[{**example()["nics"][0], "bridgeName": None}]))
    vf = {**example()["nics"][0], "pciDeviceAddress": "3b:02.1", "vlanId": "abc"}
    assert "nics.0.vlanId" in problems(variant(nics=[vf]))


# ---- display -------------------------------------------------------------------------------------


def test_vnc_on_loopback_with_password_and_video():
    graphics = start_vm_spec(example())["graphics"]
    assert graphics == {"type": "vnc", "listen": "127.0.0.1", "tablet": True, "password": "s3cret", "video": "cirrus"}


def test_console_listen_is_the_callers_choice():
    assert start_vm_spec(example(), console_listen="0.0.0.0")["graphics"]["listen"] == "0.0.0.0"


def test_spice_gets_zstacks_default_sound_card():
    graphics = start_vm_spec(variant(consoleMode="spice", videoType="qxl"))["graphics"]
    assert (graphics["type"], graphics["video"], graphics["sound"]) == ("spice", "qxl", "ich6")
    parse_spec(start_vm_spec(variant(consoleMode="spice", videoType="qxl")))


@pytest.mark.parametrize("video", ["cirrus", "vga", "qxl", "virtio"])
def test_video_types(video):
    assert start_vm_spec(variant(videoType=video))["graphics"]["video"] == video


def test_display_errors():
    assert "videoType" in problems(variant(videoType="voodoo"))
    assert "consoleMode" in problems(variant(consoleMode="vncAndSpice"))


def test_no_console():
    assert "graphics" not in start_vm_spec(variant(consoleMode=None))
    assert "graphics" not in start_vm_spec(variant(addons={"noConsole": True}))


# ---- devices and platform ------------------------------------------------------------------------


def test_guest_agent_follows_the_channel_addon():
    assert start_vm_spec(example())["guest_agent"] is True
    assert start_vm_spec(variant(addons={}))["guest_agent"] is False


def test_pci_devices_addon():
    cmd = variant(addons={"pciDevice": ["0000:03:00.0,5f2e", "04:00.1,"]})
    assert start_vm_spec(cmd)["passthrough"]["pci"] == [
        {"address": "0000:03:00.0", "managed": False},
        {"address": "04:00.1", "managed": False},
    ]
    assert parse_spec(start_vm_spec(cmd)).passthrough.pci[1].address == "0000:04:00.1"


def test_usb_passthrough_addon():
    cmd = variant(addons={"usbDevice": ["001:004:046d:c52b:2.0:PassThrough::"]})
    assert start_vm_spec(cmd)["passthrough"]["usb"] == [{"bus": 1, "device": 4}]
    parse_spec(start_vm_spec(cmd))


def test_usb_redirect_and_malformed_entries_are_refused():
    redirect = variant(addons={"usbDevice": ["001:004:046d:c52b:2.0:Redirect:4000:10.0.0.9"]})
    assert "Redirect" in problems(redirect)["addons.usbDevice.0"]
    assert "addons.usbDevice.0" in problems(variant(addons={"usbDevice": ["001:004"]}))
    assert "addons.pciDevice.0" in problems(variant(addons={"pciDevice": [""]}))


def test_no_passthrough_block_without_devices():
    assert "passthrough" not in start_vm_spec(example())


def test_clock_utc_and_localtime_with_zstacks_timers():
    assert start_vm_spec(example())["clock"] == {"offset": "utc"}
    clock = start_vm_spec(variant(clock="localtime"))["clock"]
    assert clock["offset"] == "localtime"
    assert [t["name"] for t in clock["timers"]] == ["rtc", "pit", "hpet"]
    parse_spec(start_vm_spec(variant(clock="localtime")))
    assert "clock" in problems(variant(clock="martian"))


def test_features():
    features = start_vm_spec(variant(emulateHyperV=True, kvmHiddenState="true", acpi=False))["features"]
    assert features == {
        "acpi": False,
        "hyperv": True,
        "hide_kvm": True,
        "hyperv_vendor_id": "zstack.io",
        "suspend_to_mem": False,
        "suspend_to_disk": False,
    }


# ---- redefining a stopped VM ---------------------------------------------------------------------


def test_replacement_patch_turns_the_old_spec_into_exactly_the_new_one():
    old = {"name": "a", "graphics": {"type": "vnc", "password": "x"}, "labels": {"k": "v"}, "cdroms": [1]}
    new = {"name": "a", "graphics": {"type": "vnc"}, "labels": {}}
    assert merge_patch(old, replacement_patch(old, new)) == new
