"""ZStack's reboot and stop as its agent does them (Vm.reboot, Vm.stop), on the fake hypervisor: a reboot's
bootDev becomes the VM's boot order for this boot and the next ones, and a stop of a crashed guest (kept by
on_crash preserve, ZStack's default) is a destroy, since the guest cannot answer the ACPI button."""

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.unit.test_zstack_convert import CANONICAL, example
from vmhost.api.zstack.handlers import ZStackHost
from vmhost.config import HostConfig
from vmhost.dialects.zstack import Unmappable
from vmhost.drivers.base import DomainEventKind, DomainState
from vmhost.engine import Engine
from vmhost.errors import HypervisorError

CEPH_ROOT = {
    "deviceType": "ceph",
    "installPath": "ceph://pri-v-r/d387b4534faf4553a50a8a632cf12e35",
    "monInfo": [{"hostname": "172.20.0.11", "port": 6789}],
    "format": "raw",
}


def start_command(root_boot_order: int | None = None, **changes: Any) -> dict[str, Any]:
    """The convert tests' example on a Ceph root volume (nothing to probe on the host), by default without
    per-device boot orders, as older management nodes sent it: bootDev is the boot order."""
    cmd = example()
    cmd["rootVolume"] = {**cmd["rootVolume"], **CEPH_ROOT, "bootOrder": root_boot_order}
    return {**cmd, **changes}


@pytest.fixture
def driver() -> FakeDriver:
    return FakeDriver(FakeHypervisor())


@pytest.fixture
def host(tmp_path: Path, driver: FakeDriver) -> ZStackHost:
    config = HostConfig(data_dir=tmp_path, stop_timeout=0.5, allowed_paths=(tmp_path, Path("/var/lib/zstack")))
    engine = Engine(config, driver)
    driver.hypervisor.sink = engine.on_domain_event
    return ZStackHost(engine)


def started(host: ZStackHost, cmd: dict[str, Any]) -> str:
    host.start(cmd).work()
    [(record, _)] = host.engine.list_vms()
    return record.name


def boot_order(host: ZStackHost, name: str) -> list[str]:
    return list(host.engine.spec_of(host.engine.record(name)).boot.order)


def reboot(host: ZStackHost, **cmd: Any) -> None:
    host.reboot({"uuid": CANONICAL, "timeout": 1, **cmd}).work()


# ---- reboot -----------------------------------------------------------------------------------


def test_reboot_boots_from_boot_dev_and_keeps_it_for_the_next_boot(host, driver):
    name = started(host, start_command(bootDev=["hd"]))
    assert boot_order(host, name) == ["hd"]
    pid = driver.hypervisor.domains[name].pid
    reboot(host, bootDev=["cdrom", "hd", "cdrom"])
    assert boot_order(host, name) == ["cdrom", "hd"]
    assert driver.hypervisor.domains[name].spec["boot"]["order"] == ["cdrom", "hd"], "the definition has it"
    assert driver.hypervisor.domains[name].state == DomainState.RUNNING
    assert driver.hypervisor.domains[name].pid != pid, "stop + start, as in ZStack's agent"


def test_reboot_with_the_order_the_vm_has_changes_no_definition(host, driver):
    name = started(host, start_command(bootDev=["hd"]))
    driver.calls.clear()
    reboot(host, bootDev=["hd"])
    assert boot_order(host, name) == ["hd"]
    assert "define" not in driver.calls


@pytest.mark.parametrize("boot_dev", [None, []])
def test_reboot_without_boot_dev_keeps_the_vms_order(host, boot_dev):
    name = started(host, start_command(bootDev=["cdrom", "hd"]))
    reboot(host, bootDev=boot_dev)
    assert boot_order(host, name) == ["cdrom", "hd"]


def test_a_vm_booting_by_per_device_orders_keeps_them_as_at_start(host):
    """StartVmCmd's bootOrder fields win over bootDev at /vm/start; a reboot does not mix the two either."""
    name = started(host, start_command(root_boot_order=1, bootDev=["hd"]))
    reboot(host, bootDev=["network"])
    spec = host.engine.spec_of(host.engine.record(name))
    assert (spec.boot.order, spec.disks[0].boot_order) == ([], 1)


@pytest.mark.parametrize(("boot_dev", "field"), [(["floppy"], "bootDev.0"), (["hd", "usb"], "bootDev.1")])
def test_a_boot_dev_vmhost_cannot_boot_is_refused_before_the_vm_stops(host, driver, boot_dev, field):
    name = started(host, start_command())
    with pytest.raises(Unmappable) as caught:
        host.reboot({"uuid": CANONICAL, "bootDev": boot_dev})
    assert caught.value.path == field
    assert driver.hypervisor.domains[name].state == DomainState.RUNNING


# ---- stop of a crashed guest --------------------------------------------------------------------


def crash_preserved(host: ZStackHost, driver: FakeDriver, name: str) -> None:
    """The guest panics under on_crash preserve: QEMU stays, libvirt says crashed and refuses a shutdown."""
    driver.hypervisor.domains[name].state = DomainState.CRASHED_PRESERVED
    driver.hypervisor.emit(name, DomainEventKind.CRASHED, "guest-crash")
    driver.fail_next("request_shutdown", HypervisorError(f"{name}: domain is not running"))


def test_start_leaves_a_crashed_guest_for_inspection_as_zstack_does(host, driver):
    name = started(host, start_command())
    assert driver.hypervisor.domains[name].spec["lifecycle"]["on_crash"] == "preserve"


def test_a_grace_stop_of_a_crashed_guest_destroys_it(host, driver):
    name = started(host, start_command())
    crash_preserved(host, driver, name)
    host.stop({"uuid": CANONICAL, "type": "grace", "timeout": 1}).work()
    assert driver.hypervisor.domains[name].state not in (DomainState.CRASHED_PRESERVED, DomainState.RUNNING)
    assert "request_shutdown" not in driver.calls


def test_a_reboot_of_a_crashed_guest_starts_it_again(host, driver):
    name = started(host, start_command())
    crash_preserved(host, driver, name)
    reboot(host)
    assert driver.hypervisor.domains[name].state == DomainState.RUNNING
