"""What the multi-host test bed (scripts/test-hosts.sh) promises the migration tests.

These tests run on beds of their own next to the shared one (other root, prefix and subnet), made by the same
script: other sessions run fault injection on the shared bed at the same time (its agents and libvirtds come and
go), and these tests kill daemons and take beds down. The shared bed's fixtures (`test_hosts`, the per-test
cleanup) are checked on the shared bed.
"""

import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.multihost.conftest import PREFIX, clean_hosts
from tests.multihost.testbed import TestBed, TestHost
from vmhost.config import load_config

pytestmark = pytest.mark.integration
UP_WITHIN = 60.0


def tiny_domain(name: str, guest: dict[str, Path], disk: Path | None = None) -> str:
    """Domain XML of the tiny guest (kernel + initrd), with a qcow2 disk when given."""
    disk_xml = (
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/>"
        f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        if disk
        else ""
    )
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
      <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{guest["kernel"]}</kernel>
        <initrd>{guest["initrd"]}</initrd><cmdline>console=ttyS0 quiet no_timer_check</cmdline></os>
      <devices>{disk_xml}<serial type='pty'><target port='0'/></serial></devices></domain>"""


def host_uuid(host: TestHost) -> str:
    conn = host.libvirt()
    try:
        return str(etree.fromstring(conn.getCapabilities().encode()).findtext("host/uuid"))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def own_bed() -> Iterator[tuple[TestBed, list[TestHost], float]]:
    """A two-host bed of this module's own, and how long its `up` took; taken down (checked empty) afterwards."""
    tag = secrets.token_hex(2)
    bed = TestBed(
        {
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-testbed-spec-{tag}",
            "VMHOST_TESTBED_PREFIX": f"vs{tag}",
            "VMHOST_TESTBED_SUBNET": f"10.231.{100 + secrets.randbelow(100)}",
        }
    )
    started = time.monotonic()
    try:
        hosts = bed.up(2)
        yield bed, hosts, time.monotonic() - started
    finally:
        bed.down()
    assert bed.leftovers() == []


@pytest.fixture
def hosts(own_bed: tuple[TestBed, list[TestHost], float]) -> list[TestHost]:
    return own_bed[1]


def test_the_shared_bed_has_two_hosts_and_the_cleanup_removes_the_sessions_domains(
    test_hosts: list[TestHost], guest: dict[str, Path], vm_name: Callable[[str], str]
) -> None:
    assert len({host.address for host in test_hosts}) == len(test_hosts) == 2
    conn = test_hosts[1].libvirt()
    try:
        conn.defineXML(tiny_domain(vm_name("left-defined"), guest))
    finally:
        conn.close()
    assert vm_name("left-defined").startswith(PREFIX)
    assert clean_hosts(test_hosts) == [f"{test_hosts[1].name}:{vm_name('left-defined')}"]
    assert vm_name("left-defined") not in test_hosts[1].domains()


def test_each_agent_answers_over_tls_checked_against_the_bed_ca(hosts: list[TestHost]) -> None:
    for host in hosts:
        with host.http(token="") as client:  # verify=ca_file: the certificate must name host.address
            assert client.get("/healthz").status_code == 200


def test_each_agent_takes_its_own_token_and_refuses_none_or_another_hosts(hosts: list[TestHost]) -> None:
    first, second = hosts[:2]
    with first.http() as client:
        assert client.get("/v1/vms").status_code == 200
    with first.http(token="") as client:
        assert client.get("/v1/vms").status_code == 401
    with first.http(token=second.agent_token) as client:
        assert client.get("/v1/vms").status_code == 401


def test_a_client_without_the_bed_ca_does_not_trust_the_agents(hosts: list[TestHost]) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{hosts[0].agent_url}/healthz", timeout=10)


def test_each_agent_is_configured_to_reach_the_others_with_their_tokens(hosts: list[TestHost]) -> None:
    for host in hosts:
        config = load_config(host.config_file)
        others = [other for other in hosts if other.name != host.name]
        assert config.migration_address == host.address
        assert config.migration_transport == "tls"
        assert config.accel == "tcg"
        assert config.peer_ca_file == host.ca_file
        assert {url: path.read_text().strip() for url, path in config.peer_token_files.items()} == {
            other.agent_url: other.agent_token for other in others
        }
        assert {host.shared_dir, host.images_dir} <= set(config.path_roots)


def test_a_bed_without_fleet_has_no_etcd_and_no_fleet_config(
    own_bed: tuple[TestBed, list[TestHost], float],
) -> None:
    bed, hosts, _ = own_bed
    for host in hosts:
        assert (host.fleet, host.etcd_endpoint) == (False, None)
        config = load_config(host.config_file)
        assert config.fleet is None
        assert config.agent_url is None  # the CLI inside a host runs the local engine unless told --agent
    assert not bed.etcd_running()
    result = bed.run("kill-etcd", check=False)
    assert result.returncode != 0
    assert "no fleet bed" in result.stderr


def test_a_fleet_bed_runs_one_etcd_every_host_reaches_and_down_leaves_none() -> None:
    """Its own bed: etcd on the bridge's address (reached from inside each host), every agent configured for it,
    etcd's data across a crash, a paused agent; nothing of it left after down."""
    tag = secrets.token_hex(2)
    subnet = f"10.231.{50 + secrets.randbelow(50)}"
    prefix = f"ve{tag}"
    bed = TestBed(
        {
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-testbed-fleet-{tag}",
            "VMHOST_TESTBED_PREFIX": prefix,
            "VMHOST_TESTBED_SUBNET": subnet,
            "VMHOST_TESTBED_LEASE_TTL": "7",
        }
    )
    endpoint = f"http://{subnet}.1:2379"
    try:
        hosts = bed.up(2, fleet=True)
        assert [(host.fleet, host.etcd_endpoint) for host in hosts] == [(True, endpoint)] * 2
        assert bed.etcd_running()
        for index, host in enumerate(hosts, start=1):
            health = host.exec(["curl", "-s", "--max-time", "5", f"{endpoint}/health"])
            assert json.loads(health.stdout)["health"] == "true", health
            config = load_config(host.config_file)
            assert config.agent_url == host.agent_url
            assert config.fleet is not None
            assert config.fleet.etcd_endpoints == (endpoint,)
            assert config.fleet.host_name == host.name
            assert dict(config.fleet.labels) == {"bed": prefix, "index": str(index)}
            assert config.fleet.lease_ttl == 7
            assert config.peer_ca_file == host.ca_file  # [fleet] comes last: the top-level settings stay top-level

        first, second = hosts
        assert first.etcdctl("put", "/testbed/kept", "yes").returncode == 0
        bed.kill_etcd()
        assert not bed.etcd_running()
        assert first.exec(["curl", "-s", "--max-time", "2", f"{endpoint}/health"]).returncode != 0
        bed.start_etcd()
        assert first.etcdctl("get", "--print-value-only", "/testbed/kept").stdout.strip() == "yes"

        second.pause_agent()
        assert second.agent_paused()
        assert second.running()["agent"]
        with second.http(timeout=2) as client, pytest.raises(httpx.TimeoutException):
            client.get("/healthz")
        second.resume_agent()
        assert not second.agent_paused()
        with second.http(timeout=10) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        bed.down()
    assert bed.leftovers() == []  # also no etcd process (its data dir is under the root) or listener on SUBNET.1


def test_hosts_have_their_own_host_uuids_and_hostnames(hosts: list[TestHost]) -> None:
    uuids = [host_uuid(host) for host in hosts]
    assert uuids == [host.host_uuid for host in hosts]
    assert len(set(uuids)) == len(hosts)
    names = [host.exec(["hostname"]).stdout.strip() for host in hosts]
    assert names == [host.hostname for host in hosts]
    assert len(set(names)) == len(hosts)


def test_each_libvirtd_listens_only_on_its_test_address(hosts: list[TestHost]) -> None:
    for host in hosts:
        sockets = host.exec(["ss", "-ltnpH"]).stdout.splitlines()
        libvirtd = {line.split()[3] for line in sockets if '"libvirtd"' in line}
        assert libvirtd == {f"{host.address}:16509", f"{host.address}:16514"}, sockets


def test_each_host_sees_its_own_links_in_sysfs_and_a_bridge_for_guests(hosts: list[TestHost]) -> None:
    """vmhost and libvirt read /sys/class/net (a NIC's bridge must exist): the host's sysfs is its namespace's."""
    for host in hosts:
        assert host.exec(["ls", "/sys/class/net"]).stdout.split() == sorted(["eth0", "lo", host.guest_bridge])
        assert host.exec(["test", "-d", f"/sys/class/net/{host.guest_bridge}/bridge"]).returncode == 0
        assert host.exec(["test", "-d", "/sys/fs/cgroup/memory"]).returncode == 0


def test_the_shared_dir_is_the_same_directory_on_every_host(hosts: list[TestHost], vm_name: Any) -> None:
    marker = hosts[0].shared_dir / vm_name("marker")
    marker.write_text("seen")
    for host in hosts:
        assert host.exec(["cat", str(marker)]).stdout == "seen"
        assert host.exec(["findmnt", "-no", "FSTYPE", str(host.shared_dir)]).stdout.strip() == "fuse.glusterfs"


@pytest.mark.parametrize("with_disk", [False, True], ids=["no-disk", "disk-on-shared-dir"])
def test_libvirt_live_migrates_a_guest_between_two_hosts(
    hosts: list[TestHost], guest: dict[str, Path], vm_name: Callable[[str], str], with_disk: bool
) -> None:
    """Raw libvirt, peer to peer, the way the agents' driver does it: a disk on shared_dir counts as shared."""
    source, destination = hosts[:2]
    name = vm_name(f"raw-{'disk' if with_disk else 'nodisk'}")
    disk = source.shared_dir / f"{name}.qcow2" if with_disk else None
    if disk:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    conn = source.libvirt()
    try:
        domain = conn.defineXML(tiny_domain(name, guest, disk))
        domain.create()
        domain.migrateToURI3(
            destination.libvirt_uri,
            {libvirt.VIR_MIGRATE_PARAM_URI: destination.migration_uri},
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE,
        )
        assert name not in source.domains()
    finally:
        conn.close()
    there = destination.libvirt()
    try:
        assert there.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        there.close()


def test_a_bed_comes_up_within_a_minute(own_bed: tuple[TestBed, list[TestHost], float]) -> None:
    _, hosts, seconds = own_bed
    assert len(hosts) == 2
    assert seconds < UP_WITHIN


def test_a_killed_agent_is_gone_until_started_again_with_the_environment_given(
    own_bed: tuple[TestBed, list[TestHost], float],
) -> None:
    bed, hosts, _ = own_bed
    host = hosts[0]
    host.kill_agent()
    assert host.running() == {"agent": False, "libvirtd": True}
    with host.http(timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get("/healthz")
    host.start_agent({"VMHOST_TEST_MARKER": "h1"})
    assert host.running()["agent"]
    environ = Path(f"/proc/{host.agent_pid_file.read_text().strip()}/environ").read_bytes().split(b"\0")
    assert b"VMHOST_TEST_MARKER=h1" in environ
    assert b"VMHOST_CONFIG=" + str(host.config_file).encode() in environ
    status = bed.run("status").stdout
    assert '"agent_env": ["VMHOST_TEST_MARKER=h1"]' in status


def test_a_killed_libvirtd_leaves_its_guests_running_and_finds_them_again(
    own_bed: tuple[TestBed, list[TestHost], float], guest: dict[str, Path]
) -> None:
    _, hosts, _ = own_bed
    host = hosts[1]
    conn = host.libvirt()
    conn.defineXML(tiny_domain("spec-survivor", guest)).create()
    conn.close()
    host.kill_libvirtd()
    assert host.running() == {"agent": True, "libvirtd": False}
    with pytest.raises(libvirt.libvirtError):
        libvirt.open(host.libvirt_uri)
    assert host.exec(["pgrep", "-f", "guest=spec-survivor"]).returncode == 0
    host.start_libvirtd()
    conn = host.libvirt()
    try:
        assert conn.lookupByName("spec-survivor").isActive()
    finally:
        conn.close()


def test_down_leaves_nothing_even_with_guests_running_and_again_when_nothing_is_there(
    guest: dict[str, Path],
) -> None:
    tag = secrets.token_hex(2)
    bed = TestBed(
        {
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-testbed-down-{tag}",
            "VMHOST_TESTBED_PREFIX": f"vd{tag}",
            "VMHOST_TESTBED_SUBNET": f"10.231.{200 + secrets.randbelow(50)}",
        }
    )
    try:
        hosts = bed.up(2)
        conn = hosts[0].libvirt()
        conn.defineXML(tiny_domain("spec-left-running", guest)).create()
        conn.close()
        assert any(line.startswith("netns ") for line in bed.leftovers())
    finally:
        bed.down()
    assert bed.leftovers() == []
    bed.down()
    assert bed.leftovers() == []


def test_a_failed_up_removes_what_it_made() -> None:
    tag = secrets.token_hex(2)
    bed = TestBed(
        {
            "VMHOST_TESTBED_ROOT": f"/srv/vmhost-testbed-fail-{tag}",
            "VMHOST_TESTBED_PREFIX": f"vf{tag}",
            "VMHOST_TESTBED_SUBNET": f"10.231.{250 + secrets.randbelow(5)}",
            "VMHOST_TESTBED_VMHOST": "/bin/false",  # every agent exits at once
        }
    )
    result = bed.run("up", "2", check=False)
    assert result.returncode != 0
    assert "did not come up" in result.stderr
    assert eventually(lambda: bed.leftovers() == [], 10, 0.2, "nothing left")
