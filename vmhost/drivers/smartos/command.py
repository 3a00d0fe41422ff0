"""Running vmadm: argv lists only, its stderr carried into vmhost errors."""

import re
import subprocess
from pathlib import Path

from vmhost.errors import HypervisorError, NotFound, Unavailable
from vmhost.host import commands
from vmhost.host.files import atomic_write

USAGE_ERROR = 2
NOT_FOUND = re.compile(r"No such zone configured|VM \S+ not found|bad statusCode: 404")
"""vmadm's three ways of saying it does not know a UUID: `get` rewords vminfod's 404 as zoneadm's message
(vmadm.js main); graceful stop, update and delete say "VM <uuid> not found" (VM.js vminfodEventGetVM); start,
stop -F and reboot pass vminfod's "bad statusCode: 404" on (VM.load -> vminfod/client.js)."""
CANNOT_RUN = "FATAL: cannot run because:"
"""vmadm.js: onlyif.rootInSmartosGlobal refused (not root, not SmartOS, not the global zone); also exit 2."""


class Vmadm:
    def __init__(self, command: str, timeout: float):
        self.command = command
        self.timeout = timeout

    def argv(self, *args: str) -> list[str]:
        return [self.command, *args]

    def run(self, *args: str, what: str, timeout: float | None = None) -> str:
        """stdout of `vmadm args...`; `what` names the VM (or host) in the error."""
        limit = self.timeout if timeout is None else timeout
        done = commands.run(
            self.argv(*args),
            limit,
            translate=lambda done: failure(args[0], what, done.returncode, done.stderr),
            missing=self._missing(),
            timed_out=lambda: HypervisorError(f"vmadm {args[0]} for {what} did not finish within {limit:.0f}s"),
        )
        return done.stdout

    def spawn(self, *args: str) -> "subprocess.Popen[str]":
        """A vmadm command left running (a graceful stop blocks until the VM is down)."""
        return commands.spawn(self.argv(*args), missing=self._missing())

    def _missing(self) -> str:
        return f"cannot run {self.command} (is this a SmartOS global zone?)"

    def write_payload(self, path: Path, text: str) -> Path:
        """Payloads may carry a VNC password: readable by root only (atomic_write's 0600 from the first byte)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
        return path


def failure(command: str, what: str, returncode: int, stderr: str) -> HypervisorError | NotFound | Unavailable:
    detail = stderr.strip()
    if NOT_FOUND.search(detail):
        return NotFound(f"vmadm has no VM {what}", detail)
    if returncode == USAGE_ERROR and detail.startswith(CANNOT_RUN):
        return Unavailable(f"vmadm cannot run here (it needs root in a SmartOS global zone) for {what}", detail)
    if returncode == USAGE_ERROR:
        return HypervisorError(f"vmadm refused the {command} command line for {what} (usage error)", detail)
    return HypervisorError(f"vmadm {command} failed for {what}", detail)
