"""Operator-facing errors: a plain message first, the technical detail attached, never a traceback."""


class VmhostError(Exception):
    """Base for every error an operator should read; `detail` carries the hypervisor's own words."""

    code = "error"

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(VmhostError):
    code = "not_found"


class Conflict(VmhostError):
    """The request clashes with what exists: a name in use, a VM running where it must be stopped."""

    code = "conflict"


class HostResourceError(VmhostError):
    """The host cannot provide what the spec asks for (memory, a bridge, a device)."""

    code = "host_resource"


class Unavailable(VmhostError):
    """The hypervisor cannot be reached right now (e.g. libvirtd restarting); retry later."""

    code = "unavailable"


class PeerUnreachable(Unavailable):
    """The other agent of a migration did not answer (connection refused or lost, timeout, 5xx): worth retrying."""


class HypervisorError(VmhostError):
    """The hypervisor refused or failed an operation."""

    code = "hypervisor"


class RenderHookError(VmhostError):
    """A plugin's render hook failed, or left a document the hypervisor would refuse; the plugin is named."""

    code = "hook_failed"


class Unsupported(VmhostError):
    """The VM's driver cannot do what was asked (a capability it does not declare); checked before anything runs."""

    code = "unsupported"

    def __init__(self, driver: str, capability: str, detail: str | None = None):
        super().__init__(f"the {driver} driver does not support {capability}", detail)
        self.driver = driver
        self.capability = capability
