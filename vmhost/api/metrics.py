"""Prometheus metrics: per-VM numbers from libvirt's bulk stats at scrape time, plus the agent's own."""

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vmhost.engine import Engine
from vmhost.engine.states import VmState

_BLOCK = {"rd.bytes": "read_bytes", "wr.bytes": "write_bytes", "rd.reqs": "read_requests", "wr.reqs": "write_requests"}
_NET = {
    "rx.bytes": "receive_bytes",
    "tx.bytes": "transmit_bytes",
    "rx.pkts": "receive_packets",
    "tx.pkts": "transmit_packets",
}


class VmCollector(Collector):
    """One bulk hypervisor call per scrape (domainListGetStats with NOWAIT), never one call per VM."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        yield self._states()
        stats = self.engine.driver.bulk_stats()
        yield from self._cpu_and_memory(stats)
        yield from self._devices(stats, "block", ["vm", "device"], _BLOCK, "vmhost_vm_block_{}_total")
        yield from self._devices(stats, "net", ["vm", "interface"], _NET, "vmhost_vm_network_{}_total")

    def _states(self) -> Metric:
        family = GaugeMetricFamily("vmhost_vm_state", "1 for the state each VM is in", labels=["vm", "uuid", "state"])
        for record, state in self.engine.list_vms_cached():
            for candidate in VmState:
                family.add_metric([record.name, record.uuid, candidate.value], 1.0 if candidate == state else 0.0)
        return family

    @staticmethod
    def _cpu_and_memory(stats: list[dict[str, Any]]) -> Iterator[Metric]:
        cpu = CounterMetricFamily("vmhost_vm_cpu_seconds", "CPU time used by the VM", labels=["vm"])
        vcpus = GaugeMetricFamily("vmhost_vm_vcpus", "vCPUs online", labels=["vm"])
        memory = GaugeMetricFamily("vmhost_vm_memory_bytes", "Memory given to the guest (balloon)", labels=["vm"])
        rss = GaugeMetricFamily("vmhost_vm_memory_rss_bytes", "Host memory the VM's QEMU uses", labels=["vm"])
        for entry in stats:
            name = entry["name"]
            if "cpu.time" in entry:
                cpu.add_metric([name], entry["cpu.time"] / 1e9)
            if "vcpu.current" in entry:
                vcpus.add_metric([name], entry["vcpu.current"])
            if "balloon.current" in entry:
                memory.add_metric([name], entry["balloon.current"] * 1024)
            if "balloon.rss" in entry:
                rss.add_metric([name], entry["balloon.rss"] * 1024)
        yield from (cpu, vcpus, memory, rss)

    @staticmethod
    def _devices(
        stats: list[dict[str, Any]], group: str, labels: list[str], names: dict[str, str], template: str
    ) -> Iterator[Metric]:
        families = {
            key: CounterMetricFamily(template.format(metric).removesuffix("_total"), f"{group} {metric}", labels=labels)
            for key, metric in names.items()
        }
        for entry in stats:
            for index in range(int(entry.get(f"{group}.count", 0))):
                device = entry.get(f"{group}.{index}.name", str(index))
                for key, family in families.items():
                    value = entry.get(f"{group}.{index}.{key}")
                    if value is not None:
                        family.add_metric([entry["name"], device], value)
        yield from families.values()


def registry_for(engine: Engine) -> CollectorRegistry:
    """The per-VM collector plus the process-wide registry (operation counters and latencies, process stats)."""
    registry = CollectorRegistry()
    registry.register(VmCollector(engine))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry) + generate_latest(REGISTRY)
