"""Running `xl` (argv lists only) and reading what it prints, in xl(1)'s own formats.

Output formats come from tools/xl/xl_info.c (Xen 4.17): `xl list -v` prints a header, then one line per domain
"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f" followed by the UUID, the shutdown reason code and the security
label; `xl info` prints "key                    : value" lines.
"""

import re
import subprocess
from dataclasses import dataclass

from vmhost.drivers.base import DomainState
from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, Unavailable, VmhostError
from vmhost.host import commands

COMMAND_TIMEOUT = 60.0
"""For the calls that do not wait on a guest or a device model (list, info, destroy, pause, ...)."""
LIST_FIELDS = 7
"""name, id, mem, vcpus, state, time, uuid: the leading columns of `xl list -v`."""
NOT_FOUND = re.compile(
    r"is an invalid domain identifier|Error: Domain '[^']*' does not exist\.|Can't get domid of domain name"
    r"|Non-existant domain"
)
"""xl's own words for a missing domain (xl_utils.c find_domain, xl_info.c main_list/main_domid, libxl_domain.c
libxl__destroy_domid). A hotplug script's "... does not exist." is about a device, not the domain."""
NO_XEN = re.compile(r"cannot init xl context|cannot open libxc handle|xencall: error")
NO_MEMORY = re.compile(r"failed to free memory for the domain|Cannot allocate memory")
IN_USE = re.compile(r"already exists|already in use")
CONSOLE_BUSY = "Could not lock"
"""tools/console/client/main.c console_lock: another client holds the domain's console."""


class XlTimeout(HypervisorError):
    """xl was killed at vmhost's deadline: whatever it was building may be left half-done."""


@dataclass(frozen=True)
class XlDomain:
    """One line of `xl list -v`."""

    name: str
    domid: int
    memory_mib: int
    vcpus: int
    flags: str
    """r running, b blocked, p paused, s shut down, then the shutdown reason (- r s c w S), d dying."""
    cpu_seconds: float
    uuid: str

    @property
    def state(self) -> DomainState:
        return domain_state(self.flags)


def domain_state(flags: str) -> DomainState:
    """A shut-down domain still listed is a shell xl's monitor is about to destroy or restart, except after a
    crash or watchdog reset (on_crash preserve, or caught before the monitor acted): then it crashed."""
    paused, shutdown, reason, dying = flags[2], flags[3], flags[4], flags[5]
    if dying == "d":
        return DomainState.SHUTTING_DOWN
    if shutdown == "s":
        return DomainState.CRASHED_PRESERVED if reason in "cw" else DomainState.SHUTTING_DOWN
    if paused == "p":
        return DomainState.PAUSED
    return DomainState.RUNNING


def parse_list(output: str) -> list[XlDomain]:
    domains = []
    for line in output.splitlines()[1:]:
        fields = line.split()
        if len(fields) < LIST_FIELDS:
            continue
        name, domid, memory, vcpus, flags, seconds, uuid = fields[:LIST_FIELDS]
        domains.append(XlDomain(name, int(domid), int(memory), int(vcpus), flags, float(seconds), uuid))
    return domains


def parse_info(output: str) -> dict[str, str]:
    info = {}
    for line in output.splitlines():
        key, separator, value = line.partition(":")
        if separator:
            info[key.strip()] = value.strip()
    return info


class Xl:
    def __init__(self, command: str):
        self.command = command

    def run(self, *args: str, target: str, action: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """stdout of `xl args...`; a failure becomes the vmhost error that fits xl's message."""
        return self.result(*args, target=target, action=action, timeout=timeout).stdout

    def result(
        self, *args: str, target: str, action: str, timeout: float = COMMAND_TIMEOUT
    ) -> "subprocess.CompletedProcess[str]":
        """The finished call, for commands whose exit status says nothing (pause, unpause, trigger)."""
        return commands.run(
            [self.command, *args],
            timeout,
            translate=lambda done: translate(done.stderr.strip(), target, action),
            missing=self._missing(),
            timed_out=lambda: XlTimeout(f"xl did not {action} {target} within {timeout:.0f}s"),
        )

    def spawn(self, *args: str) -> "subprocess.Popen[str]":
        """An xl call left running: shutdown and reboot wait up to 60 s for the guest's acknowledgement."""
        return commands.spawn([self.command, *args], missing=self._missing())

    def _missing(self) -> str:
        return f"the xl command {self.command!r} was not found (is xen-utils installed?)"


def translate(stderr: str, target: str, action: str) -> VmhostError:
    """xl exits 1 (or 2 for usage, or -rc for create) and says why on stderr; that text is kept as detail."""
    if NOT_FOUND.search(stderr):
        return NotFound(f"Xen has no domain named {target}", stderr)
    if NO_MEMORY.search(stderr):
        return HostResourceError(f"not enough free Xen memory to {action} {target}", stderr)
    if IN_USE.search(stderr):
        return Conflict(f"cannot {action} {target}: it is already in use", stderr)
    if NO_XEN.search(stderr):
        return Unavailable(f"xl cannot reach Xen to {action} {target} (is this dom0, with xenstored running?)", stderr)
    return HypervisorError(f"xl failed to {action} {target}", stderr)
