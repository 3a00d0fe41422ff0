"""What `xl info` and `xl list -v` report, as vmhost's HostInfo, HostFacts and DomainStats (xl_info.c
output_xeninfo / output_physinfo; memory in MiB, CPU time in seconds)."""

from collections.abc import Iterable, Mapping

from vmhost.drivers.base import DomainStats, HostFacts, HostInfo
from vmhost.drivers.xen.xl import XlDomain
from vmhost.errors import VmhostError
from vmhost.spec.units import MiB


def host_info(info: Mapping[str, str], balloonable_mib: int) -> HostInfo:
    """balloonable_mib: what `xl create` may take from dom0 on top of Xen's free memory (0 without autoballoon)."""
    try:
        return HostInfo(
            hypervisor=f"Xen {info['xen_version']}",
            cpus=int(info["nr_cpus"]),
            memory_total=int(info["total_memory"]) * MiB,
            memory_available=(int(info["free_memory"]) + balloonable_mib) * MiB,
            accel="xen",
        )
    except (KeyError, ValueError) as exc:
        raise VmhostError("`xl info` did not report the host's CPUs and memory", str(exc)) from None


def host_facts(info: Mapping[str, str]) -> HostFacts:
    """Sockets from nr_cpus / (cores_per_socket * threads_per_core); a field xl did not print counts as unknown."""
    cpus = int(info.get("nr_cpus", "0"))
    per_socket = int(info.get("cores_per_socket", "0")) * int(info.get("threads_per_core", "1"))
    return HostFacts(
        cpus=cpus,
        cpu_mhz=int(float(info.get("cpu_mhz", "0"))),
        cpu_sockets=cpus // per_socket if per_socket else 1,
        memory_total=int(info.get("total_memory", "0")) * MiB,
        versions={"xen": info.get("xen_version", "")},
    )


def domain_stats(domains: Mapping[str, XlDomain], names: Iterable[str]) -> list[DomainStats]:
    """The recorded VMs that have a domain: xl list knows CPU seconds, memory and online vCPUs, no device I/O."""
    return [
        DomainStats(
            name=name,
            state=domains[name].state,
            cpu_seconds=domains[name].cpu_seconds,
            vcpus=domains[name].vcpus,
            memory_bytes=domains[name].memory_mib * MiB,
        )
        for name in names
        if name in domains
    ]
