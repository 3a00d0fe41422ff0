"""Per-VM locks: one VM's operations never interleave; different VMs start in parallel."""

import sqlite3
from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import wait_for_console, write_json


def test_two_concurrent_starts_of_one_vm_give_one_running_vm(
    cli, engine, guest_spec, vm_name, tmp_path, libvirt_conn, config
):
    name = vm_name("race")
    assert cli("create", "-f", str(write_json(tmp_path / "spec.json", guest_spec(name)))).returncode == 0
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: cli("start", name), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert [d.name() for d in libvirt_conn.listAllDomains() if d.name() == name] == [name]
    assert engine.get(name)["state"] == "running"
    db = sqlite3.connect(config.db_path)
    starts = db.execute("SELECT state FROM operations WHERE vm_name = ? AND kind = 'start'", (name,)).fetchall()
    db.close()
    assert starts == [("succeeded",)]


def start_spans(config, names: list[str]) -> dict[str, tuple[float, float]]:
    """When each VM's start operation began and finished, as the engine recorded it (under the VM's lock)."""
    db = sqlite3.connect(config.db_path)
    rows = db.execute(
        f"SELECT vm_name, started_at, finished_at FROM operations WHERE kind = 'start' AND vm_name IN "
        f"({', '.join('?' for _ in names)})",
        names,
    ).fetchall()
    db.close()
    return {name: (began, finished) for name, began, finished in rows}


def test_four_vms_start_in_parallel(cli, engine, guest_spec, vm_name, tmp_path, config):
    names = [vm_name(f"par{i}") for i in range(4)]
    for name in names:
        assert cli("create", "-f", str(write_json(tmp_path / f"{name}.json", guest_spec(name)))).returncode == 0
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: cli("start", n), names))
    assert [r.returncode for r in results] == [0] * 4, [r.stderr for r in results]
    for name in names:
        wait_for_console(engine, name, "VMHOST-GUEST-READY")
        assert engine.get(name)["state"] == "running"
    spans = start_spans(config, names)
    assert sorted(spans) == sorted(names)
    began, finished = max(span[0] for span in spans.values()), min(span[1] for span in spans.values())
    assert began < finished, f"some start began only after another had finished: {spans}"


def test_concurrent_stop_and_start_leave_a_consistent_state(cli, engine, guest_spec, vm_name, tmp_path):
    name = vm_name("mixed")
    assert cli("create", "-f", str(write_json(tmp_path / "spec.json", guest_spec(name))), "--start").returncode == 0
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda args: cli(*args, name), [("stop", "-F"), ("start",), ("stop", "-F"), ("start",)])
        )
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    state = engine.get(name)["state"]
    assert state in ("running", "stopped")
    assert (engine.driver.state(name).value == "running") == (state == "running")
