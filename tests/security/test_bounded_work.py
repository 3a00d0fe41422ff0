"""No caller can make the agent do unbounded work: followed logs hold no thread while idle and end when the
client leaves, console output is buffered up to a bound (then the console is not read), an event follower that
does not read is cut off instead of queued for, ZStack tasks in flight
are capped (503 beyond), stop timeouts have a ceiling, callbacks go only into the callback networks and queue up
to a bound, a running operation is never forgotten, and a spec with hundreds of disks is a validation error."""

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.eventually import eventually
from tests.integration.conftest import read_console_until, wait_for_console, write_json
from tests.integration.test_zstack import CallbackReceiver, ZStackAgent, receiver  # noqa: F401  (fixture)
from vmhost.api import operations as operations_module
from vmhost.api import v1
from vmhost.api.operations import BoundedPool, CallbackTargets, Operations
from vmhost.config import HostConfig, load_config
from vmhost.drivers.libvirt import console as libvirt_console
from vmhost.engine.events import EventBus, VmEvent
from vmhost.errors import VmhostError

FOLLOWERS = 40
OUTSIDE = "203.0.113.5"
"""TEST-NET-3: never routed. The agent must refuse it before it tries to connect (the tests make sure it cannot)."""


def created(http: httpx.Client, spec: dict[str, Any], start: bool = False) -> None:
    answer = http.post("/v1/vms", json=spec, params={"wait": "true", "start": str(start).lower()})
    assert answer.status_code == 200, answer.text


def healthz_seconds(url: str) -> float:
    began = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    return time.monotonic() - began


# ---- console log streams and the console's buffer --------------------------------------------------------


def test_idle_followers_hold_no_thread_and_end_when_their_clients_leave(agent, http, engine, guest_spec, vm_name):
    name = vm_name("followed")
    created(http, guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    baseline = threading.active_count()

    with contextlib.ExitStack() as streams:
        client = streams.enter_context(agent.http(timeout=10))
        for _ in range(FOLLOWERS):
            response = streams.enter_context(client.stream("GET", f"/v1/vms/{name}/console/log?follow=true"))
            assert response.status_code == 200
            assert b"VMHOST-GUEST-READY" in next(response.iter_raw())
        time.sleep(1.5)  # every follower is idle now: the guest says nothing more
        assert healthz_seconds(agent.url) < 1.0, "idle followers starve nobody"
        assert threading.active_count() - baseline < 10, "and hold no thread each"

    eventually(lambda: threading.active_count() <= baseline + 2, 10, 0.2, "the followers' threads ended")
    assert healthz_seconds(agent.url) < 1.0


class EndlessStream:
    """A libvirt stream whose guest never stops talking; counts what the console pump read."""

    def __init__(self) -> None:
        self.received = 0
        self.aborted = threading.Event()

    def recv(self, size: int) -> bytes:
        if self.aborted.is_set():
            return b""
        self.received += 1
        return b"x" * 1024

    def abort(self) -> None:
        self.aborted.set()


class FakeDomain:
    def name(self) -> str:
        return "chatty"

    def openConsole(self, *_args: object) -> None:
        """Nothing to open."""


class FakeConnection:
    def __init__(self, stream: EndlessStream):
        self.stream = stream

    def newStream(self, _flags: int) -> EndlessStream:
        return self.stream


def test_console_pump_stops_reading_while_its_reader_is_behind():
    stream = EndlessStream()
    console = libvirt_console.LibvirtConsole(FakeConnection(stream), FakeDomain())  # type: ignore[arg-type]
    try:
        time.sleep(0.5)
        assert stream.received <= libvirt_console.BUFFERED_CHUNKS + 1, "a full buffer pauses the pump"
        assert len(console.read(0.1)) <= libvirt_console.BUFFERED_CHUNKS * 1024
        eventually(lambda: stream.received > libvirt_console.BUFFERED_CHUNKS + 1, 5, 0.05, "reading lets it go on")
    finally:
        console.close()
    with pytest.raises(EOFError):
        console.read(0.1)


def backlog(console: object) -> int:
    return int(console._chunks.qsize())  # type: ignore[attr-defined]


def test_a_real_console_whose_reader_stalls_buffers_a_bounded_backlog(agent, http, engine, guest_spec, vm_name):
    name = vm_name("flood")
    created(http, guest_spec(name), start=True)
    wait_for_console(engine, name, "VMHOST-GUEST-DEVICES-DONE")
    console = engine.open_console(name)
    try:
        console.write(b"\ri=0; while [ $i -lt 50000 ]; do echo flood-$i; i=$((i+1)); done\r")
        read_console_until(console, b"flood-1", timeout=30)
        # nobody reads meanwhile, as with a websocket client that stopped reading
        eventually(lambda: backlog(console) == libvirt_console.BUFFERED_CHUNKS, 30, 0.1, "the backlog full")
        time.sleep(1)
        assert backlog(console) == libvirt_console.BUFFERED_CHUNKS, "full, and no fuller"
        assert b"flood-" in console.read(1.0), "the output is still there, just not read ahead without bound"
    finally:
        console.close()


class Connected:
    """A request whose client stays connected and reads nothing more unless asked."""

    app = SimpleNamespace(state=SimpleNamespace(stopping=asyncio.Event()))

    async def is_disconnected(self) -> bool:
        return False


def test_an_event_follower_that_falls_too_far_behind_is_cut_off_not_queued_for():
    bus = EventBus()
    engine = SimpleNamespace(events=bus)

    async def follow() -> list[str]:
        stream = v1._event_stream(Connected(), engine, None, 0.0, True)  # type: ignore[arg-type]
        bus.publish(VmEvent("vm", "u", "state", "running"))
        received = [await anext(stream)]
        for index in range(v1.EVENT_BACKLOG + 1):
            bus.publish(VmEvent("vm", "u", "state", f"s{index}"))
        await asyncio.sleep(0.1)  # the bus's offers land on the loop
        received += [chunk async for chunk in stream]
        return received

    received = asyncio.run(follow())
    assert received[-1].startswith(": too far behind; reconnect with since=")
    assert len(received) == 2, "the backlog was dropped, the follower told where to resume"


# ---- ZStack tasks, stop timeouts ---------------------------------------------------------------------------


@contextlib.contextmanager
def silent_receiver() -> Iterator[str]:
    """A callback URL on loopback whose server accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/zstack/asyncrest/callback"
    finally:
        listener.close()


def ping(agent: ZStackAgent, callback_url: str) -> httpx.Response:
    headers = {**agent.token_header, "taskuuid": uuid.uuid4().hex, "callbackurl": callback_url}
    return agent.http.post("/host/ping", json={}, headers=headers)


def test_zstack_tasks_beyond_the_limit_are_answered_503_until_one_finishes(config, engine, receiver):  # noqa: F811
    with ZStackAgent(replace(config, zstack_task_limit=2), receiver) as agent:
        with silent_receiver() as hanging:
            assert ping(agent, hanging).status_code == 200
            assert ping(agent, hanging).status_code == 200
            refused = ping(agent, hanging)
            assert refused.status_code == 503
            assert "zstack_task_limit" in refused.json()["message"]

        def admitted() -> httpx.Response | None:
            answer = ping(agent, receiver.url)
            return answer if answer.status_code != 503 else None

        answer = eventually(admitted, 20, 0.5, "tasks whose replies failed left the queue")
        assert answer.status_code == 200


def test_stop_timeouts_above_the_ceiling_are_refused_naming_the_field(config, engine, receiver, guest_spec, vm_name):  # noqa: F811
    capped = replace(config, max_stop_timeout=20.0, stop_timeout=10.0)
    name = vm_name("ceiling")
    with ZStackAgent(capped, receiver) as agent:
        native = httpx.Client(base_url=agent.url, headers=agent.token_header, timeout=60)
        created(native, guest_spec(name))
        refused = native.post(f"/v1/vms/{name}/stop", json={"timeout": 21})
        assert refused.status_code == 422
        assert refused.json()["details"][0]["path"] == "body.timeout"
        assert "max_stop_timeout" in refused.json()["details"][0]["message"]
        assert native.post(f"/v1/vms/{name}/stop", json={"timeout": 20}).status_code != 422

        for path in ("/vm/stop", "/vm/reboot"):
            reply = agent.call(path, {"uuid": uuid.uuid4().hex, "type": "grace", "timeout": 21})
            assert reply["success"] is False, path
            assert "timeout: must be at most 20 seconds (max_stop_timeout)" in reply["error"], path


def test_config_keeps_the_stop_timeout_under_its_ceiling(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("max_stop_timeout = 30\nstop_timeout = 60\n")
    with pytest.raises(VmhostError, match=r"stop_timeout .* is above max_stop_timeout"):
        load_config(path)
    path.write_text("max_stop_timeout = 0\n")
    with pytest.raises(VmhostError, match="max_stop_timeout must be positive"):
        load_config(path)
    path.write_text('zstack_task_limit = 8\nmax_stop_timeout = 900\ncallback_networks = ["10.1.0.0/16"]\n')
    loaded = load_config(path)
    assert (loaded.zstack_task_limit, loaded.max_stop_timeout, loaded.callback_networks) == (8, 900.0, ("10.1.0.0/16",))
    assert HostConfig().max_stop_timeout == 600.0


# ---- callbacks ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_callbacks_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every callback the agent (in this process) would POST is recorded instead of sent."""
    sent: list[str] = []

    def record(url: str, **_kwargs: Any) -> httpx.Response:
        sent.append(url)
        raise httpx.ConnectError("no traffic from tests")

    monkeypatch.setattr(operations_module.httpx, "post", record)
    return sent


def test_callback_urls_outside_the_callback_networks_are_refused_before_anything_runs(
    config,
    engine,
    receiver,  # noqa: F811
    guest_spec,
    vm_name,
    no_callbacks_sent,
):
    name = vm_name("ssrf")
    outside = f"http://{OUTSIDE}:8080/zstack/asyncrest/callback"
    with ZStackAgent(config, receiver) as agent:
        native = httpx.Client(base_url=agent.url, headers=agent.token_header, timeout=60)
        refused = native.post("/v1/vms", json=guest_spec(name), params={"callback_url": outside})
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("callback_url: ")
        assert OUTSIDE in refused.json()["message"]
        assert native.get(f"/v1/vms/{name}").status_code == 404, "nothing was created"

        created(native, guest_spec(name))
        assert native.post(f"/v1/vms/{name}/start", params={"callback_url": outside}).status_code == 400
        assert native.get(f"/v1/vms/{name}").json()["state"] == "stopped"

        headers = {**agent.token_header, "taskuuid": uuid.uuid4().hex, "callbackurl": outside}
        zstack = agent.http.post("/host/ping", json={}, headers=headers)
        assert zstack.status_code == 400
        assert "callbackurl header" in zstack.json()["message"]
        time.sleep(0.5)
    assert no_callbacks_sent == []


def test_callback_hosts_are_addresses_in_loopback_and_the_trusted_sources_by_default():
    targets = CallbackTargets.of(HostConfig(zstack_trusted_sources=("192.0.2.0/24",)))
    for allowed in ("http://127.0.0.1:8080/cb", "http://[::1]/cb", "http://[::ffff:192.0.2.7]/cb", "http://localhost/"):
        targets.check(allowed, "callback_url")
    for refused in (f"http://{OUTSIDE}/cb", "http://[::ffff:203.0.113.5]/", "http://10.0.0.1/", "http://169.254.1.1"):
        with pytest.raises(VmhostError, match=r"^callback_url: .* is outside the callback networks"):
            targets.check(refused, "callback_url")
    for unresolved in ("http://callback.example/", "http://[::1/"):
        with pytest.raises(VmhostError, match=r"^callback_url: "):
            targets.check(unresolved, "callback_url")
    configured = CallbackTargets.of(HostConfig(callback_networks=("10.0.0.0/8",)))
    configured.check("http://10.2.3.4/cb", "callback_url")
    with pytest.raises(VmhostError):
        configured.check("http://127.0.0.1/cb", "callback_url")


def test_pending_callbacks_are_bounded(monkeypatch: pytest.MonkeyPatch):
    release = threading.Event()
    delivered: list[str] = []

    def stuck_receiver(url: str, _body: Any, _headers: dict[str, str]) -> bool:
        release.wait(10)
        delivered.append(url)
        return True

    monkeypatch.setattr(operations_module, "deliver_callback", stuck_receiver)
    operations = Operations(callback_limit=2)
    try:
        finished = [
            operations.submit("noop", None, lambda: None, callback_url=f"http://127.0.0.1/{i}") for i in range(5)
        ]
        for operation in finished:
            assert operation.done.wait(5)
        time.sleep(0.2)
        release.set()
        eventually(lambda: len(delivered) >= 2, 5, 0.05, "two callbacks delivered")
        time.sleep(0.2)  # then no third one
        assert sorted(delivered) == ["http://127.0.0.1/0", "http://127.0.0.1/1"], "the rest were dropped, not queued"
    finally:
        release.set()
        operations.shutdown()


def test_bounded_pool_refuses_beyond_its_limit_and_frees_finished_slots():
    pool = BoundedPool(1, 2, "test")
    gate = threading.Event()
    try:
        assert pool.submit(gate.wait, 5) and pool.submit(gate.wait, 5)
        assert not pool.submit(gate.wait, 5)
        gate.set()
        eventually(lambda: pool.submit(lambda: None), 5, 0.05, "a finished slot freed")
    finally:
        gate.set()
        pool.shutdown()


# ---- operations history, disks -----------------------------------------------------------------------------


def test_a_running_operation_survives_history_eviction():
    operations = Operations(history=2)
    gate = threading.Event()
    try:
        running = operations.submit("slow", "vm-a", lambda: gate.wait(10))
        for index in range(5):
            assert operations.submit("quick", f"vm-{index}", lambda: None).done.wait(5)
        assert operations.get(running.id) is running, "polling it must not 404"
        gate.set()
        assert running.done.wait(5)
        for index in range(3):
            assert operations.submit("quick", f"vm-{index}", lambda: None).done.wait(5)
        with pytest.raises(VmhostError):
            operations.get(running.id)  # finished, it is evicted like any other
    finally:
        gate.set()
        operations.shutdown()


def test_hundreds_of_disks_without_targets_are_a_validation_error(http, cli, guest_spec, vm_name, tmp_path: Path):
    name = vm_name("disks")
    spec = guest_spec(name, disks=[{"source": {"type": "new", "size": "1MiB"}} for _ in range(700)])
    refused = http.post("/v1/vms", json=spec)
    assert refused.status_code == 422, refused.text
    assert [d["path"] for d in refused.json()["details"]] == ["disks"]
    assert "at most 256" in refused.json()["details"][0]["message"]
    assert http.get(f"/v1/vms/{name}").status_code == 404

    result = cli("create", "-f", str(write_json(tmp_path / "disks.json", spec)))
    assert result.returncode == 2, result.stderr
    assert "disks: a VM has at most 256 disks and cdroms" in result.stderr
