"""The extended start for real: the agent with the installed plugins, the command on the plugin's own port,
libvirt/QEMU (TCG) behind it and a management node's callback receiver in front (tests/integration/test_zstack.py)."""

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.integration.running_agent import RunningAgent, free_port
from tests.integration.test_zstack import CallbackReceiver, image, live_xml, start_command
from vmhost.config import HostConfig

pytestmark = pytest.mark.integration

WATCHDOG = {"model": "i6300esb", "action": "poweroff"}


class ExStartAgent(RunningAgent):
    """The agent as `vmhost serve` runs it with the installed plugins, and a client of the plugin's port."""

    def __init__(self, config: HostConfig, receiver: CallbackReceiver):
        self.ex_port = free_port()
        super().__init__(replace(config, plugins={"ex-start": {"port": self.ex_port}}))
        self.receiver = receiver
        self.ex_url = f"http://127.0.0.1:{self.ex_port}"

    def send(self, url: str, command: dict[str, Any], task: str) -> httpx.Response:
        """As a management node sends: JSON body, the agent token, taskuuid and callbackurl headers."""
        headers = {"Authorization": f"Bearer {self.token}", "taskuuid": task, "callbackurl": self.receiver.url}
        return httpx.post(url, json=command, headers=headers, timeout=30)

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        task = uuid.uuid4().hex
        answer = self.send(f"{self.ex_url}/ex/vm/start", command, task)
        assert answer.status_code == 200, answer.text
        assert answer.content == b"", "async paths answer at once with an empty body"
        return self.receiver.wait(task)


@pytest.fixture
def agent(config, engine, receiver) -> Iterator[ExStartAgent]:
    """`engine` (same data dir) deletes every VM the agent made when the test ends."""
    with ExStartAgent(config, receiver) as running:
        yield running


# Tests take `bridge` and `images` before `agent`, so the VMs go before their bridge and volumes.


def test_extended_start_on_the_plugins_port_runs_a_vm_with_a_watchdog(bridge, images, agent, vm_name, libvirt_conn):
    name = vm_name("ex-start")
    root = image(images, "root.qcow2")
    cmd = start_command(name, root, bridge, watchdog=WATCHDOG, vcpuPinning=[{"vCpu": 0, "pCpuSet": "0"}])

    assert agent.call(cmd) == {"success": True, "error": ""}

    xml = live_xml(libvirt_conn, name)
    watchdog = xml.find("devices/watchdog")
    assert watchdog is not None, "the live domain has no watchdog"
    assert (watchdog.get("model"), watchdog.get("action")) == ("i6300esb", "poweroff")
    assert watchdog.find("address").get("type") == "pci", "QEMU plugged the i6300esb into the PCI bus"
    assert xml.find("cputune/vcpupin").attrib == {"vcpu": "0", "cpuset": "0"}
    assert libvirt_conn.lookupByName(name).isActive()
    stored = httpx.get(f"{agent.url}/v1/vms/{name}", headers={"Authorization": f"Bearer {agent.token}"}).json()
    assert stored["extensions"] == {"ex-start": {"watchdog": WATCHDOG}}


def test_extended_start_is_served_only_on_the_plugins_port(agent):
    missing = agent.send(f"{agent.url}/ex/vm/start", {}, uuid.uuid4().hex)
    assert missing.status_code == 404
    assert httpx.post(f"{agent.ex_url}/ex/vm/start", json={}).status_code == 401, "the agent's token rules apply"


def test_bad_extension_fields_fail_the_task_naming_them(agent, vm_name, tmp_path, libvirt_conn):
    name = vm_name("ex-start-bad")
    cmd = start_command(name, tmp_path / "root.qcow2", "nobridge", watchdog={"model": "sputnik"})
    reply = agent.call(cmd)
    assert reply["success"] is False
    assert "watchdog.model" in reply["error"]
    assert name not in [domain.name() for domain in libvirt_conn.listAllDomains()]
