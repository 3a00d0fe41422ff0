"""The HTTP agent for real: uvicorn serving the app, libvirt/QEMU behind it, httpx and websockets in front."""

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
import websockets.exceptions
import websockets.sync.client

from tests.eventually import eventually
from tests.integration.conftest import read_console_until, wait_for_console, wait_for_count
from vmhost.client import AgentClient


class Receiver:
    """A tiny HTTP server that records every callback POST."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], Any]] = []
        received = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        eventually(lambda: len(self.calls) >= count, timeout, 0.05, f"{count} callbacks")


def finish(http: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    operation: dict[str, Any] = http.get(f"/v1/operations/{response.json()['id']}", params={"wait": "true"}).json()
    return operation


def test_every_route_but_healthz_needs_the_token(agent):
    paths = httpx.get(f"{agent.url}/openapi.json", headers={"Authorization": f"Bearer {agent.token}"}).json()["paths"]
    paths["/openapi.json"] = {"get": {}}
    anonymous = httpx.Client(base_url=agent.url, timeout=10)
    wrong = httpx.Client(base_url=agent.url, headers={"Authorization": "Bearer nope"}, timeout=10)
    checked = 0
    for path, operations in paths.items():
        if path == "/healthz":
            continue
        concrete = path.replace("{vm}", "x").replace("{operation_id}", "x")
        for method in operations:
            for client in (anonymous, wrong):
                response = client.request(method, concrete, json={})
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.json()["code"] == "unauthorized"
                checked += 1
    assert checked >= 40
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    for token in ("", "nope"):
        with pytest.raises(websockets.exceptions.InvalidStatus):
            websockets.sync.client.connect(f"ws://127.0.0.1:{agent.port}/v1/vms/x/console?token={token}")


def test_create_get_list_and_delete(http, guest_spec, vm_name):
    name = vm_name("api")
    created = http.post("/v1/vms", json=guest_spec(name, labels={"tier": "web"}), params={"wait": "true"})
    assert created.status_code == 200, created.text
    assert created.json()["result"]["state"] == "stopped"
    assert created.json()["vm_uuid"] == created.json()["result"]["uuid"]
    view = http.get(f"/v1/vms/{name}").json()
    assert view["labels"] == {"tier": "web"}
    assert http.get(f"/v1/vms/{view['uuid']}").json()["name"] == name
    rows = http.get("/v1/vms", params={"state": "stopped"}).json()
    assert [row["name"] for row in rows] == [name]
    assert http.get("/v1/vms", params={"state": "running"}).json() == []
    assert http.get("/v1/vms", params={"colour": "blue"}).status_code == 400
    assert http.get(f"/v1/vms/{name}/info").json()["uuid"] == view["uuid"]
    assert finish(http, http.delete(f"/v1/vms/{name}"))["state"] == "succeeded"
    missing = http.get(f"/v1/vms/{name}")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found", "message": f"no VM named {name}", "details": None}


def test_invalid_spec_is_422_listing_every_path(http, guest_spec, vm_name, config):
    spec = guest_spec(vm_name("bad"), memory="-1", colour="blue", nics=[{"type": "bridge", "source": "x y"}])
    response = http.post("/v1/vms", json=spec)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_spec"
    assert {d["path"] for d in body["details"]} == {"memory.size", "colour", "nics.0.source"}
    assert http.post("/v1/vms", content=b"{nope", headers={"content-type": "application/json"}).status_code == 400
    assert http.get("/v1/operations").json() == []


def test_host_facts_and_metrics(http, engine, guest_spec, vm_name):
    host = http.get("/v1/host").json()
    assert host["cpus"] >= 1 and host["memory_total"] > host["memory_available"] > 0
    assert host["drivers"] == ["libvirt", "runc"]
    name = vm_name("metrics")
    spec = guest_spec(name, disks=[{"source": {"type": "new", "size": "16MiB"}}])
    assert finish(http, http.post("/v1/vms", json=spec, params={"start": "true"}))["state"] == "succeeded"
    text = http.get("/metrics").text
    assert f'vmhost_vm_state{{state="running",uuid="{engine.record(name).uuid}",vm="{name}"}} 1.0' in text
    for metric in (
        "vmhost_vm_cpu_seconds_total",
        "vmhost_vm_block_read_bytes_total",
        "vmhost_vm_memory_bytes",
        'vmhost_operations_total{kind="create",result="succeeded"}',
        "vmhost_operation_duration_seconds",
    ):
        assert metric in text, metric
    assert f'vmhost_vm_block_read_bytes_total{{device="vda",vm="{name}"}}' in text


def test_console_websocket_and_log(agent, http, engine, guest_spec, vm_name):
    name = vm_name("wscons")
    finish(http, http.post("/v1/vms", json=guest_spec(name), params={"start": "true"}))
    console = AgentClient(agent.url, agent.token).open_console(name)
    try:
        assert b"VMHOST-GUEST-READY" in read_console_until(console, b"VMHOST-GUEST-READY")
        wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
        console.write(b"\recho ws-$((40+2))\r")
        assert b"ws-42" in read_console_until(console, b"ws-42", timeout=30)
    finally:
        console.close()
    assert "VMHOST-GUEST-READY" in http.get(f"/v1/vms/{name}/console/log").text


def test_actions_with_callbacks(http, engine, guest_spec, vm_name):
    receiver = Receiver()
    name = vm_name("callback")
    hooks = {"callback_url": receiver.url}
    finish(http, http.post("/v1/vms", json=guest_spec(name), params=hooks))
    steps = [
        ("start", None, "running"),
        ("reboot", {"force": True}, "running"),
        ("pause", None, "paused"),
        ("resume", None, "running"),
        ("stop", {"timeout": 30}, "stopped"),
        ("start", None, "running"),
        ("kill", None, "stopped"),
    ]
    boots = 0
    for action, body, expected in steps:
        if action in ("reboot", "stop"):
            wait_for_count(engine, name, "VMHOST-GUEST-DEVICES-DONE", boots)
        boots += action in ("start", "reboot")
        operation = finish(http, http.post(f"/v1/vms/{name}/{action}", json=body, params=hooks))
        assert operation["state"] == "succeeded", operation
        assert http.get(f"/v1/vms/{name}").json()["state"] == expected, action
    receiver.wait_for(1 + len(steps))
    kinds = [body["kind"] for _headers, body in receiver.calls]
    assert kinds == ["create"] + [action for action, _, _ in steps]
    assert all(headers["x-vmhost-operation"] == body["id"] for headers, body in receiver.calls)
    assert receiver.calls[5][1]["result"]["method"] == "acpi"


def test_update_attach_and_detach_disks(http, engine, guest_spec, vm_name):
    name = vm_name("apidisk")
    finish(http, http.post("/v1/vms", json=guest_spec(name)))
    patched = finish(http, http.patch(f"/v1/vms/{name}", json={"cpu": {"vcpus": 2}}))
    assert patched["result"]["cpu"]["vcpus"] == 2
    finish(http, http.post(f"/v1/vms/{name}/start"))
    attached = finish(http, http.post(f"/v1/vms/{name}/disks", json={"source": {"type": "new", "size": "24MiB"}}))
    assert attached["result"] == {"target": "vda"}
    stream = engine.open_console(name)
    try:
        read_console_until(stream, b"vmhost-guest#")
        stream.write(b"\rcat /sys/block/vda/size\r")
        assert str(24 * 2**20 // 512).encode() in read_console_until(stream, str(24 * 2**20 // 512).encode(), 30)
    finally:
        stream.close()
    [disk_path] = engine.record(name).owned_paths
    assert finish(http, http.post(f"/v1/vms/{name}/disks/detach", json={"target": "vda"}))["state"] == "succeeded"
    assert engine.record(name).owned_paths == []
    assert not __import__("pathlib").Path(disk_path).exists()
    planned = finish(http, http.patch(f"/v1/vms/{name}", json={"cpu": {"vcpus": 1}}))  # issue 14: next boot
    assert planned["result"]["plan"]["changes"][0]["how"] == "next-boot"
    assert planned["result"]["pending"] == ["cpu.vcpus"]


def test_waiting_on_a_failed_operation_returns_its_error_status(http, guest_spec, vm_name):
    name = vm_name("huge")
    finish(http, http.post("/v1/vms", json=guest_spec(name, memory="4TiB")))
    response = http.post(f"/v1/vms/{name}/start", params={"wait": "true"})
    assert response.status_code == 409
    assert "not enough host memory" in response.json()["message"]
    assert response.json()["operation"]


def test_second_operation_on_a_busy_vm_is_409(http, guest_spec, vm_name):
    name = vm_name("busy")
    finish(http, http.post("/v1/vms", json=guest_spec(name, cmdline="vmhost.ignore_acpi=1"), params={"start": "true"}))
    slow = http.post(f"/v1/vms/{name}/stop", json={"timeout": 4})
    assert slow.status_code == 202
    blocked = http.post(f"/v1/vms/{name}/start")
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "conflict"
    assert (
        http.get(f"/v1/operations/{slow.json()['id']}", params={"wait": "true"}).json()["result"]["method"] == "forced"
    )


def test_fifty_concurrent_mixed_operations_leave_a_consistent_state(http, engine, guest_spec, vm_name, libvirt_conn):
    name = vm_name("storm")
    finish(http, http.post("/v1/vms", json=guest_spec(name), params={"start": "true"}))
    expected = {
        "start": "running",
        "stop": "stopped",
        "kill": "stopped",
        "reboot": "running",
        "pause": "paused",
        "resume": "running",
    }
    chooser = random.Random(7)
    requests = [chooser.choice(list(expected)) for _ in range(50)]

    def send(action: str) -> tuple[str, httpx.Response]:
        body = {"force": True} if action in ("stop", "reboot") else None
        return action, http.post(f"/v1/vms/{name}/{action}", json=body)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(send, requests))
    assert all(r.status_code in (202, 409) for _, r in answers), [r.text for _, r in answers if r.status_code >= 500]
    accepted = [(a, r.json()["id"]) for a, r in answers if r.status_code == 202]
    assert accepted
    finished = [http.get(f"/v1/operations/{op}", params={"wait": "true"}).json() for _, op in accepted]
    succeeded = sorted((op for op in finished if op["state"] == "succeeded"), key=lambda op: op["finished_at"])
    if succeeded:
        state = http.get(f"/v1/vms/{name}").json()["state"]
        assert state == expected[succeeded[-1]["kind"]], (state, succeeded[-1]["kind"])
    assert [d.name() for d in libvirt_conn.listAllDomains() if d.name() == name] == [name]


def test_cli_through_the_agent_prints_what_local_mode_prints(agent, cli, guest_spec, vm_name, tmp_path):
    name = vm_name("remote")
    (tmp_path / "s.json").write_text(json.dumps(guest_spec(name, description="same everywhere")))
    remote = ("--agent", agent.url, "--token", agent.token)
    created = cli(*remote, "create", "-f", str(tmp_path / "s.json"))
    assert created.returncode == 0, created.stderr
    for args in (("list", "-p", "-o", "name,state,memory,description"), ("list", "--json")):
        local, over_http = cli(*args), cli(*remote, *args)
        assert local.stdout == over_http.stdout
    assert json.loads(cli(*remote, "get", name).stdout)["description"] == "same everywhere"
    assert cli(*remote, "stop", name).stdout == f"{name} was already stopped (0.0s)\n"
    missing = cli(*remote, "start", "no-such-vm")
    assert (missing.returncode, missing.stderr) == (1, "error: no VM named no-such-vm\n")
    bad = cli(*remote, "update", name, "-f", str(tmp_path / "s.json"))
    assert bad.returncode == 0
    wrong_token = cli("--agent", agent.url, "--token", "nope", "list")
    assert wrong_token.returncode == 1
    assert cli(*remote, "delete", name).returncode == 0


def test_the_list_with_runtime_adds_uptime_and_addresses_of_running_vms_only(http, engine, guest_spec, vm_name):
    running, stopped = vm_name("rt-on"), vm_name("rt-off")
    engine.create(guest_spec(running), start=True)
    engine.create(guest_spec(stopped), start=False)
    rows = {row["name"]: row for row in http.get("/v1/vms", params={"runtime": "true"}).json()}
    assert rows[running]["uptime_seconds"] >= 0 and rows[running]["addresses"] == []
    assert rows[stopped].get("uptime_seconds") is None
    plain = {row["name"]: row for row in http.get("/v1/vms").json()}
    assert "uptime_seconds" not in plain[running]
