"""ZStack day-two paths for real: the agent serving the dialect, libvirt/QEMU (TCG), the tiny guest seeing each change.

One guest boots for the whole module. It is a dialect VM as /vm/start makes it (the realistic StartVmCmd converted
by the dialect, labelled zstack.vm-name), booted from the tiny guest's kernel, which ZStack's command has no field
for. The management node's commands then go over HTTP with ZStack's bodies (tests/unit/zstack_bodies), replies come
back to a callback receiver, and the guest is asked what it sees (`vmhost-facts` on its console). Tests run in file
order; each leaves the VM as the next expects.
"""

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.conftest import (
    PREFIX,
    URI,
    VOLUMES_DIR,
    allowed_test_roots,
    guest_fact,
    guest_facts,
    live_domain_xml,
    make_data_dir,
    media_iso,
    scratch_bridge,
    wait_for_console,
)
from tests.integration.test_zstack import CallbackReceiver, ZStackAgent, image, start_command
from tests.unit.zstack_bodies import day_two as bodies
from vmhost.config import HostConfig
from vmhost.dialects.zstack import start_vm_spec
from vmhost.drivers.base import ConsoleStream
from vmhost.engine import Engine
from vmhost.storage import qemu_img

MiB = 2**20
GUEST_WAIT = 90.0
BOOT_WAIT = 240.0
"""TCG on a loaded CI host: the one boot of the module may take a while."""
NIC_MAC = "fa:04:93:d1:2c:01"


@dataclass
class DialectVm:
    """The module's running dialect VM: the agent, the ZStack uuid and command, a shell on the console."""

    agent: ZStackAgent
    name: str
    vm: str
    cmd: dict[str, Any]
    console: ConsoleStream
    iso: Path

    @property
    def engine(self) -> Engine:
        return self.agent.agent.engine

    def facts(self) -> list[str]:
        return guest_facts(self.console)

    def fact(self, kind: str, key: str) -> str:
        return guest_fact(self.console, kind, key)

    def live_xml(self) -> etree._Element:
        return live_domain_xml(self.name)

    def spec(self) -> dict[str, Any]:
        return self.engine.record(self.name).spec

    def refused(self, path: str, cmd: dict[str, Any]) -> str:
        reply = self.agent.call(path, cmd)
        assert reply["success"] is False, f"{path} should have been refused: {reply}"
        return str(reply["error"])


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    with scratch_bridge("vmhzd") as name:
        yield name


@pytest.fixture(scope="module")
def volumes() -> Iterator[Path]:
    VOLUMES_DIR.mkdir(mode=0o711, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="vmhost-zstack-day-two-", dir=VOLUMES_DIR))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def dialect_vm(
    bridge: str, volumes: Path, guest: dict[str, Path], _no_leftovers: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DialectVm]:
    """1 of 4 vCPUs, 256 of 512 MiB (useNuma), a 64 MiB virtio root volume, one NIC, one empty CD-ROM drive."""
    data_dir = make_data_dir(tmp_path_factory)
    config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", allowed_paths=allowed_test_roots(data_dir))
    receiver = CallbackReceiver()
    receiver.thread.start()
    name = f"{PREFIX}zs-day2"
    cmd = start_command(name, image(volumes, "root.qcow2"), bridge)
    cmd["rootVolume"]["bootOrder"] = 0
    cmd["cdRoms"] = [{"deviceId": 0, "isEmpty": True, "path": None, "imageUuid": None, "bootOrder": 0}]
    document = start_vm_spec(cmd)
    document["boot"]["kernel"] = {
        "kernel": str(guest["kernel"]),
        "initrd": str(guest["initrd"]),
        "cmdline": "console=ttyS0 quiet no_timer_check",  # a loaded TCG host fails the IO-APIC timer check
    }
    agent = ZStackAgent(config, receiver).__enter__()
    console = None
    try:
        agent.agent.engine.create(document, start=True)
        wait_for_console(agent.agent.engine, name, "VMHOST-GUEST-DEVICES-DONE", timeout=BOOT_WAIT)
        console = agent.agent.engine.open_console(name)
        yield DialectVm(agent, name, cmd["vmInstanceUuid"], cmd, console, media_iso(volumes, "media-one", "media-one"))
    finally:
        if console is not None:
            console.close()
        for record in agent.agent.engine.store.list_vms():
            agent.agent.engine.delete(record.name)
        agent.__exit__(None, None, None)
        receiver.server.shutdown()
        receiver.server.server_close()


def _interfaces(vm: DialectVm, mac: str) -> list[etree._Element]:
    return list(vm.live_xml().xpath(f"devices/interface[mac/@address='{mac}']"))


def test_attach_nic_plugs_it_into_the_guest_and_detach_takes_it_out(dialect_vm, bridge):
    attach = bodies.attach_nic(dialect_vm.vm)
    attach["nic"].update(bridgeName=bridge, nicInternalName=f"vnic{secrets.token_hex(2)}.1")
    reply = dialect_vm.agent.ok("/vm/attachnic", attach)
    assert reply == {"success": True, "error": "", "virtualDeviceInfoList": []}
    [interface] = _interfaces(dialect_vm, NIC_MAC)
    assert interface.find("source").get("bridge") == bridge
    assert interface.find("target").get("dev") == attach["nic"]["nicInternalName"]
    eventually(lambda: NIC_MAC in " ".join(dialect_vm.facts()), GUEST_WAIT, 0.5, "the NIC in /sys/class/net")
    assert [n["mac"] for n in dialect_vm.spec()["nics"]][1:] == [NIC_MAC], "stored: it stays after a restart"

    dialect_vm.agent.ok("/vm/attachnic", attach)
    assert len(_interfaces(dialect_vm, NIC_MAC)) == 1, "a MAC already plugged is success, not a second NIC"

    dialect_vm.agent.ok("/vm/detachnic", bodies.detach_nic(dialect_vm.vm, mac=NIC_MAC))
    assert _interfaces(dialect_vm, NIC_MAC) == []
    assert NIC_MAC not in " ".join(dialect_vm.facts())
    assert NIC_MAC not in [n["mac"] for n in dialect_vm.spec()["nics"]]
    dialect_vm.agent.ok("/vm/detachnic", bodies.detach_nic(dialect_vm.vm, mac=NIC_MAC))


def test_a_nic_vmhost_cannot_plug_is_refused_with_the_zstack_field(dialect_vm, bridge):
    attach = bodies.attach_nic(dialect_vm.vm)
    attach["nic"].update(bridgeName=bridge, type="vDPA")
    assert "nic.type" in dialect_vm.refused("/vm/attachnic", attach)
    attach["nic"].update(type="VNIC", bridgeName="vmhzd-nowhere")
    error = dialect_vm.refused("/vm/attachnic", attach)
    assert "nic: " in error and "vmhzd-nowhere" in error and "(vmhost: nics" in error, error
    assert _interfaces(dialect_vm, NIC_MAC) == []


def _mem_total(vm: DialectVm) -> int:
    return int(vm.fact("MEM", "MemTotal"))


def test_cpu_and_memory_change_live_within_the_ceilings(dialect_vm):
    before = _mem_total(dialect_vm)
    reply = dialect_vm.agent.ok("/vm/online/changecpumem", bodies.change_cpu_memory(dialect_vm.vm, 2, 384 * MiB))
    assert (reply["cpuNum"], reply["memorySize"]) == (2, 384 * MiB)
    eventually(lambda: dialect_vm.fact("CPUS", "2") == "online=0-1", GUEST_WAIT, 0.5, "2 vCPUs online")
    eventually(lambda: _mem_total(dialect_vm) >= before + 100 * MiB, GUEST_WAIT, 0.5, "MemTotal up by the DIMM")

    assert dialect_vm.agent.ok("/vm/increase/cpu", bodies.increase_cpu(dialect_vm.vm, 3))["cpuNum"] == 3
    eventually(lambda: dialect_vm.fact("CPUS", "3") == "online=0-2", GUEST_WAIT, 0.5, "3 vCPUs online")
    reply = dialect_vm.agent.ok("/vm/increase/mem", bodies.increase_memory(dialect_vm.vm, 512 * MiB))
    assert reply["memorySize"] == 512 * MiB


def test_cpu_and_memory_above_the_ceilings_are_refused_naming_the_zstack_field(dialect_vm):
    error = dialect_vm.refused("/vm/increase/cpu", bodies.increase_cpu(dialect_vm.vm, 5))
    assert "cpuNum" in error and "ceiling of 4" in error
    error = dialect_vm.refused("/vm/increase/mem", bodies.increase_memory(dialect_vm.vm, 1024 * MiB))
    assert "memorySize" in error
    error = dialect_vm.refused("/vm/online/changecpumem", bodies.change_cpu_memory(dialect_vm.vm, 2, 1024 * MiB))
    assert "memorySize" in error
    assert dialect_vm.engine.driver.info(dialect_vm.name).vcpus == 3, "a refused change applies nothing"
    assert dialect_vm.spec()["cpu"]["vcpus"] == 3


def test_iso_attach_changes_the_media_and_detach_ejects_it(dialect_vm):
    def media() -> str | None:
        source = dialect_vm.live_xml().find("devices/disk[@device='cdrom']/source")
        return None if source is None else source.get("file")

    dialect_vm.agent.ok("/vm/iso/attach", bodies.attach_iso(dialect_vm.vm, str(dialect_vm.iso)))
    assert media() == str(dialect_vm.iso)
    [drive] = [line.split()[1] for line in dialect_vm.facts() if line.startswith("VMHOST-MEDIA")]
    eventually(lambda: dialect_vm.fact("MEDIA", drive) == "media-one", GUEST_WAIT, 0.5, "the ISO readable")
    dialect_vm.agent.ok("/vm/iso/attach", bodies.attach_iso(dialect_vm.vm, str(dialect_vm.iso)))

    error = dialect_vm.refused("/vm/iso/attach", bodies.attach_iso(dialect_vm.vm, str(dialect_vm.iso), device_id=1))
    assert "iso.deviceId" in error

    dialect_vm.agent.ok("/vm/iso/detach", bodies.detach_iso(dialect_vm.vm))
    assert media() is None
    eventually(lambda: dialect_vm.fact("MEDIA", drive) == "empty", GUEST_WAIT, 0.5, "the drive empty")
    dialect_vm.agent.ok("/vm/iso/detach", bodies.detach_iso(dialect_vm.vm))


def test_resize_volume_grows_the_root_volume_the_guest_sees(dialect_vm):
    root = dialect_vm.cmd["rootVolume"]
    dialect_vm.agent.ok("/volume/resize", bodies.resize_volume(dialect_vm.vm, 96 * MiB, root))
    assert qemu_img.image_info(Path(root["installPath"]), "qcow2").virtual_size == 96 * MiB
    eventually(lambda: dialect_vm.fact("BLK", "vda") == str(96 * MiB), GUEST_WAIT, 0.5, "vda at 96 MiB")

    error = dialect_vm.refused("/volume/resize", bodies.resize_volume(dialect_vm.vm, 64 * MiB, root))
    assert "size" in error and "shrink" in error
    assert qemu_img.image_info(Path(root["installPath"]), "qcow2").virtual_size == 96 * MiB


def test_snapshot_paths_are_refused_and_nothing_is_made(dialect_vm, volumes):
    root = dialect_vm.cmd["rootVolume"]
    overlay = volumes / "snapshots" / "s1.qcow2"
    error = dialect_vm.refused("/vm/volume/takesnapshot", bodies.take_snapshot(dialect_vm.vm, str(overlay), root))
    assert "installPath" in error
    assert not overlay.exists()
    [source] = dialect_vm.live_xml().xpath("devices/disk[@device='disk']/source/@file")
    assert source == root["installPath"], "the disk still runs on its volume"
    merge = bodies.merge_snapshot(dialect_vm.vm, str(overlay), root["installPath"])
    assert "srcPath" in dialect_vm.refused("/vm/volume/mergesnapshot", merge)


def test_vms_not_made_by_the_dialect_are_not_there_for_it(dialect_vm, bridge):
    native = f"{PREFIX}zs-native"
    record = dialect_vm.engine.create(
        {"name": native, "memory": "64MiB", "nics": [{"type": "bridge", "source": bridge, "mac": "fa:04:93:d1:2c:09"}]}
    )
    stranger = uuid.UUID(record.uuid).hex
    error = dialect_vm.refused("/vm/attachnic", bodies.attach_nic(stranger))
    assert stranger in error
    dialect_vm.agent.ok("/vm/detachnic", bodies.detach_nic(stranger, mac="fa:04:93:d1:2c:09"))
    assert dialect_vm.engine.record(native).spec["nics"][0]["mac"] == "fa:04:93:d1:2c:09", "left alone"
    assert stranger in dialect_vm.refused("/vm/increase/cpu", bodies.increase_cpu(stranger, 2))
