"""Admission control against real libvirt: with memory_reserve set to all of the host's memory, every path that
starts a VM (native start, create with start, ZStack's StartVmCmd, a restart policy's restart) is refused before
QEMU runs, with an error naming memory and the numbers, and leaves nothing behind."""

import logging
import os
import signal
import subprocess
from dataclasses import replace

import pytest

from tests.eventually import eventually
from tests.integration.running_agent import RunningAgent
from tests.integration.test_zstack import ZStackAgent, bridge, image, images, receiver, start_command
from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.errors import HostResourceError

__all__ = ["bridge", "images", "receiver"]  # the ZStack module's fixtures, used here by name

REFUSED = r"not enough host memory to start .*: it needs 256MiB of guest memory \+ 192MiB vm_memory_overhead"


def full(config: HostConfig) -> HostConfig:
    """A host that keeps all its memory for itself: no guest fits, whatever the other tests run meanwhile."""
    total = build_drivers(config).drivers["libvirt"].host_info().memory_total
    return replace(config, memory_reserve=total)


def qemu_of(name: str) -> str:
    return subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def refusing(config: HostConfig, engine: Engine) -> Engine:
    """An engine on the test data dir whose host admits nothing; `engine` deletes the VMs at the end."""
    return Engine(full(config), build_drivers(config), store=engine.store)


def test_a_native_start_is_refused_before_qemu_runs(refusing, guest_spec, vm_name):
    name = vm_name("adm-start")
    refusing.create(guest_spec(name))
    with pytest.raises(HostResourceError, match=REFUSED) as refused:
        refusing.start(name)
    assert "memory_reserve, which leaves 0MiB" in refused.value.message
    assert refusing.driver.state(name) == DomainState.SHUTOFF, "still defined, never started"
    assert refusing.record(name).state == "stopped"
    assert qemu_of(name) == ""


def test_create_with_start_refused_leaves_no_definition_record_or_files(refusing, guest_spec, vm_name, config):
    name = vm_name("adm-create")
    disk = [{"source": {"type": "new", "size": "8MiB"}}]
    with pytest.raises(HostResourceError, match=REFUSED):
        refusing.create(guest_spec(name, disks=disk), start=True)
    assert refusing.driver.state(name) == DomainState.ABSENT
    assert refusing.store.get_vm(name) is None
    assert list((config.data_dir / "vms").iterdir()) == []
    assert qemu_of(name) == ""


def test_the_api_answers_409_with_the_numbers(config, engine, guest_spec, vm_name):
    name = vm_name("adm-api")
    engine.create(guest_spec(name))
    with RunningAgent(full(config)) as agent, agent.http() as http:
        response = http.post(f"/v1/vms/{name}/start", params={"wait": "true"})
        assert response.status_code == 409
        assert response.json()["code"] == "host_resource"
        assert "memory_reserve" in response.json()["message"]
    assert qemu_of(name) == ""


def test_zstack_start_vm_is_refused_with_success_false_and_nothing_defined(
    config, engine, bridge, images, receiver, vm_name, libvirt_conn
):
    name = vm_name("adm-zs")
    with ZStackAgent(full(config), receiver) as agent:
        reply = agent.call("/vm/start", start_command(name, image(images, "root.qcow2"), bridge))
    assert reply["success"] is False
    assert "not enough host memory to start" in reply["error"]
    assert "256MiB of guest memory" in reply["error"] and "memory_reserve" in reply["error"]
    assert name not in [domain.name() for domain in libvirt_conn.listAllDomains()]
    assert engine.store.list_vms() == []


def test_a_restart_policy_restart_is_refused_and_the_policy_gives_up(
    config, engine, guest_spec, vm_name, caplog, libvirt_conn
):
    """The VM ran, the host filled up (here: the reserve grew), then QEMU died: the restart is refused before
    QEMU, the refusal is logged with its numbers, and after max_retries the policy stops trying."""
    name = vm_name("adm-restart")
    backoff = {"initial_seconds": 0.2, "max_seconds": 0.2, "max_retries": 1}
    engine.create(guest_spec(name, restart_policy="always", restart_backoff=backoff), start=True)
    caplog.set_level(logging.WARNING, logger="vmhost.engine")
    with RunningAgent(full(config)) as agent:
        pid = agent.agent.engine.driver.info(name).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        eventually(lambda: engine.record(name).desired_state == "stopped", 30, 0.1, "the restart policy gave up")
    assert not libvirt_conn.lookupByName(name).isActive()
    assert engine.record(name).state == "crashed"
    [refusal] = [record for record in caplog.records if record.getMessage() == "restart failed"]
    assert "not enough host memory to start" in getattr(refusal, "error", "")
    assert qemu_of(name) == ""


def test_without_a_reserve_the_same_guest_starts(engine, guest_spec, vm_name, config):
    """The control: the refusals above are the reserve's doing, not the guest's."""
    name = vm_name("adm-ok")
    admitting = Engine(replace(config, memory_reserve=0), build_drivers(config), store=engine.store)
    assert admitting.create(guest_spec(name), start=True).state == "running"
    assert qemu_of(name) != ""
