"""Host and live-domain facts the ZStack dialect answers with, from the driver contract.

capacity and connect need CPU speed, sockets and the libvirt and QEMU versions (Driver.host_facts); getvncport
needs the port QEMU actually bound (Driver.graphics_ports). ZStack's KVM agent protocol reports libvirt's
versions, so a host whose VM driver has none answers with a clear error instead of guessing.
"""

from dataclasses import dataclass

from vmhost.engine import Engine
from vmhost.errors import HypervisorError


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    cpu_mhz: int
    cpu_sockets: int
    memory_total: int
    libvirt_version: str
    qemu_version: str


def host_facts(engine: Engine) -> HostFacts:
    facts = engine.driver.host_facts()
    versions = facts.versions
    if "libvirt" not in versions or "qemu" not in versions:
        known = ", ".join(f"{name} {version}" for name, version in versions.items()) or "none"
        raise HypervisorError(f"the ZStack dialect needs libvirt and QEMU; this host's VM driver reports {known}")
    return HostFacts(
        cpus=facts.cpus,
        cpu_mhz=facts.cpu_mhz,
        cpu_sockets=facts.cpu_sockets,
        memory_total=facts.memory_total,
        libvirt_version=versions["libvirt"],
        qemu_version=versions["qemu"],
    )


def graphics_ports(engine: Engine, name: str) -> dict[str, int]:
    """{'vnc': port, 'spice': port} of the running VM; -1 while it has not bound one yet."""
    return engine.driver.graphics_ports(name)
