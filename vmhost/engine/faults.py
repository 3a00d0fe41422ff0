"""Fault injection for recovery tests: SIGKILL this process (or another) at a named point of an operation.

Enabled only by the test-only environment variable VMHOST_TEST_KILL_AT=<point>; a no-op otherwise. With
VMHOST_TEST_KILL_PIDFILE=<file> the process whose pid the file holds is killed instead (a libvirtd at a step of
a migration), and this one goes on.
"""

import contextlib
import os
import signal
from pathlib import Path

KILL_AT = "VMHOST_TEST_KILL_AT"
KILL_PIDFILE = "VMHOST_TEST_KILL_PIDFILE"


def point(name: str) -> None:
    if os.environ.get(KILL_AT) != name:
        return
    pidfile = os.environ.get(KILL_PIDFILE)
    if not pidfile:
        os.kill(os.getpid(), signal.SIGKILL)
        return
    with contextlib.suppress(OSError, ValueError, IndexError):  # already gone: the fault happened anyway
        os.kill(int(Path(pidfile).read_text().split()[0]), signal.SIGKILL)
