"""ZStack's day-two commands -> merge patches for Engine.update(live=True), field by field.

Each body comes from tests/unit/zstack_bodies/day_two.py (built as ZStack's management node and agent tests build
them); the VM is the realistic StartVmCmd of test_zstack_convert, converted and stored as the engine stores it.
Every patch is also applied to the stored spec and parsed again: what the engine receives is a valid spec.
"""

import contextlib
import copy
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.test_zstack_convert import CANONICAL, example
from tests.unit.zstack_bodies import day_two as bodies
from vmhost.api.zstack import day_two as api_day_two
from vmhost.api.zstack.routes import ASYNC_PATHS
from vmhost.dialects.zstack import day_two, start_vm_spec
from vmhost.engine.merge import merge_patch
from vmhost.errors import HypervisorError
from vmhost.spec import Problem, SpecError, VMSpec, parse_spec

MIB = 2**20
GIB = 2**30
ISO = "/var/lib/zstack/iso/ubuntu.iso"


def stored(**changes: Any) -> dict[str, Any]:
    """The VM as the store keeps it after /vm/start with the realistic command (hotplug ceilings: 128 vCPUs, 4 GiB)."""
    cmd = example()
    cmd.update(copy.deepcopy(changes))
    return parse_spec(start_vm_spec(cmd)).model_dump(mode="json")


def cdroms(count: int, iso_at: int | None = None) -> list[dict[str, Any]]:
    """cdRoms as KVMHost.startVm sends them: one CdRomTO per drive, empty ones with isEmpty."""
    return [
        {
            "deviceId": i,
            "isEmpty": i != iso_at,
            "path": ISO if i == iso_at else None,
            "imageUuid": bodies.ISO_UUID if i == iso_at else None,
            "bootOrder": 0,
        }
        for i in range(count)
    ]


def applied(spec: dict[str, Any], change: day_two.Change | None) -> VMSpec:
    assert change is not None
    return parse_spec(merge_patch(spec, change.patch))


def refused(convert: Any, cmd: dict[str, Any], spec: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as failure:
        convert(cmd, spec)
    return {p.path: p.message for p in failure.value.problems}


# ---- /vm/attachnic -------------------------------------------------------------------------------


def test_attach_nic_appends_the_nic_as_start_converts_it():
    spec = stored()
    change = day_two.attach_nic(bodies.attach_nic(), spec)
    result = applied(spec, change)
    assert len(result.nics) == 2
    assert result.nics[0].mac == spec["nics"][0]["mac"], "the NICs already there are kept as they are"
    nic = result.nics[1]
    assert (nic.type, nic.source, nic.mac, nic.tap) == ("bridge", "br_eth0", "fa:04:93:d1:2c:01", "vnic16099.1")
    assert (nic.model, nic.mtu, nic.queues, nic.boot_order) == ("virtio", 1500, None, None)


def test_attach_nic_maps_qos_and_multiqueue():
    cmd = bodies.attach_nic(addons={"NicQos": {bodies.NIC_UUID: {"outboundBandwidth": 8 * 1024 * 1000}}})
    cmd["nic"]["vHostAddOn"]["queueNum"] = 4
    nic = applied(stored(), day_two.attach_nic(cmd, stored())).nics[1]
    assert nic.queues == 4
    assert nic.bandwidth is not None and nic.bandwidth.outbound is not None
    assert nic.bandwidth.outbound.average_kib_s == 1000


def test_attach_nic_without_virtio_is_e1000():
    cmd = bodies.attach_nic()
    del cmd["nic"]["driverType"]
    cmd["nic"]["useVirtio"] = False
    assert applied(stored(), day_two.attach_nic(cmd, stored())).nics[1].model == "e1000"


def test_attach_nic_with_clean_traffic_filters_its_last_ipv4():
    cmd = bodies.attach_nic()
    cmd["nic"].update(cleanTraffic=True, ips=["10.0.0.5", "fd00::5", "10.0.0.6"])
    nic = applied(stored(), day_two.attach_nic(cmd, stored())).nics[1]
    assert [str(ip) for ip in nic.allowed_ips] == ["10.0.0.6"]


def test_attach_nic_whose_mac_is_plugged_is_already_done():
    spec = stored()
    cmd = bodies.attach_nic()
    cmd["nic"]["mac"] = spec["nics"][0]["mac"].upper()
    assert day_two.attach_nic(cmd, spec) is None


def test_ignored_nic_fields_change_nothing():
    quiet = bodies.attach_nic(accountUuid=None)
    quiet["nic"].update(physicalInterface="eth9", metaData="64", deviceId=7, vlanId=None, ips=["10.0.0.9"])
    quiet["nic"]["l2NetworkUuid"] = "0" * 32
    assert day_two.attach_nic(quiet, stored()) == day_two.attach_nic(bodies.attach_nic(), stored())


@pytest.mark.parametrize(
    ("nic_fields", "addons", "field"),
    [
        ({"mac": None}, {}, "nic.mac"),
        ({"type": "vDPA"}, {}, "nic.type"),
        ({"type": "TFVNIC"}, {}, "nic.type"),
        ({}, {"vhostSrcPath": "/var/run/vhost.sock"}, "addons.vhostSrcPath"),
        ({"state": "disable"}, {}, "nic.state"),
        ({"isolated": True}, {}, "nic.isolated"),
        ({"cleanTraffic": True, "ips": ["fd00::5"]}, {}, "nic.cleanTraffic"),
        ({"bridgeName": None}, {}, "nic.bridgeName"),
        ({"pciDeviceAddress": "0000:81:00.1", "srcPath": "/var/run/vdpa.sock"}, {}, "nic.srcPath"),
        ({"driverType": "pcnet"}, {}, "nic.driverType"),
    ],
)
def test_attach_nic_refuses_what_vmhost_cannot_plug_naming_the_zstack_field(nic_fields, addons, field):
    cmd = bodies.attach_nic(addons=addons)
    cmd["nic"].update(nic_fields)
    assert field in refused(day_two.attach_nic, cmd, stored())


def test_attach_nic_names_the_zstack_field_for_engine_refusals():
    spec = stored()
    change = day_two.attach_nic(bodies.attach_nic(), spec)
    assert change is not None
    assert change.zstack_field("nics.1.source") == "nic"
    assert change.zstack_field("nics.0.source") is None, "a problem of a NIC already there is not the command's"
    assert change.zstack_field("cpu.vcpus") is None


# ---- /vm/detachnic -------------------------------------------------------------------------------


def test_detach_nic_removes_the_nic_with_that_mac_and_keeps_the_others():
    spec = stored()
    spec = merge_patch(spec, day_two.attach_nic(bodies.attach_nic(), spec).patch)  # type: ignore[union-attr]
    change = day_two.detach_nic(bodies.detach_nic(mac=spec["nics"][0]["mac"].upper()), spec)
    result = applied(spec, change)
    assert [n.mac for n in result.nics] == ["fa:04:93:d1:2c:01"]
    assert change is not None and change.zstack_field(f"nics[{spec['nics'][0]['mac']}]") == "nic.mac"
    assert change.zstack_field("nics[fa:04:93:d1:2c:01]") is None, "the NIC kept is not the command's"


def test_detach_nic_not_there_is_already_done():
    assert day_two.detach_nic(bodies.detach_nic(mac="fa:00:00:00:00:99"), stored()) is None


def test_detach_nic_needs_the_mac():
    assert "nic.mac" in refused(day_two.detach_nic, bodies.detach_nic(mac=""), stored())


# ---- /vm/online/changecpumem, /vm/increase/cpu, /vm/increase/mem ---------------------------------


def test_change_cpu_memory_sets_vcpus_and_memory_size():
    spec = stored()
    change = day_two.change_cpu_memory(bodies.change_cpu_memory(cpu_num=2, memory_size=2 * GIB + 32 * MIB), spec)
    assert change is not None
    assert change.patch == {"cpu": {"vcpus": 2}, "memory": {"size": 2 * GIB + 32 * MIB}}
    result = applied(spec, change)
    assert (result.cpu.vcpus, result.cpu.max_vcpus) == (2, 128)
    assert (result.memory.size, result.memory.max_size) == (2 * GIB + 32 * MIB, 4 * GIB)
    assert change.zstack_field("cpu.vcpus") == "cpuNum"
    assert change.zstack_field("memory.size") == "memorySize"


def test_increase_cpu_reads_only_cpu_num():
    change = day_two.change_cpu_memory(bodies.increase_cpu(cpu_num=4), stored(), memory=False)
    assert change is not None and change.patch == {"cpu": {"vcpus": 4}}


def test_increase_memory_reads_only_memory_size():
    change = day_two.change_cpu_memory(bodies.increase_memory(memory_size=3 * GIB), stored(), cpu=False)
    assert change is not None and change.patch == {"memory": {"size": 3 * GIB}}


def test_values_the_vm_has_already_are_nothing_to_change():
    assert day_two.change_cpu_memory(bodies.change_cpu_memory(cpu_num=1, memory_size=2 * GIB), stored()) is None
    change = day_two.change_cpu_memory(bodies.change_cpu_memory(cpu_num=1, memory_size=3 * GIB), stored())
    assert change is not None and change.patch == {"memory": {"size": 3 * GIB}}


def test_less_memory_is_mapped_too():
    change = day_two.change_cpu_memory(bodies.increase_memory(memory_size=1 * GIB), stored(), cpu=False)
    assert change is not None and change.patch == {"memory": {"size": GIB}}


def test_above_the_ceilings_is_refused_naming_both_fields():
    found = refused(day_two.change_cpu_memory, bodies.change_cpu_memory(cpu_num=129, memory_size=5 * GIB), stored())
    assert set(found) == {"cpuNum", "memorySize"}
    assert "ceiling of 128" in found["cpuNum"]
    assert f"ceiling of {4 * GIB}" in found["memorySize"]


def test_without_use_numa_the_ceiling_is_what_the_vm_booted_with():
    spec = stored(useNuma=False)
    assert "cpuNum" in refused(day_two.change_cpu_memory, bodies.increase_cpu(cpu_num=2), spec)
    assert "memorySize" in refused(day_two.change_cpu_memory, bodies.increase_memory(), spec)


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (bodies.increase_cpu(cpu_num=0), "cpuNum"),
        ({"vmUuid": bodies.VM, "cpuNum": "2"}, "cpuNum"),
        ({"vmUuid": bodies.VM}, "cpuNum"),
        (bodies.increase_memory(memory_size=2 * GIB + 1), "memorySize"),
        ({"vmUuid": bodies.VM, "memorySize": None}, "memorySize"),
    ],
)
def test_malformed_values_are_refused_by_field(cmd, field):
    assert field in refused(day_two.change_cpu_memory, cmd, stored())


# ---- /vm/iso/attach, /vm/iso/detach --------------------------------------------------------------


def test_attach_iso_puts_the_file_into_the_drive_of_its_device_id():
    spec = stored(cdRoms=cdroms(3))
    result = applied(spec, day_two.attach_iso(bodies.attach_iso(device_id=1), spec))
    assert [str(c.iso) if c.iso else None for c in result.cdroms] == [None, ISO, None]
    assert [c.bus for c in result.cdroms] == ["ide"] * 3, "the drives are otherwise unchanged"


def test_attach_iso_already_in_the_drive_is_already_done():
    assert day_two.attach_iso(bodies.attach_iso(device_id=0), stored(cdRoms=cdroms(1, iso_at=0))) is None


def test_attach_iso_replaces_the_media_in_a_full_drive():
    spec = stored(cdRoms=cdroms(1, iso_at=0))
    result = applied(spec, day_two.attach_iso(bodies.attach_iso(path="/var/lib/zstack/iso/other.iso"), spec))
    assert str(result.cdroms[0].iso) == "/var/lib/zstack/iso/other.iso"


@pytest.mark.parametrize(
    ("iso", "field"),
    [
        ({"path": "ceph://pool/iso-image"}, "iso.path"),
        ({"path": "cbd:pool/lun"}, "iso.path"),
        ({"path": "iscsi://192.0.2.1:3260/iqn.2024-01.io.zstack:iso/1"}, "iso.path"),
        ({"path": "relative.iso"}, "iso.path"),
        ({"path": None}, "iso.path"),
        ({"deviceId": 3}, "iso.deviceId"),
        ({"deviceId": -1}, "iso.deviceId"),
    ],
)
def test_attach_iso_refuses_by_zstack_field(iso, field):
    cmd = bodies.attach_iso()
    cmd["iso"].update(iso)
    assert field in refused(day_two.attach_iso, cmd, stored(cdRoms=cdroms(3)))


def test_attach_iso_to_a_vm_without_drives_says_no_drive_is_added_live():
    found = refused(day_two.attach_iso, bodies.attach_iso(), stored())
    assert "0 CD-ROM drives" in found["iso.deviceId"]


def test_detach_iso_empties_the_drive_of_device_id():
    spec = stored(cdRoms=[*cdroms(1), *cdroms(2, iso_at=1)[1:]])
    change = day_two.detach_iso(bodies.detach_iso(device_id=1), spec)
    result = applied(spec, change)
    assert [c.iso for c in result.cdroms] == [None, None]
    assert change is not None and change.zstack_field("cdroms.1.iso") == "deviceId"
    assert change.zstack_field("cdroms.0.iso") is None


@pytest.mark.parametrize(("count", "device_id"), [(1, 0), (1, 2), (0, 0)])
def test_detach_iso_from_an_empty_or_missing_drive_is_already_done(count, device_id):
    assert day_two.detach_iso(bodies.detach_iso(device_id=device_id), stored(cdRoms=cdroms(count))) is None


def test_detach_iso_ignores_iso_uuid():
    spec = stored(cdRoms=cdroms(1, iso_at=0))
    assert day_two.detach_iso({**bodies.detach_iso(), "isoUuid": None}, spec) == day_two.detach_iso(
        bodies.detach_iso(), spec
    )


# ---- /volume/resize ------------------------------------------------------------------------------


def test_resize_volume_grows_the_disk_with_that_storage_in_place():
    growth = day_two.resize_volume(bodies.resize_volume(size=40 * GIB), stored())
    assert growth == day_two.Growth("vda", 40 * GIB)


def test_resize_volume_finds_a_data_volume_by_its_storage():
    data = {**bodies.root_volume("/var/lib/zstack/data-1.qcow2", "1" * 32), "deviceId": 1, "type": "Data"}
    spec = stored(dataVolumes=[data])
    moved = {**data, "deviceId": 5, "cacheMode": "writeback"}  # other settings do not make it another volume
    assert day_two.resize_volume(bodies.resize_volume(volume=moved, size=2 * GIB), spec).target == "vdb"


def test_resize_volume_of_rbd_grows_in_place_too():
    rbd = {
        **bodies.root_volume("ceph://pool/image"),
        "deviceType": "ceph",
        "monInfo": [{"hostname": "192.0.2.5", "port": 6789}],
    }
    spec = stored(rootVolume=rbd)
    assert day_two.resize_volume(bodies.resize_volume(volume=rbd), spec).target == "vda"


def test_resize_volume_of_a_block_device_is_left_to_its_storage():
    block = {**bodies.root_volume("/dev/vg0/root"), "deviceType": "block"}
    spec = stored(rootVolume=block)
    assert "volume.deviceType" in refused(day_two.resize_volume, bodies.resize_volume(volume=block), spec)


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (bodies.resize_volume(volume=bodies.root_volume("/var/lib/zstack/other.qcow2")), "volume.installPath"),
        (bodies.resize_volume(volume={"deviceType": "file"}), "volume.installPath"),
        (bodies.resize_volume(volume={**bodies.root_volume(), "deviceType": "sharedblock"}), "volume.deviceType"),
        (bodies.resize_volume(size=1000), "size"),
        ({"vmUuid": bodies.VM, "volume": bodies.root_volume()}, "size"),
    ],
)
def test_resize_volume_refuses_by_zstack_field(cmd, field):
    assert field in refused(day_two.resize_volume, cmd, stored())


# ---- snapshots -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/vm/volume/takesnapshot", "installPath"),
        ("/vm/volumes/takesnapshot", "snapshotJobs"),
        ("/vm/volume/mergesnapshot", "srcPath"),
        ("/vm/volume/blockcommit", "top"),
    ],
)
def test_snapshot_paths_are_refused_with_the_field_and_the_reason(path, field):
    problems = day_two.refused_snapshot(path).problems
    assert [p.path for p in problems] == [field]
    assert "vmhost" in problems[0].message


def test_the_snapshot_bodies_name_the_fields_the_refusals_name():
    assert "installPath" in bodies.take_snapshot()
    assert "srcPath" in bodies.merge_snapshot()


# ---- engine refusals in ZStack's words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "cmd", "spec_path", "field"),
    [
        (day_two.attach_nic, bodies.attach_nic(), "nics[fa:04:93:d1:2c:01]", "nic"),
        (day_two.attach_nic, bodies.attach_nic(), "nics.1.source", "nic"),
        (day_two.detach_nic, None, "nics[fa:62:4a:61:6c:00]", "nic.mac"),
        (day_two.change_cpu_memory, bodies.change_cpu_memory(cpu_num=2, memory_size=3 * GIB), "cpu.vcpus", "cpuNum"),
        (
            day_two.change_cpu_memory,
            bodies.change_cpu_memory(cpu_num=2, memory_size=3 * GIB),
            "memory.size",
            "memorySize",
        ),
        (day_two.attach_iso, bodies.attach_iso(), "cdroms[{target}].iso", "iso.path"),
        (day_two.detach_iso, bodies.detach_iso(), "cdroms[{target}].iso", "deviceId"),
    ],
)
def test_the_plan_s_paths_are_renamed_to_zstack_fields(convert, cmd, spec_path, field):
    spec = stored(cdRoms=cdroms(1, iso_at=0))
    cmd = cmd or bodies.detach_nic(mac=spec["nics"][0]["mac"])
    if convert is day_two.attach_iso:
        cmd["iso"]["path"] = "/var/lib/zstack/iso/other.iso"
    change = convert(cmd, spec)
    assert change is not None
    assert change.zstack_field(spec_path.format(target=spec["cdroms"][0]["target"])) == field
    assert change.zstack_field("graphics.password") is None


# ---- the handlers: engine refusals renamed, reply fields ----------------------------------------


class StubEngine:
    """Engine.update as the plan answers: refusals name spec paths (keyed form), success stores the patch."""

    def __init__(self, spec: dict[str, Any], refusal: list[Problem] | None = None):
        self.spec, self.refusal, self.updates = spec, refusal, []

    def record(self, _name: str) -> Any:
        return SimpleNamespace(name="vm", uuid=CANONICAL, spec=self.spec)

    @staticmethod
    def spec_of(record: Any) -> VMSpec:
        return parse_spec(record.spec)

    def update(self, name: str, patch: dict[str, Any], *, live: bool = False) -> None:
        if self.refusal:
            raise SpecError(self.refusal)
        self.updates.append((name, patch, live))
        self.spec = merge_patch(self.spec, patch)


def handled(path: str, cmd: dict[str, Any], engine: StubEngine) -> dict[str, Any]:
    host = SimpleNamespace(engine=engine, existing=lambda *_: engine.record("vm"), find=lambda *_: engine.record("vm"))
    return api_day_two.PATHS[path](host, cmd).work()  # type: ignore[arg-type]


def test_a_refusal_from_the_plan_names_the_zstack_field_and_keeps_vmhost_s_path():
    refusal = [Problem("cpu.vcpus", "the kvm driver does not support vcpu-hotplug")]
    with pytest.raises(SpecError) as failure:
        handled("/vm/increase/cpu", bodies.increase_cpu(cpu_num=2), StubEngine(stored(), refusal))
    [problem] = failure.value.problems
    assert problem == Problem("cpuNum", "the kvm driver does not support vcpu-hotplug (vmhost: cpu.vcpus)")


def test_a_refusal_on_a_path_the_command_did_not_touch_is_left_as_it_is():
    refusal = [Problem("graphics.listen", "is not an address of this host")]
    with pytest.raises(SpecError) as failure:
        handled("/vm/attachnic", bodies.attach_nic(), StubEngine(stored(), refusal))
    assert failure.value.problems == refusal


def test_updates_go_live_and_replies_carry_zstack_s_fields():
    engine = StubEngine(stored())
    assert handled("/vm/online/changecpumem", bodies.change_cpu_memory(cpu_num=2, memory_size=3 * GIB), engine) == {
        "cpuNum": 2,
        "memorySize": 3 * GIB,
    }
    assert engine.updates == [("vm", {"cpu": {"vcpus": 2}, "memory": {"size": 3 * GIB}}, True)]
    assert handled("/vm/increase/cpu", bodies.increase_cpu(cpu_num=4), engine) == {"cpuNum": 4}
    assert handled("/vm/increase/mem", bodies.increase_memory(memory_size=4 * GIB), engine) == {"memorySize": 4 * GIB}
    assert handled("/vm/attachnic", bodies.attach_nic(), engine) == {"virtualDeviceInfoList": []}
    assert handled("/vm/detachnic", bodies.detach_nic(), engine) == {}
    assert len(engine.updates) == 5


def test_nothing_to_change_calls_no_update():
    engine = StubEngine(stored())
    assert handled("/vm/increase/cpu", bodies.increase_cpu(cpu_num=1), engine) == {"cpuNum": 1}
    assert handled("/vm/iso/detach", bodies.detach_iso(), engine) == {}
    assert engine.updates == []


def test_every_path_zstack_s_agent_registers_for_these_commands_is_served():
    assert set(api_day_two.PATHS) == {
        "/vm/attachnic",
        "/vm/detachnic",
        "/vm/online/changecpumem",
        "/vm/increase/cpu",
        "/vm/increase/mem",
        "/vm/iso/attach",
        "/vm/iso/detach",
        "/volume/resize",
        "/vm/volume/takesnapshot",
        "/vm/volumes/takesnapshot",
        "/vm/volume/mergesnapshot",
        "/vm/volume/blockcommit",
    }
    assert set(api_day_two.PATHS) <= set(ASYNC_PATHS), "registered with the other ZStack paths"


def test_attach_nic_keeps_its_boot_order_for_the_next_boot():
    cmd = bodies.attach_nic()
    cmd["nic"]["bootOrder"] = 2
    assert applied(stored(), day_two.attach_nic(cmd, stored())).nics[1].boot_order == 2


# ---- the field table -----------------------------------------------------------------------------

FIELD_TABLE = Path(__file__).resolve().parents[2] / "docs" / "zstack-day-two.md"
SERVED_BODIES = [
    bodies.attach_nic(),
    bodies.detach_nic(),
    bodies.change_cpu_memory(),
    bodies.increase_cpu(),
    bodies.increase_memory(),
    bodies.attach_iso(),
    bodies.detach_iso(),
    bodies.resize_volume(),
]


def _leaves(body: dict[str, Any], prefix: str = "") -> list[str]:
    """Field names as the table writes them: `nic.mac`, `iso.deviceId`, `vHostAddOn.queueNum`; a VolumeTO is one
    field (`volume`), as the table treats it."""
    names = []
    for key, value in body.items():
        if isinstance(value, dict) and value and key != "volume":
            names.extend(_leaves(value, f"{prefix}{key}."))
        else:
            names.append(prefix + key)
    return names


@pytest.mark.parametrize("body", SERVED_BODIES, ids=lambda body: ",".join(sorted(body))[:40])
def test_every_field_the_corpus_sends_is_in_the_field_table(body):
    table = FIELD_TABLE.read_text()
    quoted = {name for cell in re.findall(r"`([^`]+)`", table) for name in re.split(r"[ ,/+]+", cell)}
    missing = [name for name in _leaves(body) if not ({name, name.rsplit(".", 1)[-1]} & quoted)]
    assert not missing, f"docs/zstack-day-two.md says nothing about {missing}"


class GrowingEngine(StubEngine):
    """What /volume/resize uses: the VM's state and lock, the driver's block resize, the event bus."""

    def __init__(self, state: str, failure: str = ""):
        super().__init__(stored())
        self.state, self.failure, self.grown, self.published = state, failure, [], []
        self.locks = SimpleNamespace(hold=lambda _name: contextlib.nullcontext())
        self.driver = SimpleNamespace(require=lambda *_: None, resize_disk=self._resize)
        self.events = SimpleNamespace(publish=self.published.append)

    def get(self, _name: str) -> dict[str, Any]:
        return {"state": self.state}

    def _resize(self, name: str, target: str, size: int) -> None:
        if self.failure:
            raise HypervisorError(self.failure)
        self.grown.append((name, target, size))


def test_resize_volume_block_resizes_the_running_disk_and_says_so():
    engine = GrowingEngine("running")
    assert handled("/volume/resize", bodies.resize_volume(size=40 * GIB), engine) == {}
    assert engine.grown == [("vm", "vda", 40 * GIB)]
    assert engine.updates == [], "no update: ZStack's volume has no size in the spec"
    [event] = engine.published
    assert (event.type, event.reason) == ("changed", f"disks[vda]: grown live to {40 * GIB} bytes")


def test_resize_volume_of_a_stopped_vm_is_refused_naming_vm_uuid():
    engine = GrowingEngine("stopped")
    with pytest.raises(SpecError) as failure:
        handled("/volume/resize", bodies.resize_volume(), engine)
    assert [p.path for p in failure.value.problems] == ["vmUuid"]
    assert engine.grown == []


def test_a_refused_block_resize_names_size():
    engine = GrowingEngine("running", failure="disk vda of vm is 42949672960 bytes; shrinking to 1073741824 is refused")
    with pytest.raises(SpecError) as failure:
        handled("/volume/resize", bodies.resize_volume(size=GIB), engine)
    [problem] = failure.value.problems
    assert problem.path == "size" and "shrinking" in problem.message
