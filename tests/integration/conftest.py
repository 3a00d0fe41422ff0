"""Real-guest harness: a real libvirtd + QEMU (TCG) booting the project's tiny guest.

Every VM a test makes is named with the session prefix; teardown deletes them and then checks that no
domain and no QEMU process with that prefix survived.
"""

import contextlib
import json
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.running_agent import RunningAgent
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = Path(os.environ.get("VMHOST_GUEST_DIR", "/var/lib/vmhost/images/tiny-guest"))
URI = "qemu:///system"
PREFIX = f"vmhost-test-{secrets.token_hex(3)}-"
BOOT_TIMEOUT = 90.0

pytestmark = pytest.mark.integration


def _connect() -> libvirt.virConnect:
    try:
        return libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.fail(f"libvirtd is not reachable at {URI} (run scripts/setup.sh): {exc}")


@pytest.fixture
def libvirt_conn(_no_leftovers: None) -> Iterator[libvirt.virConnect]:
    """A fresh connection per test: one test restarts libvirtd, which kills older connections."""
    conn = _connect()
    yield conn
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


@pytest.fixture(scope="session")
def _no_leftovers() -> Iterator[None]:
    yield
    conn = _connect()
    leftovers = [d.name() for d in conn.listAllDomains() if d.name().startswith(PREFIX)]
    for name in leftovers:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefine()
    conn.close()
    assert not leftovers, f"tests left domains behind: {leftovers}"
    processes = subprocess.run(["pgrep", "-f", f"guest={PREFIX}"], capture_output=True, text=True, check=False).stdout
    assert not processes.strip(), f"tests left QEMU processes behind: {processes}"


@pytest.fixture(scope="session")
def guest() -> dict[str, Path]:
    """The tiny guest, built by guest/build.sh (fast when already built)."""
    subprocess.run([str(REPO / "guest" / "build.sh"), str(GUEST_DIR)], check=True, capture_output=True)
    return {"kernel": GUEST_DIR / "vmlinuz", "initrd": GUEST_DIR / "initrd.img"}


def make_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh data dir that libvirt's qemu user can traverse (for module-scoped fixtures too)."""
    path = tmp_path_factory.mktemp("vmhost-data")
    path.chmod(0o711)
    for parent in path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o111)
    return path


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_dir(tmp_path_factory)


VOLUMES_DIR = Path("/var/tmp/vmhost-test-volumes")
"""Where tests keep images QEMU must reach outside pytest's temp root (which a concurrent run may make 0700)."""


def allowed_test_roots(data_dir: Path) -> tuple[Path, ...]:
    """The host paths tests name files under (allowed_paths): the data dir, the tiny guest, pytest's temporary
    root (the data dir's parent, holding every tmp_path) and VOLUMES_DIR, and nothing else."""
    return (data_dir, GUEST_DIR, data_dir.parent, VOLUMES_DIR)


@pytest.fixture
def config(data_dir: Path) -> HostConfig:
    return HostConfig(
        libvirt_uri=URI, data_dir=data_dir, accel="tcg", stop_timeout=30, allowed_paths=allowed_test_roots(data_dir)
    )


def write_config_file(config: HostConfig, path: Path) -> Path:
    """The TOML a `vmhost` process reads for `config` (the keys the tests set)."""
    path.write_text(
        f'libvirt_uri = "{config.libvirt_uri}"\ndata_dir = "{config.data_dir}"\n'
        f'accel = "{config.accel}"\nstop_timeout = {config.stop_timeout}\n'
        f"allowed_paths = {json.dumps([str(root) for root in config.path_roots])}\n"
    )
    return path


@pytest.fixture
def config_file(config: HostConfig, tmp_path: Path) -> Path:
    return write_config_file(config, tmp_path / "config.toml")


@pytest.fixture
def engine(config: HostConfig, libvirt_conn: libvirt.virConnect) -> Iterator[Engine]:
    engine = Engine(config, build_drivers(config))
    yield engine
    for record in engine.store.list_vms():
        engine.delete(record.name)
    engine.store.close()  # a suite of hundreds of engines must not run out of descriptors


@pytest.fixture
def agent(config: HostConfig, engine: Engine) -> Iterator[RunningAgent]:
    """A real agent on the test data dir; `engine` (same data dir) deletes every VM it made when the test ends."""
    with RunningAgent(config) as running:
        yield running


@pytest.fixture
def http(agent: RunningAgent) -> Iterator[httpx.Client]:
    with agent.http() as client:
        yield client


@pytest.fixture
def vm_name() -> Callable[[str], str]:
    return lambda suffix: PREFIX + suffix


@pytest.fixture
def guest_spec(guest: dict[str, Path]) -> Callable[..., dict[str, Any]]:
    def make(name: str, cmdline: str = "", **fields: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": name,
            "memory": "256MiB",
            "boot": {
                "kernel": {
                    "kernel": str(guest["kernel"]),
                    "initrd": str(guest["initrd"]),
                    # no_timer_check: on a loaded TCG host the kernel's IO-APIC timer check can fail and panic
                    "cmdline": f"console=ttyS0 quiet no_timer_check {cmdline}".strip(),
                }
            },
            "guest_agent": False,
        }
        spec.update(fields)
        return spec

    return make


@pytest.fixture
def cli(config_file: Path, engine: Engine) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `vmhost` command against the test config (the engine fixture cleans up after it)."""
    return cli_runner(config_file)


def cli_runner(config_file: Path, default_timeout: float = 180) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real `vmhost` command with VMHOST_CONFIG set to `config_file`."""

    def run(*args: str, timeout: float = default_timeout) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VMHOST_CONFIG": str(config_file)}
        return subprocess.run(
            [str(REPO / ".venv" / "bin" / "vmhost"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )

    return run


def wait_for_console(engine: Engine, name: str, marker: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Poll the console log (written by virtlogd) until `marker` shows up; return the whole log."""
    path = engine.console_log_path(name)

    def seen() -> str:
        text = path.read_text(errors="replace") if path.exists() else ""
        assert marker in text, text[-2000:]
        return text

    return eventually(seen, timeout, 0.2, f"{marker!r} on {name}'s console")


def wait_for_count(engine: Engine, name: str, marker: str, count: int, timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until `marker` has appeared `count` times on the console (e.g. READY once per boot)."""
    path = engine.console_log_path(name)

    def counted() -> bool:
        text = path.read_text(errors="replace") if path.exists() else ""
        assert text.count(marker) >= count, f"(libvirt says {engine.driver.state(name)}):\n{text[-1500:]}"
        return True

    eventually(counted, timeout, 0.2, f"{marker} {count} times on {name}'s console")


def read_console_until(stream: Any, marker: bytes, timeout: float = BOOT_TIMEOUT) -> bytes:
    seen = bytearray()

    def arrived() -> bool:
        seen.extend(stream.read(0.5))
        assert marker in seen, bytes(seen[-2000:])
        return True

    eventually(arrived, timeout, 0.0, f"{marker!r} on the console")
    return bytes(seen)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def guest_facts(console: Any) -> list[str]:
    """The tiny guest's answer to `vmhost-facts` typed on its console shell, one `VMHOST-…` line per fact."""
    token = secrets.token_hex(4)
    console.write(f"\rvmhost-facts {token}\r".encode())
    end = f"VMHOST-FACTS-END {token}".encode()
    seen = read_console_until(console, end, timeout=60).decode(errors="replace")
    answer = seen.rpartition(f"VMHOST-FACTS-BEGIN {token}")[2].partition(end.decode())[0]
    return [line.strip() for line in answer.splitlines() if line.strip().startswith("VMHOST-")]


def guest_fact(console: Any, kind: str, key: str) -> str:
    """The value of the fact `VMHOST-<kind> <key> <value>`, or "" when the guest does not list it."""
    for line in guest_facts(console):
        parts = line.split(maxsplit=2)
        if parts[0] == f"VMHOST-{kind}" and len(parts) == 3 and parts[1] == key:
            return parts[2]
    return ""


def live_domain_xml(name: str) -> etree._Element:
    """The running domain's XML, read on a connection of its own (lxml element)."""
    conn = libvirt.open(URI)
    try:
        return etree.fromstring(conn.lookupByName(name).XMLDesc(0).encode())
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_bridge(prefix: str) -> Iterator[str]:
    """A bridge of the test's own, `prefix` and random hex (at most 15 characters), up; removed afterwards."""
    name = f"{prefix}{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)


def media_iso(directory: Path, name: str, text: str) -> Path:
    """An ISO (volume `name`) holding vmhost.txt with `text`, readable by QEMU."""
    content = directory / name
    content.mkdir()
    (content / "vmhost.txt").write_text(text + "\n")
    iso = directory / f"{name}.iso"
    subprocess.run(["genisoimage", "-quiet", "-R", "-V", name, "-o", str(iso), str(content)], check=True)
    iso.chmod(0o644)
    return iso
