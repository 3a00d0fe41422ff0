"""The scheduler alone (pure, no etcd): the best-fitting host wins; among hosts equally good it picks at random,
so applies made at the same moment spread instead of all wanting one host and retrying."""

from collections import Counter

from vmhost.fleet.model import HostRecord, Load, Placement
from vmhost.fleet.scheduler import FleetView, HostView, choose

GIB = 1 << 30


def fleet_of(*loads: int) -> FleetView:
    """Hosts host1.. of 8 GiB and 8 vCPUs, with this many GiB desired on each."""
    hosts = {}
    for index, used in enumerate(loads, start=1):
        record = HostRecord(
            name=f"host{index}", kinds=["vm"], drivers=["libvirt"], vcpus=8, memory=8 * GIB, free_memory=8 * GIB
        )
        hosts[record.name] = HostView(record, revision=1, load=Load(vms=used, vcpus=used, memory=used * GIB))
    return FleetView(1, hosts, {}, {}, {}, {}, set(), {})


NEED = Load(vms=1, vcpus=1, memory=GIB)


def test_the_host_with_the_smallest_share_desired_wins_whatever_the_pick() -> None:
    fleet = fleet_of(3, 1, 2)
    assert choose(fleet, "vm", NEED, Placement(), pick=lambda best: best[-1]).name == "host2"


def test_among_equally_good_hosts_the_pick_is_at_random() -> None:
    fleet = fleet_of(1, 1, 1, 4)
    chosen = Counter(choose(fleet, "vm", NEED, Placement()).name for _ in range(300))
    assert set(chosen) == {"host1", "host2", "host3"}, chosen
    assert min(chosen.values()) > 50, chosen


def test_the_pick_is_offered_only_the_equal_best() -> None:
    offered: list[list[str]] = []

    def first(best: list[HostView]) -> HostView:
        offered.append([view.name for view in best])
        return best[0]

    choose(fleet_of(2, 1, 1, 1), "vm", NEED, Placement(), excluded=["host4"], pick=first)
    assert offered == [["host2", "host3"]]
