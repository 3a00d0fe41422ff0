"""Snapshots on real libvirt/QEMU (TCG) with the tiny guest: full ones (internal, with memory) and disk-only ones
(external overlays) brought back with the guest's own marker read on its console, merged on delete, kept across
an agent restart, removed with the VM, refused with reasons, and recovered after the agent is SIGKILLed at each
journaled step.

The guest writes a marker on its raw qcow2 data disk (`dd of=/dev/vda`) and reads it back (`head -c`).
"""

import contextlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu
import pytest
from lxml import etree

from tests.eventually import eventually
from tests.integration.conftest import PREFIX, URI, allowed_test_roots, read_console_until, wait_for_count
from tests.integration.test_recovery import AgentProcess
from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine
from vmhost.errors import Conflict, HypervisorError, NotFound
from vmhost.spec import SpecError
from vmhost.store.sqlite import Store

READY = "VMHOST-GUEST-DEVICES-DONE"
PROMPT = b"vmhost-guest#"
BOOT_WAIT = 300.0
"""This machine is shared and loaded: a TCG boot may take minutes."""


class Guest:
    """The module's running VM and its console."""

    def __init__(self, engine: Engine, name: str):
        self.engine, self.name = engine, name
        self.boots = 1
        self._opener = ThreadPoolExecutor(1)
        self.console = self._open()

    def _open(self) -> Any:
        """From a thread of its own, so on a libvirt connection of its own (the driver keeps one per thread): the
        engine's calls in this thread never queue behind the console's stream."""
        return self._opener.submit(self.engine.open_console, self.name).result()

    def reconnect(self, booted: bool) -> None:
        """After a revert: a new QEMU (libvirt starts one with -loadvm for a full revert; a disk-only revert boots
        the guest again), so a new console."""
        self.console.close()
        if booted:
            self.boots += 1
            wait_for_count(self.engine, self.name, READY, self.boots, timeout=BOOT_WAIT)
        self.console = self._open()

    def shell(self, command: str, expect: bytes, timeout: float = 120) -> bytes:
        self.console.write(f"\r{command}\r".encode())
        return read_console_until(self.console, expect, timeout)

    def write_marker(self, marker: str) -> None:
        token = secrets.token_hex(3)
        command = f"echo {marker} | dd of=/dev/vda conv=notrunc 2>/dev/null; sync; echo W-{token}-$((1+1))"
        self.shell(command, f"W-{token}-2".encode())

    def marker(self) -> str:
        token = secrets.token_hex(3)
        command = f"echo 3 > /proc/sys/vm/drop_caches; echo R-{token}=$(head -c 3 /dev/vda)=$((2+3))E"
        seen = self.shell(command, b"=5E")
        found = re.search(rf"R-{token}=(.*?)=5E".encode(), seen)
        assert found is not None, seen[-500:]
        return found.group(1).decode()


@pytest.fixture(scope="module")
def config(_no_leftovers: None) -> Iterator[HostConfig]:
    """Outside pytest's temporary root: a concurrent pytest run may make that 0700, and a QEMU started later (a
    revert starts a new one) could then not reach the disks."""
    data_dir = Path(tempfile.mkdtemp(prefix="vmhost-snap-", dir="/var/tmp"))
    data_dir.chmod(0o711)
    yield HostConfig(
        libvirt_uri=URI, data_dir=data_dir, accel="tcg", stop_timeout=30, allowed_paths=allowed_test_roots(data_dir)
    )
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def engine(config: HostConfig) -> Iterator[Engine]:
    engine = Engine(config, build_drivers(config))
    yield engine
    for record in engine.store.list_vms():
        engine.delete(record.name)
    engine.store.close()


def spec_of(guest: dict[str, Path], name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "memory": "256MiB",
        "boot": {
            "kernel": {"kernel": str(guest["kernel"]), "initrd": str(guest["initrd"]), "cmdline": "console=ttyS0 quiet"}
        },
        "disks": [{"source": {"type": "new", "size": "16MiB"}}],
        "guest_agent": False,
        **fields,
    }


@contextlib.contextmanager
def booted(engine: Engine, spec: dict[str, Any]) -> Iterator[Guest]:
    engine.create(spec, start=True)
    wait_for_count(engine, spec["name"], READY, 1, timeout=BOOT_WAIT)
    vm = Guest(engine, spec["name"])
    try:
        vm.shell("", PROMPT, 30)
        yield vm
    finally:
        vm.console.close()


@pytest.fixture(scope="module")
def running(engine: Engine, guest: dict[str, Path]) -> Iterator[Guest]:
    """Booted once for the module; it has the guest agent channel, but the tiny guest runs no agent."""
    with booted(engine, spec_of(guest, f"{PREFIX}snap", guest_agent=True)) as vm:
        yield vm


@pytest.fixture(scope="module")
def reverting(engine: Engine, guest: dict[str, Path]) -> Iterator[Guest]:
    """The guest whose reverts the agent is killed in."""
    with booted(engine, spec_of(guest, f"{PREFIX}snap-revert")) as vm:
        yield vm


def domain_xml(name: str, live: bool = True) -> etree._Element:
    conn = libvirt.open(URI)
    try:
        flags = 0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE
        return etree.fromstring(conn.lookupByName(name).XMLDesc(flags).encode())
    finally:
        conn.close()


def libvirt_snapshots(name: str) -> list[str]:
    conn = libvirt.open(URI)
    try:
        return sorted(conn.lookupByName(name).snapshotListNames(0))
    finally:
        conn.close()


def top_file(name: str, live: bool = True) -> str:
    return str(domain_xml(name, live).find("devices/disk[@device='disk']/source").get("file"))


def chain(path: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", "--output=json", path], capture_output=True, text=True, check=True
    )
    return list(json.loads(done.stdout))


def own_disk(engine: Engine, name: str) -> str:
    [path] = engine.record(name).owned_paths
    return path


# ---- full snapshots ---------------------------------------------------------------------------------------


def test_a_full_snapshot_of_the_running_vm_brings_its_marker_back(running: Guest) -> None:
    engine, name = running.engine, running.name
    running.write_marker("one")
    taken = engine.create_snapshot(name, "full-1")
    assert (taken["kind"], taken["vm_state"]) == ("full", "running")
    running.write_marker("two")
    assert running.marker() == "two"

    result = engine.revert_snapshot(name, "full-1")

    assert result["state"] == "running"
    running.reconnect(booted=False)
    assert running.marker() == "one", "the disk and the memory are back as they were"
    assert engine.get(name)["state"] == "running"
    assert [s["name"] for s in engine.list_snapshots(name)] == ["full-1"]
    assert libvirt_snapshots(name) == ["full-1"]
    engine.delete_snapshot(name, "full-1")
    assert engine.list_snapshots(name) == []
    assert libvirt_snapshots(name) == []
    assert "snapshots" not in chain(own_disk(engine, name))[0], "the internal snapshot left the qcow2 file"


# ---- disk-only snapshots ----------------------------------------------------------------------------------


def test_a_disk_only_snapshot_is_an_overlay_reverted_by_vmhost_and_merged_on_delete(running: Guest) -> None:
    engine, name = running.engine, running.name
    base = own_disk(engine, name)
    running.write_marker("aaa")
    taken = engine.create_snapshot(name, "disk-1", disk_only=True)
    overlay = taken["layers"]["vda"]
    assert top_file(name) == overlay == top_file(name, live=False), "the overlay is the top, live and persistent"
    assert [image["filename"] for image in chain(overlay)] == [overlay, base]
    running.write_marker("bbb")
    assert running.marker() == "bbb"

    assert engine.revert_snapshot(name, "disk-1")["state"] == "running"
    running.reconnect(booted=True)
    assert running.marker() == "aaa"
    assert top_file(name) == overlay

    running.write_marker("ccc")
    engine.delete_snapshot(name, "disk-1")
    assert top_file(name) == base == top_file(name, live=False), "pivoted back onto the disk's own image"
    assert len(chain(base)) == 1, "the chain does not grow"
    assert not Path(overlay).exists()
    assert running.marker() == "ccc", "what was written on the overlay was merged down"
    assert engine.list_snapshots(name) == [] and libvirt_snapshots(name) == []


def test_an_update_keeps_the_overlay_as_the_disks_top(engine: Engine, guest: dict[str, Path]) -> None:
    """A redefine from the stored spec (update, restart, recovery) renders the overlay chain the files make."""
    name = f"{PREFIX}snap-update"
    engine.create(spec_of(guest, name))
    overlay = engine.create_snapshot(name, "d1", disk_only=True)["layers"]["vda"]
    engine.update(name, {"cpu": {"vcpus": 2}})
    defined = domain_xml(name, live=False)
    assert top_file(name, live=False) == overlay
    assert defined.find("devices/disk/backingStore/source").get("file") == own_disk(engine, name)
    engine.delete_snapshot(name, "d1")
    assert top_file(name, live=False) == own_disk(engine, name)
    engine.delete(name)


# ---- lifetime -----------------------------------------------------------------------------------------------


def test_snapshots_survive_an_agent_restart_and_go_with_the_vm(
    engine: Engine, config: HostConfig, guest: dict[str, Path]
) -> None:
    name = f"{PREFIX}snap-life"
    engine.create(spec_of(guest, name))
    engine.create_snapshot(name, "stopped-1")
    engine.update(name, {"cpu": {"vcpus": 2}})
    assert engine.revert_snapshot(name, "stopped-1")["state"] == "stopped", "revert works on a stopped VM"
    assert domain_xml(name, live=False).findtext("vcpu") == "2", "the store's spec, not the snapshot's, is defined"
    uuid = engine.record(name).uuid

    restarted = Engine(config, build_drivers(config))
    restarted.recover()
    assert [s["name"] for s in restarted.list_snapshots(name)] == ["stopped-1"]
    assert libvirt_snapshots(name) == ["stopped-1"]

    restarted.delete(name)
    restarted.store.close()
    conn = libvirt.open(URI)
    try:
        assert name not in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()
    assert engine.store.snapshots.of_vm(uuid) == []
    assert not (config.data_dir / "vms" / uuid).exists()


# ---- refusals -------------------------------------------------------------------------------------------


def test_quiesce_is_refused_when_no_agent_answers_and_without_the_channel(
    running: Guest, engine: Engine, guest: dict[str, Path]
) -> None:
    with pytest.raises(HypervisorError, match="guest agent does not respond"):
        engine.create_snapshot(running.name, "quiet", disk_only=True, quiesce=True)
    assert engine.list_snapshots(running.name) == [] and libvirt_snapshots(running.name) == []
    assert top_file(running.name) == own_disk(engine, running.name), "no overlay left behind"
    with pytest.raises(Conflict, match="applies to disk-only"):
        engine.create_snapshot(running.name, "quiet", quiesce=True)
    name = f"{PREFIX}snap-nochan"
    engine.create(spec_of(guest, name))
    with pytest.raises(Conflict, match="is stopped"):
        engine.create_snapshot(name, "quiet", disk_only=True, quiesce=True)
    engine.delete(name)


AGENT_INIT = """#!/bin/sh
# rdinit of the quiesce test's guest: the tiny guest's /init, and qemu-ga on its virtio port once the
# virtio_console module (which /init loads) shows the port.
# A background job's stdin is /dev/null, which needs a node before /init mounts devtmpfs over /dev.
mknod /dev/null c 1 3
(while :; do
    for port in /sys/class/virtio-ports/*; do
        if [ "$(cat "$port/name" 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
            exec /usr/sbin/qemu-ga -m virtio-serial -p "/dev/${port##*/}" -t /run -l /run/qga.log -v
        fi
    done
    sleep 1
done) &
exec /init
"""


def with_guest_agent(initrd: Path, directory: Path) -> Path:
    """The tiny guest's initrd with a second cpio archive appended (the kernel unpacks both): Debian's qemu-ga,
    the host's copies of the libraries it links, and an rdinit that starts it. The shared guest is not touched."""
    root = directory / "root"
    download = directory / "download"
    download.mkdir(parents=True)
    subprocess.run(
        ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "qemu-guest-agent"],
        cwd=download,
        check=True,
        capture_output=True,
    )
    [deb] = download.glob("*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    linked = subprocess.run(["ldd", str(root / "usr/sbin/qemu-ga")], capture_output=True, text=True, check=True)
    for library in re.findall(r"(/\S+) \(0x", linked.stdout):
        (root / library.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(library, root / library.lstrip("/"))
    (root / "run").mkdir()
    (root / "bin").mkdir()
    (root / "bin/vmhost-agent-init").write_text(AGENT_INIT)
    (root / "bin/vmhost-agent-init").chmod(0o755)
    listing = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
    archive = subprocess.run(
        ["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"], cwd=root, input=listing, capture_output=True, check=True
    ).stdout
    out = directory / "initrd-agent.img"
    out.write_bytes(
        initrd.read_bytes() + subprocess.run(["gzip", "-9n"], input=archive, capture_output=True, check=True).stdout
    )
    out.chmod(0o644)
    return out


def agent_command(name: str, command: str) -> Any:
    conn = libvirt.open(URI)
    try:
        answer = libvirt_qemu.qemuAgentCommand(conn.lookupByName(name), json.dumps({"execute": command}), 5, 0)
        return json.loads(answer)["return"]
    finally:
        conn.close()


def test_a_quiesced_disk_only_snapshot_freezes_the_guest_through_its_agent(
    engine: Engine, guest: dict[str, Path], config: HostConfig
) -> None:
    """The tiny guest has only rootfs, proc, sysfs and devtmpfs: qemu-ga freezes none of them (0 filesystems), so
    this proves the path (channel, agent, freeze request, snapshot, thawed after), not a frozen ext4."""
    name = f"{PREFIX}snap-quiesce"
    initrd = with_guest_agent(guest["initrd"], config.data_dir / "agent-guest")
    kernel = {
        "kernel": str(guest["kernel"]),
        "initrd": str(initrd),
        "cmdline": "console=ttyS0 quiet rdinit=/bin/vmhost-agent-init",
    }
    with booted(engine, spec_of(guest, name, guest_agent=True, boot={"kernel": kernel})) as vm:
        eventually(lambda: agent_command(name, "guest-ping") == {}, 120, 1.0, "qemu-ga answering")
        taken = engine.create_snapshot(name, "quiet", disk_only=True, quiesce=True)
        assert top_file(name) == taken["layers"]["vda"]
        assert agent_command(name, "guest-fsfreeze-status") == "thawed", "not left frozen"
        frozen = "grep -c 'execute\":\"guest-fsfreeze-freeze' /run/qga.log"
        seen = vm.shell(f"echo F-$({frozen})-E$((2+2))", b"-E4")
        assert b"F-1-E4" in seen, "libvirt asked the guest's qemu-ga to freeze its filesystems, once"
        vm.write_marker("rrr")
        engine.delete_snapshot(name, "quiet")
        assert vm.marker() == "rrr"
    engine.delete(name)


def test_bad_names_unknown_snapshots_and_raw_disks_are_refused(engine: Engine, guest: dict[str, Path]) -> None:
    name = f"{PREFIX}snap-refuse"
    engine.create(spec_of(guest, name, disks=[{"source": {"type": "new", "size": "8MiB", "format": "raw"}}]))
    for bad in ("../etc", "-x", "a b", "x" * 64, ""):
        with pytest.raises(SpecError, match="snapshot"):
            engine.create_snapshot(name, bad)
    with pytest.raises(Conflict, match="disk vda is raw"):
        engine.create_snapshot(name, "full")
    with pytest.raises(NotFound):
        engine.revert_snapshot(name, "never")
    assert libvirt_snapshots(name) == []
    engine.create_snapshot(name, "raw-overlay", disk_only=True)
    with pytest.raises(Conflict, match="all full or all disk-only"):
        engine.create_snapshot(name, "full-now")
    with pytest.raises(Conflict, match="already has a snapshot"):
        engine.create_snapshot(name, "raw-overlay", disk_only=True)
    uuid = engine.record(name).uuid
    engine.delete(name)
    assert engine.store.snapshots.of_vm(uuid) == [], "a disk-only snapshot goes with its VM too"
    assert not (engine.config.data_dir / "vms" / uuid).exists()


# ---- the agent killed at each journaled step ------------------------------------------------------------------

CREATE_POINTS = ["snapshot-create:begin", "snapshot-create:taken", "snapshot-create:recorded"]
DELETE_POINTS = [
    "snapshot-delete:begin",
    "snapshot-delete:merged",
    "snapshot-delete:metadata-removed",
    "snapshot-delete:layers-removed",
    "snapshot-delete:forgotten",
]


@pytest.fixture(scope="module")
def config_file(config: HostConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snap-config") / "config.toml"
    path.write_text(
        f'libvirt_uri = "{config.libvirt_uri}"\ndata_dir = "{config.data_dir}"\naccel = "tcg"\n'
        f"allowed_paths = {json.dumps([str(root) for root in config.path_roots])}\n"
    )
    return path


@pytest.fixture(scope="module")
def stopped(engine: Engine, guest: dict[str, Path]) -> str:
    name = f"{PREFIX}snap-crash"
    engine.create(spec_of(guest, name))
    return name


def assert_consistent(engine: Engine, name: str, snapshot: str, state: str = "stopped", disk_only: bool = True) -> bool:
    """All or nothing: store row, libvirt metadata, overlay files (a disk-only snapshot's) and the definition's
    top agree. Returns whether the snapshot exists."""
    record = engine.record(name)
    row = engine.store.snapshots.get(record.uuid, snapshot)
    in_libvirt = snapshot in libvirt_snapshots(name)
    layers = list((engine.config.data_dir / "vms" / record.uuid / "snapshots").glob(f"*-{snapshot}/*.qcow2"))
    assert (row is not None) == in_libvirt, (row, in_libvirt)
    assert bool(layers) == (disk_only and in_libvirt), layers
    top = top_file(name, live=False)
    assert top == (str(layers[0]) if layers else own_disk(engine, name))
    assert len(chain(top)) == (2 if layers else 1)
    assert engine.store.unfinished_operations() == []
    if state == "running":
        assert top_file(name) == top, "the live chain and the persistent one agree"
    assert engine.get(name)["state"] == state
    return row is not None


def _killed(config_file: Path, config: HostConfig, point: str, method: str, path: str, **kwargs: Any) -> None:
    dying = AgentProcess(config_file, config.data_dir, point)
    try:
        dying.call(method, path, **kwargs)
        dying.wait_killed()
    finally:
        dying.stop()
    AgentProcess(config_file, config.data_dir).stop()  # recovery runs at start


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_an_interrupted_snapshot_create_is_completed_or_rolled_back(
    point: str, engine: Engine, stopped: str, config_file: Path, config: HostConfig
) -> None:
    body = {"name": "crash", "disk_only": True}
    _killed(config_file, config, point, "POST", f"/v1/vms/{stopped}/snapshots", json=body)
    engine.store = Store(config.db_path)
    exists = assert_consistent(engine, stopped, "crash")
    assert exists == (point != "snapshot-create:begin")
    if exists:
        engine.delete_snapshot(stopped, "crash")


@pytest.mark.parametrize("point", DELETE_POINTS)
def test_an_interrupted_snapshot_delete_is_completed(
    point: str, engine: Engine, stopped: str, config_file: Path, config: HostConfig
) -> None:
    engine.create_snapshot(stopped, "crash", disk_only=True)
    _killed(config_file, config, point, "DELETE", f"/v1/vms/{stopped}/snapshots/crash")
    engine.store = Store(config.db_path)
    assert not assert_consistent(engine, stopped, "crash")
    eventually(lambda: engine.list_snapshots(stopped) == [], 5, 0.1, "the snapshot forgotten")


REVERT_POINTS = [f"snapshot-revert:{step}" for step in ("begin", "stopped", "reverted", "started")]
FULL_REVERT_POINTS = ["snapshot-revert:begin", "snapshot-revert:reverted", "snapshot-revert:redefined"]


def _revived(config_file: Path, config: HostConfig, point: str, name: str, snapshot: str, engine: Engine) -> None:
    """The agent killed in a revert, then started again (its recovery runs before it serves)."""
    _killed(config_file, config, point, "POST", f"/v1/vms/{name}/snapshots/{snapshot}/revert")
    engine.store = Store(config.db_path)


@pytest.mark.parametrize("point", REVERT_POINTS)
def test_an_interrupted_disk_only_revert_of_a_running_vm_is_completed_and_the_guest_boots_again(
    point: str, reverting: Guest, config_file: Path, config: HostConfig
) -> None:
    """Forced off (if the kill came first), a new empty overlay, started again: the guest boots on the snapshot's
    disk, whatever step the agent died after."""
    engine, name = reverting.engine, reverting.name
    reverting.write_marker("old")
    engine.create_snapshot(name, "crash", disk_only=True)
    reverting.write_marker("new")
    _revived(config_file, config, point, name, "crash", engine)
    assert assert_consistent(engine, name, "crash", state="running")
    assert engine.record(name).desired_state == "running"
    reverting.reconnect(booted=True)
    assert reverting.marker() == "old"
    engine.delete_snapshot(name, "crash")


@pytest.mark.parametrize("point", FULL_REVERT_POINTS)
def test_an_interrupted_full_revert_is_nothing_before_libvirt_reverted_and_completed_after(
    point: str, reverting: Guest, config_file: Path, config: HostConfig
) -> None:
    """Once libvirt reverted, recovery writes the store's spec (changed since the snapshot) as the definition."""
    engine, name = reverting.engine, reverting.name
    reverting.write_marker("one")
    engine.create_snapshot(name, "crash-full")
    reverting.write_marker("two")
    engine.update(name, {"cpu": {"vcpus": 2}})
    _revived(config_file, config, point, name, "crash-full", engine)
    reverted = point != "snapshot-revert:begin"
    assert assert_consistent(engine, name, "crash-full", state="running", disk_only=False)
    assert domain_xml(name, live=False).findtext("vcpu") == "2", "the store's spec is defined, not the snapshot's"
    if reverted:
        reverting.reconnect(booted=False)
    assert reverting.marker() == ("one" if reverted else "two")
    engine.delete_snapshot(name, "crash-full")
    engine.update(name, {"cpu": {"vcpus": 1}})


# ---- CLI and API ------------------------------------------------------------------------------------------------


def test_the_cli_takes_lists_reverts_and_deletes(cli: Any, engine: Engine, guest: dict[str, Path]) -> None:
    name = f"{PREFIX}snap-cli"
    engine.create(spec_of(guest, name))
    done = cli("snapshot", "create", name, "c1", "--disk-only")
    assert (done.returncode, done.stdout.strip()) == (0, f"took disk-only snapshot c1 of {name}"), done.stderr
    listed = cli("snapshot", "list", name, "--json")
    assert [(s["name"], s["kind"]) for s in json.loads(listed.stdout)] == [("c1", "disk-only")]
    assert cli("snapshot", "revert", name, "c1").stdout.strip() == f"reverted {name} to c1 (stopped)"
    assert cli("snapshot", "delete", name, "c1").returncode == 0
    refused = cli("snapshot", "create", name, "../up")
    assert refused.returncode == 2 and "snapshot" in refused.stderr
    assert libvirt_snapshots(name) == [] and engine.list_snapshots(name) == []
    engine.delete(name)


def test_the_api_serves_snapshots_as_operations(http: Any, engine: Engine, guest: dict[str, Path]) -> None:
    name = f"{PREFIX}snap-api"
    engine.create(spec_of(guest, name))
    taken = http.post(f"/v1/vms/{name}/snapshots", params={"wait": "true"}, json={"name": "a1"})
    assert taken.status_code == 200, taken.text
    assert (taken.json()["kind"], taken.json()["result"]["kind"]) == ("snapshot-create", "full")
    assert [s["name"] for s in http.get(f"/v1/vms/{name}/snapshots").json()] == ["a1"]
    reverted = http.post(f"/v1/vms/{name}/snapshots/a1/revert", params={"wait": "true"})
    assert reverted.json()["result"]["state"] == "stopped"
    assert http.post(f"/v1/vms/{name}/snapshots", json={"name": "bad/name"}).status_code == 422
    assert http.delete(f"/v1/vms/{name}/snapshots/a1", params={"wait": "true"}).json()["state"] == "succeeded"
    assert http.get(f"/v1/vms/{name}/snapshots").json() == []
    stream = http.get("/v1/events", params={"vm": name}).text
    events = [
        json.loads(line.removeprefix("data: "))["type"] for line in stream.splitlines() if line.startswith("data: ")
    ]
    assert {"snapshot-created", "snapshot-reverted", "snapshot-deleted"} <= set(events)
    engine.delete(name)


@pytest.mark.parametrize("point", ["snapshot-delete:begin", "snapshot-delete:merged"])
def test_an_interrupted_merge_on_a_running_vm_is_completed(
    point: str, running: Guest, config_file: Path, config: HostConfig
) -> None:
    """The block commit and pivot are done (or finished) by recovery; the guest keeps running on its own image."""
    engine, name = running.engine, running.name
    engine.create_snapshot(name, "crash", disk_only=True)
    _killed(config_file, config, point, "DELETE", f"/v1/vms/{name}/snapshots/crash")
    engine.store = Store(config.db_path)
    assert not assert_consistent(engine, name, "crash", state="running")
    assert top_file(name) == own_disk(engine, name)
