"""Live changes through the libvirt driver, seen from inside the running tiny guest.

One guest boots for the whole module (boots are expensive under TCG); each test changes it and then asks the guest
what it sees, with the `vmhost-facts` command typed on its console (guest/README.md). The tests run in file order
and each one leaves the guest as the next expects.
"""

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    media_iso,
    scratch_bridge,
    wait_for_console,
)
from vmhost.config import HostConfig
from vmhost.drivers.base import ConsoleStream, Resources
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.engine import resources as engine_resources
from vmhost.errors import HypervisorError, NotFound
from vmhost.spec import VMSpec, parse_spec

MiB = 2**20
GUEST_WAIT = 90.0
BOOT_WAIT = 300.0
"""This host is shared and loaded: a TCG boot has been seen to take 90 s."""
NIC_MAC = "52:54:00:1e:0c:01"


@dataclass
class LiveVm:
    """The module's running guest: its engine, stored spec, and a shell on its console."""

    engine: Engine
    name: str
    console: ConsoleStream
    isos: dict[str, Path]

    def spec(self, **changes: Any) -> tuple[VMSpec, Resources]:
        """The stored spec with `changes` (what the engine would hand the driver), and its resources."""
        spec = parse_spec({**self.engine.record(self.name).spec, **changes})
        return spec, engine_resources.plan(spec, self.engine.config).resources

    def facts(self) -> list[str]:
        return guest_facts(self.console)

    def fact(self, kind: str, key: str) -> str:
        return guest_fact(self.console, kind, key)

    def live_xml(self) -> etree._Element:
        return live_domain_xml(self.name)


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    with scratch_bridge("vmhlv") as name:
        yield name


@pytest.fixture(scope="module")
def live_vm(bridge: str, guest: dict[str, Path], _no_leftovers: None) -> Iterator[LiveVm]:
    """1 of 2 vCPUs, 256 of 512 MiB (2 DIMM slots), a 32 MiB disk, a CD-ROM holding media "one", no NIC.

    Everything lives under VOLUMES_DIR, not pytest's temporary root: a concurrent pytest session makes that root
    0700, and QEMU opens the ISOs long after the boot.
    """
    VOLUMES_DIR.mkdir(mode=0o711, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="vmhost-live-", dir=VOLUMES_DIR))
    root.chmod(0o711)
    data_dir = root / "data"
    data_dir.mkdir(mode=0o711)
    isos = {text: media_iso(root, text, f"media-{text}") for text in ("one", "two")}
    config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", allowed_paths=allowed_test_roots(data_dir))
    engine = Engine(config, build_drivers(config))
    name = f"{PREFIX}live"
    spec = {
        "name": name,
        "memory": {"size": "256MiB", "max_size": "512MiB", "slots": 2},
        "cpu": {"vcpus": 1, "max_vcpus": 2},
        "boot": {
            "kernel": {"kernel": str(guest["kernel"]), "initrd": str(guest["initrd"]), "cmdline": "console=ttyS0 quiet"}
        },
        "disks": [{"source": {"type": "new", "size": "32MiB"}}],
        "cdroms": [{"iso": str(isos["one"])}],
        "guest_agent": False,
    }
    console = None
    try:
        engine.create(spec, start=True)
        wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE", timeout=BOOT_WAIT)
        # On a connection of its own (the driver keeps one per thread): a blocking console stream waiting for output
        # on the connection the test's calls use was seen to stall those calls while the guest was paused.
        with ThreadPoolExecutor(1) as opener:
            console = opener.submit(engine.open_console, name).result()
        yield LiveVm(engine, name, console, isos)
    finally:
        if console is not None:
            console.close()
        with contextlib.suppress(NotFound):  # create itself failed
            engine.delete(name)
        engine.store.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_hot_plugged_nic_appears_in_the_guest_and_goes_on_detach(live_vm, bridge):
    nic = {"type": "bridge", "source": bridge, "mac": NIC_MAC}
    spec, res = live_vm.spec(nics=[nic])
    live_vm.engine.driver.attach_nic(spec, res, NIC_MAC)
    eventually(lambda: NIC_MAC in " ".join(live_vm.facts()), GUEST_WAIT, 0.5, "the NIC in /sys/class/net")

    live_vm.engine.driver.detach_nic(spec, res, NIC_MAC, timeout=30)
    assert live_vm.live_xml().xpath(f"devices/interface[mac/@address='{NIC_MAC}']") == []
    assert NIC_MAC not in " ".join(live_vm.facts())


def test_a_nic_the_guest_does_not_release_in_time_is_named_in_the_error(live_vm, bridge):
    """A paused guest cannot answer the unplug request; once resumed, it releases the NIC after all."""
    nic = {"type": "bridge", "source": bridge, "mac": NIC_MAC}
    spec, res = live_vm.spec(nics=[nic])
    driver = live_vm.engine.driver
    driver.attach_nic(spec, res, NIC_MAC)
    eventually(lambda: NIC_MAC in " ".join(live_vm.facts()), GUEST_WAIT, 0.5, "the NIC in /sys/class/net")
    driver.pause(live_vm.name)
    try:
        with pytest.raises(HypervisorError) as refused:
            driver.detach_nic(spec, res, NIC_MAC, timeout=1)
        assert f"did not release NIC {NIC_MAC} within 1s" in refused.value.message
        assert live_vm.live_xml().xpath(f"devices/interface[mac/@address='{NIC_MAC}']") != []
    finally:
        driver.resume(live_vm.name)
    eventually(
        lambda: live_vm.live_xml().xpath(f"devices/interface[mac/@address='{NIC_MAC}']") == [],
        GUEST_WAIT,
        0.5,
        "the NIC released after resume",
    )


def _mem_total(vm: LiveVm) -> int:
    return int(vm.fact("MEM", "MemTotal"))


def test_ballooning_down_lowers_memtotal(live_vm):
    before = _mem_total(live_vm)
    spec, res = live_vm.spec()
    live_vm.engine.driver.set_memory(spec, res, 192 * MiB)
    eventually(lambda: _mem_total(live_vm) <= before - 48 * MiB, GUEST_WAIT, 0.5, "MemTotal down by the balloon")
    eventually(lambda: live_vm.engine.driver.info(live_vm.name).memory_bytes == 192 * MiB, GUEST_WAIT, 0.5, "192 MiB")
    assert live_vm.live_xml().find("devices/memory") is None


def test_growing_above_the_plugged_memory_hot_plugs_a_dimm_that_raises_memtotal(live_vm):
    ballooned = _mem_total(live_vm)
    spec, res = live_vm.spec()
    live_vm.engine.driver.set_memory(spec, res, 384 * MiB)
    [dimm] = live_vm.live_xml().iterfind("devices/memory[@model='dimm']")
    assert int(dimm.findtext("target/size")) == 128 * 1024
    eventually(lambda: _mem_total(live_vm) >= ballooned + 150 * MiB, GUEST_WAIT, 0.5, "MemTotal up by DIMM + balloon")
    eventually(lambda: live_vm.engine.driver.info(live_vm.name).memory_bytes == 384 * MiB, GUEST_WAIT, 0.5, "384 MiB")


def test_memory_beyond_max_size_is_refused_with_the_ceiling_named(live_vm):
    spec, res = live_vm.spec()
    with pytest.raises(HypervisorError) as refused:
        live_vm.engine.driver.set_memory(spec, res, 640 * MiB)
    assert "at most 512 MiB (memory.max_size)" in refused.value.message
    assert len(live_vm.live_xml().findall("devices/memory")) == 1


def test_a_grown_disk_shows_its_new_size_in_the_guest(live_vm):
    assert live_vm.fact("BLK", "vda") == str(32 * MiB)
    live_vm.engine.driver.resize_disk(live_vm.name, "vda", 48 * MiB)
    eventually(lambda: live_vm.fact("BLK", "vda") == str(48 * MiB), GUEST_WAIT, 0.5, "vda at 48 MiB")
    with pytest.raises(HypervisorError) as refused:
        live_vm.engine.driver.resize_disk(live_vm.name, "vda", 16 * MiB)
    assert "shrinking" in refused.value.message
    assert live_vm.fact("BLK", "vda") == str(48 * MiB)


def test_new_media_is_readable_and_eject_empties_the_drive(live_vm):
    [drive] = live_vm.engine.record(live_vm.name).spec["cdroms"]
    assert live_vm.fact("MEDIA", "sr0") == "media-one"

    spec, res = live_vm.spec(cdroms=[{**drive, "iso": str(live_vm.isos["two"])}])
    live_vm.engine.driver.change_media(spec, res, drive["target"])
    eventually(lambda: live_vm.fact("MEDIA", "sr0") == "media-two", GUEST_WAIT, 0.5, "media two in sr0")

    spec, res = live_vm.spec(cdroms=[{**drive, "iso": None}])
    live_vm.engine.driver.change_media(spec, res, drive["target"])
    eventually(lambda: live_vm.fact("MEDIA", "sr0") == "empty", GUEST_WAIT, 0.5, "sr0 empty")
    [cdrom] = live_vm.live_xml().iterfind("devices/disk[@device='cdrom']")
    assert cdrom.find("source[@file]") is None, etree.tostring(cdrom)


def test_vcpus_above_the_ceiling_are_refused_with_it_named(live_vm):
    with pytest.raises(HypervisorError) as refused:
        live_vm.engine.driver.set_vcpus(live_vm.name, 3)
    assert "1 to 2 vCPUs (cpu.max_vcpus), not 3" in refused.value.message


def test_a_hot_plugged_vcpu_comes_online_and_can_be_unplugged(live_vm):
    """Last in the module: once (of three runs) QEMU 7.2 under TCG crashed soon after a vCPU unplug."""
    assert live_vm.fact("CPUS", "1") == "online=0"
    live_vm.engine.driver.set_vcpus(live_vm.name, 2)
    eventually(lambda: live_vm.fact("CPUS", "2") == "online=0-1", GUEST_WAIT, 0.5, "2 vCPUs online")

    try:
        live_vm.engine.driver.set_vcpus(live_vm.name, 1)
    except HypervisorError as late:
        # libvirt waits 5 s for the guest's eject; a slow TCG guest finishes later and libvirt's count stays stale
        assert "did not confirm the vCPU unplug in time (libvirt still counts 2)" in late.message
    else:
        assert live_vm.engine.driver.info(live_vm.name).vcpus == 1
    eventually(lambda: live_vm.fact("CPUS", "1") == "online=0", GUEST_WAIT, 0.5, "1 vCPU left")
