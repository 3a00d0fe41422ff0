"""Live and offline migration between two vmhost agents on the test bed (scripts/test-hosts.sh): real
libvirtds, real QEMU, real agents talking HTTPS with tokens. The invariant under every failure: the VM runs (or is
held) on exactly one host, and the other keeps no definition, no record and no file of it."""

import contextlib
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest

from tests.eventually import eventually
from tests.multihost.testbed import TestHost

pytestmark = pytest.mark.integration
GUEST = Path("/var/lib/vmhost/images/tiny-guest")
BOOTED = 20.0
"""Seconds the tiny guest takes to boot under TCG on a busy host."""


def tiny_guest(name: str, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
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
    }
    spec.update(fields)
    return spec


def finished(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    operation: dict[str, Any] = client.get(
        f"/v1/operations/{response.json()['id']}", params={"wait": "true"}, timeout=300
    ).json()
    return operation


def running_guest(host: TestHost, name: str, **fields: Any) -> None:
    with host.http() as client:
        done = finished(client, client.post("/v1/vms", json=tiny_guest(name, **fields), params={"start": "true"}))
    assert done["state"] == "succeeded", done


def domain_state(host: TestHost, name: str) -> int | None:
    conn = host.libvirt()
    try:
        return int(conn.lookupByName(name).state()[0])
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def record_of(host: TestHost, name: str) -> dict[str, Any] | None:
    with host.http(timeout=10) as client:
        response = client.get(f"/v1/vms/{name}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    record: dict[str, Any] = response.json()
    return record


def owned_dirs(host: TestHost, uuid: str) -> bool:
    return (host.data_dir / "vms" / uuid).exists()


def on_exactly_one_host(name: str, uuid: str, hosts: list[TestHost], state: str = "running") -> TestHost:
    """The invariant: one host runs (holds) it with a record saying so; the others keep nothing of it."""
    holders = []
    for host in hosts:
        domain, record = domain_state(host, name), record_of(host, name)
        if domain is None and record is None and not owned_dirs(host, uuid):
            continue
        holders.append((host, domain, record))
    assert len(holders) == 1, [(h.name, d, r and r["state"]) for h, d, r in holders]
    host, domain, record = holders[0]
    assert record is not None and record["state"] == state, (host.name, domain, record)
    wanted = libvirt.VIR_DOMAIN_RUNNING if state == "running" else libvirt.VIR_DOMAIN_SHUTOFF
    assert domain == wanted, (host.name, domain)
    return host


def migrate(source: TestHost, destination: TestHost, name: str, **options: Any) -> dict[str, Any]:
    with source.http() as client:
        body = {"to": destination.agent_url, **options}
        return finished(client, client.post(f"/v1/vms/{name}/migrate", json=body))


def remove_everywhere(name: str, hosts: list[TestHost]) -> None:
    for host in hosts:
        with host.http(timeout=60) as client:
            client.delete(f"/v1/vms/{name}", params={"force": "true", "wait": "true"})


@pytest.fixture
def pair(test_hosts: list[TestHost]) -> tuple[TestHost, TestHost]:
    return test_hosts[0], test_hosts[1]


def test_a_live_migration_on_shared_storage_moves_the_running_guest(pair, vm_name):
    source, destination = pair
    name = vm_name("shared")
    disk = source.shared_dir / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    try:
        running_guest(source, name, disks=[{"source": {"type": "file", "path": str(disk), "format": "qcow2"}}])
        uuid = record_of(source, name)["uuid"]  # type: ignore[index]
        time.sleep(2)

        done = migrate(source, destination, name)

        assert done["state"] == "succeeded", done
        assert on_exactly_one_host(name, uuid, [source, destination]) == destination
        assert disk.exists(), "shared storage is never removed"
        record = record_of(destination, name)
        assert record is not None and "migrated here from" in record["state_reason"]
    finally:
        remove_everywhere(name, [source, destination])
        disk.unlink(missing_ok=True)


def test_the_migration_stream_is_encrypted_so_a_destination_without_its_certificate_is_refused(pair, vm_name):
    """The bed's agents migrate as real hosts do (migration_transport = "tls": libvirt over qemu+tls, QEMU's
    stream with VIR_MIGRATE_TLS): hide the destination QEMU's certificate and nothing moves."""
    source, destination = pair
    name = vm_name("tls")
    certificate = destination.dir / "tls" / "qemu" / "server-cert.pem"
    hidden = certificate.with_name("server-cert.pem.hidden")
    try:
        running_guest(source, name)
        uuid = record_of(source, name)["uuid"]  # type: ignore[index]
        certificate.rename(hidden)

        done = migrate(source, destination, name)

        assert done["state"] == "failed", done
        assert "server-cert.pem" in str(done["error"]), done
        assert on_exactly_one_host(name, uuid, [source, destination]) == source
    finally:
        if hidden.exists():
            hidden.rename(certificate)
        remove_everywhere(name, [source, destination])


def test_a_live_migration_with_copy_storage_moves_the_disks_and_removes_them_here(pair, vm_name):
    source, destination = pair
    name = vm_name("copy")
    try:
        running_guest(source, name, disks=[{"source": {"type": "new", "size": "32MiB"}}])
        uuid = record_of(source, name)["uuid"]  # type: ignore[index]

        done = migrate(source, destination, name, copy_storage=True)

        assert done["state"] == "succeeded", done
        assert on_exactly_one_host(name, uuid, [source, destination]) == destination
        assert (destination.data_dir / "vms" / uuid / "disks").is_dir()
        assert not owned_dirs(source, uuid)
    finally:
        remove_everywhere(name, [source, destination])


def test_an_offline_migration_moves_a_stopped_vm_that_then_starts_there(pair, vm_name):
    source, destination = pair
    name = vm_name("offline")
    try:
        with source.http() as client:
            created = client.post("/v1/vms", json=tiny_guest(name, disks=[{"source": {"type": "new", "size": "8MiB"}}]))
            assert finished(client, created)["state"] == "succeeded"
        uuid = record_of(source, name)["uuid"]  # type: ignore[index]

        done = migrate(source, destination, name, offline=True, copy_storage=True)

        assert done["state"] == "succeeded", done
        assert on_exactly_one_host(name, uuid, [source, destination], state="stopped") == destination
        with destination.http() as client:
            assert finished(client, client.post(f"/v1/vms/{name}/start"))["state"] == "succeeded"
        assert domain_state(destination, name) == libvirt.VIR_DOMAIN_RUNNING
    finally:
        remove_everywhere(name, [source, destination])


def test_a_migration_past_its_timeout_is_aborted_and_the_vm_keeps_running_here(pair, vm_name):
    source, destination = pair
    name = vm_name("abort")
    try:
        running_guest(source, name, memory="512MiB")
        uuid = record_of(source, name)["uuid"]  # type: ignore[index]

        done = migrate(source, destination, name, bandwidth_mib=1, timeout=3)

        assert done["state"] == "failed", done
        assert "aborted" in done["error"]["message"] and "keeps running here" in done["error"]["message"]
        assert on_exactly_one_host(name, uuid, [source, destination]) == source
    finally:
        remove_everywhere(name, [source, destination])


KILLS = [
    # (which agent dies, at which journaled point)
    ("source", "migrate:prepared"),
    ("source", "migrate:transferred"),
    ("source", "migrate:finished"),
    ("destination", "incoming:recorded"),
    ("destination", "incoming:placeholders"),
    ("destination", "incoming-finish:resumed"),
    ("destination", "incoming-finish:owned"),
]


@pytest.mark.parametrize(("who", "point"), KILLS)
def test_a_vm_never_runs_on_two_hosts_and_is_never_lost_when_an_agent_dies(pair, who, point, vm_name):
    source, destination = pair
    victim = source if who == "source" else destination
    name = vm_name("kill")
    running_guest(source, name)
    uuid = record_of(source, name)["uuid"]  # type: ignore[index]
    victim.restart_agent({"VMHOST_TEST_KILL_AT": point})
    try:
        with source.http(timeout=60) as client, contextlib.suppress(httpx.TransportError):  # the source dies
            client.post(f"/v1/vms/{name}/migrate", json={"to": destination.agent_url}, params={"wait": "true"})
        eventually(lambda: not victim.running()["agent"], timeout=60, what=f"{victim.name} killed at {point}")
        victim.start_agent()
        eventually(lambda: on_exactly_one_host(name, uuid, [source, destination]), timeout=180, what="one host")
    finally:
        victim.start_agent() if not victim.running()["agent"] else None
        remove_everywhere(name, [source, destination])


@pytest.mark.parametrize("who", ["source", "destination"])
def test_a_vm_never_runs_on_two_hosts_when_a_libvirtd_dies_mid_migration(pair, who, vm_name):
    """The source agent kills a libvirtd once the destination prepared (VMHOST_TEST_KILL_PIDFILE); the test
    brings it back while the migration is still deciding."""
    source, destination = pair
    victim = source if who == "source" else destination
    name = vm_name("lvd")
    running_guest(source, name, memory="256MiB")
    uuid = record_of(source, name)["uuid"]  # type: ignore[index]
    pidfile = str(victim.libvirtd_pid_file)
    source.restart_agent({"VMHOST_TEST_KILL_AT": "migrate:prepared", "VMHOST_TEST_KILL_PIDFILE": pidfile})
    try:
        with source.http() as client:
            accepted = client.post(f"/v1/vms/{name}/migrate", json={"to": destination.agent_url})
            eventually(lambda: not victim.running()["libvirtd"], timeout=30, what="libvirtd killed")
            victim.start_libvirtd()
            done = finished(client, accepted)
        assert done["state"] in ("succeeded", "failed"), done
        eventually(lambda: on_exactly_one_host(name, uuid, [source, destination]), timeout=180, what="one host")
    finally:
        if not victim.running()["libvirtd"]:
            victim.start_libvirtd()
        source.restart_agent()


def test_a_source_agent_killed_at_a_random_moment_leaves_the_vm_on_one_host(pair, vm_name):
    source, destination = pair
    name = vm_name("rand")
    running_guest(source, name, memory="256MiB")
    uuid = record_of(source, name)["uuid"]  # type: ignore[index]
    try:
        with source.http() as client:
            client.post(f"/v1/vms/{name}/migrate", json={"to": destination.agent_url, "bandwidth_mib": 64})
        time.sleep(random.uniform(0.2, 2.0))
        source.restart_agent()
        eventually(lambda: on_exactly_one_host(name, uuid, [source, destination]), timeout=180, what="one host")
    finally:
        remove_everywhere(name, [source, destination])


def test_evacuate_moves_every_running_vm_away(pair, vm_name):
    source, destination = pair
    names = [vm_name(f"evac{i}") for i in range(3)]
    try:
        for name in names:
            running_guest(source, name)
        uuids = {name: record_of(source, name)["uuid"] for name in names}  # type: ignore[index]
        with source.http() as client:
            response = client.post("/v1/host/evacuate", json={"to": [destination.agent_url], "concurrency": 2})
            done = finished(client, response)
        assert done["state"] == "succeeded", done
        for name in names:
            assert on_exactly_one_host(name, uuids[name], [source, destination]) == destination
    finally:
        for name in names:
            remove_everywhere(name, [source, destination])
