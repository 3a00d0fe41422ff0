"""The restore at agent start and the host shutdown, on the fake hypervisor: groups in startup.order (unordered
last), at most restore_concurrency starts at once, a group's delay and guest-ready wait before the next group,
one VM's failure never stopping the rest; the shutdown in reverse order, a group at once, VMs kept to be restored."""

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import agent_http, spec
from vmhost.cli.host import restore_lines, shutdown_lines
from vmhost.config import HostConfig, load_config
from vmhost.drivers.base import DomainState, GuestAddresses
from vmhost.engine import Engine
from vmhost.engine.events import VmEvent
from vmhost.engine.hooks import Hook, Phase
from vmhost.engine.host_shutdown import stopped_for_host
from vmhost.errors import HypervisorError, VmhostError
from vmhost.spec import SpecError, parse_spec
from vmhost.store.sqlite import Store

START_SECONDS = 0.05


class TimedDriver(FakeDriver):
    """Each start takes START_SECONDS; records when each VM's start began and ended, and the most at once."""

    def __init__(self, hypervisor: FakeHypervisor, ready: set[str] | None = None) -> None:
        super().__init__(hypervisor)
        self.began: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.stopped: dict[str, float] = {}
        self.ready = ready if ready is not None else set()
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0

    def create_paused(self, name: str) -> None:
        with self._lock:
            self.began[name] = time.monotonic()
            self._now += 1
            self.most = max(self.most, self._now)
        try:
            time.sleep(START_SECONDS)
            super().create_paused(name)
        finally:
            with self._lock:
                self._now -= 1
                self.ended[name] = time.monotonic()

    def request_shutdown(self, name: str) -> None:
        self.stopped[name] = time.monotonic()
        time.sleep(START_SECONDS)
        super().request_shutdown(name)

    def guest_addresses(self, name: str) -> dict[str, GuestAddresses]:
        return {"52:54:00:00:00:01": GuestAddresses(("10.0.0.2/24",), "agent")} if name in self.ready else {}


def _engine(hypervisor: FakeHypervisor, data_dir: Path, driver: FakeDriver, **config: Any) -> Engine:
    settings = HostConfig(data_dir=data_dir, stop_timeout=0.5, allowed_paths=(data_dir,), restore_concurrency=4)
    engine = Engine(replace(settings, **config), driver, store=Store(settings.db_path, synchronous="NORMAL"))
    hypervisor.sink = engine.on_domain_event
    return engine


def _events(engine: Engine) -> list[VmEvent]:
    seen: list[VmEvent] = []
    engine.events.subscribe(seen.append)
    return seen


@pytest.fixture
def hypervisor() -> FakeHypervisor:
    return FakeHypervisor()


def host_rebooted(hypervisor: FakeHypervisor, data_dir: Path, vms: dict[str, dict[str, Any]], **config: Any) -> Engine:
    """VMs created and started by one agent, then every domain off without an event (the host went down): the
    next agent's engine, not yet recovered, on a TimedDriver."""
    first = _engine(hypervisor, data_dir, FakeDriver(hypervisor))
    for name, fields in vms.items():
        first.create(spec(name, **fields), start=True)
    hypervisor.sink = None
    first.store.close()
    for domain in hypervisor.domains.values():
        domain.state, domain.pid = DomainState.SHUTOFF, None
    return _engine(hypervisor, data_dir, TimedDriver(hypervisor), **config)


def test_groups_start_in_order_unordered_last(hypervisor, tmp_path):
    vms = {
        "db": {"startup": {"order": 1}},
        "app": {"startup": {"order": 2}},
        "misc": {},
        "db2": {"startup": {"order": 1}},
    }
    engine = host_rebooted(hypervisor, tmp_path, vms)
    driver = engine.driver.drivers["fake"]
    engine.recover()
    began, ended = driver.began, driver.ended
    assert max(ended["db"], ended["db2"]) <= began["app"]
    assert ended["app"] <= began["misc"]
    assert abs(began["db"] - began["db2"]) < START_SECONDS  # one group starts together
    assert hypervisor.running() == set(vms)
    view = engine.restore.view()
    assert view["state"] == "done"
    assert (view["total"], view["running"], view["failed"]) == (4, 4, 0)
    assert [group["order"] for group in view["groups"]] == [1, 2, None]


def test_at_most_restore_concurrency_start_at_once(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {f"vm{i}": {} for i in range(10)}, restore_concurrency=3)
    driver = engine.driver.drivers["fake"]
    began = time.monotonic()
    engine.recover()
    assert driver.most == 3
    assert time.monotonic() - began < 10 * START_SECONDS  # in parallel: 4 rounds of 3, not 10 one by one
    assert len(hypervisor.running()) == 10


def test_a_group_delay_holds_the_next_group(hypervisor, tmp_path):
    vms = {"first": {"startup": {"order": 0, "delay": 0.3}}, "second": {"startup": {"order": 1}}}
    engine = host_rebooted(hypervisor, tmp_path, vms)
    driver = engine.driver.drivers["fake"]
    engine.recover()
    assert driver.began["second"] - driver.ended["first"] >= 0.3


def test_guest_ready_waits_for_an_address_and_gives_up_at_its_timeout(hypervisor, tmp_path, monkeypatch):
    monkeypatch.setattr("vmhost.engine.restore.READY_POLL", 0.05)
    vms = {
        "db": {"startup": {"order": 0, "wait_for": "guest-ready", "wait_timeout": 5}},
        "mute": {"startup": {"order": 1, "wait_for": "guest-ready", "wait_timeout": 1}},
        "app": {"startup": {"order": 2}},
    }
    engine = host_rebooted(hypervisor, tmp_path, vms)
    driver = engine.driver.drivers["fake"]
    events = _events(engine)
    threading.Timer(0.4, lambda: driver.ready.add("db")).start()
    engine.recover()
    assert driver.began["mute"] - driver.ended["db"] >= 0.3  # held until db had an address
    assert driver.began["app"] - driver.ended["mute"] >= 1.0  # mute never got one: its wait_timeout
    statuses = engine.restore.view()["groups"]
    assert [group["vms"] for group in statuses] == [{"db": "ready"}, {"mute": "wait-timed-out"}, {"app": "running"}]
    assert {(e.vm, e.type) for e in events} >= {("db", "guest-ready"), ("mute", "restore-wait-timeout")}
    assert hypervisor.running() == set(vms)  # a timed-out wait leaves the VM running


def test_one_failed_start_does_not_stop_the_rest(hypervisor, tmp_path):
    vms = {"bad": {"startup": {"order": 0}}, "good": {"startup": {"order": 0}}, "later": {"startup": {"order": 1}}}
    engine = host_rebooted(hypervisor, tmp_path, vms)
    engine.driver.drivers["fake"].fail_next("resume", HypervisorError("QEMU refused to resume"))
    events = _events(engine)
    engine.recover()
    assert hypervisor.running() == {"good", "later"} or hypervisor.running() == {"bad", "later"}
    view = engine.restore.view()
    assert (view["running"], view["failed"]) == (2, 1)
    [failed] = view["errors"]
    assert "QEMU refused to resume" in view["errors"][failed]
    assert [e.type for e in events if e.vm == failed][-1] == "restore-failed"
    assert [e.reason for e in events if e.type == "restore-done"] == ["2 of 3 up, 1 failed"]
    lines = restore_lines(view)
    assert lines[0] == "restore done: 3 VMs (2 running, 1 failed)"
    assert lines[2] == "group 1: later running"
    assert lines[3].startswith(f"  {failed}: ")


def test_restore_started_and_done_are_host_events(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {"a": {"startup": {"order": 3}}, "b": {}})
    events = _events(engine)
    engine.recover()
    host = [(e.type, e.reason) for e in events if e.vm == ""]
    assert host == [
        ("restore-started", "2 VMs in 2 groups"),
        ("restore-group", "group 3: 1 running"),
        ("restore-group", "group unordered: 1 running"),
        ("restore-done", "2 of 2 up, 0 failed"),
    ]


def test_an_operator_stop_during_the_restore_is_respected(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {"early": {"startup": {"order": 0, "delay": 0.5}}, "late": {}})
    engine.recover(background=True)
    time.sleep(0.2)  # early is up, the delay runs
    engine.stop("late")  # stopped before its group began
    engine.restore.cancel()  # waits for the restore thread
    assert engine.restore.view()["groups"][1]["vms"] == {"late": "skipped"}
    assert hypervisor.running() == {"early"}


def test_the_background_restore_lets_recovery_return_first(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {f"vm{i}": {} for i in range(8)}, restore_concurrency=1)
    began = time.monotonic()
    engine.recover(background=True)
    assert time.monotonic() - began < 4 * START_SECONDS
    assert engine.restore.view()["state"] == "running"
    eventually(lambda: engine.driver.drivers["fake"].began, 5, 0.01, "the first start")
    engine.restore.cancel()
    assert engine.restore.view()["state"] == "cancelled"
    assert 0 < len(hypervisor.running()) < 8


def test_host_shutdown_stops_in_reverse_order_and_keeps_them_to_restore(hypervisor, tmp_path):
    engine = _engine(hypervisor, tmp_path, TimedDriver(hypervisor))
    for name, order in (("db", 1), ("db2", 1), ("app", 2), ("misc", None)):
        engine.create(spec(name, startup={"order": order}), start=True)
    engine.create(spec("off"))
    result = engine.shutdown_host(timeout=1)
    stopped = engine.driver.drivers["fake"].stopped
    assert stopped["misc"] < stopped["app"] < min(stopped["db"], stopped["db2"])
    assert abs(stopped["db"] - stopped["db2"]) < START_SECONDS  # a group stops at once
    assert [group["order"] for group in result["groups"]] == [None, 2, 1]
    assert (result["stopped"], result["failed"]) == (4, [])
    assert result["groups"][2]["vms"] == {"db": "acpi", "db2": "acpi"}
    assert hypervisor.running() == set()
    uuids = {r.uuid for r in engine.store.list_vms() if r.name != "off"}
    assert set(stopped_for_host(engine.core)) == uuids  # what the next agent start restores
    lines = shutdown_lines(result)
    assert lines[0] == "group unordered: misc acpi"
    assert lines[-1].startswith("stopped 4 of 4 VMs in ")


def test_host_shutdown_then_boot_restores_the_same_vms(hypervisor, tmp_path):
    engine = _engine(hypervisor, tmp_path, FakeDriver(hypervisor))
    for name in ("a", "b"):
        engine.create(spec(name), start=True)
    engine.create(spec("c"))
    engine.shutdown_host()
    engine.store.close()
    booted = _engine(hypervisor, tmp_path, FakeDriver(hypervisor))
    booted.recover()  # the host came back, the agent starts
    assert hypervisor.running() == {"a", "b"}
    assert stopped_for_host(booted.core) == []  # taken in once: an operator's later stop is respected


def test_one_vm_that_will_not_stop_is_reported_and_the_rest_go_on(hypervisor, tmp_path):
    engine = _engine(hypervisor, tmp_path, FakeDriver(hypervisor))
    for name, order in (("first", 2), ("second", 1)):
        engine.create(spec(name, startup={"order": order}), start=True)
    driver = engine.driver.drivers["fake"]
    for _ in range(3):
        driver.fail_next("destroy", HypervisorError("destroy refused"))
    driver.acpi_works = False
    driver.fail_next("kill_process", HypervisorError("no process"))
    result = engine.shutdown_host(timeout=0.1)
    assert result["failed"] == ["first"]
    assert result["groups"][0]["vms"]["first"].startswith("failed: ")
    assert result["groups"][1]["vms"] == {"second": "forced"}
    assert hypervisor.running() == {"first"}


@pytest.mark.parametrize(
    ("startup", "path"),
    [
        ({"order": -1}, "startup.order"),
        ({"delay": -1}, "startup.delay"),
        ({"wait_for": "ping"}, "startup.wait_for"),
        ({"wait_timeout": 0}, "startup.wait_timeout"),
        ({"priority": 1}, "startup.priority"),
    ],
)
def test_startup_fields_are_checked(startup, path):
    with pytest.raises(SpecError) as refused:
        parse_spec(spec("web", startup=startup))
    assert [problem.path for problem in refused.value.problems] == [path]


def test_startup_defaults_run_after_the_ordered_groups():
    startup = parse_spec(spec("web")).startup
    assert (startup.order, startup.delay, startup.wait_for) == (None, 0.0, "running")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("restore_concurrency = 0", "restore_concurrency must be positive"),
        ('restore_concurrency = "8"', "restore_concurrency must be a positive int"),
        ('shutdown_on_sigterm = "yes"', "shutdown_on_sigterm must be true or false"),
    ],
)
def test_config_keys_are_checked(tmp_path, text, message):
    (tmp_path / "config.toml").write_text(text + "\n")
    with pytest.raises(VmhostError, match=message):
        load_config(tmp_path / "config.toml")


def test_restore_concurrency_defaults_to_the_operation_workers_16_per_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert HostConfig().restore_concurrency == HostConfig().operation_workers == 48
    assert HostConfig().shutdown_on_sigterm is False


def test_the_agent_answers_while_it_restores_and_shows_the_progress(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {f"vm{i}": {} for i in range(6)}, restore_concurrency=1)
    with agent_http(engine) as http:
        assert http.get("/healthz").status_code == 200
        first = http.get("/v1/host/restore").json()
        assert first["state"] == "running" and first["total"] == 6
        done = eventually(lambda: (view := http.get("/v1/host/restore").json())["state"] == "done" and view, 10)
        assert done["running"] == 6 and done["groups"][0]["first_running_at"] >= done["began_at"]


def test_host_shutdown_over_http_is_an_operation_with_the_outcome(hypervisor, tmp_path):
    engine = _engine(hypervisor, tmp_path, FakeDriver(hypervisor))
    engine.create(spec("web"), start=True)
    with agent_http(engine) as http:
        too_long = http.post("/v1/host/shutdown", json={"timeout": 601})
        assert too_long.status_code == 422
        assert too_long.json()["details"][0]["path"] == "body.timeout"
        done = http.post("/v1/host/shutdown", json={"timeout": 5}, params={"wait": "true"})
        assert done.status_code == 200
        assert done.json()["kind"] == "host-shutdown"
        assert done.json()["result"]["groups"] == [{"order": None, "vms": {"web": "acpi"}}]
    assert hypervisor.running() == set()


@pytest.mark.parametrize("opted_in", [True, False])
def test_the_agent_stops_its_vms_at_exit_only_when_opted_in(hypervisor, tmp_path, opted_in):
    engine = _engine(hypervisor, tmp_path, FakeDriver(hypervisor), shutdown_on_sigterm=opted_in)
    engine.create(spec("web"), start=True)
    with agent_http(engine):
        pass  # the agent's lifespan ends as it does on SIGTERM
    assert hypervisor.running() == (set() if opted_in else {"web"})


def test_a_running_vms_startup_changes_at_once_without_a_restart(hypervisor, tmp_path):
    engine = _engine(hypervisor, tmp_path, FakeDriver(hypervisor))
    engine.create(spec("web"), start=True)
    pid = hypervisor.domains["web"].pid
    plan = engine.update("web", {"startup": {"order": 3, "wait_for": "guest-ready"}}).view()
    assert {change["path"]: change["how"] for change in plan["changes"]} == {
        "startup.order": "live",
        "startup.wait_for": "live",
    }
    assert engine.spec_of(engine.record("web")).startup.order == 3
    assert hypervisor.domains["web"].pid == pid


def test_a_failed_after_start_hook_leaves_the_vm_running_and_noted(hypervisor, tmp_path):
    engine = host_rebooted(hypervisor, tmp_path, {"web": {}})

    def refuse(_context: object) -> None:
        raise RuntimeError("dns update failed")

    engine.hooks.append(Hook("dns", Phase.AFTER_START, refuse))
    engine.recover()
    view = engine.restore.view()
    assert (view["running"], view["failed"]) == (1, 0)
    assert "dns update failed" in view["errors"]["web"]
    assert hypervisor.running() == {"web"}
