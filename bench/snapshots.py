"""Snapshots: vmhost's create and revert vs raw `virsh snapshot-create-as` / `snapshot-revert` on the same VM.

One tiny guest (128 MiB, a 64 MiB qcow2 data disk), made and booted by vmhost (an in-process Engine on its own
data dir). Each round, interleaved: vmhost takes a full snapshot (internal, with the memory state) and virsh takes
one of the same running VM; then each reverts to its own one (libvirt starts a new QEMU with -loadvm both times);
then both snapshots are deleted again (untimed). Run 0 is a warm-up on both sides.

Alone:  .venv/bin/python bench/snapshots.py [--rounds N]
"""

import argparse
import shutil
import sys
import time
from dataclasses import dataclass

from harness import (
    GUEST_DIR,
    PREFIX,
    URI,
    BenchError,
    Series,
    Workspace,
    fmt,
    guest_spec,
    make_workspace,
    progress,
    timed,
    virsh,
)

from vmhost.config import HostConfig
from vmhost.drivers.select import build_drivers
from vmhost.engine import Engine

TARGET = 1.10
BOOT_WAIT = 180.0


@dataclass
class SnapshotResult:
    create_vmhost: Series
    create_virsh: Series
    revert_vmhost: Series
    revert_virsh: Series

    def _row(self, number: str, what: str, ours: Series, theirs: Series, verb: str) -> list[str]:
        ratio = ours.median / theirs.median
        return [
            number,
            f"snapshot {what} (full, running), median of {len(ours.values)}",
            f"vmhost {fmt(ours.median)}",
            f"virsh {verb} {fmt(theirs.median)}",
            f"vmhost/virsh {ratio:.3f}",
            f"<= {TARGET:.2f}",
            "ok" if ratio <= TARGET else "MISSED",
        ]

    def table_rows(self, number: str = "10") -> list[list[str]]:
        return [
            self._row(f"{number}a", "create", self.create_vmhost, self.create_virsh, "snapshot-create-as"),
            self._row(f"{number}b", "revert", self.revert_vmhost, self.revert_virsh, "snapshot-revert"),
        ]

    def raw_lines(self, number: str = "10") -> list[tuple[str, str]]:
        return [
            (f"{number}a snapshot create, vmhost", self.create_vmhost.describe()),
            (f"{number}a snapshot create, virsh snapshot-create-as", self.create_virsh.describe()),
            (f"{number}b snapshot revert, vmhost", self.revert_vmhost.describe()),
            (f"{number}b snapshot revert, virsh snapshot-revert", self.revert_virsh.describe()),
        ]


def bench_snapshots(workspace: Workspace, rounds: int) -> SnapshotResult:
    data_dir = workspace.root / "snapshot-data"
    data_dir.mkdir(mode=0o711)
    config = HostConfig(libvirt_uri=URI, data_dir=data_dir, accel="tcg", allowed_paths=(GUEST_DIR, data_dir))
    engine = Engine(config, build_drivers(config))
    name = PREFIX + "snap"
    try:
        engine.create(guest_spec(name, "128MiB", disks=[{"source": {"type": "new", "size": "64MiB"}}]), start=True)
        _wait_booted(engine, name)
        result = SnapshotResult(Series(), Series(), Series(), Series())
        for index in range(rounds + 1):
            progress(f"snapshot round {index}/{rounds}")
            times = _round(engine, name, f"vmhost-{index}", f"virsh-{index}")
            if index > 0:
                series = (result.create_vmhost, result.create_virsh, result.revert_vmhost, result.revert_virsh)
                for each, seconds in zip(series, times, strict=True):
                    each.values.append(seconds)
        return result
    finally:
        try:
            engine.delete(name)
        finally:
            engine.store.close()


def _round(engine: Engine, name: str, ours: str, theirs: str) -> list[float]:
    """Create vmhost's and virsh's snapshot, revert to each, delete both (untimed)."""
    times = [
        timed(lambda: engine.create_snapshot(name, ours)),
        timed(lambda: virsh("snapshot-create-as", name, theirs)),
        timed(lambda: engine.revert_snapshot(name, ours)),
        timed(lambda: virsh("snapshot-revert", name, theirs)),
    ]
    engine.delete_snapshot(name, ours)
    virsh("snapshot-delete", name, theirs)
    return times


def _wait_booted(engine: Engine, name: str) -> None:
    log = engine.console_log_path(name)
    deadline = time.monotonic() + BOOT_WAIT
    while "VMHOST-GUEST-DEVICES-DONE" not in (log.read_text(errors="replace") if log.exists() else ""):
        if time.monotonic() > deadline:
            raise BenchError(f"{name} did not boot within {BOOT_WAIT:.0f}s")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    workspace = make_workspace()
    try:
        result = bench_snapshots(workspace, rounds)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workspace.root, ignore_errors=True)
    for row in result.table_rows():
        print(" | ".join(row))
    for label, text in result.raw_lines():
        print(f"{label}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
