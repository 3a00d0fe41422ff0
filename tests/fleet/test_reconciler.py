"""Each host's reconciler against a real etcd: desired VMs are made so through the engine, drift is undone,
restarts and outages change nothing that is right, and status tells the fleet what each host sees."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.eventually import eventually
from tests.fakes.engines import spec
from tests.fleet.conftest import FleetBed, fleet_of
from tests.fleet.etcd_server import EtcdServer
from vmhost.engine.events import VmEvent
from vmhost.fleet.etcd import Change, Compacted, Entry, Etcd, EtcdUnavailable


def test_an_applied_vm_is_created_and_started_on_its_host_and_its_status_says_so(fleet: FleetBed) -> None:
    applied = fleet.control.apply(spec("web"), host="host2")
    assert (applied.host, applied.generation, applied.changed) == ("host2", 1, True)
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running at generation 1")
    assert fleet.where("web") == ["host2"]
    row = fleet.control.vm("web")
    assert (row["host"], row["host_alive"], row["desired_state"], row["error"]) == ("host2", True, "running", "")


def test_the_same_spec_applied_again_is_nothing_to_change(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host1")
    again = fleet.control.apply(spec("web"))
    assert (again.changed, again.generation, again.view()["message"]) == (False, 1, "nothing to change")


def test_a_vm_stopped_outside_the_fleet_is_started_again_with_an_event(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host1")
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")
    host = fleet.host("host1")
    seen: list[VmEvent] = []
    host.engine.events.subscribe(seen.append)
    host.host.hypervisor.destroy_outside("web")
    eventually(lambda: any(e.type == "fleet" and "started again" in e.reason for e in seen), 10, 0.05, "drift event")
    eventually(lambda: host.state("web") == "running", 10, 0.05, "web running again")


def test_a_new_generation_is_applied_once_and_reported_as_observed(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web", cpu={"vcpus": 1, "max_vcpus": 4}), host="host1")
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")
    changed = fleet.control.apply(spec("web", cpu={"vcpus": 2, "max_vcpus": 4}))
    assert (changed.changed, changed.generation) == (True, 2)
    eventually(lambda: fleet.settled("web"), 10, 0.05, "generation 2 observed")
    record = fleet.host("host1").engine.record("web")
    assert record.spec["cpu"]["vcpus"] == 2
    assert fleet.host("host1").engine.store.get_vm("web").state == "running"


def test_a_vm_deleted_from_the_fleet_leaves_its_host(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host3")
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")
    assert fleet.control.delete("web") == {"vm": "web", "host": "host3"}
    eventually(lambda: fleet.host("host3").state("web") is None, 10, 0.05, "web deleted on host3")
    assert fleet.control.vms() == []
    assert fleet.etcd.get(fleet.keys.status("host3", "web")) is None


def test_a_desired_stopped_vm_is_created_but_not_started(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host1", state="stopped")
    eventually(lambda: fleet.settled("web", "stopped"), 10, 0.05, "web stopped")
    fleet.control.apply(spec("web"), state="running")
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")


def test_an_agent_restart_resumes_without_recreating_or_restarting_anything(fleet: FleetBed) -> None:
    for index in range(4):
        fleet.control.apply(spec(f"vm{index}"), host="host1")
    eventually(lambda: all(fleet.settled(f"vm{i}") for i in range(4)), 10, 0.05, "all running")
    host = fleet.host("host1")
    before = {name: (record.uuid, record.started_at) for name, record in _records(host)}
    host.restart()
    reconciler = host.reconciler
    assert reconciler is not None
    eventually(lambda: reconciler.reconciled >= 4, 10, 0.05, "every VM looked at after the restart")
    assert {name: (record.uuid, record.started_at) for name, record in _records(host)} == before


def test_while_etcd_is_down_vms_run_on_and_nothing_is_deleted_then_changes_catch_up(
    tmp_path: Path,
) -> None:
    server = EtcdServer(tmp_path / "own-etcd")
    server.start()
    try:
        with fleet_of(tmp_path / "hosts", server.endpoint, count=1) as fleet:
            fleet.control.apply(spec("web"), host="host1")
            eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")
            server.kill()
            host = fleet.host("host1")
            host.restart()  # an agent that starts while etcd is away has no desired list: it must delete nothing
            time.sleep(1.5)
            assert host.state("web") == "running"
            assert host.reconciler is not None and host.reconciler.manages("web")
            server.start()
            fleet.control.apply(spec("web"), state="stopped")
            eventually(lambda: fleet.settled("web", "stopped"), 15, 0.1, "the change made after etcd came back")
    finally:
        server.stop()


def test_a_host_that_stops_renewing_its_lease_is_down_within_ttl_plus_one_second(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host2")
    eventually(lambda: fleet.settled("web"), 10, 0.05, "web running")
    fleet.host("host2").stop()
    stopped = time.monotonic()
    eventually(lambda: "host2" not in fleet.registered(), 2 + 1.5, 0.05, "host2's lease expired")
    assert time.monotonic() - stopped <= 2 + 1.0 + 0.5  # TTL 2 s; etcd checks expiry every 500 ms
    row = fleet.control.vm("web")
    assert (row["state"], row["host"], row["host_alive"]) == ("unknown", "host2", False)
    hosts = {h["name"]: h for h in fleet.control.hosts()}
    assert (hosts["host2"]["alive"], hosts["host2"]["schedulable"]) == (False, False)
    assert fleet.where("web") == ["host2"]  # not restarted elsewhere: the host may still run it


class CompactingEtcd(Etcd):
    """etcd compacts its history right after the agent's first list of its desired keys, before its watch."""

    compacted = False

    def range(self, prefix: str) -> tuple[list[Entry], int]:
        entries, revision = super().range(prefix)
        if not self.compacted and "/desired/" in prefix:
            self.compacted = True
            self.compact(self.put(prefix.rsplit("/desired/", 1)[0] + "/filler", {}))
        return entries, revision


def test_a_compaction_between_list_and_watch_makes_the_agent_list_again(fleet: FleetBed) -> None:
    host = fleet.host("host1")
    host.stop()
    fleet.control.apply(spec("early"), host="host1")
    etcd = CompactingEtcd(host.config)
    host.start(etcd)
    eventually(lambda: fleet.settled("early"), 10, 0.05, "early reconciled")
    assert etcd.compacted
    fleet.control.apply(spec("late"), host="host1")
    eventually(lambda: fleet.settled("late"), 10, 0.05, "late reconciled after the relist")


def test_a_watch_from_a_compacted_revision_says_so(fleet: FleetBed) -> None:
    old = fleet.etcd.revision()
    fleet.etcd.put(fleet.keys.prefix + "/x", {})
    fleet.etcd.compact(fleet.etcd.revision())
    try:
        next(iter(fleet.etcd.watch(fleet.keys.prefix + "/", old, threading.Event())))
    except Compacted as exc:
        assert exc.revision > old
    else:
        raise AssertionError("no Compacted")


def _records(host: object) -> list[tuple[str, object]]:
    engine = host.engine  # type: ignore[attr-defined]
    return sorted((r.name, r) for r in engine.store.list_vms())


class SeverableEtcd(Etcd):
    """This agent's link to etcd, which the test can cut: calls fail as if unreachable, and an open watch stream
    just goes quiet, as in a network partition."""

    cut = False

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.cut:
            raise EtcdUnavailable("etcd is unreachable (cut by the test)")
        return super()._post(path, body)


def _cut_off_host1(fleet: FleetBed) -> SeverableEtcd:
    host = fleet.host("host1")
    host.stop()
    severable = SeverableEtcd(host.config)
    host.start(severable)
    return severable


def test_with_fence_lease_a_cut_off_host_stops_its_vm_before_another_host_starts_it(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    with fleet_of(tmp_path, etcd_server.endpoint, fence="lease", fence_after=2.0) as fleet:
        severable = _cut_off_host1(fleet)
        fleet.control.apply(spec("web"), host="host1")
        eventually(lambda: fleet.settled("web"), 10, 0.05, "web running on host1")
        overlaps: list[list[str]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                if len(where := fleet.where("web")) > 1:
                    overlaps.append(where)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            severable.cut = True
            eventually(lambda: fleet.where("web") not in ([], ["host1"]), 20, 0.05, "web taken over")
            assert fleet.host("host1").state("web") == "stopped"  # fenced by its own agent
            new_host = fleet.control.vm("web")["host"]
            assert new_host in ("host2", "host3")
            severable.cut = False
            eventually(lambda: fleet.host("host1").state("web") is None, 20, 0.1, "host1 dropped its stale copy")
            assert fleet.where("web") == [new_host]
        finally:
            sampling.set()
            sampler.join(5)
        assert overlaps == [], "web ran on two hosts at once"


def test_with_fence_lease_a_vm_with_a_disk_of_its_own_host_is_never_taken_over(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    with fleet_of(tmp_path, etcd_server.endpoint, fence="lease", fence_after=1.0) as fleet:
        severable = _cut_off_host1(fleet)
        fleet.control.apply(spec("db", disks=[{"source": {"type": "new", "size": "1MiB"}}]), host="host1")
        eventually(lambda: fleet.settled("db"), 10, 0.05, "db running on host1")
        severable.cut = True
        eventually(lambda: "host1" not in fleet.registered(), 10, 0.05, "host1's lease gone")
        time.sleep(1.0 + 2.0 + 2.0)  # fence_after + FENCE_MARGIN + slack: when a takeover would have happened
        assert fleet.control.vm("db")["host"] == "host1"
        assert fleet.where("db") == []  # fenced on host1, started nowhere else: its disk is there
        severable.cut = False
        eventually(lambda: fleet.settled("db"), 20, 0.1, "db running on host1 again once it is back")


class FreezableEtcd(SeverableEtcd):
    """This agent frozen (as by SIGSTOP): while `frozen` is set its calls and its watch stream hang, then go on."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.thawed = threading.Event()
        self.thawed.set()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.thawed.wait()
        return super()._post(path, body)

    def watch(self, prefix: str, start_revision: int, stop: threading.Event) -> Iterator[Change]:
        for change in super().watch(prefix, start_revision, stop):
            self.thawed.wait()
            yield change


def test_with_fence_lease_an_agent_frozen_past_fence_after_fences_before_it_renews_its_lease(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    """Frozen, it could not fence; woken, it fences first (its VMs may already run elsewhere), then renews and
    takes back what is still its own: here a VM with a disk of this host, which no other host may take."""
    with fleet_of(tmp_path, etcd_server.endpoint, fence="lease", fence_after=1.0) as fleet:
        host = fleet.host("host1")
        host.stop()
        frozen = FreezableEtcd(host.config)
        host.start(frozen)
        fleet.control.apply(spec("db", disks=[{"source": {"type": "new", "size": "1MiB"}}]), host="host1")
        eventually(lambda: fleet.settled("db"), 10, 0.05, "db running on host1")
        seen: list[VmEvent] = []
        host.engine.events.subscribe(seen.append)
        frozen.thawed.clear()
        eventually(lambda: "host1" not in fleet.registered(), 10, 0.05, "host1's lease gone")
        time.sleep(1.0)  # past fence_after
        assert host.state("db") == "running"  # frozen: nothing could stop it
        frozen.thawed.set()
        eventually(lambda: any(e.type == "fleet" and "fenced" in e.reason for e in seen), 10, 0.05, "host1 fenced")
        eventually(lambda: fleet.where("db") == ["host1"], 20, 0.1, "db running on host1 again once it renewed")
        eventually(lambda: fleet.settled("db"), 20, 0.1, "its status running again")
