"""Running vmadm: argv lists only, its stderr carried into vmhost errors."""

import re
import subprocess
from pathlib import Path

from vmhost.errors import HypervisorError, NotFound, Unavailable

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
        try:
            done = subprocess.run(  # noqa: S603 - argv list; UUIDs and paths vmhost made
                self.argv(*args), capture_output=True, text=True, check=False, timeout=limit
            )
        except OSError as exc:
            raise Unavailable(f"cannot run {self.command} (is this a SmartOS global zone?)", str(exc)) from None
        except subprocess.TimeoutExpired:
            raise HypervisorError(f"vmadm {args[0]} for {what} did not finish within {limit:.0f}s") from None
        if done.returncode != 0:
            raise failure(args[0], what, done.returncode, done.stderr)
        return done.stdout

    def spawn(self, *args: str) -> "subprocess.Popen[str]":
        """A vmadm command left running (a graceful stop blocks until the VM is down)."""
        try:
            return subprocess.Popen(  # noqa: S603 - argv list; a UUID vmadm listed
                self.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
        except OSError as exc:
            raise Unavailable(f"cannot run {self.command} (is this a SmartOS global zone?)", str(exc)) from None

    def write_payload(self, path: Path, text: str) -> Path:
        """Payloads may carry a VNC password: readable by root only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(text)
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
