"""libvirt's bulk statistics (virConnectGetAllDomainStats records) as vmhost's typed DomainStats.

libvirt reports memory in KiB and CPU time in ns, and numbers its disks and NICs (block.0.name, net.1.rx.bytes);
this is the one place that knows those key names.
"""

from collections.abc import Mapping
from typing import Any

from vmhost.drivers.base import DiskIO, DomainState, DomainStats, NicIO

DISK_KEYS = {
    "read_bytes": "rd.bytes",
    "write_bytes": "wr.bytes",
    "read_requests": "rd.reqs",
    "write_requests": "wr.reqs",
}
NIC_KEYS = {
    "receive_bytes": "rx.bytes",
    "transmit_bytes": "tx.bytes",
    "receive_packets": "rx.pkts",
    "transmit_packets": "tx.pkts",
}


def typed_stats(name: str, state: DomainState, record: Mapping[str, Any], *, uuid: str = "") -> DomainStats:
    return DomainStats(
        name=name,
        state=state,
        uuid=uuid,
        cpu_seconds=record["cpu.time"] / 1e9 if "cpu.time" in record else None,
        vcpus=record.get("vcpu.current"),
        memory_bytes=_kib(record.get("balloon.current")),
        rss_bytes=_kib(record.get("balloon.rss")),
        disks=tuple(
            DiskIO(record.get(f"block.{i}.name", str(i)), **_counters(record, f"block.{i}.", DISK_KEYS))
            for i in range(int(record.get("block.count", 0)))
        ),
        nics=tuple(
            NicIO(record.get(f"net.{i}.name", str(i)), **_counters(record, f"net.{i}.", NIC_KEYS))
            for i in range(int(record.get("net.count", 0)))
        ),
    )


def _kib(value: int | None) -> int | None:
    return None if value is None else value * 1024


def _counters(record: Mapping[str, Any], prefix: str, keys: Mapping[str, str]) -> dict[str, int | None]:
    return {field: record.get(prefix + key) for field, key in keys.items()}
