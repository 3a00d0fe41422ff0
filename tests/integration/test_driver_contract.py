"""The driver contract through a real agent and the real CLI: what a VM's driver cannot do answers 501 naming
the driver and the capability (exit 1 with one line in the CLI), and GET /v1/host and `vmhost host` show the
capability matrix, the same locally and through the agent."""

import json
from pathlib import Path

import pytest

from tests.conformance.busybox import busybox_rootfs

pytestmark = pytest.mark.integration
LIBVIRT = ["pause", "reboot", "console", "disk-hotplug", "nic-hotplug", "vcpu-hotplug", "memory-hotplug", "disk-resize"]
MATRIX = {
    "libvirt": [*LIBVIRT, "media-change", "pci-passthrough", "snapshots", "live-migration", "offline-migration"],
    "runc": ["pause"],
}


def test_rebooting_a_container_is_501_naming_runc_and_reboot_and_the_container_keeps_running(
    http, agent, cli, vm_name, tmp_path: Path
):
    name = vm_name("ct501")
    rootfs = {"type": "directory", "path": str(busybox_rootfs(tmp_path / "busybox"))}
    document = {
        "name": name,
        "kind": "container",
        "memory": "48MiB",
        "container": {"rootfs": rootfs, "command": ["sleep", "1000"]},
    }
    created = http.post("/v1/vms", json=document, params={"start": "true", "wait": "true"})
    assert created.status_code == 200, created.text
    answer = http.post(f"/v1/vms/{name}/reboot", params={"wait": "true"})
    assert answer.status_code == 501
    body = answer.json()
    assert (body["code"], body["message"]) == ("unsupported", "the runc driver does not support reboot")
    assert (body["details"]["driver"], body["details"]["capability"]) == ("runc", "reboot")
    refused = cli("--agent", agent.url, "--token", agent.token, "reboot", name)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("error: the runc driver does not support reboot")
    assert http.get(f"/v1/vms/{name}").json()["state"] == "running"
    assert f'vmhost_vm_memory_bytes{{vm="{name}"}} 5.0331648e+07' in http.get("/metrics").text


def test_get_host_shows_the_capability_matrix_per_driver(http):
    host = http.get("/v1/host").json()
    assert host["capabilities"] == MATRIX
    assert host["drivers"] == ["libvirt", "runc"]


def test_vmhost_host_prints_the_same_locally_and_through_the_agent(cli, agent):
    local = cli("host")
    remote = cli("--agent", agent.url, "--token", agent.token, "host")
    assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr

    def steady(output: str) -> list[list[str]]:
        """Every line but the memory one (available memory moves between two calls), split into words."""
        return [line.split() for line in output.splitlines() if line.strip() and not line.startswith("memory:")]

    assert steady(local.stdout) == steady(remote.stdout)
    rows = steady(local.stdout)
    assert ["CAPABILITY", "LIBVIRT", "RUNC"] in rows
    assert ["pause", "yes", "yes"] in rows
    assert ["reboot", "yes", "-"] in rows
    assert ["live-migration", "yes", "-"] in rows
    assert json.loads(cli("host", "--json").stdout)["capabilities"] == MATRIX
