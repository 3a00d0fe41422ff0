"""The fleet on three real test hosts (scripts/test-hosts.sh up 3 --fleet: libvirtd, QEMU and a vmhost agent
each, one real etcd): 20 tiny guests applied with placement, then agents killed and restarted, etcd restarted,
history compacted while an agent is down, an agent paused past its lease, a host drained. After every step the
invariants hold: each VM runs on exactly one host, and no desired VM is forgotten."""

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tests.eventually import eventually
from tests.multihost.testbed import TestBed, TestHost

pytestmark = pytest.mark.integration

GUEST = Path("/var/lib/vmhost/images/tiny-guest")
LEASE_TTL = 4
BED = TestBed(
    env={
        "VMHOST_TESTBED_ROOT": "/srv/vmhost-fleettest",
        "VMHOST_TESTBED_PREFIX": "vmflt",
        "VMHOST_TESTBED_SUBNET": "10.235.0",
        "VMHOST_TESTBED_LEASE_TTL": str(LEASE_TTL),
    }
)
COUNT = 20


def guest(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "memory": "128MiB",
        "boot": {
            "kernel": {
                "kernel": str(GUEST / "vmlinuz"),
                "initrd": str(GUEST / "initrd.img"),
                "cmdline": "console=ttyS0 quiet no_timer_check",
            }
        },
        "guest_agent": False,
        **fields,
    }


class Fleet:
    """The bed's hosts and the fleet API as any of them serves it."""

    def __init__(self, hosts: list[TestHost]):
        self.hosts = hosts
        self.names: set[str] = set()
        """Every VM the tests applied and did not delete: none may be forgotten."""

    def host(self, name: str) -> TestHost:
        return next(h for h in self.hosts if h.name == name)

    def api(self, method: str, path: str, via: TestHost | None = None, **kwargs: Any) -> Any:
        with (via or self.hosts[0]).http(timeout=120) as client:
            response = client.request(method, f"/v1/fleet{path}", **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def rows(self, via: TestHost | None = None) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in self.api("GET", "/vms", via)}

    def alive(self) -> dict[str, bool]:
        return {row["name"]: row["alive"] for row in self.api("GET", "/hosts")}

    def active(self) -> dict[str, list[str]]:
        """VM name -> the hosts whose libvirtd runs a domain of that name."""
        where: dict[str, list[str]] = {}
        for host in self.hosts:
            conn = host.libvirt()
            try:
                for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    where.setdefault(domain.name(), []).append(host.name)
            finally:
                conn.close()
        return where

    def domain_ids(self, host: TestHost) -> dict[str, int]:
        conn = host.libvirt()
        try:
            return {d.name(): d.ID() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
        finally:
            conn.close()

    def settled(self) -> bool:
        rows = self.rows()
        return set(rows) == self.names and all(
            row["state"] == ("running" if row["desired_state"] == "running" else "stopped")
            and row["observed_generation"] == row["generation"]
            and not row["migrate_to"]
            for row in rows.values()
        )

    def check_invariants(self) -> None:
        """Each desired VM is in the fleet (none forgotten) and runs on at most one host: exactly the one the
        fleet names when it is desired running."""
        rows = self.rows()
        assert set(rows) == self.names, "the fleet lost or invented a VM"
        active = self.active()
        for name, row in rows.items():
            hosts = active.get(name, [])
            assert len(hosts) <= 1, f"{name} runs on {hosts}"
            if row["desired_state"] == "running" and row["state"] == "running":
                assert hosts == [row["host"]], f"{name}: the fleet says {row['host']}, libvirt says {hosts}"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    BED.run("down", check=False)
    hosts = BED.up(3, fleet=True)
    made = Fleet(hosts)
    try:
        yield made
    finally:
        for host in hosts:
            with contextlib.suppress(Exception):
                host.resume_agent()
        BED.down()


@pytest.fixture(scope="module")
def twenty(fleet: Fleet) -> Fleet:
    """20 guests applied through one agent, 4 at a time, the scheduler placing each."""

    def apply(index: int) -> None:
        fleet.api("POST", "/vms", json={"spec": guest(f"fleet-vm{index:02}")})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(apply, range(COUNT)))
    fleet.names |= {f"fleet-vm{i:02}" for i in range(COUNT)}
    eventually(fleet.settled, 240, 1.0, "20 VMs running where the fleet placed them")
    return fleet


def test_twenty_vms_are_spread_over_three_hosts_and_each_runs_on_exactly_one(twenty: Fleet) -> None:
    placed = [row["host"] for row in twenty.rows().values()]
    assert {host: placed.count(host) for host in set(placed)} in (
        {"host1": 7, "host2": 7, "host3": 6},
        {"host1": 7, "host2": 6, "host3": 7},
        {"host1": 6, "host2": 7, "host3": 7},
    )
    twenty.check_invariants()
    loads = {row["name"]: row["load"]["vms"] for row in twenty.api("GET", "/hosts")}
    assert sum(loads.values()) == COUNT


def test_the_cli_applies_through_any_agent_and_lists_the_fleet(twenty: Fleet, tmp_path: Path) -> None:
    via = twenty.host("host3")
    spec_file = tmp_path / "cli.json"
    spec_file.write_text(json.dumps(guest("fleet-cli")))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return via.vmhost("--agent", via.agent_url, "--token", via.agent_token, "fleet", *args, timeout=120)

    applied = cli("apply", "-f", str(spec_file), "--host", "host2")
    assert applied.returncode == 0, applied.stderr
    twenty.names.add("fleet-cli")
    eventually(twenty.settled, 60, 0.5, "fleet-cli running")
    again = cli("apply", "-f", str(spec_file))
    assert again.returncode == 0 and "nothing to change" in again.stdout
    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {row["name"]: row["host"] for row in json.loads(listed.stdout)}["fleet-cli"] == "host2"
    twenty.check_invariants()


def test_an_agent_killed_and_started_again_recreates_and_restarts_nothing(twenty: Fleet) -> None:
    host = twenty.host("host1")
    before = twenty.domain_ids(host)
    host.kill_agent()
    host.start_agent()
    time.sleep(3)  # its reconciler lists and looks at every VM at once
    eventually(twenty.settled, 60, 0.5, "the fleet settled after the restart")
    assert twenty.domain_ids(host) == before
    twenty.check_invariants()


def test_while_etcd_is_down_vms_run_on_and_a_change_after_its_restart_is_made(twenty: Fleet) -> None:
    before = twenty.active()
    BED.kill_etcd()
    try:
        time.sleep(LEASE_TTL + 1)
        assert twenty.active() == before
        host = twenty.hosts[0]
        with host.http() as client:
            assert client.get("/v1/vms").status_code == 200  # the local API serves on
            managed = next(name for name, hosts in before.items() if hosts == [host.name])
            refused = client.post(f"/v1/vms/{managed}/stop")
            assert refused.status_code == 409 and "managed by the fleet" in refused.json()["message"]
            assert client.get("/v1/fleet/vms").status_code == 503
    finally:
        BED.start_etcd()
    eventually(lambda: all(twenty.alive().values()), 30, 0.5, "every host registered again")
    twenty.api("POST", "/vms", json={"spec": guest("fleet-vm00"), "state": "stopped"})
    eventually(twenty.settled, 60, 0.5, "fleet-vm00 stopped")
    assert "fleet-vm00" not in twenty.active()
    twenty.api("POST", "/vms", json={"spec": guest("fleet-vm00")})
    eventually(twenty.settled, 60, 0.5, "fleet-vm00 running again")
    twenty.check_invariants()


def test_history_compacted_while_an_agent_is_down_is_caught_up_when_it_returns(twenty: Fleet) -> None:
    host = twenty.host("host2")
    on_host = sorted(name for name, row in twenty.rows().items() if row["host"] == "host2")
    gone, stopped = on_host[0], on_host[1]
    host.kill_agent()
    twenty.api("DELETE", f"/vms/{gone}")
    twenty.names.discard(gone)
    twenty.api("POST", "/vms", json={"spec": guest(stopped), "state": "stopped"})
    twenty.api("POST", "/vms", json={"spec": guest("fleet-late"), "host": "host2"})
    twenty.names.add("fleet-late")
    status = json.loads(host.etcdctl("endpoint", "status", "-w", "json").stdout)
    revision = int(status[0]["Status"]["header"]["revision"])
    compacted = host.etcdctl("compact", str(revision))
    assert compacted.returncode == 0, compacted.stderr
    host.start_agent()
    eventually(twenty.settled, 90, 0.5, "host2 caught up")
    active = twenty.active()
    assert gone not in active and stopped not in active and active.get("fleet-late") == ["host2"]
    assert gone not in twenty.domain_ids(host)
    twenty.api("POST", "/vms", json={"spec": guest(stopped)})
    eventually(twenty.settled, 60, 0.5, f"{stopped} running again")
    twenty.check_invariants()


def test_an_agent_paused_past_its_lease_is_down_and_its_vms_unknown_but_never_started_elsewhere(
    twenty: Fleet,
) -> None:
    host = twenty.host("host3")
    mine = {name for name, row in twenty.rows().items() if row["host"] == "host3"}
    host.pause_agent()
    paused = time.monotonic()
    try:
        eventually(lambda: not twenty.alive()["host3"], LEASE_TTL + 3, 0.2, "host3 down")
        assert time.monotonic() - paused <= LEASE_TTL + 1 + 1  # TTL + 1 s, plus this poll's own slack
        rows = twenty.rows()
        assert {rows[name]["state"] for name in mine} == {"unknown"}
        time.sleep(2)
        active = twenty.active()
        assert all(active.get(name) == ["host3"] for name in mine), "a down host's VM was started elsewhere"
    finally:
        host.resume_agent()
    eventually(lambda: twenty.alive()["host3"], 30, 0.5, "host3 back")
    eventually(twenty.settled, 60, 0.5, "host3's VMs reported again")
    twenty.check_invariants()


def test_drain_live_migrates_every_vm_off_a_host_which_takes_no_new_vm_until_uncordoned(twenty: Fleet) -> None:
    moving = {name for name, row in twenty.rows().items() if row["host"] == "host1"}
    ids_elsewhere = {h.name: twenty.domain_ids(h) for h in twenty.hosts if h.name != "host1"}
    drained = twenty.api("POST", "/hosts/host1/drain", params={"wait": "true"}, timeout=600)
    assert sorted(move["vm"] for move in drained["moves"]) == sorted(moving)
    assert drained["unplaced"] == [] and drained["left"] == []
    eventually(twenty.settled, 60, 0.5, "every drained VM running on its new host")
    active = twenty.active()
    assert not [name for name in moving if active.get(name) == ["host1"]]
    for host, ids in ids_elsewhere.items():  # the VMs already elsewhere were not touched
        now = twenty.domain_ids(twenty.host(host))
        assert all(now.get(name) == domain_id for name, domain_id in ids.items())
    hosts = {row["name"]: row for row in twenty.api("GET", "/hosts")}
    assert (hosts["host1"]["schedulable"], hosts["host1"]["load"]["vms"]) == (False, 0)
    with twenty.hosts[1].http() as client:
        refused = client.post(
            "/v1/fleet/vms", json={"spec": guest("fleet-after"), "placement": {"labels": {"index": "1"}}}
        )
    assert refused.status_code == 409 and "host1: cordoned" in refused.json()["message"]
    twenty.api("POST", "/hosts/host1/uncordon")
    placed = twenty.api("POST", "/vms", json={"spec": guest("fleet-after"), "placement": {"labels": {"index": "1"}}})
    assert placed["host"] == "host1"
    twenty.names.add("fleet-after")
    eventually(twenty.settled, 60, 0.5, "fleet-after running on host1")
    twenty.check_invariants()
