"""Containers on the real runc: rootfs from a directory or an image tarball, limits, mounts, networks, the log."""

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.busybox import busybox_layout, busybox_rootfs
from tests.conformance.runc_harness import wait_for_log
from tests.integration.conftest import allowed_test_roots
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.errors import Unsupported
from vmhost.spec import SpecError

pytestmark = pytest.mark.integration
PREFIX = f"vmhost-ct-{secrets.token_hex(3)}-"


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    config = HostConfig(data_dir=data_dir, stop_timeout=10, allowed_paths=allowed_test_roots(data_dir))
    engine = Engine(config, build_drivers(config))
    yield engine
    for record in engine.store.list_vms():
        engine.delete(record.name)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_rootfs(tmp_path_factory.mktemp("rootfs") / "busybox")


def spec(name: str, rootfs: dict[str, Any], script: str, **container: Any) -> dict[str, Any]:
    return {
        "name": PREFIX + name,
        "kind": "container",
        "memory": "48MiB",
        "container": {"rootfs": rootfs, "command": ["sh", "-c", f"{script}; echo DONE; sleep 1000"], **container},
    }


def run(engine: Engine, document: dict[str, Any]) -> str:
    engine.create(document, start=True)
    return wait_for_log(engine, document["name"], "DONE")


def test_directory_rootfs_with_env_workdir_hostname_and_bind_mounts(engine, rootfs, tmp_path):
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "hello").write_text("from the host")
    document = spec(
        "dir",
        {"type": "directory", "path": str(rootfs)},
        "echo env=$GREETING; echo cwd=$(pwd); echo host=$(hostname); cat /ro/hello; echo; echo made > /rw/out; "
        "echo nope > /ro/x || echo ro-refused",
        env={"GREETING": "hi"},
        workdir="/tmp",
        hostname="edge-1",
        mounts=[
            {"source": str(tmp_path / "rw"), "target": "/rw"},
            {"source": str(tmp_path / "ro"), "target": "/ro", "read_only": True},
        ],
    )
    log = run(engine, document)
    for line in ("env=hi", "cwd=/tmp", "host=edge-1", "from the host", "ro-refused"):
        assert line in log
    assert (tmp_path / "rw" / "out").read_text() == "made\n"
    assert not (tmp_path / "ro" / "x").exists()


def test_image_tarball_supplies_env_and_workdir_and_memory_limit_is_enforced(engine, tmp_path):
    tarball = busybox_layout(tmp_path / "busybox", as_tarball=True)
    document = spec(
        "image",
        {"type": "oci-layout", "path": str(tarball)},
        "echo image=$IMAGE cwd=$(pwd); cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory.max",
    )
    log = run(engine, document)
    assert "image=busybox cwd=/tmp" in log
    assert str(48 * 2**20) in log
    info = engine.info(document["name"])
    assert info["runtime"]["pid"] > 0
    bundle = Path(info["console_log"]).parent / "container" / "bundle"
    config = json.loads((bundle / "config.json").read_text())
    assert config["linux"]["resources"]["memory"] == {"limit": 48 * 2**20}
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()


@pytest.fixture
def bridge() -> Iterator[str]:
    name = f"vmhbr{secrets.token_hex(2)}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "del", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"vmhost-test-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "marker0", "type", "veth", "peer", "name", "marker1"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


def test_bridge_mode_plugs_a_veth_into_the_bridge_before_the_workload_runs(engine, rootfs, bridge):
    document = spec(
        "bridged",
        {"type": "directory", "path": str(rootfs)},
        "ip -o link show eth0",
        network={"mode": "bridge", "bridge": bridge},
    )
    log = run(engine, document)
    assert "eth0" in log
    assert "UP" in log.split("eth0", 1)[1].splitlines()[0]
    [host_end] = engine.driver.interfaces(document["name"])
    assert (
        f"master {bridge}"
        in subprocess.run(["ip", "-o", "link", "show", host_end], capture_output=True, text=True, check=False).stdout
    )
    engine.delete(document["name"])
    assert subprocess.run(["ip", "link", "show", host_end], capture_output=True, check=False).returncode != 0


def test_netns_mode_joins_the_named_namespace_and_none_has_loopback_only(engine, rootfs, netns):
    joined = spec(
        "joined", {"type": "directory", "path": str(rootfs)}, "ip -o link", network={"mode": "netns", "netns": netns}
    )
    assert "marker0" in run(engine, joined)
    alone = spec("alone", {"type": "directory", "path": str(rootfs)}, "echo links=$(ip -o link | wc -l)")
    assert "links=1" in run(engine, alone)


def test_console_is_the_log_and_reboot_is_refused_clearly(engine, rootfs):
    """Refused as Unsupported (HTTP 501), naming the runc driver and the capability it lacks."""
    document = spec("log", {"type": "directory", "path": str(rootfs)}, "echo to-the-log")
    run(engine, document)
    with pytest.raises(Unsupported, match="the runc driver does not support console"):
        engine.open_console(document["name"])
    with pytest.raises(Unsupported, match="the runc driver does not support reboot"):
        engine.reboot(document["name"])


def test_bad_rootfs_is_refused_at_create_with_nothing_left(engine, tmp_path):
    document = spec("norootfs", {"type": "oci-layout", "path": str(tmp_path / "nothing.tar")}, "true")
    with pytest.raises(SpecError, match=r"container\.rootfs\.path"):
        engine.create(document)
    assert engine.store.get_vm(document["name"]) is None
    assert not (engine.config.data_dir / "containers" / "index" / document["name"]).exists()
