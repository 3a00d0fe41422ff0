"""One agent, two drivers: a libvirt VM and a runc container managed side by side through the API."""

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conformance.busybox import busybox_rootfs
from tests.eventually import eventually
from tests.integration.conftest import wait_for_console
from tests.integration.running_agent import RunningAgent

pytestmark = pytest.mark.integration


@pytest.fixture
def http(config, engine) -> Iterator[httpx.Client]:
    with (
        RunningAgent(config) as agent,
        agent.http(timeout=180) as client,
    ):
        yield client


def create(http: httpx.Client, spec: dict[str, Any]) -> None:
    response = http.post("/v1/vms", json=spec, params={"start": "true", "wait": "true"})
    assert response.status_code == 200, response.text


def wait_state(http: httpx.Client, name: str, state: str, timeout: float = 30) -> None:
    eventually(lambda: http.get(f"/v1/vms/{name}").json()["state"] == state, timeout, 0.2, f"{name} {state}")


def test_vm_and_container_side_by_side_through_the_api_and_list(http, cli, engine, guest_spec, vm_name, tmp_path):
    vm, container = vm_name("mixed-vm"), vm_name("mixed-ct")
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    create(http, guest_spec(vm))
    create(
        http,
        {
            "name": container,
            "kind": "container",
            "memory": "32MiB",
            "restart_policy": "on-crash",
            "restart_backoff": {"initial_seconds": 0.5},
            "container": {
                "rootfs": {"type": "directory", "path": str(rootfs)},
                "command": ["sh", "-c", "echo CT-UP; exec sleep 1000"],
            },
        },
    )
    wait_for_console(engine, vm, "VMHOST-GUEST-READY")
    assert b"CT-UP" in http.get(f"/v1/vms/{container}/console/log").content

    listing = cli("list", "-o", "name,kind,driver,state", "-p")
    assert listing.returncode == 0, listing.stderr
    rows = set(listing.stdout.splitlines())
    assert {f"{vm}:vm:libvirt:running", f"{container}:container:runc:running"} <= rows

    pid = http.get(f"/v1/vms/{container}").json()["runtime"]["pid"]
    os.kill(pid, signal.SIGKILL)
    eventually(
        lambda: (http.get(f"/v1/vms/{container}").json()["runtime"] or {}).get("pid") not in (None, pid),
        30,
        0.2,
        "the crashed container restarted with a new pid",
    )
    wait_state(http, container, "running")
    assert http.get(f"/v1/vms/{container}").json()["restart_status"]["restart_count"] == 1
    assert http.get(f"/v1/vms/{vm}").json()["state"] == "running"

    for name in (vm, container):
        assert http.post(f"/v1/vms/{name}/stop", json={"timeout": 30}, params={"wait": "true"}).status_code == 200
        assert http.delete(f"/v1/vms/{name}", params={"wait": "true"}).status_code == 200
    assert cli("list", "-p").stdout.strip() == ""
