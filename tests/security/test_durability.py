"""Item 8: the journal survives a power loss, every driver state file is replaced durably, and the operation
history stays bounded without ever losing an unfinished operation (the journal a recovery needs)."""

import os
import time

import pytest

from vmhost.config import load_config
from vmhost.drivers.base import Resources
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.engine import steps
from vmhost.errors import VmhostError
from vmhost.host import files
from vmhost.spec import parse_spec
from vmhost.store.sqlite import Store

DAY = 86400.0


def test_the_store_commits_with_synchronous_full(tmp_path):
    store = Store(tmp_path / "state.db")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync call was given: 'file' or 'dir'."""
    calls: list[str] = []
    real = os.fsync

    def record(descriptor: int) -> None:
        calls.append("dir" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file")
        real(descriptor)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_atomic_write_fsyncs_the_file_then_its_directory_and_sets_the_mode(tmp_path, fsyncs):
    target = tmp_path / "state.json"
    target.write_text("old")
    files.atomic_write(target, '{"new": true}', 0o600)
    assert target.read_text() == '{"new": true}'
    assert target.stat().st_mode & 0o777 == 0o600
    assert fsyncs == ["file", "dir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_atomic_write_leaves_the_old_file_and_no_temporary_when_it_fails(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old")

    def broken(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        files.atomic_write(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_container_definition_is_durable_when_define_returns(tmp_path, fsyncs):
    """config.json and definition.json each: file then directory; the index symlink: its directory."""
    (tmp_path / "vm").mkdir()
    (tmp_path / "rootfs").mkdir()
    spec = parse_spec(
        {
            "name": "durable",
            "kind": "container",
            "memory": "48MiB",
            "container": {"rootfs": {"type": "directory", "path": str(tmp_path / "rootfs")}, "command": ["true"]},
        }
    )
    RuncDriver("runc", tmp_path / "state").define(spec, Resources(console_log=tmp_path / "vm" / "console.log"))
    assert fsyncs == ["file", "dir", "file", "dir", "dir"]
    files_dir = tmp_path / "vm" / "container"
    assert sorted(p.name for p in files_dir.iterdir()) == ["bundle", "definition.json"]
    assert sorted(p.name for p in (files_dir / "bundle").iterdir()) == ["config.json"]


def _finished(store: Store, name: str, age_days: float) -> int:
    op = store.begin_operation(name, None, "start")
    store.finish_operation(op, "succeeded")
    store._db.execute("UPDATE operations SET finished_at = ? WHERE id = ?", (time.time() - age_days * DAY, op))
    return op


def _ids(store: Store) -> set[int]:
    return {op.id for op in store.operations(limit=1000)}


def test_pruning_forgets_old_finished_operations_and_keeps_recent_and_unfinished_ones(tmp_path):
    store = Store(tmp_path / "state.db")
    old_running = store.begin_operation("a", None, "create")
    store._db.execute("UPDATE operations SET started_at = ? WHERE id = ?", (time.time() - 90 * DAY, old_running))
    old = _finished(store, "a", 40)
    recent = _finished(store, "a", 2)
    assert store.prune_operations(max_age_days=30, max_operations=100) == 1
    assert _ids(store) == {old_running, recent}
    assert old not in _ids(store)
    assert [op.id for op in store.unfinished_operations()] == [old_running]


def test_pruning_keeps_only_the_newest_finished_operations_beyond_the_count(tmp_path):
    store = Store(tmp_path / "state.db")
    finished = [_finished(store, "b", 0) for _ in range(5)]
    running = store.begin_operation("b", None, "stop")
    assert store.prune_operations(max_age_days=30, max_operations=2) == 3
    assert _ids(store) == {*finished[-2:], running}


def test_history_limits_are_config_keys_and_must_be_positive(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("history_max_age_days = 7\nhistory_max_operations = 500\n")
    config = load_config(path)
    assert (config.history_max_age_days, config.history_max_operations) == (7.0, 500)
    path.write_text("history_max_operations = 0\n")
    with pytest.raises(VmhostError, match="history_max_operations must be positive"):
        load_config(path)
    path.write_text('history_max_age_days = "forever"\n')
    with pytest.raises(VmhostError, match="history_max_age_days must be a positive float"):
        load_config(path)


def test_the_agent_prunes_old_history_at_start_and_after_operations(engine, guest_spec, vm_name, monkeypatch):
    old = _finished(engine.store, "c", 365)
    recent = _finished(engine.store, "c", 1)
    engine.recover()
    assert old not in _ids(engine.store)
    assert recent in _ids(engine.store)
    older = _finished(engine.store, "c", 365)
    monkeypatch.setattr(steps, "PRUNE_EVERY", 1)
    engine.create(guest_spec(vm_name("prune")))
    assert older not in _ids(engine.store)
    assert recent in _ids(engine.store)
