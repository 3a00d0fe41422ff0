"""The ZStack dialect for real: uvicorn serving it, libvirt/QEMU (TCG) behind it, a callback receiver in front.

The VMs boot SeaBIOS from an empty qcow2 root volume (ZStack has no kernel-boot field, and nothing here needs
a guest OS): they run, have a NIC on a test bridge, a VNC console and the guest-agent channel, which is what
the management node's commands act on.
"""

import json
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from lxml import etree

from tests.integration.conftest import VOLUMES_DIR, scratch_bridge
from tests.integration.running_agent import RunningAgent
from tests.unit.test_zstack_convert import example

REPLY_TIMEOUT = 120.0
GUEST_AGENT = "org.qemu.guest_agent.0"


class CallbackReceiver:
    """Plays the management node's /zstack/asyncrest/callback: records each POST under its taskuuid header."""

    def __init__(self) -> None:
        self.replies: dict[str, list[dict[str, Any]]] = {}
        self.changed = threading.Condition()
        replies, changed = self.replies, self.changed

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with changed:
                    replies.setdefault(self.headers.get("taskuuid", ""), []).append(body)
                    changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/zstack/asyncrest/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, task: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        with self.changed:
            arrived = self.changed.wait_for(lambda: task in self.replies, timeout)
        assert arrived, f"no callback for task {task} within {timeout}s"
        return self.replies[task][0]


class ZStackAgent(RunningAgent):
    """The agent `vmhost serve` builds (ZStack router included), plus a management node's way of calling it."""

    def __init__(self, config: Any, receiver: CallbackReceiver):
        super().__init__(config)
        self.receiver = receiver
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.token_header = {"Authorization": f"Bearer {self.token}"}

    def __enter__(self) -> "ZStackAgent":
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        super().__exit__(*exc)

    def send(self, path: str, command: dict[str, Any], task: str | None = None, token: bool = True) -> httpx.Response:
        """POST as the management node does: JSON body, taskuuid and callbackurl headers."""
        headers = {"taskuuid": task or uuid.uuid4().hex, "callbackurl": self.receiver.url}
        if token:
            headers.update(self.token_header)
        return self.http.post(path, json=command, headers=headers)

    def call(self, path: str, command: dict[str, Any]) -> dict[str, Any]:
        """An async call and the reply that came back to the callback URL with the same taskuuid."""
        task = uuid.uuid4().hex
        answer = self.send(path, command, task)
        assert answer.status_code == 200, answer.text
        assert answer.content == b"", "async paths answer at once with an empty body"
        return self.receiver.wait(task)

    def ok(self, path: str, command: dict[str, Any]) -> dict[str, Any]:
        """A call that must succeed; a failure shows the agent's error."""
        reply = self.call(path, command)
        assert reply["success"] is True, f"{path} failed: {reply['error']}"
        return reply


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def agent(config, engine, receiver) -> Iterator[ZStackAgent]:
    """`engine` (same data dir) deletes every VM the agent made when the test ends."""
    with ZStackAgent(config, receiver) as running:
        yield running


# Tests take `bridge` and `images` before `agent`: pytest tears down in reverse, so the VMs are deleted
# (by the engine fixture under `agent`) before their bridge and volumes go.


@pytest.fixture
def bridge() -> Iterator[str]:
    with scratch_bridge("vmhzs") as name:
        yield name


@pytest.fixture
def images() -> Iterator[Path]:
    """Volumes live outside pytest's temp root: a concurrent pytest run resets that to mode 0700, and QEMU
    (running as its own user) could then no longer reach them."""
    VOLUMES_DIR.mkdir(mode=0o711, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="vmhost-zstack-", dir=VOLUMES_DIR))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory)


def image(directory: Path, name: str, size: str = "64M") -> Path:
    path = directory / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    path.chmod(0o644)
    return path


def start_command(name: str, root: Path, bridge: str, **changes: Any) -> dict[str, Any]:
    """ZStack's realistic StartVmCmd, sized for a TCG test host, on this host's bridge and image."""
    cmd = example()
    vm = uuid.uuid4().hex
    tap = f"vnic{secrets.token_hex(3)}.0"
    cmd.update(vmInstanceUuid=vm, vmName=name, memory=256 * 2**20, maxMemory=512 * 2**20, maxVcpuNum=4)
    cmd["rootVolume"] = {**cmd["rootVolume"], "installPath": str(root), "volumeUuid": uuid.uuid4().hex}
    mac = "fa:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    cmd["nics"] = [{**cmd["nics"][0], "bridgeName": bridge, "nicInternalName": tap, "mac": mac}]
    cmd["addons"]["channel"]["socketPath"] = f"/var/lib/libvirt/qemu/{vm}"
    cmd["priorityConfigStruct"]["vmUuid"] = vm
    cmd.update(changes)
    return cmd


def live_xml(conn: libvirt.virConnect, name: str) -> etree._Element:
    return etree.fromstring(conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE))


def data_volume(path: Path) -> dict[str, Any]:
    """On virtio-scsi: SCSI unplug completes without guest help, which the OS-less test guest cannot give."""
    return {
        "installPath": str(path),
        "deviceId": 1,
        "deviceType": "file",
        "volumeUuid": uuid.uuid4().hex,
        "useVirtio": False,
        "useVirtioSCSI": True,
        "wwn": "0x000f6c46e4c236bf",
        "shareable": False,
        "cacheMode": "none",
        "format": "qcow2",
        "type": "Data",
    }


# ---- protocol and auth ---------------------------------------------------------------------------


def test_async_call_without_taskuuid_is_refused_with_400(agent):
    answer = agent.http.post("/vm/vmsync", json={}, headers={**agent.token_header, "callbackurl": agent.receiver.url})
    assert answer.status_code == 400
    assert "taskuuid" in answer.text


def test_paths_need_the_token(agent):
    answer = agent.send("/host/ping", {}, token=False)
    assert answer.status_code == 401
    assert agent.http.post("/host/echo").status_code == 401


def test_trusted_sources_need_no_token(config, engine, receiver):
    trusted = replace(config, zstack_trusted_sources=("127.0.0.1/32",))
    with ZStackAgent(trusted, receiver) as agent:
        assert agent.http.post("/host/echo").status_code == 200
        task = uuid.uuid4().hex
        assert agent.send("/host/ping", {}, task, token=False).status_code == 200
        assert receiver.wait(task)["success"] is True


def test_connect_then_ping_capacity_and_echo(agent):
    host_uuid = uuid.uuid4().hex
    command_url = "http://192.0.2.10:8080/zstack/asyncrest/sendcommand"
    connected = agent.http.post(
        "/host/connect", json={"hostUuid": host_uuid, "sendCommandUrl": command_url}, headers=agent.token_header
    ).json()
    assert connected["success"] is True
    assert connected["libvirtVersion"].count(".") == 2
    assert connected["qemuVersion"].count(".") == 2
    assert agent.call("/host/ping", {"hostUuid": host_uuid}) == {
        "success": True,
        "error": "",
        "hostUuid": host_uuid,
        "sendCommandUrl": command_url,
    }
    capacity = agent.call("/host/capacity", {})
    assert capacity["success"] is True
    assert capacity["cpuNum"] > 0
    assert capacity["totalMemory"] > 2**30
    assert (capacity["usedCpu"], capacity["usedMemory"]) == (0, 0)
    assert agent.http.post("/host/echo", headers=agent.token_header).content == b""
    assert agent.http.post("/host/echo/", headers=agent.token_header).status_code == 200


def test_sync_path_refuses_a_taskuuid(agent):
    answer = agent.http.post("/host/connect", json={}, headers={**agent.token_header, "taskuuid": "x"})
    assert answer.status_code == 400


# ---- the VM lifecycle as the management node drives it ------------------------------------------


def test_vm_lifecycle(bridge, images, agent, vm_name, libvirt_conn):
    name = vm_name("zs-life")
    cmd = start_command(name, image(images, "root.qcow2"), bridge)
    cmd["rootVolume"].update(useVirtio=False, useVirtioSCSI=True)
    vm = cmd["vmInstanceUuid"]

    assert agent.call("/vm/start", cmd) == {"success": True, "error": ""}
    domain = libvirt_conn.lookupByName(name)
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    xml = live_xml(libvirt_conn, name)
    root = xml.find("devices/disk[@device='disk']")
    assert root.find("source").get("file") == cmd["rootVolume"]["installPath"]
    assert (root.find("target").get("bus"), root.findtext("wwn")) == ("scsi", cmd["rootVolume"]["wwn"])
    interface = xml.find("devices/interface[@type='bridge']")
    assert interface.find("source").get("bridge") == bridge
    assert interface.find("target").get("dev") == cmd["nics"][0]["nicInternalName"]
    assert interface.find("mac").get("address") == cmd["nics"][0]["mac"]
    graphics = xml.find("devices/graphics[@type='vnc']")
    assert graphics.get("passwd") == cmd["consolePassword"]
    assert graphics.get("listen") == "127.0.0.1"
    assert xml.find(f"devices/channel/target[@name='{GUEST_AGENT}']") is not None

    pid = agent.agent.engine.driver.info(name).pid
    agent.ok("/vm/start", cmd)
    assert agent.agent.engine.driver.info(name).pid == pid, "and leaves it alone"

    assert agent.call("/vm/vmsync", {}) == {
        "success": True,
        "error": "",
        "states": {vm: "Running"},
        "vmInShutdowns": [],
    }
    unknown = uuid.uuid4().hex
    checked = agent.call("/vm/checkstate", {"vmUuids": [vm, unknown], "hostUuid": uuid.uuid4().hex})
    assert checked["states"] == {vm: "Running", unknown: "Shutdown"}

    console = agent.call("/vm/getvncport", {"vmUuid": vm})
    assert console["protocol"] == "vnc"
    assert (
        console["port"] == console["vncPort"] == int(live_xml(libvirt_conn, name).find("devices/graphics").get("port"))
    )
    assert console["port"] >= 5900

    agent.ok("/vm/pause", {"uuid": vm})
    assert domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert agent.call("/vm/checkstate", {"vmUuids": [vm]})["states"] == {vm: "Paused"}
    assert agent.call("/vm/vmsync", {})["states"] == {vm: "Paused"}
    agent.ok("/vm/resume", {"uuid": vm})
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    volume = data_volume(image(images, "data.qcow2", "32M"))
    attach = {"vmInstanceUuid": vm, "volume": volume, "addons": {}}
    agent.ok("/vm/attachdatavolume", attach)
    agent.ok("/vm/attachdatavolume", attach)
    sources = [s.get("file") for s in live_xml(libvirt_conn, name).iterfind("devices/disk/source")]
    assert sources.count(volume["installPath"]) == 1
    agent.ok("/vm/detachdatavolume", {"vmInstanceUuid": vm, "volume": volume})
    sources = [s.get("file") for s in live_xml(libvirt_conn, name).iterfind("devices/disk/source")]
    assert volume["installPath"] not in sources
    agent.ok("/vm/detachdatavolume", {"vmInstanceUuid": vm, "volume": volume})

    agent.ok("/vm/reboot", {"uuid": vm, "timeout": 1})
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert agent.agent.engine.driver.info(name).pid != pid, "reboot is stop + start, as in ZStack's agent"

    began = time.monotonic()
    agent.ok("/vm/stop", {"uuid": vm, "type": "grace", "timeout": 2})
    assert time.monotonic() - began >= 2, "SeaBIOS ignores the ACPI button, so the stop is forced at the timeout"
    assert domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert agent.call("/vm/vmsync", {})["states"] == {}, "stopped VMs are absent, as ZStack's are"
    assert agent.call("/vm/checkstate", {"vmUuids": [vm]})["states"] == {vm: "Shutdown"}
    refused = agent.call("/vm/getvncport", {"vmUuid": vm})
    assert refused["success"] is False
    assert "not running" in refused["error"]

    changed = {**cmd, "cpuNum": 2, "consolePassword": "n3w"}
    agent.ok("/vm/start", changed)
    xml = live_xml(libvirt_conn, name)
    assert xml.find("vcpu").get("current") == "2"
    assert xml.find("devices/graphics").get("passwd") == "n3w"

    agent.ok("/vm/destroy", {"uuid": vm})
    assert domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    agent.ok("/vm/destroy", {"uuid": vm})
    agent.ok("/vm/stop", {"uuid": uuid.uuid4().hex, "type": "cold"})

    assert all(len(replies) == 1 for replies in agent.receiver.replies.values()), "one reply per task"


def test_hot_paths_on_unknown_vms_fail_readably(agent):
    stranger = uuid.uuid4().hex
    for path, command in (("/vm/pause", {"uuid": stranger}), ("/vm/getvncport", {"vmUuid": stranger})):
        reply = agent.call(path, command)
        assert reply["success"] is False
        assert stranger in reply["error"]


def test_start_failures_come_back_as_success_false_with_the_reason(bridge, images, agent, vm_name, libvirt_conn):
    root = image(images, "root.qcow2")
    unmappable = start_command(vm_name("zs-bad"), root, bridge)
    unmappable["rootVolume"]["deviceType"] = "sharedblock"
    reply = agent.call("/vm/start", unmappable)
    assert reply["success"] is False
    assert "rootVolume.deviceType" in reply["error"]
    assert "sharedblock" in reply["error"]

    missing = start_command(vm_name("zs-missing"), images / "nowhere.qcow2", bridge)
    reply = agent.call("/vm/start", missing)
    assert reply["success"] is False
    assert "nowhere.qcow2" in reply["error"]
    names = [d.name() for d in libvirt_conn.listAllDomains()]
    assert vm_name("zs-bad") not in names
    assert vm_name("zs-missing") not in names


def test_duplicate_in_flight_task_is_ignored(bridge, images, agent, vm_name):
    cmd = start_command(vm_name("zs-dup"), image(images, "root.qcow2"), bridge)
    agent.ok("/vm/start", cmd)
    task = uuid.uuid4().hex
    stop = {"uuid": cmd["vmInstanceUuid"], "type": "grace", "timeout": 2}
    assert agent.send("/vm/stop", stop, task).status_code == 200
    assert agent.send("/vm/stop", stop, task).status_code == 200
    assert agent.receiver.wait(task)["success"] is True
    time.sleep(0.5)
    assert len(agent.receiver.replies[task]) == 1
