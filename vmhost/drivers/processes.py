"""Host processes the drivers watch or kill (QEMU, a container's init, the runc shim), read from /proc."""

import os
import signal
from pathlib import Path

ZOMBIE_STATES = ("Z", "X")


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 onwards: state, ppid, ...); None if there is no such pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(fields: list[str]) -> int:
    """The process's start time in clock ticks since boot, from its stat fields."""
    return int(fields[19])


def cmdline(pid: int) -> bytes:
    """The NUL-separated command line; empty when the process is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def sigkill(pid: int) -> bool:
    """False when the process was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
