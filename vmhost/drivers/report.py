"""The host as `GET /v1/host` and `vmhost host` show it: its facts, each driver's capabilities, how many VMs."""

import socket
from typing import Any, Protocol

from vmhost import __version__
from vmhost.drivers.base import HostInfo


class Reporting(Protocol):
    def host_info(self) -> HostInfo: ...

    def capability_matrix(self) -> dict[str, list[str]]: ...


def host_report(drivers: Reporting, vms: int) -> dict[str, Any]:
    """One shape for the API and the local CLI, so both print the same."""
    info = drivers.host_info()
    capabilities = drivers.capability_matrix()
    return {
        "hostname": socket.gethostname(),
        "agent_version": __version__,
        "hypervisor": info.hypervisor,
        "cpus": info.cpus,
        "memory_total": info.memory_total,
        "memory_available": info.memory_available,
        "accel": info.accel,
        "drivers": list(capabilities),
        "capabilities": capabilities,
        "vms": vms,
    }
