"""Turn libvirt exceptions into messages an operator understands, keeping libvirt's words as detail."""

import re

import libvirt

from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, Unavailable, VmhostError

_PATTERNS: list[tuple[re.Pattern[str], type[VmhostError], str]] = [
    (
        re.compile(r"Cannot allocate memory|cannot set up guest memory|Out of memory|failed to allocate"),
        HostResourceError,
        "not enough host memory to start {name}",
    ),
    (
        re.compile(r"Cannot get interface MTU on '([^']+)'|bridge '?([^' ]+)'? (?:does not exist|not found)"),
        HostResourceError,
        "bridge {match} does not exist on this host",
    ),
    (
        re.compile(r"Network not found: no network with matching name '([^']+)'"),
        HostResourceError,
        "libvirt network {match} does not exist",
    ),
    (re.compile(r"network '([^']+)' is not active"), HostResourceError, "libvirt network {match} is not active"),
    (
        re.compile(r"(?:PCI device|Requested operation is not valid: PCI device) (\S+) is in use"),
        HostResourceError,
        "PCI device {match} is busy (in use by another VM or driver)",
    ),
    (
        re.compile(r"Could not access KVM kernel module|/dev/kvm|unsupported configuration: Domain requires KVM"),
        HostResourceError,
        'KVM is not available on this host; set accel = "tcg" in the vmhost config',
    ),
    (
        re.compile(r"Could not open '([^']+)': Permission denied|Permission denied"),
        HostResourceError,
        "QEMU may not read a file {name} needs (permission denied)",
    ),
    (re.compile(r"domain is already running"), Conflict, "{name} is already running"),
    (
        re.compile(r"already exists with uuid|domain '[^']+' already exists"),
        Conflict,
        "a VM named {name} already exists in libvirt",
    ),
]


_CONNECTION_ERRORS = {
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
}


def translate(exc: libvirt.libvirtError, name: str, action: str) -> VmhostError:
    """Map a libvirtError to the most specific vmhost error; unknown ones say QEMU/libvirt refused."""
    detail = exc.get_error_message() or str(exc)
    if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
        return NotFound(f"no VM named {name} in libvirt", detail)
    if exc.get_error_code() in _CONNECTION_ERRORS and exc.get_error_domain() in (
        libvirt.VIR_FROM_REMOTE,
        libvirt.VIR_FROM_RPC,
    ):
        return Unavailable(f"lost the connection to libvirt while trying to {action} {name}", detail)
    for pattern, kind, message in _PATTERNS:
        found = pattern.search(detail)
        if found:
            match = next((g for g in found.groups() if g), "") if found.groups() else ""
            return kind(message.format(name=name, match=match), detail)
    return HypervisorError(f"libvirt/QEMU refused to {action} {name}", detail)
