"""Host and live-domain facts ZStack asks for that the Driver contract does not offer (yet).

getvncport needs the port QEMU actually bound, which only the running domain's XML holds, and capacity/connect
need CPU speed, sockets and versions. These are read through the libvirt driver's connection; with any other
driver the paths answer with a clear error instead of guessing.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import libvirt
from lxml import etree

from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.engine import Engine
from vmhost.errors import HypervisorError

T = TypeVar("T")


@dataclass(frozen=True)
class HostFacts:
    cpus: int
    cpu_mhz: int
    cpu_sockets: int
    memory_total: int
    libvirt_version: str
    qemu_version: str


def _libvirt(engine: Engine, what: str, call: Callable[[libvirt.virConnect], T]) -> T:
    driver = engine.driver.drivers.get("libvirt")
    if not isinstance(driver, LibvirtDriver):
        raise HypervisorError(f"{what} needs the libvirt driver; this agent runs {', '.join(engine.driver.drivers)}")
    try:
        return call(driver.conn)
    except libvirt.libvirtError as exc:
        raise HypervisorError(f"cannot {what}", exc.get_error_message()) from None


def _dotted(number: int) -> str:
    """libvirt encodes versions as major*1e6 + minor*1e3 + release."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def host_facts(engine: Engine) -> HostFacts:
    def read(conn: libvirt.virConnect) -> HostFacts:
        _model, _memory_mib, cpus, mhz, nodes, sockets, _cores, _threads = conn.getInfo()
        return HostFacts(
            cpus=cpus,
            cpu_mhz=mhz,
            cpu_sockets=nodes * sockets,
            memory_total=engine.driver.host_info().memory_total,
            libvirt_version=_dotted(conn.getLibVersion()),
            qemu_version=_dotted(conn.getVersion()),
        )

    return _libvirt(engine, "read the host's facts", read)


def graphics_ports(engine: Engine, name: str) -> dict[str, int]:
    """{'vnc': port, 'spice': port} of the running domain; -1 while QEMU has not bound one yet."""

    def read(conn: libvirt.virConnect) -> dict[str, int]:
        domain = etree.fromstring(conn.lookupByName(name).XMLDesc(0))
        return {node.get("type", ""): int(node.get("port", "-1")) for node in domain.iterfind("devices/graphics")}

    return _libvirt(engine, f"read the console port of {name}", read)
