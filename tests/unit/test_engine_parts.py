"""Pure parts of the engine and config: merge patches, the state model, locks, host config."""

import threading
import time

import pytest

from vmhost.config import HostConfig, load_config
from vmhost.engine.locks import VmLocks
from vmhost.engine.merge import merge_patch
from vmhost.engine.states import LEGAL, VmState, is_legal
from vmhost.errors import Conflict, VmhostError


def test_merge_patch_merges_objects_replaces_lists_and_deletes_nulls():
    target = {"cpu": {"vcpus": 1, "mode": "auto"}, "disks": [1, 2], "description": "x"}
    patch = {"cpu": {"vcpus": 2}, "disks": [3], "description": None}
    assert merge_patch(target, patch) == {"cpu": {"vcpus": 2, "mode": "auto"}, "disks": [3]}
    assert target["cpu"]["vcpus"] == 1


def test_states_only_reach_running_through_a_start_or_observation():
    assert is_legal(VmState.STOPPED, VmState.STARTING)
    assert is_legal(VmState.STARTING, VmState.RUNNING)
    assert not is_legal(VmState.PROVISIONING, VmState.RUNNING)
    assert all(is_legal(state, VmState.CRASHED) for state in LEGAL)


def test_lock_serialises_one_vm_but_not_two(tmp_path):
    locks = VmLocks(tmp_path)
    order = []

    def hold(name, tag):
        with locks.hold(name):
            order.append(f"{tag}-in")
            time.sleep(0.2)
            order.append(f"{tag}-out")

    threads = [threading.Thread(target=hold, args=("a", i)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order[0][0] == order[1][0]
    with locks.hold("a"), locks.hold("b", timeout=0.1):
        assert locks.is_held("a")


def test_lock_timeout_is_a_conflict(tmp_path):
    locks = VmLocks(tmp_path)
    with locks.hold("a"), pytest.raises(Conflict, match="another operation on a"), locks.hold("a", timeout=0.1):
        pass


def test_discarded_lock_file_is_recreated_for_the_next_holder(tmp_path):
    locks = VmLocks(tmp_path)
    with locks.hold("a"):
        locks.discard("a")
    with locks.hold("a", timeout=1):
        assert locks.is_held("a")


def test_config_reads_toml_and_refuses_unknown_settings(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('accel = "tcg"\ndata_dir = "/srv/vmhost"\nstop_timeout = 5\n')
    config = load_config(path)
    assert (config.accel, str(config.data_dir), config.stop_timeout) == ("tcg", "/srv/vmhost", 5.0)
    path.write_text('acel = "tcg"\n')
    with pytest.raises(VmhostError, match="unknown setting"):
        load_config(path)
    path.write_text('accel = "xen"\n')
    with pytest.raises(VmhostError, match="accel must be"):
        load_config(path)


def test_config_defaults_to_kvm_and_system_libvirt():
    assert HostConfig().accel == "kvm"
    assert HostConfig().libvirt_uri == "qemu:///system"


def test_store_adds_new_columns_to_an_older_database(tmp_path):
    import sqlite3

    from vmhost.store.sqlite import Store

    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE vms (name TEXT PRIMARY KEY, uuid TEXT NOT NULL UNIQUE, driver TEXT NOT NULL, spec TEXT NOT NULL,"
        " state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', owned_paths TEXT NOT NULL DEFAULT '[]',"
        " created_at REAL NOT NULL, updated_at REAL NOT NULL)"
    )
    old.execute("INSERT INTO vms VALUES ('a', 'u', 'libvirt', '{}', 'running', '', '[]', 1, 1)")
    old.commit()
    old.close()
    record = Store(path).get_vm("a")
    assert record is not None
    assert (record.state, record.desired_state, record.restart_count) == ("running", "stopped", 0)
