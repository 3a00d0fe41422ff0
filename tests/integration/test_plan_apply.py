"""Plan, then apply (issue 14 §1) against real libvirt and the tiny guest: a dry run changes nothing, a patch
without changes says so, metadata applies now, a next-boot change is pending until the restart, a refused change
applies nothing, a live NIC attach persists across a stop and start, an owned disk grows offline; and an agent
SIGKILLed at each journaled step of a live apply leaves the VM consistent after its restart.

One guest boots for the whole module (boots are expensive under TCG) and is restarted once; the tests run in file
order and each leaves the guest as the next expects.
"""

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.conftest import (
    PREFIX,
    REPO,
    URI,
    allowed_test_roots,
    make_data_dir,
    scratch_bridge,
    wait_for_console,
)
from tests.integration.test_recovery import AgentProcess
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.spec import SpecError
from vmhost.storage import qemu_img

MiB = 2**20
BOOT_WAIT = 240.0
"""A loaded CI machine boots the TCG guest in 25 s or more (the console marker comes after the boot)."""
NIC_MAC = "52:54:00:7a:00:01"


@dataclass
class Running:
    engine: Engine
    config_file: Path
    name: str
    bridge: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VMHOST_CONFIG": str(self.config_file)}
        vmhost = str(REPO / ".venv" / "bin" / "vmhost")
        return subprocess.run([vmhost, *args], capture_output=True, text=True, env=env, timeout=180, check=False)

    def patch_file(self, patch: dict[str, Any]) -> str:
        path = self.config_file.parent / f"patch-{secrets.token_hex(3)}.json"
        path.write_text(json.dumps(patch))
        return str(path)

    def xml(self, inactive: bool = False) -> etree._Element:
        conn = libvirt.open(URI)
        try:
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
            return etree.fromstring(conn.lookupByName(self.name).XMLDesc(flags).encode())
        finally:
            conn.close()

    def macs(self, inactive: bool = False) -> list[str]:
        return [str(mac) for mac in self.xml(inactive).xpath("devices/interface/mac/@address")]

    def operations(self) -> int:
        return len(self.engine.store.operations(self.name, limit=1000))


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    with scratch_bridge("vmhpa") as name:
        yield name


@pytest.fixture(scope="module")
def running(
    bridge: str, guest: dict[str, Path], _no_leftovers: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """1 of 2 vCPUs, 256 MiB, a 16 MiB disk vmhost owns, no NIC; booted once."""
    data_dir = make_data_dir(tmp_path_factory)
    roots = allowed_test_roots(data_dir)
    config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", stop_timeout=20, allowed_paths=roots)
    config_file = data_dir.parent / f"{data_dir.name}.toml"
    config_file.write_text(
        f'libvirt_uri = "{URI}"\ndata_dir = "{data_dir}"\naccel = "tcg"\nstop_timeout = 20\n'
        f"allowed_paths = {json.dumps([str(root) for root in config.path_roots])}\n"
    )
    engine = Engine(config, build_drivers(config))
    name = f"{PREFIX}plan"
    spec = {
        "name": name,
        "memory": "256MiB",
        "cpu": {"vcpus": 1, "max_vcpus": 2},
        "boot": {
            "kernel": {"kernel": str(guest["kernel"]), "initrd": str(guest["initrd"]), "cmdline": "console=ttyS0 quiet"}
        },
        "disks": [{"source": {"type": "new", "size": "16MiB"}}],
        "guest_agent": False,
    }
    engine.create(spec, start=True)
    try:
        wait_for_console(engine, name, "VMHOST-BLK vda 16777216", timeout=BOOT_WAIT)
        yield Running(engine, config_file, name, bridge)
    finally:
        engine.delete(name)
        engine.store.close()


def test_a_dry_run_prints_the_plan_and_changes_nothing(running):
    before = (
        etree.tostring(running.xml(inactive=True)),
        running.engine.record(running.name).spec,
        running.operations(),
    )
    patch = running.patch_file({"cpu": {"vcpus": 2}, "description": "planned"})
    result = running.cli("update", running.name, "-f", patch, "--live", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "cpu.vcpus" in result.stdout and "live" in result.stdout and "description" in result.stdout
    assert "dry run: 2 changes planned, nothing applied" in result.stdout
    after = (etree.tostring(running.xml(inactive=True)), running.engine.record(running.name).spec, running.operations())
    assert after == before


def test_a_patch_without_changes_says_so_and_journals_nothing(running):
    operations = running.operations()
    result = running.cli("update", running.name, "-f", running.patch_file({"memory": "256MiB", "cpu": {"vcpus": 1}}))
    assert (result.returncode, result.stdout) == (0, f"{running.name}: nothing to change\n")
    assert running.operations() == operations


def test_metadata_on_a_running_vm_applies_now(running):
    pid = running.engine.driver.info(running.name).pid
    result = running.engine.update(running.name, {"description": "changed while running", "labels": {"tier": "a"}})
    assert result.applied and {change.how for change in result.changes} == {"live"}
    view = running.engine.get(running.name)
    assert (view["description"], view["labels"], view["pending"]) == ("changed while running", {"tier": "a"}, [])
    assert running.engine.driver.info(running.name).pid == pid, "the same QEMU: nothing was restarted"


def test_a_change_over_the_hotplug_ceiling_is_refused_and_applies_nothing(running):
    spec, operations = running.engine.record(running.name).spec, running.operations()
    with pytest.raises(SpecError) as refused:
        running.engine.update(running.name, {"description": "x", "cpu": {"vcpus": 3, "max_vcpus": 4}}, live=True)
    [problem] = refused.value.problems
    assert problem.path == "cpu.vcpus" and "cpu.max_vcpus = 2" in problem.message
    assert running.engine.record(running.name).spec == spec and running.operations() == operations
    assert running.xml().find("vcpu").get("current") in (None, "1")


def test_a_live_nic_attach_and_a_next_boot_change(running):
    nic = {"type": "bridge", "source": running.bridge, "mac": NIC_MAC}
    result = running.engine.update(running.name, {"nics": [nic], "memory": "320MiB"}, live=False)
    assert {(c.path, c.how) for c in result.changes} == {
        (f"nics[{NIC_MAC}]", "next-boot"),
        ("memory.size", "next-boot"),
    }
    assert running.macs() == [] and running.macs(inactive=True) == [NIC_MAC], "defined, not plugged"
    assert running.engine.get(running.name)["pending"] == ["memory.size", f"nics[{NIC_MAC}]"]
    running.engine.update(running.name, {"nics": []})
    assert running.engine.get(running.name)["pending"] == ["memory.size"], "back at its boot value: not pending"
    result = running.engine.update(running.name, {"nics": [nic]}, live=True)
    assert [(c.path, c.how) for c in result.changes] == [(f"nics[{NIC_MAC}]", "live")]
    assert running.macs() == [NIC_MAC] and running.macs(inactive=True) == [NIC_MAC]
    assert running.engine.get(running.name)["pending"] == ["memory.size"]


def test_an_owned_disk_grows_offline_and_everything_is_there_after_the_restart(running):
    engine, name = running.engine, running.name
    engine.stop(name, force=True)
    [image] = engine.record(name).owned_paths
    result = running.cli("disk", "resize", name, "vda", "32MiB")
    assert result.returncode == 0, result.stderr
    assert "disks[vda].source.size" in result.stdout and "offline" in result.stdout
    assert qemu_img.image_info(Path(image), "qcow2").virtual_size == 32 * MiB
    shrink = running.cli("disk", "resize", name, "vda", "8MiB")
    assert shrink.returncode == 2 and "would cut off the guest's data" in shrink.stdout + shrink.stderr
    engine.start(name)
    wait_for_console(engine, name, "VMHOST-BLK vda 33554432", timeout=BOOT_WAIT)
    view = engine.get(name)
    assert view["pending"] == [] and view["runtime"]["memory"] == "320MiB"
    assert running.macs() == [NIC_MAC], "the live NIC persisted across the stop and start"


def test_set_vcpus_plugs_a_vcpu_live_and_keeps_it_in_the_definition(running):
    result = running.cli("set-vcpus", running.name, "2")
    assert result.returncode == 0, result.stderr
    assert f"updated {running.name}: 1 live" in result.stdout
    assert running.engine.get(running.name)["runtime"]["vcpus"] == 2
    assert running.xml(inactive=True).find("vcpu").get("current") in (None, "2")
    over = running.cli("set-vcpus", running.name, "3")
    assert over.returncode == 2 and "cpu.max_vcpus" in over.stderr


def test_disk_resize_grows_a_running_vms_disk_live_and_never_shrinks_it(running):
    [image] = running.engine.record(running.name).owned_paths
    result = running.cli("disk", "resize", running.name, "vda", "48MiB")
    assert result.returncode == 0, result.stderr
    assert "disk-resize: applied to the running VM now" in result.stdout
    assert qemu_img.image_info(Path(image), "qcow2").virtual_size == 48 * MiB
    assert running.engine.get(running.name)["pending"] == []
    shrink = running.cli("disk", "resize", running.name, "vda", "40MiB")
    assert shrink.returncode == 2 and qemu_img.image_info(Path(image), "qcow2").virtual_size == 48 * MiB


def test_set_memory_balloons_a_running_vm_down_live_and_its_next_boot_keeps_it(running):
    result = running.cli("set-memory", running.name, "256MiB")
    assert result.returncode == 0, result.stderr
    assert f"updated {running.name}: 1 live" in result.stdout
    eventually(
        lambda: running.engine.get(running.name)["runtime"]["memory"] == "256MiB", 60, 0.5, "the balloon at 256 MiB"
    )
    assert running.engine.get(running.name)["pending"] == []
    assert running.engine.record(running.name).spec["memory"]["size"] == "256MiB"


def test_a_new_nic_is_validated_as_at_create(running):
    missing = running.cli("nic", "attach", running.name, "--source", "vmhnobr0")
    assert missing.returncode == 2 and "nics.1.source: bridge vmhnobr0 does not exist" in missing.stderr
    twice = running.cli("nic", "attach", running.name, "--source", running.bridge, "--mac", NIC_MAC)
    assert twice.returncode == 2 and "MAC address used twice" in twice.stderr
    assert running.macs() == [NIC_MAC]


FAULT_STEPS = ["begin", "disks-created", "nic-attached", "defined", "recorded", "old-disks-removed"]


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_an_agent_killed_at_each_step_of_a_live_apply_leaves_the_vm_consistent(running, step):
    """Each case plugs one more NIC through a real agent process that SIGKILLs itself at the step."""
    engine, name = running.engine, running.name
    mac = f"52:54:00:7a:01:{FAULT_STEPS.index(step):02x}"
    point = f"update:{step}:{mac}" if step == "nic-attached" else f"update:{step}"
    pid = engine.driver.info(name).pid
    nics = [*engine.record(name).spec["nics"], {"type": "bridge", "source": running.bridge, "mac": mac}]
    data_dir = engine.config.data_dir
    dying = AgentProcess(running.config_file, data_dir, point)
    try:
        with contextlib.suppress(httpx.HTTPError):  # it dies while answering: that is the point
            dying.http.patch(f"/v1/vms/{name}", params={"live": "true", "wait": "true"}, json={"nics": nics})
        dying.wait_killed()
    finally:
        dying.stop()
    AgentProcess(running.config_file, data_dir).stop()  # started, so recovered; then stopped
    engine.store = type(engine.store)(engine.config.db_path)
    record = engine.record(name)
    stored = [nic["mac"] for nic in record.spec["nics"]]
    assert running.macs() == stored, "the guest has the NICs the store says"
    assert running.macs(inactive=True) == stored, "so does the persistent definition"
    assert (mac in stored) == (step in ("recorded", "old-disks-removed"))
    assert engine.driver.info(name).pid == pid and record.state == "running"
    assert engine.store.unfinished_operations() == []
    assert engine.store.operations(name, limit=1)[0].state in ("completed by recovery", "rolled back by recovery")


def test_nic_detach_unplugs_a_nic_from_the_running_guest_and_its_definition(running):
    mac = running.macs()[-1]
    result = running.cli("nic", "detach", running.name, mac)
    assert result.returncode == 0, result.stderr
    assert mac not in running.macs() and mac not in running.macs(inactive=True)
    assert mac not in [nic["mac"] for nic in running.engine.record(running.name).spec["nics"]]
