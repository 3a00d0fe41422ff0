"""The per-container shim: keeps a container's exit status, which neither the agent nor a one-shot CLI could learn.

`runc create` detaches: the container's init outlives the runc process, and whoever started runc is not its
parent. Like containerd-shim and conmon, this small process makes itself a child subreaper, runs `runc create`
(the orphaned init is then reparented to it), reports runc's outcome to the driver over its stdout pipe, then
waits for the init, writes its exit status to `exit.json` and removes the stopped container from runc.
It leaves its parent at once (a double fork), so it never lingers as the agent's child.

Standard library only (and vmhost.host, which is): it starts for every container start.

    python -m vmhost.drivers.runc.shim RUNC ROOT ID BUNDLE STATE_DIR LOG
"""

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from vmhost.host.files import atomic_write, open_log

PR_SET_CHILD_SUBREAPER = 36
CREATE_TIMEOUT = 60.0
DELETE_TIMEOUT = 30.0
EXIT_FILE = "exit.json"
PID_FILE = "init.pid"
SHIM_PID_FILE = "shim.pid"
RUNC_LOG = "runc.log"


def _report(outcome: dict[str, object]) -> None:
    """One JSON line to the driver, then stdout goes to /dev/null so the driver's read ends."""
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)


def _runc_errors(state_dir: Path) -> str:
    """The error lines of runc's JSON log (--log-format json), which is where runc explains a failure."""
    messages = []
    with contextlib.suppress(OSError):
        for line in (state_dir / RUNC_LOG).read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("level") in ("error", "fatal"):
                    messages.append(str(entry.get("msg", "")))
    return "; ".join(messages)


def _wait_for(pid: int) -> dict[str, int | None]:
    """Reap every orphan handed to us until the init goes; its exit code, or the signal that killed it."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            while Path(f"/proc/{pid}").exists():  # not our child after all: we can only see it go
                time.sleep(0.2)
            return {"code": None, "signal": None}
        if reaped == pid:
            if os.WIFSIGNALED(status):
                return {"code": None, "signal": os.WTERMSIG(status)}
            return {"code": os.WEXITSTATUS(status), "signal": None}


def run(runc: str, root: str, container_id: str, *, bundle: str, state_dir: Path, log: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        _report({"ok": False, "error": f"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {ctypes.get_errno()}"})
        return 1
    atomic_write(state_dir / SHIM_PID_FILE, str(os.getpid()))
    (state_dir / RUNC_LOG).unlink(missing_ok=True)
    command = [runc, "--root", root, "--log", str(state_dir / RUNC_LOG), "--log-format", "json"]
    with open(os.devnull, "rb") as stdin, open_log(Path(log)) as output:
        try:
            created = subprocess.run(  # noqa: S603 - argv list built by the driver
                [*command, "create", "--bundle", bundle, "--pid-file", str(state_dir / PID_FILE), container_id],
                stdin=stdin,
                stdout=output,
                stderr=output,
                timeout=CREATE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _report({"ok": False, "error": f"runc create did not complete: {exc}"})
            return 1
    if created.returncode != 0:
        _report({"ok": False, "error": _runc_errors(state_dir) or f"runc create exited with {created.returncode}"})
        return 1
    pid = int((state_dir / PID_FILE).read_text())
    _report({"ok": True, "pid": pid})
    status = _wait_for(pid)
    atomic_write(state_dir / EXIT_FILE, json.dumps(status))
    subprocess.run(  # noqa: S603
        [*command, "delete", "--force", container_id],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DELETE_TIMEOUT,
        check=False,
    )
    return 0


def main(argv: list[str]) -> int:
    runc, root, container_id, bundle, state_dir, log = argv
    if os.fork() > 0:
        os._exit(0)  # the driver waits for this; the shim goes on, no longer its child
    # The pid file stays: the driver checks that pid (and its command line) until this process is really gone.
    return run(runc, root, container_id, bundle=bundle, state_dir=Path(state_dir), log=log)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
