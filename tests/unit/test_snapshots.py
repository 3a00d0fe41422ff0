"""Snapshots without a hypervisor: SmartOS's vmadm verbs through the real engine against the stand-in, the
drivers that refuse, the rules a libvirt VM must meet, the overlay chain the renderer writes, names, the store."""

import sqlite3
from pathlib import Path

import pytest

from tests.fakes.driver import FakeDriver, FakeHypervisor
from tests.fakes.engines import Killed, engine_on, killed_at, restarted
from tests.fakes.engines import spec as fake_spec
from tests.smartos_standin import EXECUTABLE, Standin
from tests.unit.test_smartos_driver import UUID, spec, standin
from vmhost.config import HostConfig
from vmhost.drivers.base import Capability
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.xen.driver import XlDriver
from vmhost.engine import Engine
from vmhost.engine.snapshot_layers import layers
from vmhost.engine.snapshots import check_name, refusals
from vmhost.errors import NotFound, Unsupported
from vmhost.render.libvirt import RenderContext, render_domain, validate_domain_xml
from vmhost.spec import SpecError, parse_spec
from vmhost.store.sqlite import Store

__all__ = ["standin"]


@pytest.fixture
def engine(tmp_path: Path, standin: Standin) -> Engine:
    driver = VmadmDriver(command=str(EXECUTABLE), brand="bhyve")
    return Engine(HostConfig(data_dir=tmp_path / "data", vm_driver="smartos", allowed_paths=(tmp_path,)), driver)


# ---- SmartOS: vmadm create-snapshot / rollback-snapshot / delete-snapshot -----------------------------------


def test_smartos_snapshots_map_onto_vmadm_verbs(engine: Engine, standin: Standin) -> None:
    engine.create(spec())
    taken = engine.create_snapshot("web", "before")
    assert (taken["kind"], taken["vm_state"], taken["layers"]) == ("full", "stopped", {})
    engine.start("web")
    engine.create_snapshot("web", "later", disk_only=True)
    assert [s["name"] for s in standin.vm("web")["snapshots"]] == ["before", "later"]

    result = engine.revert_snapshot("web", "before")

    assert result["state"] == "running", "vmadm boots a VM that ran again after the rollback"
    assert [s["name"] for s in engine.list_snapshots("web")] == ["before"], "vmadm deleted the newer one"
    engine.delete_snapshot("web", "before")
    assert engine.list_snapshots("web") == []
    assert standin.changes()[1:] == [
        ["create-snapshot", UUID, "before"],
        ["start", UUID],
        ["create-snapshot", UUID, "later"],
        ["rollback-snapshot", UUID, "before"],
        ["delete-snapshot", UUID, "before"],
    ]


def test_smartos_refuses_memory_state_and_quiesce(engine: Engine, standin: Standin) -> None:
    engine.create(spec(), start=True)
    with pytest.raises(Unsupported, match="smartos") as refused:
        engine.create_snapshot("web", "with-memory")
    assert "no memory state" in str(refused.value.detail)
    with pytest.raises(Unsupported):
        engine.create_snapshot("web", "frozen", disk_only=True, quiesce=True)
    assert engine.list_snapshots("web") == []
    assert not [args for args in standin.changes() if args[0] == "create-snapshot"]


def test_smartos_snapshots_go_with_the_vm(engine: Engine, standin: Standin) -> None:
    engine.create(spec())
    engine.create_snapshot("web", "s1")
    uuid = engine.record("web").uuid
    engine.delete("web")
    assert engine.store.snapshots.of_vm(uuid) == []


def test_a_kvm_brand_smartos_driver_has_no_snapshots(standin: Standin) -> None:
    assert Capability.SNAPSHOTS not in VmadmDriver(command=str(EXECUTABLE), brand="kvm").capabilities
    assert Capability.SNAPSHOTS in VmadmDriver(command=str(EXECUTABLE), brand="bhyve").capabilities


# ---- drivers without the capability -----------------------------------------------------------------------


@pytest.mark.parametrize("driver_class", [XlDriver, RuncDriver])
def test_xen_and_runc_have_no_snapshots_and_say_what_to_do(driver_class: type) -> None:
    assert Capability.SNAPSHOTS not in driver_class.capabilities
    driver = driver_class.__new__(driver_class)
    with pytest.raises(Unsupported) as refused:
        driver.revert_snapshot("vm", "s1")
    assert refused.value.capability == Capability.SNAPSHOTS
    assert refused.value.detail


def test_the_engine_refuses_before_touching_anything_without_the_capability(tmp_path: Path) -> None:
    driver = FakeDriver(kind="xen", capabilities=frozenset({Capability.PAUSE}))
    engine = Engine(HostConfig(data_dir=tmp_path / "data"), driver)
    engine.create({"name": "vm", "memory": "64MiB"})
    with pytest.raises(Unsupported, match="the xen driver does not support snapshots"):
        engine.create_snapshot("vm", "s1")
    with pytest.raises(Unsupported):
        engine.delete_snapshot("vm", "s1")
    assert engine.list_snapshots("vm") == []
    assert engine.store.operations("vm", limit=5)[0].kind == "create", "no snapshot operation was journaled"


# ---- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/b", "-rf", ".hidden", "a b", "x" * 64, "", "é"])
def test_bad_snapshot_names_are_refused(name: str) -> None:
    with pytest.raises(SpecError, match="snapshot"):
        check_name(name)


def test_good_snapshot_names_pass() -> None:
    for name in ("s1", "before-upgrade", "2026.12.02_1", "x" * 63):
        check_name(name)


def test_an_unknown_snapshot_is_not_found(engine: Engine) -> None:
    engine.create(spec())
    with pytest.raises(NotFound, match="no snapshot nope"):
        engine.revert_snapshot("web", "nope")


# ---- the rules a libvirt VM must meet ------------------------------------------------------------------------


def _spec(**fields: object) -> object:
    return parse_spec(
        {"name": "vm", "memory": "64MiB", "disks": [{"source": {"type": "new", "size": "8MiB"}}], **fields}
    )


def test_uefi_vms_get_no_full_snapshot_but_a_disk_only_one() -> None:
    uefi = _spec(boot={"firmware": "uefi"})
    [reason] = refusals(uefi, disk_only=False, existing=[])  # type: ignore[arg-type]
    assert "UEFI" in reason and "pflash" in reason and "--disk-only" in reason
    assert refusals(uefi, disk_only=True, existing=[]) == []  # type: ignore[arg-type]


def test_raw_and_block_disks_are_refused_by_name() -> None:
    raw = _spec(disks=[{"source": {"type": "new", "size": "8MiB", "format": "raw"}}])
    assert refusals(raw, disk_only=False, existing=[]) == [  # type: ignore[arg-type]
        "disk vda is raw: a full snapshot needs qcow2 disks (or use --disk-only)"
    ]
    assert refusals(raw, disk_only=True, existing=[]) == []  # type: ignore[arg-type]
    block = _spec(disks=[{"source": {"type": "block", "path": "/dev/sda"}}])
    assert refusals(block, disk_only=True, existing=[]) == [  # type: ignore[arg-type]
        "disk vda (block) is not an image file vmhost can snapshot"
    ]


# ---- the chain on disk and in the definition --------------------------------------------------------------


def test_the_overlay_files_make_the_chain_and_the_definition_renders_it(tmp_path: Path) -> None:
    vm_dir = tmp_path / "vm"
    for directory, target in (("0002-second", "vda"), ("0001-first", "vda"), ("0001-first", "vdb")):
        (vm_dir / "snapshots" / directory).mkdir(parents=True, exist_ok=True)
        (vm_dir / "snapshots" / directory / f"{target}.qcow2").touch()
    chain = layers(vm_dir)
    first, second = vm_dir / "snapshots" / "0001-first", vm_dir / "snapshots" / "0002-second"
    assert chain == {"vda": (first / "vda.qcow2", second / "vda.qcow2"), "vdb": (first / "vdb.qcow2",)}

    spec = parse_spec(
        {"name": "vm", "memory": "64MiB", "disks": [{"source": {"type": "new", "size": "8MiB", "format": "raw"}}]}
    )
    own = vm_dir / "disks" / "vda.raw"
    ctx = RenderContext(accel="tcg", console_log=vm_dir / "console.log", disk_paths={"vda": own}, disk_layers=chain)
    domain = render_domain(spec, ctx)
    disk = domain.find("devices/disk")
    assert disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").get("file") == str(second / "vda.qcow2")
    below = disk.find("backingStore")
    assert (below.find("format").get("type"), below.find("source").get("file")) == ("qcow2", str(first / "vda.qcow2"))
    image = below.find("backingStore")
    assert (image.find("format").get("type"), image.find("source").get("file")) == ("raw", str(own))
    assert len(image.find("backingStore")) == 0, "the chain ends at the disk's own raw image"
    assert validate_domain_xml(domain) == []


# ---- the store ------------------------------------------------------------------------------------------------


def test_an_older_database_gets_the_snapshots_table_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE vms (name TEXT PRIMARY KEY)").connection.close()
    store = Store(path)
    assert store.snapshots.of_vm("any") == []
    store.close()


# ---- recovery on the fake hypervisor ------------------------------------------------------------------------


@pytest.mark.parametrize(("point", "kept"), [("snapshot-create:begin", False), ("snapshot-create:taken", True)])
def test_an_interrupted_create_is_kept_only_if_the_hypervisor_took_it(
    point: str, kept: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(fake_spec("web"), start=True)
    with killed_at(monkeypatch, point), pytest.raises(Killed):
        engine.create_snapshot("web", "s1")
    engine = restarted(engine, hypervisor)
    assert [s["name"] for s in engine.list_snapshots("web")] == (["s1"] if kept else [])
    assert hypervisor.domains["web"].live.get("snapshots", []) == (["s1"] if kept else [])


def test_an_interrupted_delete_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hypervisor = FakeHypervisor()
    engine = engine_on(hypervisor, tmp_path / "data")
    engine.create(fake_spec("web"))
    engine.create_snapshot("web", "s1")
    with killed_at(monkeypatch, "snapshot-delete:begin"), pytest.raises(Killed):
        engine.delete_snapshot("web", "s1")
    engine = restarted(engine, hypervisor)
    assert engine.list_snapshots("web") == [] and hypervisor.domains["web"].live["snapshots"] == []
    assert engine.store.operations("web", limit=1)[0].state == "completed by recovery"
