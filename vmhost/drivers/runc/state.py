"""A container's state from files alone (runc's state.json under --root, the shim's files): no process is spawned,
so states() stays cheap enough to poll every half second.

runc itself derives "created/running/paused/stopped" the same way: the init process alive (same start time),
the exec fifo still present (created, not started), the freezer cgroup frozen (paused).
"""

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmhost.drivers import processes
from vmhost.drivers.base import DomainState
from vmhost.drivers.runc import shim

STOP_REQUESTED = "stop-requested"
"""Written before vmhost signals a container: an exit that follows is a stop, not a crash."""


@dataclass(frozen=True)
class Live:
    """The runc container of a running (or created, or paused) workload."""

    pid: int
    created: bool
    frozen: bool
    cgroups: dict[str, str]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks; None if it is gone or a zombie."""
    fields = processes.stat_fields(pid)
    return None if fields is None or fields[0] in processes.ZOMBIE_STATES else processes.start_ticks(fields)


def alive(pid: int, started: int | None = None) -> bool:
    start = _start_time(pid)
    return start is not None and (started is None or start == started)


def _frozen(cgroups: dict[str, str]) -> bool:
    with contextlib.suppress(OSError):
        if "freezer" in cgroups:
            return Path(cgroups["freezer"], "freezer.state").read_text().strip() == "FROZEN"
        if "" in cgroups:
            return Path(cgroups[""], "cgroup.freeze").read_text().strip() == "1"
    return False


def live(runc_root: Path, name: str) -> Live | None:
    state = _read_json(runc_root / name / "state.json")
    if not isinstance(state, dict):
        return None
    pid = int(state.get("init_process_pid") or 0)
    if pid <= 0 or not alive(pid, state.get("init_process_start")):
        return None
    cgroups = dict(state.get("cgroup_paths") or {})
    return Live(pid, (runc_root / name / "exec.fifo").exists(), _frozen(cgroups), cgroups)


def runc_knows(runc_root: Path, name: str) -> bool:
    """runc still has a container of this name (perhaps a stopped one that must be deleted first)."""
    return (runc_root / name / "state.json").exists()


def shim_alive(files: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        pid = int((files / shim.SHIM_PID_FILE).read_text())
        return alive(pid) and b"vmhost.drivers.runc.shim" in processes.cmdline(pid)
    return False


def exit_state(files: Path) -> DomainState:
    """How the last run ended: a clean exit (or any exit vmhost asked for) is SHUTOFF, anything else CRASHED."""
    status = _read_json(files / shim.EXIT_FILE)
    if (files / STOP_REQUESTED).exists():
        return DomainState.SHUTOFF
    if isinstance(status, dict) and status.get("code") == 0:
        return DomainState.SHUTOFF
    return DomainState.CRASHED


def state(runc_root: Path, name: str, files: Path) -> DomainState:
    """`files` is the container's directory (the definition exists: ABSENT is the caller's business)."""
    current = live(runc_root, name)
    if current is not None:
        return DomainState.PAUSED if current.created or current.frozen else DomainState.RUNNING
    if (files / shim.EXIT_FILE).exists():
        return exit_state(files)
    if runc_knows(runc_root, name):
        # the init is gone but its exit is not written yet: the shim is on it, or died with it
        return DomainState.SHUTTING_DOWN if shim_alive(files) else exit_state(files)
    return DomainState.SHUTOFF


def cpu_time(cgroups: dict[str, str]) -> int:
    """Nanoseconds of CPU the container used: cgroup v1 cpuacct.usage, or v2 cpu.stat usage_usec."""
    with contextlib.suppress(OSError, ValueError):
        if "cpuacct" in cgroups:
            return int(Path(cgroups["cpuacct"], "cpuacct.usage").read_text())
        if "" in cgroups:
            for line in Path(cgroups[""], "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) * 1000
    return 0
