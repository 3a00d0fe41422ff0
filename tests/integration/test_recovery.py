"""Kill the agent (SIGKILL) at each journaled step of create, start, stop, delete and update; restart it; the
interrupted operation is completed or rolled back and every invariant holds.

The kill points are enabled only by the test-only environment variable VMHOST_TEST_KILL_AT.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.conftest import PREFIX, REPO
from tests.integration.running_agent import free_port
from vmhost.engine.faults import KILL_AT
from vmhost.engine.states import TRANSIENT
from vmhost.host.tokens import read_token


class AgentProcess:
    """`vmhost serve` as its own process, so it can really be SIGKILLed."""

    def __init__(self, config_file: Path, data_dir: Path, kill_at: str | None = None):
        self.port = free_port()
        env = {**os.environ, "VMHOST_CONFIG": str(config_file)}
        env.pop(KILL_AT, None)
        if kill_at:
            env[KILL_AT] = kill_at
        self.process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "vmhost"), "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            eventually(self._healthy, 30, 0.1, "the agent's /healthz")
        except BaseException:
            self.process.kill()  # never started for the fixture to stop: it would outlive the test
            self.process.wait(30)
            raise
        self.http = httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {read_token(data_dir)}"}
        )

    def _healthy(self) -> bool:
        assert self.process.poll() is None, "agent exited during start-up"
        return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

    def call(self, method: str, path: str, **kwargs: Any) -> None:
        """The agent may die while answering: that is the point."""
        with contextlib.suppress(httpx.HTTPError):
            self.http.request(method, path, params={"wait": "true"}, **kwargs)

    def wait_killed(self) -> None:
        assert self.process.wait(60) == -signal.SIGKILL, "the fault point was not reached"

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def agent_process(config_file, data_dir) -> Iterator[Callable[[str | None], AgentProcess]]:
    started: list[AgentProcess] = []

    def start(kill_at: str | None = None) -> AgentProcess:
        started.append(AgentProcess(config_file, data_dir, kill_at))
        return started[-1]

    yield start
    for agent in started:
        agent.stop()


DISK = [{"source": {"type": "new", "size": "16MiB"}}]

# point → (what exists before, the call, what must be true after recovery)
CASES: dict[str, tuple[str, Callable[[str, dict[str, Any]], tuple[str, str, dict[str, Any]]], str]] = {
    "create:begin": ("nothing", lambda name, spec: ("POST", "/v1/vms", {"json": spec}), "absent"),
    "create:recorded": ("nothing", lambda name, spec: ("POST", "/v1/vms", {"json": spec}), "absent"),
    "create:disks-created": ("nothing", lambda name, spec: ("POST", "/v1/vms", {"json": spec}), "absent"),
    "create:defined": ("nothing", lambda name, spec: ("POST", "/v1/vms", {"json": spec}), "absent"),
    "start:created-paused": ("stopped", lambda name, spec: ("POST", f"/v1/vms/{name}/start", {}), "stopped"),
    "start:activated": ("stopped", lambda name, spec: ("POST", f"/v1/vms/{name}/start", {}), "stopped"),
    "start:resumed": ("stopped", lambda name, spec: ("POST", f"/v1/vms/{name}/start", {}), "running"),
    "stop:shutdown-requested": ("running", lambda name, spec: ("POST", f"/v1/vms/{name}/stop", {}), "stopped"),
    "stop:destroyed": (
        "running",
        lambda name, spec: ("POST", f"/v1/vms/{name}/stop", {"json": {"force": True}}),
        "stopped",
    ),
    "delete:begin": ("running", lambda name, spec: ("DELETE", f"/v1/vms/{name}", {}), "absent"),
    "delete:destroyed": ("running", lambda name, spec: ("DELETE", f"/v1/vms/{name}", {}), "absent"),
    "delete:undefined": ("stopped", lambda name, spec: ("DELETE", f"/v1/vms/{name}", {}), "absent"),
    "delete:disks-removed": ("stopped", lambda name, spec: ("DELETE", f"/v1/vms/{name}", {}), "absent"),
    "update:begin": (
        "stopped",
        lambda name, spec: ("PATCH", f"/v1/vms/{name}", {"json": {"cpu": {"vcpus": 2}, "disks": []}}),
        "stopped",
    ),
    "update:disks-created": (
        "stopped",
        lambda name, spec: (
            "PATCH",
            f"/v1/vms/{name}",
            {"json": {"disks": [*spec["disks"], {"source": {"type": "new", "size": "8MiB"}}]}},
        ),
        "stopped",
    ),
    "update:defined": (
        "stopped",
        lambda name, spec: (
            "PATCH",
            f"/v1/vms/{name}",
            {"json": {"cpu": {"vcpus": 2}, "disks": [*spec["disks"], {"source": {"type": "new", "size": "8MiB"}}]}},
        ),
        "stopped",
    ),
}


@pytest.mark.parametrize("point", list(CASES))
def test_agent_killed_mid_operation_recovers_on_restart(
    point, agent_process, engine, guest_spec, vm_name, config, libvirt_conn
):
    before, call, expected = CASES[point]
    name = vm_name("crash-" + point.replace(":", "-"))
    spec = guest_spec(name, cmdline="vmhost.ignore_acpi=1", disks=DISK)
    if before != "nothing":
        spec = engine.get(engine.create(spec, start=before == "running").name)
    dying = agent_process(point)
    method, path, kwargs = call(name, spec)
    dying.call(method, path, **kwargs)
    dying.wait_killed()

    agent_process(None)
    engine.store = type(engine.store)(config.db_path)
    assert_invariants(engine, config, libvirt_conn)
    record = engine.store.get_vm(name)
    if expected == "absent":
        assert record is None
        return
    assert record is not None
    assert engine.get(name)["state"] == expected


def assert_invariants(engine, config, conn: libvirt.virConnect) -> None:
    """No orphan QEMU or domain, no lost definition, no stray disk, nothing stuck in a transitional state."""
    records = {record.name: record for record in engine.store.list_vms()}
    domains = {dom.name(): dom for dom in conn.listAllDomains() if dom.name().startswith(PREFIX)}
    test_records = {name for name in records if name.startswith(PREFIX)}  # not other test sessions' VMs
    assert set(domains) == test_records, "every VM has exactly one definition and every definition a VM"
    for name, record in records.items():
        assert record.state not in {state.value for state in TRANSIENT}, (name, record.state)
        state, _ = domains[name].state()
        assert state != libvirt.VIR_DOMAIN_PAUSED, f"{name} was left paused"
        defined = etree.fromstring(domains[name].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        assert int(defined.findtext("vcpu")) == record.spec["cpu"]["vcpus"], "definition matches the store"
    vms = config.data_dir / "vms"
    owned = {path for record in records.values() for path in record.owned_paths}
    on_disk = {str(path) for path in vms.glob("*/disks/*")}
    assert on_disk == owned, "no stray disk image and no lost one"
    assert {d.name for d in (vms.iterdir() if vms.exists() else [])} <= {r.uuid for r in records.values()}
    assert engine.store.unfinished_operations() == []
    qemu = subprocess.run(["pgrep", "-af", "qemu-system"], capture_output=True, text=True, check=False).stdout
    for name in domains:
        if domains[name].state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
            assert f"guest={name}," not in qemu, f"orphan QEMU for {name}"


def test_agent_killed_inside_a_pause_leaves_the_guest_alive(
    agent_process, engine, guest_spec, vm_name, config, libvirt_conn
):
    """Before: the rule "domain paused and no `resumed` step -> destroy" applied to every kind, so an interrupted
    pause destroyed the VM. Now the pause's own steps complete it (still paused) and the guest lives."""
    name = vm_name("crash-pause")
    engine.create(guest_spec(name), start=True)
    pid = engine.driver.info(name).pid
    dying = agent_process("pause:paused")
    dying.call("POST", f"/v1/vms/{name}/pause")
    dying.wait_killed()

    agent_process(None)
    engine.store = type(engine.store)(config.db_path)
    domain = libvirt_conn.lookupByName(name)
    assert domain.isActive(), "the guest was destroyed"
    assert domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert engine.driver.info(name).pid == pid, "the same QEMU, not a restarted one"
    assert engine.get(name)["state"] == "paused"
    assert engine.store.operations(name, limit=1)[0].state == "completed by recovery"
    assert engine.store.unfinished_operations() == []


def test_an_operation_id_answers_after_the_agent_restarts(agent_process, engine, config, guest_spec, vm_name):
    """A rolled-back create keeps its id and says so; it is not reported as failed, nor forgotten."""
    name = vm_name("crash-opid")
    dying = agent_process("create:defined")
    dying.call("POST", "/v1/vms", json=guest_spec(name))
    dying.wait_killed()
    again = agent_process(None)
    [create] = [op for op in type(engine.store)(config.db_path).operations(name) if op.kind == "create"]
    assert create.request, "the journal keeps the API operation's id"
    view = again.http.get(f"/v1/operations/{create.request}").json()
    assert (view["kind"], view["vm"], view["state"]) == ("create", name, "rolled back by recovery")
    assert create.request in [op["id"] for op in again.http.get("/v1/operations").json()]
