"""Start a container's shim and read its one-line report: the init's pid, or why runc could not create it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import vmhost
from vmhost.drivers.runc import shim
from vmhost.errors import HypervisorError
from vmhost.host.fds import wait_readable
from vmhost.host.files import open_log

SHIM_REPORT_TIMEOUT = shim.CREATE_TIMEOUT + 10


def spawn_shim(runc: str, runc_root: Path, name: str, files: Path, log: Path) -> int:
    """The shim runs `runc create` in a session of its own; its first stdout line says how that went."""
    argv = [
        sys.executable,
        "-m",
        "vmhost.drivers.runc.shim",
        runc,
        str(runc_root),
        name,
        str(files / "bundle"),
        str(files),
        str(log),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(vmhost.__file__).parents[1])}
    with open_log(log) as stderr:
        launcher = subprocess.Popen(  # noqa: S603
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd="/",
            env=env,
            start_new_session=True,
        )
    assert launcher.stdout is not None
    with launcher.stdout as report:
        launcher.wait(SHIM_REPORT_TIMEOUT)
        line = report.readline() if wait_readable(report.fileno(), SHIM_REPORT_TIMEOUT) else b""
    try:
        outcome = json.loads(line)
    except ValueError:
        raise HypervisorError(f"the shim of {name} died before runc created it; see {log}") from None
    if not outcome.get("ok"):
        raise HypervisorError(f"runc could not create {name}", str(outcome.get("error")))
    return int(outcome["pid"])
