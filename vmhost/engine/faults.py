"""Fault injection for recovery tests: SIGKILL this process at a named point of an operation.

Enabled only by the test-only environment variable VMHOST_TEST_KILL_AT=<point>; a no-op otherwise.
"""

import os
import signal

KILL_AT = "VMHOST_TEST_KILL_AT"


def point(name: str) -> None:
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
