"""Lifecycle against real libvirtd + QEMU booting the tiny guest."""

import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.conftest import read_console_until, wait_for_console, wait_for_count
from vmhost.drivers.base import DomainState
from vmhost.errors import Conflict, HostResourceError


def test_started_vm_prints_marker_through_console_api_and_get_shows_uptime(engine, guest_spec, vm_name):
    name = vm_name("boot")
    engine.create(guest_spec(name))
    stream = None
    try:
        engine.start(name)
        stream = engine.open_console(name)
        read_console_until(stream, b"VMHOST-GUEST-READY uptime=")
    finally:
        if stream:
            stream.close()
    view = engine.get(name)
    assert view["state"] == "running"
    assert view["runtime"]["uptime_seconds"] > 0
    assert view["runtime"]["pid"] > 0


def test_console_is_interactive(engine, guest_spec, vm_name):
    name = vm_name("shell")
    engine.create(guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    stream = engine.open_console(name)
    try:
        stream.write(b"\recho hello-$((6*7))\r")
        assert b"hello-42" in read_console_until(stream, b"hello-42", timeout=30)
    finally:
        stream.close()


def test_graceful_stop_returns_soon_after_guest_powers_off(engine, guest_spec, vm_name):
    name = vm_name("acpi")
    engine.create(guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-READY")
    result = engine.stop(name, timeout=30)
    assert result.method == "acpi"
    assert result.seconds < 10
    assert "VMHOST-GUEST-POWEROFF" in wait_for_console(engine, name, "VMHOST-GUEST-POWEROFF", timeout=1)
    assert engine.get(name)["state"] == "stopped"


def test_stop_forces_destroy_when_guest_ignores_acpi(engine, guest_spec, vm_name):
    name = vm_name("stubborn")
    engine.create(guest_spec(name, cmdline="vmhost.ignore_acpi=1"), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-READY")
    result = engine.stop(name, timeout=5)
    assert result.method == "forced"
    assert 5 <= result.seconds < 5 + 5
    assert engine.driver.state(name) == DomainState.SHUTOFF
    assert engine.get(name)["state"] == "stopped"


def test_forced_stop_does_not_wait(engine, guest_spec, vm_name):
    name = vm_name("force")
    engine.create(guest_spec(name, cmdline="vmhost.ignore_acpi=1"), start=True)
    result = engine.stop(name, force=True, timeout=60)
    assert result.method == "forced"
    assert result.seconds < 5


def test_start_and_stop_are_idempotent(engine, guest_spec, vm_name):
    name = vm_name("idem")
    engine.create(guest_spec(name))
    assert engine.stop(name).method == "already-stopped"
    engine.start(name)
    pid = engine.driver.info(name).pid
    engine.start(name)
    assert engine.driver.info(name).pid == pid
    engine.kill(name)
    assert engine.stop(name).method == "already-stopped"


def test_reboot_graceful_and_forced_boot_the_guest_again(engine, guest_spec, vm_name):
    name = vm_name("reboot")
    engine.create(guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    engine.reboot(name)
    wait_for_count(engine, name, "VMHOST-GUEST-DEVICES-DONE", 2)
    engine.reboot(name, force=True)
    wait_for_count(engine, name, "VMHOST-GUEST-READY", 3)
    assert engine.get(name)["state"] == "running"


def test_reboot_of_stopped_vm_is_refused(engine, guest_spec, vm_name):
    name = vm_name("rebootoff")
    engine.create(guest_spec(name))
    with pytest.raises(Conflict, match="not running"):
        engine.reboot(name)


def test_guest_poweroff_is_seen_as_stopped(engine, guest_spec, vm_name):
    name = vm_name("selfoff")
    engine.create(guest_spec(name, cmdline="vmhost.poweroff_after=1"), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-POWEROFF")
    eventually(lambda: engine.get(name)["state"] == "stopped", 15, 0.2, f"{name} stopped")


def test_destroy_behind_vmhosts_back_is_reflected(engine, guest_spec, vm_name, libvirt_conn):
    name = vm_name("external")
    engine.create(guest_spec(name), start=True)
    libvirt_conn.lookupByName(name).destroy()
    assert engine.get(name)["state"] == "stopped"
    [(_record, state)] = [row for row in engine.list_vms() if row[0].name == name]
    assert state == "stopped"


def test_start_refuses_when_host_memory_is_short(engine, guest_spec, vm_name):
    name = vm_name("huge")
    engine.create(guest_spec(name, memory="4TiB"))
    with pytest.raises(HostResourceError, match="not enough host memory"):
        engine.start(name)
    assert engine.driver.state(name) == DomainState.SHUTOFF


def test_update_changes_a_stopped_vm_and_plans_a_running_ones_next_boot(engine, guest_spec, vm_name, libvirt_conn):
    name = vm_name("update")
    engine.create(guest_spec(name))
    engine.update(
        name,
        {"cpu": {"vcpus": 2}, "memory": {"size": "320MiB"}, "disks": [{"source": {"type": "new", "size": "16MiB"}}]},
    )
    xml = etree.fromstring(libvirt_conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert xml.findtext("vcpu") == "2"
    assert int(xml.findtext("memory")) == 320 * 1024
    [disk_path] = engine.record(name).owned_paths
    assert disk_path.endswith("vda.qcow2")
    engine.start(name)
    wait_for_console(engine, name, "VMHOST-BLK vda 16777216")
    planned = engine.update(name, {"cpu": {"vcpus": 1}})  # issue 14: planned for the next boot, not refused
    assert [(change.path, change.how) for change in planned.changes] == [("cpu.vcpus", "next-boot")]
    assert engine.get(name)["pending"] == ["cpu.vcpus"]
    engine.stop(name, force=True)
    engine.update(name, {"disks": []})
    assert engine.record(name).owned_paths == []
    assert not (engine.config.data_dir / "vms" / engine.record(name).uuid / "disks" / "vda.qcow2").exists()
