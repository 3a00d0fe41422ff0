"""Host CPU facts read from the OS, for drivers whose hypervisor does not report them (runc, vmadm)."""

import os
from collections.abc import Mapping
from pathlib import Path

from vmhost.drivers.base import HostFacts

CPUINFO = Path("/proc/cpuinfo")


def os_host_facts(memory_total: int, versions: Mapping[str, str], cpuinfo: Path = CPUINFO) -> HostFacts:
    """Linux /proc/cpuinfo: processors, the first "cpu MHz", distinct "physical id"s; without it (illumos) the
    CPU count only, speed unknown (0) and one socket."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
    mhz = next((value for key, value in fields if key == "cpu MHz"), "0")
    sockets = {value for key, value in fields if key == "physical id"}
    return HostFacts(
        cpus=sum(1 for key, _ in fields if key == "processor") or os.cpu_count() or 0,
        cpu_mhz=int(float(mhz)),
        cpu_sockets=len(sockets) or 1,
        memory_total=memory_total,
        versions=dict(versions),
    )
