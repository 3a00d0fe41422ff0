"""Placement through etcd transactions: the scheduler filters (cordon, driver, labels, anti-affinity, room) and
spreads; concurrent applies never give one host more than it holds; drain moves every VM off a host."""

import json
import threading
from pathlib import Path

import pytest

from tests.eventually import eventually
from tests.fakes.engines import spec
from tests.fleet.conftest import FleetBed, fleet_of
from tests.fleet.etcd_server import EtcdServer
from vmhost.errors import Conflict, NotFound
from vmhost.fleet.model import Placement
from vmhost.fleet.scheduler import NoHost
from vmhost.spec import SpecError


def _hosts_of(fleet: FleetBed) -> dict[str, str]:
    return {row["name"]: row["host"] for row in fleet.control.vms()}


def test_vms_without_a_host_are_spread_over_the_fleet(fleet: FleetBed) -> None:
    for index in range(6):
        fleet.control.apply(spec(f"vm{index}"))
    placed = _hosts_of(fleet)
    assert sorted(placed.values()) == ["host1", "host1", "host2", "host2", "host3", "host3"]
    loads = {h["name"]: h["load"]["vms"] for h in fleet.control.hosts()}
    assert loads == {"host1": 2, "host2": 2, "host3": 2}


def test_a_vm_goes_only_to_a_host_with_its_labels(fleet: FleetBed) -> None:
    for index in range(3):
        fleet.control.apply(spec(f"vm{index}"), placement=Placement(labels={"index": "2"}))
    assert set(_hosts_of(fleet).values()) == {"host2"}


def test_anti_affinity_keeps_a_group_on_distinct_hosts_and_refuses_a_fourth(fleet: FleetBed) -> None:
    group = Placement(anti_affinity="db")
    for index in range(3):
        fleet.control.apply(spec(f"db{index}"), placement=group)
    assert sorted(_hosts_of(fleet).values()) == ["host1", "host2", "host3"]
    with pytest.raises(NoHost, match="anti-affinity group db"):
        fleet.control.apply(spec("db3"), placement=group)
    assert "db3" not in _hosts_of(fleet)


def test_a_vm_bigger_than_any_host_is_refused_naming_each_host_and_nothing_is_written(fleet: FleetBed) -> None:
    with pytest.raises(NoHost) as refused:
        fleet.control.apply(spec("huge", memory="64GiB"))
    assert all(f"host{i}: needs 65536 MiB of memory" in refused.value.message for i in (1, 2, 3))
    assert fleet.control.vms() == []
    assert fleet.etcd.get(fleet.keys.placement("huge")) is None


def test_an_invalid_spec_is_refused_at_its_path_before_anything_is_written(fleet: FleetBed) -> None:
    with pytest.raises(SpecError) as refused:
        fleet.control.apply({"name": "bad", "memory": "64MiB", "cpu": {"vcpus": 0}})
    assert any(problem.path == "cpu.vcpus" for problem in refused.value.problems)
    written = [
        e.key for e in fleet.etcd.range(fleet.keys.prefix + "/")[0] if "/desired/" in e.key or "/placement/" in e.key
    ]
    assert written == []


def test_a_host_that_is_not_live_is_refused_by_name(fleet: FleetBed) -> None:
    with pytest.raises(NotFound, match="no live fleet host named host9"):
        fleet.control.apply(spec("web"), host="host9")


def test_concurrent_applies_never_put_more_on_a_host_than_it_holds(tmp_path: Path, etcd_server: EtcdServer) -> None:
    """Each fake host has 8 GiB: 3 hosts hold 12 VMs of 2 GiB. 20 applies race; exactly 12 are placed, at most
    4 per host, and the other 8 are refused."""
    with fleet_of(tmp_path, etcd_server.endpoint, started=True) as fleet:
        placed: list[str] = []
        refused: list[str] = []
        lock = threading.Lock()

        def apply(index: int) -> None:
            try:
                applied = fleet.control.apply(spec(f"vm{index}", memory="2GiB"))
                with lock:
                    placed.append(applied.host)
            except NoHost:
                with lock:
                    refused.append(f"vm{index}")

        threads = [threading.Thread(target=apply, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert (len(placed), len(refused)) == (12, 8)
        assert {host: placed.count(host) for host in set(placed)} == {"host1": 4, "host2": 4, "host3": 4}
        loads = {h["name"]: h["load"]["memory"] for h in fleet.control.hosts()}
        assert loads == {"host1": 8 << 30, "host2": 8 << 30, "host3": 8 << 30}


def test_a_vm_name_is_unique_across_the_fleet_and_keeps_its_host(fleet: FleetBed) -> None:
    fleet.control.apply(spec("web"), host="host1")
    with pytest.raises(Conflict, match="web is desired on host1"):
        fleet.control.apply(spec("web", memory="128MiB"), host="host2")


def test_drain_moves_every_vm_live_to_other_hosts_and_cordons_the_host(fleet: FleetBed) -> None:
    for index in range(4):
        fleet.control.apply(spec(f"vm{index}"), host="host1")
    eventually(lambda: all(fleet.settled(f"vm{i}") for i in range(4)), 10, 0.05, "all running on host1")
    result = fleet.control.drain("host1", wait=30)
    assert sorted(move["vm"] for move in result["moves"]) == ["vm0", "vm1", "vm2", "vm3"]
    assert result["unplaced"] == [] and result["left"] == []
    eventually(lambda: all(fleet.settled(f"vm{i}") for i in range(4)), 10, 0.05, "all running elsewhere")
    for index in range(4):
        where = fleet.where(f"vm{index}")
        assert len(where) == 1 and where != ["host1"]
    hosts = {h["name"]: h for h in fleet.control.hosts()}
    assert (hosts["host1"]["schedulable"], hosts["host1"]["cordoned"], hosts["host1"]["load"]["vms"]) == (
        False,
        True,
        0,
    )
    assert hosts["host2"]["load"]["vms"] + hosts["host3"]["load"]["vms"] == 4
    with pytest.raises(NoHost, match="host1: cordoned"):
        fleet.control.apply(spec("new"), host=None, placement=Placement(labels={"index": "1"}))
    fleet.control.uncordon("host1")
    assert fleet.control.apply(spec("new"), placement=Placement(labels={"index": "1"})).host == "host1"


def test_a_secret_in_a_spec_reaches_its_host_but_the_fleet_never_shows_it(fleet: FleetBed) -> None:
    fleet.control.apply(spec("desk", graphics={"type": "vnc", "password": "s3cr3t!x"}), host="host2")
    eventually(lambda: fleet.settled("desk"), 10, 0.05, "desk running")
    assert "s3cr3t!x" not in json.dumps(fleet.control.vm("desk")) + json.dumps(fleet.control.vms())
    assert fleet.control.vm("desk")["spec"]["graphics"]["password"] == "********"
    stored = fleet.host("host2").engine.record("desk").spec
    assert stored["graphics"]["password"] == "s3cr3t!x"  # the host has the real one to render
