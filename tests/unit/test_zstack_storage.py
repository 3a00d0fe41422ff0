"""ZStack's storage fields as vmhost maps them: volume QoS, block and SharedBlock volumes and their format, Ceph
volumes and ISOs with the cephx key the command carries, IOThreads and their virtio-scsi controllers.

Each conversion is also parsed and rendered, and the domain is read back the way libvirt reads it.
"""

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from lxml import etree

from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.unit.test_zstack_convert import ROOT_UUID, example
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.config import HostConfig
from vmhost.dialects.zstack import Unmappable, data_volume_disk, start_vm_spec
from vmhost.dialects.zstack.devices import ceph_key
from vmhost.engine import Engine
from vmhost.errors import HypervisorError
from vmhost.render.libvirt import RenderContext, render_domain, validate_domain_xml
from vmhost.spec import SpecError, parse_spec

DATA_UUID = "6c46e4c236bf4c3e9d5a2b1c0d9e8f7a"
SECRET = "9d9f2a3c-1b2c-4d5e-8f90-a1b2c3d4e5f6"
KEY = "AQBx2xdkAAAAABAAl5yYVzPmMdJ3ROs/8n3O6g=="
MONITORS = [{"hostname": "172.20.0.11", "port": 6789}, {"hostname": "172.20.0.12", "port": 6789}]


def body(**changes: Any) -> dict[str, Any]:
    cmd = example()
    cmd.update(copy.deepcopy(changes))
    return cmd


def data_volume(device_id: int = 1, **fields: Any) -> dict[str, Any]:
    volume = {
        "installPath": f"/var/lib/zstack/data-{device_id}.qcow2",
        "deviceId": device_id,
        "deviceType": "file",
        "volumeUuid": f"{DATA_UUID[:-1]}{device_id}",
        "useVirtio": True,
        "useVirtioSCSI": False,
        "cacheMode": "none",
        "format": "qcow2",
        "type": "Data",
    }
    return {**volume, **fields}


def with_addons(cmd: dict[str, Any], **addons: Any) -> dict[str, Any]:
    cmd["addons"] = {**cmd.get("addons", {}), **addons}
    return cmd


def domain(cmd: dict[str, Any]) -> etree._Element:
    """The rendered domain of a command; fails the test when libvirt's schema refuses it."""
    spec = parse_spec(start_vm_spec(cmd))
    formats = {str(d.target): "qcow2" for d in spec.disks if getattr(d.source, "format", None) == "auto"}
    node = render_domain(spec, RenderContext(accel="tcg", console_log=Path("/tmp/console.log"), disk_formats=formats))
    assert validate_domain_xml(node) == []
    return node


def problems(cmd: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        start_vm_spec(cmd)
    return {problem.path: problem.message for problem in caught.value.problems}


# ---- volume QoS ------------------------------------------------------------------------------------------------------


def test_volume_qos_iops_keys_as_zstack_sends_them_become_iotune():
    qos = {ROOT_UUID: {"readIOPS": 300, "writeIOPS": 200, "readBandwidth": 1048576, "totalIOPS": -1}}
    disk = domain(with_addons(body(), VolumeQos=qos)).find("devices/disk")
    iotune = {child.tag: int(child.text or 0) for child in disk.findall("iotune/*")}
    assert iotune == {"read_iops_sec": 300, "write_iops_sec": 200, "read_bytes_sec": 1048576}


def test_volume_qos_total_with_read_limit_is_refused_naming_the_zstack_field():
    qos = {ROOT_UUID: {"totalIOPS": 300, "readIOPS": 100}}
    assert f"addons.VolumeQos.{ROOT_UUID}.totalIOPS" in problems(with_addons(body(), VolumeQos=qos))


def test_volume_qos_that_is_not_a_number_is_refused():
    qos = {ROOT_UUID: {"writeIOPS": "fast"}}
    assert f"addons.VolumeQos.{ROOT_UUID}.writeIOPS" in problems(with_addons(body(), VolumeQos=qos))


def test_attach_data_volume_keeps_its_iops_limit():
    volume = data_volume(1)
    cmd = {"volume": volume, "addons": {"VolumeQos": {volume["volumeUuid"]: {"totalIOPS": 5}}}}
    assert data_volume_disk(cmd, "pc")["io_limits"] == {"total_iops_sec": 5}


# ---- volume serials --------------------------------------------------------------------------------------------------


def test_every_volume_s_serial_is_its_uuid_as_zstacks_agent_writes_it():
    """Vm.set_volume_serial_id writes volumeUuid as it comes (32 hex digits): the guest's /dev/disk/by-id names it."""
    volume = data_volume(1, deviceType="block", installPath="/dev/sdb", useVirtio=False, useVirtioSCSI=True)
    disks = domain(body(dataVolumes=[volume])).findall("devices/disk")
    assert [disk.findtext("serial") for disk in disks] == [ROOT_UUID, volume["volumeUuid"]]


def test_attach_data_volume_carries_the_serial_too():
    """_attach_data_volume calls set_volume_serial_id as the start does."""
    volume = data_volume(2)
    assert data_volume_disk({"volume": volume}, "pc")["serial"] == volume["volumeUuid"]


def test_a_volume_without_a_uuid_has_no_serial():
    root = {k: v for k, v in example()["rootVolume"].items() if k != "volumeUuid"}
    assert domain(body(rootVolume=root)).find("devices/disk/serial") is None


@pytest.mark.parametrize("uuid", ["", "d387b453 4faf", "d387b453/4faf", "x" * 37, 42])
def test_a_volume_uuid_that_cannot_be_a_serial_is_refused_naming_the_field(uuid):
    root = {**example()["rootVolume"], "volumeUuid": uuid}
    assert "rootVolume.volumeUuid" in problems(body(rootVolume=root))


def test_spec_serial_takes_qemus_36_characters_and_its_charset():
    def disk(serial: str) -> dict[str, Any]:
        return {"name": "a", "memory": "1GiB", "disks": [{"source": {"type": "file", "path": "/d"}, "serial": serial}]}

    assert parse_spec(disk("a" * 36)).disks[0].serial == "a" * 36
    for bad in ("a" * 37, "with space", "semi;colon", ""):
        with pytest.raises(SpecError, match="serial"):
            parse_spec(disk(bad))


# ---- block and SharedBlock volumes -----------------------------------------------------------------------------------


def test_file_volume_under_dev_is_a_block_disk_with_its_qcow2_format():
    root = {**example()["rootVolume"], "deviceType": "file", "installPath": "/dev/vg-zs/root-lv", "format": "qcow2"}
    disk = domain(body(rootVolume=root)).find("devices/disk")
    assert disk.get("type") == "block"
    assert disk.find("source").get("dev") == "/dev/vg-zs/root-lv"
    assert disk.find("driver").get("type") == "qcow2"


def test_block_volume_without_a_format_is_raw_and_never_probed():
    volume = data_volume(1, deviceType="block", installPath="/dev/sdb", format=None)
    disk = domain(body(dataVolumes=[volume])).findall("devices/disk")[1]
    assert (disk.get("type"), disk.find("driver").get("type")) == ("block", "raw")


def test_block_volume_format_other_than_raw_or_qcow2_is_refused_naming_the_field():
    volume = data_volume(1, deviceType="block", installPath="/dev/sdb", format="vmdk")
    assert "dataVolumes.0.format" in problems(body(dataVolumes=[volume]))


def test_shareable_qcow2_block_volume_is_refused():
    """Two VMs writing one qcow2 image corrupt it; the spec refuses it as it does for qcow2 files."""
    source = {"type": "block", "path": "/dev/vg/shared", "format": "qcow2"}
    with pytest.raises(SpecError, match="shareable"):
        parse_spec({"name": "a", "memory": "1GiB", "disks": [{"source": source, "shareable": True}]})


# ---- Ceph volumes, ISOs and the key ----------------------------------------------------------------------------------


def ceph_cdrom(path: str = "ceph://pri-c-pool/iso-image", **fields: Any) -> dict[str, Any]:
    return {"path": path, "deviceId": 0, "isEmpty": False, "monInfo": MONITORS, "secretUuid": SECRET, **fields}


def test_ceph_iso_is_an_rbd_cdrom_with_its_monitors_and_secret():
    drive = domain(body(cdRoms=[ceph_cdrom(bootOrder=2)])).find("devices/disk[@device='cdrom']")
    source = drive.find("source")
    assert (drive.get("type"), source.get("protocol"), source.get("name")) == ("network", "rbd", "pri-c-pool/iso-image")
    assert [(h.get("name"), h.get("port")) for h in source.findall("host")] == [
        ("172.20.0.11", "6789"),
        ("172.20.0.12", "6789"),
    ]
    assert source.find("auth").get("username") == "zstack"
    assert source.find("auth/secret").attrib == {"type": "ceph", "uuid": SECRET}
    assert drive.find("readonly") is not None
    assert drive.find("boot").get("order") == "2"


def test_ceph_iso_snapshot_suffix_is_dropped_as_zstacks_agent_drops_it():
    drive = domain(body(cdRoms=[ceph_cdrom("ceph://pool/iso@snap-1")])).find("devices/disk[@device='cdrom']")
    assert drive.find("source").get("name") == "pool/iso"


def test_ceph_iso_without_monitors_is_refused_naming_the_field():
    assert "cdRoms.0.monInfo" in problems(body(cdRoms=[ceph_cdrom(monInfo=[])]))


def test_cdrom_cannot_hold_a_file_and_an_rbd_image():
    rbd = {"pool": "p", "image": "i", "monitors": ["m"]}
    with pytest.raises(SpecError, match="one medium"):
        parse_spec({"name": "a", "memory": "1GiB", "cdroms": [{"iso": "/x.iso", "rbd": rbd}]})


def test_ceph_key_is_read_but_never_put_into_the_spec():
    cmd = with_addons(body(), ceph_secret_key=KEY, ceph_secret_uuid=SECRET)
    key = ceph_key(cmd)
    assert key is not None and key.uuid == UUID(SECRET) and key.key == KEY
    assert KEY not in repr(key)
    assert KEY not in repr(start_vm_spec(cmd))


@pytest.mark.parametrize("addons", [{}, {"ceph_secret_uuid": SECRET}, {"ceph_secret_key": KEY}])
def test_without_both_key_and_uuid_no_secret_is_made_as_in_zstacks_agent(addons):
    assert ceph_key(with_addons(body(), **addons)) is None


@pytest.mark.parametrize(
    ("addons", "field"),
    [
        ({"ceph_secret_key": "not base64!", "ceph_secret_uuid": SECRET}, "addons.ceph_secret_key"),
        ({"ceph_secret_key": "é", "ceph_secret_uuid": SECRET}, "addons.ceph_secret_key"),
        ({"ceph_secret_key": KEY, "ceph_secret_uuid": "pool-secret"}, "addons.ceph_secret_uuid"),
    ],
)
def test_malformed_ceph_key_or_uuid_is_refused_naming_the_field_without_quoting_the_key(addons, field):
    with pytest.raises(Unmappable) as caught:
        ceph_key(with_addons(body(), **addons))
    assert caught.value.path == field
    assert addons["ceph_secret_key"] not in str(caught.value)


class SecretKeepingDriver(FakeDriver):
    """The fake hypervisor plus a record of when the start held which secret, and what was released."""

    def __init__(self) -> None:
        super().__init__(FakeHypervisor())
        self.secret_log: list[str] = []

    @contextmanager
    def ceph_secret(self, uuid: UUID, key: str) -> Iterator[None]:
        self.secret_log.append(f"set {uuid}")
        try:
            yield
        except BaseException:
            self.secret_log.append(f"released {uuid}")
            raise

    def define(self, spec: Any, resources: Any) -> None:
        self.secret_log.append("define")
        super().define(spec, resources)


def zstack_host(tmp_path: Path, driver: FakeDriver) -> ZStackHost:
    config = HostConfig(data_dir=tmp_path, stop_timeout=0.5, allowed_paths=(tmp_path, Path("/var/lib/zstack")))
    return ZStackHost(Engine(config, driver))


def ceph_start_command() -> dict[str, Any]:
    root = {
        **example()["rootVolume"],
        "deviceType": "ceph",
        "installPath": "ceph://pri-v-r/d387b4534faf4553a50a8a632cf12e35",
        "monInfo": MONITORS,
        "secretUuid": SECRET,
    }
    return with_addons(body(rootVolume=root), ceph_secret_key=KEY, ceph_secret_uuid=SECRET)


def test_start_sets_the_ceph_secret_before_the_vm_is_defined(tmp_path):
    driver = SecretKeepingDriver()
    zstack_host(tmp_path, driver).start(ceph_start_command()).work()
    assert driver.secret_log[:2] == [f"set {SECRET}", "define"]


def test_a_failed_start_gives_the_secret_back(tmp_path):
    driver = SecretKeepingDriver()
    driver.fail_next("create_paused", HypervisorError("qemu could not open the rbd image"))
    with pytest.raises(HypervisorError):
        zstack_host(tmp_path, driver).start(ceph_start_command()).work()
    assert driver.secret_log[-1] == f"released {SECRET}"


def test_a_host_whose_driver_keeps_no_secrets_refuses_the_key_before_anything_runs(tmp_path):
    driver = FakeDriver(FakeHypervisor())
    with pytest.raises(Unmappable) as caught:
        zstack_host(tmp_path, driver).start(ceph_start_command())
    assert caught.value.path == "addons.ceph_secret_key"
    assert driver.calls == []


def test_create_ceph_secret_command_names_its_own_fields(tmp_path):
    host = zstack_host(tmp_path, SecretKeepingDriver())
    with pytest.raises(Unmappable) as caught:
        host.create_ceph_secret({"uuid": SECRET, "userKey": "%%%"})
    assert caught.value.path == "userKey"


# ---- IOThreads and controllers ---------------------------------------------------------------------------------------


def test_iothreads_count_ids_and_pins_from_the_addons():
    cmd = with_addons(
        body(dataVolumes=[data_volume(1, ioThreadId=3, ioThreadPin="0-1")]),
        ioThreadNum=2,
        ioThreadPins=[{"ioThreadId": 3, "pin": "0-1"}],
    )
    node = domain(cmd)
    assert node.findtext("iothreads") == "2"
    assert [t.get("id") for t in node.findall("iothreadids/iothread")] == ["1", "3"]
    assert node.find("cputune/iothreadpin").attrib == {"iothread": "3", "cpuset": "0-1"}
    assert node.findall("devices/disk")[1].find("driver").get("iothread") == "3"


def test_a_volumes_own_pin_pins_its_iothread():
    cmd = with_addons(body(dataVolumes=[data_volume(1, ioThreadId=1, ioThreadPin="1")]), ioThreadNum=1)
    assert domain(cmd).find("cputune/iothreadpin").attrib == {"iothread": "1", "cpuset": "1"}


def test_virtio_scsi_volume_with_an_iothread_gets_its_controller_at_controller_index():
    volume = data_volume(1, useVirtio=False, useVirtioSCSI=True, ioThreadId=1, controllerIndex=2)
    node = domain(with_addons(body(dataVolumes=[volume]), ioThreadNum=1))
    controllers = {
        c.get("index"): (c.get("model"), c.find("driver").get("iothread") if c.find("driver") is not None else None)
        for c in node.findall("devices/controller[@type='scsi']")
    }
    assert controllers == {"0": ("virtio-scsi", None), "1": ("virtio-scsi", None), "2": ("virtio-scsi", "1")}
    assert node.findall("devices/disk")[1].find("address").get("controller") == "2"


def test_iothread_on_an_ide_volume_is_ignored_as_zstacks_agent_ignores_it():
    volume = data_volume(1, useVirtio=False, ioThreadId=1)
    node = domain(with_addons(body(dataVolumes=[volume]), ioThreadNum=1))
    assert node.findall("devices/disk")[1].find("driver").get("iothread") is None


@pytest.mark.parametrize(
    ("volumes", "addons", "field"),
    [
        ([data_volume(1, ioThreadId=2)], {"ioThreadNum": 1}, "dataVolumes.0.ioThreadId"),
        ([data_volume(1, ioThreadId=1)], {}, "dataVolumes.0.ioThreadId"),
        (
            [data_volume(1, ioThreadId=1, ioThreadPin="2")],
            {"ioThreadNum": 1, "ioThreadPins": [{"ioThreadId": 1, "pin": "0"}]},
            "dataVolumes.0.ioThreadPin",
        ),
        ([], {"ioThreadNum": 1, "ioThreadPins": [{"ioThreadId": 1, "pin": "all"}]}, "addons.ioThreadPins.0.pin"),
        (
            [],
            {"ioThreadNum": 1, "ioThreadPins": [{"ioThreadId": 1, "pin": "0"}, {"ioThreadId": 2, "pin": "1"}]},
            "addons.ioThreadNum",
        ),
        (
            [
                data_volume(1, useVirtioSCSI=True, ioThreadId=1, controllerIndex=1),
                data_volume(2, useVirtioSCSI=True, ioThreadId=2, controllerIndex=1),
            ],
            {"ioThreadNum": 2},
            "dataVolumes.1.controllerIndex",
        ),
    ],
)
def test_iothread_settings_vmhost_cannot_render_are_refused_naming_the_zstack_field(volumes, addons, field):
    assert field in problems(with_addons(body(dataVolumes=volumes), **addons))


def test_spec_refuses_a_disk_naming_an_iothread_the_vm_lacks():
    with pytest.raises(SpecError, match=r"disks\.0\.iothread"):
        parse_spec(
            {"name": "a", "memory": "1GiB", "disks": [{"source": {"type": "block", "path": "/dev/x"}, "iothread": 1}]}
        )


# ---- sector size -----------------------------------------------------------------------------------------------------


def test_physical_block_size_of_a_ceph_volume_becomes_blockio():
    root = {
        **example()["rootVolume"],
        "deviceType": "ceph",
        "installPath": "ceph://pool/root",
        "monInfo": MONITORS,
        "physicalBlockSize": 4096,
    }
    disk = domain(body(rootVolume=root)).find("devices/disk")
    assert disk.find("blockio").attrib == {"physical_block_size": "4096"}


def test_physical_block_size_must_be_a_power_of_two_in_qemus_bounds():
    for size in (1000, 256, 4 * 1024 * 1024):
        source = {"type": "block", "path": "/dev/x"}
        with pytest.raises(SpecError, match="physical_block_size"):
            parse_spec({"name": "a", "memory": "1GiB", "disks": [{"source": source, "physical_block_size": size}]})
