"""`vmhost console NAME --log -f`: a container's stdout/stderr followed until it exits, locally and via the agent."""

from pathlib import Path

import pytest

from tests.conformance.busybox import busybox_rootfs
from tests.integration.running_agent import RunningAgent
from vmhost.client import AgentClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox")


def talker(name: str, rootfs: Path) -> dict:
    script = "echo first; echo to-stderr >&2; sleep 2; echo last"
    return {
        "name": name,
        "kind": "container",
        "memory": "32MiB",
        "container": {"rootfs": {"type": "directory", "path": str(rootfs)}, "command": ["sh", "-c", script]},
    }


def test_cli_follows_a_containers_log_until_it_exits(engine, cli, rootfs, vm_name):
    name = vm_name("follow-cli")
    engine.create(talker(name, rootfs), start=True)
    followed = cli("console", name, "--log", "--follow", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.split() == ["first", "to-stderr", "last"]
    assert engine.get(name)["state"] == "stopped"


def test_agent_streams_a_containers_log_until_it_exits(config, engine, rootfs, vm_name):
    name = vm_name("follow-api")
    with RunningAgent(config) as agent:
        client = AgentClient(agent.url, agent.token)
        client.create(talker(name, rootfs), start=True)
        assert b"".join(client.follow_console_log(name)).split() == [b"first", b"to-stderr", b"last"]
