"""The driver contract as a specification: each driver declares what vmhost implements on it, a call for what
it does not declare raises Unsupported naming the driver and the capability (HTTP 501), DriverSet answers for
the driver of a spec or a VM, statistics are typed in vmhost's units, and the metrics are built from them."""

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vmhost.api.errors import error_body, status_of
from vmhost.api.metrics import VmCollector
from vmhost.client import error_from_body
from vmhost.drivers.base import Capability, DiskIO, DomainState, DomainStats, NicIO, Resources
from vmhost.drivers.libvirt import LibvirtDriver
from vmhost.drivers.libvirt.stats import typed_stats
from vmhost.drivers.multi import DriverSet
from vmhost.drivers.netstats import host_end_io
from vmhost.drivers.runc.driver import RuncDriver
from vmhost.drivers.smartos import VmadmDriver
from vmhost.drivers.xen import XlDriver
from vmhost.errors import Unsupported
from vmhost.spec import parse_spec
from vmhost.spec.units import MiB

C = Capability
VM = {"name": "web", "memory": "64MiB"}
CONTAINER = {
    "name": "box",
    "kind": "container",
    "memory": "64MiB",
    "container": {"rootfs": {"type": "directory", "path": "/"}, "command": ["true"]},
}
PCI = "0000:03:00.0"


def test_each_driver_declares_only_what_vmhost_implements_on_it_today():
    live_changes = {C.NIC_HOTPLUG, C.VCPU_HOTPLUG, C.MEMORY_HOTPLUG, C.DISK_RESIZE, C.MEDIA_CHANGE}
    assert LibvirtDriver.capabilities == {
        C.PAUSE,
        C.REBOOT,
        C.CONSOLE,
        C.DISK_HOTPLUG,
        C.PCI_PASSTHROUGH,
        C.SNAPSHOTS,
        C.LIVE_MIGRATION,
        C.OFFLINE_MIGRATION,
        *live_changes,
    }
    assert XlDriver.capabilities == {C.PAUSE, C.REBOOT, C.CONSOLE, C.PCI_PASSTHROUGH}
    assert VmadmDriver.capabilities == {C.REBOOT, C.CONSOLE}
    assert RuncDriver.capabilities == {C.PAUSE}


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(Unsupported) as refused:
        call()
    assert refused.value.message == f"the {refused.value.driver} driver does not support {refused.value.capability}"
    return refused.value.driver, refused.value.capability


def test_a_call_for_what_a_driver_does_not_declare_is_unsupported_naming_both(tmp_path: Path):
    runc = RuncDriver("runc", tmp_path / "runc")
    xen = XlDriver("xl", tmp_path / "xen", sysfs=tmp_path, xl_conf=tmp_path / "xl.conf")
    smartos = VmadmDriver("vmadm")
    spec, resources = parse_spec(VM), Resources(console_log=tmp_path / "console.log")
    assert refusal(lambda: runc.request_reboot("box")) == ("runc", "reboot")
    assert refusal(lambda: runc.reset("box")) == ("runc", "reboot")
    assert refusal(lambda: runc.open_console("box")) == ("runc", "console")
    assert refusal(lambda: runc.attach_disk(spec, resources, "vdb")) == ("runc", "disk-hotplug")
    assert refusal(lambda: runc.detach_disk(spec, resources, "vdb")) == ("runc", "disk-hotplug")
    assert refusal(lambda: runc.reserve_pci(PCI)) == ("runc", "pci-passthrough")
    assert refusal(lambda: xen.attach_disk(spec, resources, "xvdb")) == ("xen", "disk-hotplug")
    assert refusal(lambda: xen.detach_disk(spec, resources, "xvdb")) == ("xen", "disk-hotplug")
    assert refusal(lambda: smartos.pause("web")) == ("smartos", "pause")
    assert refusal(lambda: smartos.attach_disk(spec, resources, "disk1")) == ("smartos", "disk-hotplug")
    assert refusal(lambda: smartos.reserve_pci(PCI)) == ("smartos", "pci-passthrough")


@pytest.mark.parametrize("kind", ["runc", "xen", "smartos"])
def test_live_changes_are_unsupported_by_the_drivers_that_do_not_declare_them(tmp_path: Path, kind: str):
    driver = {
        "runc": lambda: RuncDriver("runc", tmp_path / "runc"),
        "xen": lambda: XlDriver("xl", tmp_path / "xen", sysfs=tmp_path, xl_conf=tmp_path / "xl.conf"),
        "smartos": lambda: VmadmDriver("vmadm"),
    }[kind]()
    spec, resources = parse_spec(VM), Resources(console_log=tmp_path / "console.log")
    mac = "52:54:00:00:00:01"
    calls = [
        (lambda: driver.attach_nic(spec, resources, mac), "nic-hotplug"),
        (lambda: driver.detach_nic(spec, resources, mac, 10), "nic-hotplug"),
        (lambda: driver.set_vcpus("web", 2), "vcpu-hotplug"),
        (lambda: driver.set_memory(spec, resources, 2**30), "memory-hotplug"),
        (lambda: driver.resize_disk("web", "vda", 2**30), "disk-resize"),
        (lambda: driver.change_media(spec, resources, "sda"), "media-change"),
    ]
    for call, capability in calls:
        assert refusal(call) == (kind, capability)
        assert capability not in {c.value for c in driver.capabilities}


@pytest.fixture
def drivers(tmp_path: Path) -> DriverSet:
    xen = XlDriver("xl", tmp_path / "xen", sysfs=tmp_path, xl_conf=tmp_path / "xl.conf")
    drivers = DriverSet({"xen": xen, "runc": RuncDriver("runc", tmp_path / "runc")}, "xen")
    drivers.locate = {"web": "xen", "box": "runc"}.get
    return drivers


def test_driver_set_answers_for_the_driver_of_a_spec_or_of_a_vm(drivers: DriverSet):
    assert drivers.capabilities_for(parse_spec(VM)) == XlDriver.capabilities
    assert drivers.capabilities_for(parse_spec(CONTAINER)) == RuncDriver.capabilities
    assert drivers.capabilities_of("web") == XlDriver.capabilities
    assert drivers.capabilities_of("box") == RuncDriver.capabilities


def test_require_passes_a_declared_capability_and_refuses_the_rest_naming_the_driver(drivers: DriverSet):
    drivers.require("web", C.PAUSE)
    drivers.require(parse_spec(CONTAINER), C.PAUSE)
    assert refusal(lambda: drivers.require("box", C.REBOOT)) == ("runc", "reboot")
    assert refusal(lambda: drivers.require(parse_spec(VM), C.DISK_HOTPLUG)) == ("xen", "disk-hotplug")
    assert refusal(lambda: drivers.require("web", C.SNAPSHOTS)) == ("xen", "snapshots")


def test_the_capability_matrix_lists_each_driver_in_capability_order(drivers: DriverSet):
    assert drivers.capability_matrix() == {"xen": ["pause", "reboot", "console", "pci-passthrough"], "runc": ["pause"]}


def test_unsupported_is_http_501_and_the_client_gets_the_same_error_back():
    refused = Unsupported("runc", "reboot", "stop and start box instead")
    body = error_body(refused)
    assert status_of(refused) == 501
    assert body == {
        "code": "unsupported",
        "message": "the runc driver does not support reboot",
        "details": {"driver": "runc", "capability": "reboot", "hint": "stop and start box instead"},
    }
    again = error_from_body(body)
    assert isinstance(again, Unsupported)
    assert (again.driver, again.capability, again.detail) == ("runc", "reboot", "stop and start box instead")


# ---- typed statistics and the metrics built from them ---------------------------------------------------

LIBVIRT_RECORD = {
    "state.state": 1,
    "cpu.time": 2_500_000_000,
    "vcpu.current": 2,
    "balloon.current": 65536,
    "balloon.rss": 131072,
    "block.count": 1,
    "block.0.name": "vda",
    "block.0.rd.bytes": 4096,
    "block.0.wr.bytes": 512,
    "block.0.rd.reqs": 3,
    "block.0.wr.reqs": 1,
    "net.count": 1,
    "net.0.name": "vnet0",
    "net.0.rx.bytes": 100,
    "net.0.tx.bytes": 200,
    "net.0.rx.pkts": 1,
    "net.0.tx.pkts": 2,
}
WEB = DomainStats(
    name="web",
    state=DomainState.RUNNING,
    cpu_seconds=2.5,
    vcpus=2,
    memory_bytes=64 * MiB,
    rss_bytes=128 * MiB,
    disks=(DiskIO("vda", read_bytes=4096, write_bytes=512, read_requests=3, write_requests=1),),
    nics=(NicIO("vnet0", receive_bytes=100, transmit_bytes=200, receive_packets=1, transmit_packets=2),),
)


def test_libvirt_bulk_stats_become_typed_stats_in_vmhost_units():
    assert typed_stats("web", DomainState.RUNNING, LIBVIRT_RECORD) == WEB


def test_a_domain_libvirt_reports_no_counters_for_has_none():
    assert typed_stats("off", DomainState.SHUTOFF, {"state.state": 5}) == DomainStats("off", DomainState.SHUTOFF)


class StatsEngine:
    """What the collector asks of the engine: the cached VM list and the driver's statistics."""

    def __init__(self, stats: list[DomainStats]):
        self.driver = self
        self.stats = stats

    def domain_stats(self) -> list[DomainStats]:
        return self.stats

    def list_vms_cached(self) -> list[Any]:
        """This agent's VMs: those the statistics name, less any named "foreign-*" (another agent's)."""
        owned = [entry for entry in self.stats if not entry.name.startswith("foreign-")]
        return [(SimpleNamespace(name=entry.name, uuid="u-" + entry.name), None) for entry in owned]


def scrape(*stats: DomainStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed from the exposition text."""
    registry = CollectorRegistry()
    registry.register(VmCollector(StatsEngine(list(stats))))  # type: ignore[arg-type]
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
        if s.name != "vmhost_vm_state"
    }


def vm(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"vm": name, **labels}.items()))


def test_metrics_are_built_from_typed_stats_with_the_same_names_and_labels():
    assert scrape(WEB) == {
        ("vmhost_vm_cpu_seconds_total", vm("web")): 2.5,
        ("vmhost_vm_vcpus", vm("web")): 2,
        ("vmhost_vm_memory_bytes", vm("web")): 64 * MiB,
        ("vmhost_vm_memory_rss_bytes", vm("web")): 128 * MiB,
        ("vmhost_vm_block_read_bytes_total", vm("web", device="vda")): 4096,
        ("vmhost_vm_block_write_bytes_total", vm("web", device="vda")): 512,
        ("vmhost_vm_block_read_requests_total", vm("web", device="vda")): 3,
        ("vmhost_vm_block_write_requests_total", vm("web", device="vda")): 1,
        ("vmhost_vm_network_receive_bytes_total", vm("web", interface="vnet0")): 100,
        ("vmhost_vm_network_transmit_bytes_total", vm("web", interface="vnet0")): 200,
        ("vmhost_vm_network_receive_packets_total", vm("web", interface="vnet0")): 1,
        ("vmhost_vm_network_transmit_packets_total", vm("web", interface="vnet0")): 2,
    }


def test_what_a_driver_cannot_know_is_left_out_of_the_metrics_not_reported_as_zero():
    assert scrape(DomainStats("quiet", DomainState.RUNNING, vcpus=1)) == {("vmhost_vm_vcpus", vm("quiet")): 1}


def test_metrics_leave_out_stopped_vms_and_other_agents_domains():
    ours = DomainStats("ours", DomainState.RUNNING, uuid="u-ours", vcpus=1)
    stopped = DomainStats("off", DomainState.SHUTOFF, vcpus=1)
    foreign = DomainStats("foreign-vm", DomainState.RUNNING, vcpus=1)
    same_name_other_uuid = DomainStats("twin", DomainState.RUNNING, uuid="someone-else", vcpus=1)
    assert scrape(ours, stopped, foreign, same_name_other_uuid) == {("vmhost_vm_vcpus", vm("ours")): 1}


def test_nic_io_read_at_the_host_end_is_turned_round_to_the_guests_view(tmp_path: Path):
    statistics = tmp_path / "class/net/vh0abc/statistics"
    statistics.mkdir(parents=True)
    for counter, value in {"rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1, "tx_packets": 2}.items():
        (statistics / counter).write_text(f"{value}\n")
    assert host_end_io("vh0abc", tmp_path) == NicIO("vh0abc", 20, 10, 2, 1)
    assert host_end_io("gone", tmp_path) is None
