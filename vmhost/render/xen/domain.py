"""Identity, guest type, vCPUs and memory: name, uuid, type, vcpus/maxvcpus, cpus, cpu_weight, memory/maxmem."""

import re
from typing import Literal

from vmhost.render.xen.context import Problems
from vmhost.render.xen.values import Settings, XlNumber, XlString, strings
from vmhost.spec import VMSpec
from vmhost.spec.units import MiB

DomainType = Literal["pvh", "hvm"]
XEN_DEFAULT_WEIGHT = 256
CGROUP_DEFAULT_WEIGHT = 100
UNPINNED = "all"
I440FX_MACHINES = re.compile(r"^pc(-i440fx-[0-9.]+)?$")


def domain_type(spec: VMSpec) -> DomainType:
    """PVH (no device model) for a direct kernel boot that needs nothing emulated; HVM otherwise.

    A display, a CD-ROM or a passed-through PCI device needs QEMU (PVH has none in Xen 4.17), and HVM
    guests can boot a kernel directly too.
    """
    needs_device_model = spec.graphics is not None or spec.cdroms or spec.passthrough.pci
    return "pvh" if spec.boot.kernel is not None and not needs_device_model else "hvm"


def domain_settings(spec: VMSpec) -> Settings:
    settings: Settings = {
        "name": XlString(spec.name),
        "uuid": XlString(str(spec.uuid)),
        "type": XlString(domain_type(spec)),
        "memory": XlNumber(spec.memory.size // MiB),
    }
    if spec.memory.max_size is not None:
        settings["maxmem"] = XlNumber(spec.memory.max_size // MiB)
    settings["vcpus"] = XlNumber(spec.cpu.vcpus)
    if spec.cpu.max_vcpus is not None:
        settings["maxvcpus"] = XlNumber(spec.cpu.max_vcpus)
    if spec.cpu.pinning:
        settings["cpus"] = strings(vcpu_affinity(spec))
    if spec.cpu.shares is not None:
        settings["cpu_weight"] = XlNumber(cpu_weight(spec.cpu.shares))
    return settings


def vcpu_affinity(spec: VMSpec) -> list[str]:
    """xl's per-vCPU form: entry i pins vCPU i; vCPUs the spec leaves unpinned get "all"."""
    pinned = {pin.vcpu: pin.host_cpus for pin in spec.cpu.pinning}
    return [pinned.get(vcpu, UNPINNED) for vcpu in range(max(pinned) + 1)]


def cpu_weight(shares: int) -> int:
    """The spec's weight is relative to cgroup's default of 100; Xen's credit scheduler defaults to 256."""
    return round(shares * XEN_DEFAULT_WEIGHT / CGROUP_DEFAULT_WEIGHT)


def domain_problems(spec: VMSpec) -> Problems:
    problems: Problems = []
    if spec.numa:
        problems.append(("numa", "guest NUMA cells (xl vnuma) are not supported on the xen driver"))
    if spec.boot.machine and not I440FX_MACHINES.match(spec.boot.machine):
        problems.append(
            (
                "boot.machine",
                f"Xen runs HVM guests on its own i440fx-based machine; {spec.boot.machine} is not available",
            )
        )
    return problems
