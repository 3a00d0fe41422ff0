"""Prometheus metrics: per-VM numbers from the drivers' typed statistics at scrape time, plus the agent's own."""

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmhost.drivers.base import DiskIO, DomainState, DomainStats, NicIO
from vmhost.engine import Engine
from vmhost.engine.states import VmState

DISK_COUNTERS = ("read_bytes", "write_bytes", "read_requests", "write_requests")
NIC_COUNTERS = ("receive_bytes", "transmit_bytes", "receive_packets", "transmit_packets")
COUNTING_STATES = frozenset({DomainState.RUNNING, DomainState.PAUSED, DomainState.SHUTTING_DOWN})
"""Where a VM's counters mean something; a stopped VM reports none."""


def own_active(engine: Engine) -> list[DomainStats]:
    """Counters of this agent's VMs (by name and, where the driver says, UUID) that run now, from one bulk call:
    the hypervisor also reports other agents' domains and stale counters of stopped ones."""
    uuids = {record.name: record.uuid for record, _state in engine.list_vms_cached()}
    return [
        entry
        for entry in engine.driver.domain_stats()
        if entry.name in uuids
        and (not entry.uuid or entry.uuid == uuids[entry.name])
        and entry.state in COUNTING_STATES
    ]


class VmCollector(Collector):
    """One bulk statistics call per scrape (libvirt: domainListGetStats with NOWAIT), never one call per VM."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        yield self._states()
        stats = own_active(self.engine)
        yield from _cpu_and_memory(stats)
        yield from _devices(stats, _disks, "device", DISK_COUNTERS, "block")
        yield from _devices(stats, _nics, "interface", NIC_COUNTERS, "network")

    def _states(self) -> Metric:
        family = GaugeMetricFamily("vmhost_vm_state", "1 for the state each VM is in", labels=["vm", "uuid", "state"])
        for record, state in self.engine.list_vms_cached():
            for candidate in VmState:
                family.add_metric([record.name, record.uuid, candidate.value], 1.0 if candidate == state else 0.0)
        return family


def _cpu_and_memory(stats: list[DomainStats]) -> Iterator[Metric]:
    cpu = CounterMetricFamily("vmhost_vm_cpu_seconds", "CPU time used by the VM", labels=["vm"])
    vcpus = GaugeMetricFamily("vmhost_vm_vcpus", "vCPUs online", labels=["vm"])
    memory = GaugeMetricFamily("vmhost_vm_memory_bytes", "Memory given to the guest (balloon)", labels=["vm"])
    rss = GaugeMetricFamily("vmhost_vm_memory_rss_bytes", "Host memory the VM's QEMU uses", labels=["vm"])
    for entry in stats:
        for family, value in ((cpu, entry.cpu_seconds), (vcpus, entry.vcpus), (memory, entry.memory_bytes)):
            if value is not None:
                family.add_metric([entry.name], value)
        if entry.rss_bytes is not None:
            rss.add_metric([entry.name], entry.rss_bytes)
    yield from (cpu, vcpus, memory, rss)


def _disks(entry: DomainStats) -> Sequence[DiskIO | NicIO]:
    return entry.disks


def _nics(entry: DomainStats) -> Sequence[DiskIO | NicIO]:
    return entry.nics


def _devices(
    stats: list[DomainStats],
    devices: Callable[[DomainStats], Sequence[DiskIO | NicIO]],
    label: str,
    counters: Sequence[str],
    group: str,
) -> Iterator[Metric]:
    """vmhost_vm_<group>_<counter>_total{vm, <label>} for every counter a device reports."""
    families = {
        counter: CounterMetricFamily(f"vmhost_vm_{group}_{counter}", f"{group} {counter}", labels=["vm", label])
        for counter in counters
    }
    for entry in stats:
        for device in devices(entry):
            for counter, family in families.items():
                value = getattr(device, counter)
                if value is not None:
                    family.add_metric([entry.name, getattr(device, label)], value)
    yield from families.values()


def registry_for(engine: Engine) -> CollectorRegistry:
    """The per-VM collector plus the process-wide registry (operation counters and latencies, process stats)."""
    registry = CollectorRegistry()
    registry.register(VmCollector(engine))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry) + generate_latest(REGISTRY)
