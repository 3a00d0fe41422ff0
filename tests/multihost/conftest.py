"""Fixtures of the multi-host tests: the shared test bed (scripts/test-hosts.sh) and a clean bed around each test.

The bed is shared: a session reuses a running one (other sessions may be using it) and never takes it down; a
session that had to bring it up takes it down at its end unless VMHOST_TESTBED_KEEP=1 or another session is still
using it. Every VM a test makes is named with the session prefix (`vm_name`); after each test the VMs of that
prefix are deleted on every host (through its agent, then in libvirt) and daemons the test stopped (or started
with fault injection) are started again; other sessions' VMs and daemons are left alone.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import libvirt
import pytest

from tests.integration.conftest import guest, guest_spec  # noqa: F401 - fixtures: the tiny guest and its spec
from tests.multihost.testbed import DISTURBED, TestBed, TestBedError, TestHost

PREFIX = f"mh-{secrets.token_hex(3)}-"
HOSTS = 2

pytestmark = pytest.mark.integration


def _users(root: Path) -> Path:
    return root / "users"


def _live_users(root: Path) -> list[str]:
    """Sessions (pids) registered as using the bed that still run."""
    users = _users(root)
    return [entry.name for entry in users.iterdir() if Path(f"/proc/{entry.name}").exists()] if users.is_dir() else []


def _bring_up(bed: TestBed) -> tuple[list[TestHost], bool]:
    """The running bed, or a new one (made: True). Two sessions may start at once: one makes it, the other waits."""
    hosts = bed.status()
    if hosts is not None:
        _revive(hosts)
        return hosts, False
    try:
        return bed.up(HOSTS), True
    except TestBedError:
        hosts = bed.status()  # the other session's `up` won; status waits for it (the script's lock)
        if hosts is None:
            raise
        return hosts, False


def _revive(hosts: list[TestHost]) -> None:
    """A reused bed may have lost daemons (a test elsewhere killed every libvirtd of the machine): start them;
    one whose shared storage died is rebuilt."""
    if not _shared_storage_alive(hosts[0]):
        _rebuild(hosts)
        return
    for host in hosts:
        running = host.running()
        if not running["libvirtd"]:
            host.start_libvirtd()
        if not running["agent"]:
            host.start_agent()


@pytest.fixture(scope="session")
def test_hosts() -> Iterator[list[TestHost]]:
    """The hosts of the shared bed (at least two), up for the whole session."""
    bed = TestBed()
    try:
        hosts, made = _bring_up(bed)
    except TestBedError as error:
        pytest.fail(f"no test bed: {error}")
    if len(hosts) < HOSTS:
        pytest.fail(f"the running bed has {len(hosts)} hosts, the tests need {HOSTS}: scripts/test-hosts.sh down, up")
    root = hosts[0].dir.parent.parent
    _users(root).mkdir(exist_ok=True)
    me = _users(root) / str(os.getpid())
    me.touch()
    yield hosts[:HOSTS]
    me.unlink(missing_ok=True)
    if made and os.environ.get("VMHOST_TESTBED_KEEP") != "1" and not _live_users(root):
        bed.down()


@pytest.fixture
def vm_name() -> Callable[[str], str]:
    """Names the per-test cleanup removes: the session prefix and `suffix`."""
    return lambda suffix: PREFIX + suffix


def _restore_daemons(hosts: list[TestHost]) -> None:
    """Start what this session's test killed, and restart an agent it started with fault injection in its
    environment; never touch the daemons of other sessions (they run fault injection on the same bed)."""
    for host in hosts:
        if (str(host.dir), "libvirtd") in DISTURBED:
            running = host.running()
            if not running["libvirtd"]:
                host.start_libvirtd()
            DISTURBED.discard((str(host.dir), "libvirtd"))
        if (str(host.dir), "agent") in DISTURBED:
            host.restart_agent()


def _agent_vms(host: TestHost) -> list[str]:
    """The session's VMs the agent knows; [] when it does not answer now (another session may have stopped it)."""
    try:
        with host.http(timeout=30) as client:
            response = client.get("/v1/vms", params={"fields": "name"})
            response.raise_for_status()
    except httpx.HTTPError:
        return []
    return [str(item["name"]) for item in response.json() if str(item["name"]).startswith(PREFIX)]


def _domains(host: TestHost) -> list[str]:
    """The session's domains in the host's libvirtd; [] when it does not answer now."""
    try:
        return [name for name in host.domains() if name.startswith(PREFIX)]
    except libvirt.libvirtError:
        return []


def _delete_through_agent(host: TestHost) -> None:
    names = _agent_vms(host)
    with contextlib.suppress(httpx.HTTPError), host.http(timeout=120) as client:
        for name in names:
            client.delete(f"/v1/vms/{name}", params={"wait": "true"})


def _sweep_libvirt(host: TestHost) -> list[str]:
    """Destroy and undefine the session's domains; return their names."""
    try:
        conn = host.libvirt()
    except libvirt.libvirtError:
        return []
    try:
        found = [d for d in conn.listAllDomains() if d.name().startswith(PREFIX)]
        for domain in found:
            with contextlib.suppress(libvirt.libvirtError):
                if domain.isActive():
                    domain.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        return [d.name() for d in found]
    finally:
        conn.close()


def clean_hosts(hosts: list[TestHost]) -> list[str]:
    """Leave no VM of this session on any host: agents first (their records and files), then libvirt, then the
    agents again (a record whose domain a fault left behind). Returns what was still in libvirt after the agents."""
    _restore_daemons(hosts)
    for host in hosts:
        _delete_through_agent(host)
    swept = [f"{host.name}:{name}" for host in hosts for name in _sweep_libvirt(host)]
    for host in hosts:
        _delete_through_agent(host)
    for path in hosts[0].shared_dir.glob(f"{PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return swept


def _shared_storage_alive(host: TestHost) -> bool:
    try:
        host.shared_dir.stat()
    except OSError:  # ENOTCONN: the FUSE daemon behind the mount is gone
        return False
    return True


def _shared_storage_diagnosis(host: TestHost) -> str:
    """How the bed's bindfs ended (the script logs it) and what the kernel said about it."""
    log = host.dir.parent.parent / "bindfs.log"
    ended = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else ["no bindfs.log"]
    kernel = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout.splitlines()
    said = [line for line in kernel if "bindfs" in line or "fuse" in line.lower()][-5:]
    return "; ".join([*ended, *said]) or "nothing logged"


def _rebuild(hosts: list[TestHost]) -> None:
    """A bed whose shared storage died is of no use to anyone: down, up again, the session's list updated."""
    bed = hosts[0].bed
    bed.down()
    hosts[:] = bed.up(HOSTS)


@pytest.fixture(autouse=True)
def _clean_bed(test_hosts: list[TestHost]) -> Iterator[None]:
    """After each test: no domain and no agent record of this session on any host, every daemon up; a bed whose
    shared storage died is rebuilt (and the test fails, saying how the storage ended) rather than failing every
    test after it."""
    yield
    if not _shared_storage_alive(test_hosts[0]):
        diagnosis = _shared_storage_diagnosis(test_hosts[0])
        _rebuild(test_hosts)
        pytest.fail(f"the bed's shared storage died during this test ({diagnosis}); the bed was rebuilt")
    clean_hosts(test_hosts)
    deadline = time.monotonic() + 30
    while True:
        left = [f"{h.name}:{n}" for h in test_hosts for n in _domains(h)]
        left += [f"{h.name}:agent:{n}" for h in test_hosts for n in _agent_vms(h)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        clean_hosts(test_hosts)
    assert not left, f"could not clean up after the test: {left}"
