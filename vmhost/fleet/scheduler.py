"""Placement: which host a new VM goes to. Pure: it reads one consistent view of the fleet (every key read at one
revision) and names a host, or says for each host why not. The caller writes the choice in a transaction that
fails if that host's view changed meanwhile, and then asks again with fresh data."""

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from vmhost.drivers.multi import CONTAINER_DRIVER
from vmhost.errors import Conflict
from vmhost.fleet.etcd import Entry
from vmhost.fleet.model import Desired, HostRecord, Keys, Load, Placement


class NoHost(Conflict):
    """No host can take the VM: the message names each host and why."""


@dataclass
class HostView:
    record: HostRecord
    revision: int
    """mod_revision of its host key: the placement transaction compares it."""
    load: Load = field(default_factory=Load)
    load_revision: int = 0
    cordoned: bool = False
    groups: set[str] = field(default_factory=set)
    """Anti-affinity groups of the VMs desired on it."""

    @property
    def name(self) -> str:
        return self.record.name


@dataclass
class FleetView:
    """The fleet at one revision: live hosts (those whose lease holds), their load, cordons and desired VMs."""

    revision: int
    hosts: dict[str, HostView]
    members: dict[str, HostRecord]
    desired: dict[tuple[str, str], tuple[Desired, int]]
    """(host, vm) -> desired record and its mod_revision."""
    status: dict[tuple[str, str], dict[str, object]]
    placements: dict[str, str]
    """vm -> the host it is desired on."""
    cordons: set[str]
    loads: dict[str, tuple[Load, int]]
    """Host (live or not) -> its load and the load key's mod_revision."""

    @classmethod
    def read(cls, keys: Keys, entries: Iterable[Entry], revision: int) -> "FleetView":
        hosts: dict[str, HostView] = {}
        members: dict[str, HostRecord] = {}
        loads: dict[str, tuple[Load, int]] = {}
        cordons: set[str] = set()
        desired: dict[tuple[str, str], tuple[Desired, int]] = {}
        status: dict[tuple[str, str], dict[str, object]] = {}
        placements: dict[str, str] = {}
        for entry in entries:
            kind, _, rest = entry.key.removeprefix(keys.prefix + "/").partition("/")
            if kind == "hosts":
                hosts[rest] = HostView(HostRecord.model_validate(entry.value), entry.mod_revision)
            elif kind == "members":
                members[rest] = HostRecord.model_validate(entry.value)
            elif kind == "load":
                loads[rest] = (Load.model_validate(entry.value), entry.mod_revision)
            elif kind == "cordon":
                cordons.add(rest)
            elif kind == "desired":
                host, _, vm = rest.partition("/")
                desired[(host, vm)] = (Desired.model_validate(entry.value), entry.mod_revision)
            elif kind == "placement":
                placements[rest] = str(entry.value.get("host", ""))
            elif kind == "status":
                host, _, vm = rest.partition("/")
                status[(host, vm)] = entry.value
        for name, view in hosts.items():
            view.load, view.load_revision = loads.get(name, (Load(), 0))
            view.cordoned = name in cordons
        for (host, _vm), (record, _revision) in desired.items():
            group = record.placement.anti_affinity if record.placement else None
            if group and host in hosts:
                hosts[host].groups.add(group)
        return cls(revision, hosts, members, desired, status, placements, cordons, loads)

    def load_of(self, host: str) -> tuple[Load, int]:
        return self.loads.get(host, (Load(), 0))


def refusal(view: HostView, kind: str, need: Load, placement: Placement) -> str | None:
    """Why this host cannot take the VM, or None when it can."""
    record = view.record
    if view.cordoned:
        return "cordoned"
    if kind not in record.kinds:
        return f"no driver for a {kind}"
    drivers = [d for d in record.drivers if (d == CONTAINER_DRIVER) == (kind == "container")]
    missing = [c for c in placement.capabilities if not any(c in record.capabilities.get(d, []) for d in drivers)]
    if missing:
        return f"its driver lacks {', '.join(missing)}"
    unmatched = [f"{k}={v}" for k, v in placement.labels.items() if record.labels.get(k) != v]
    if unmatched:
        return f"lacks label {', '.join(unmatched)}"
    if placement.anti_affinity and placement.anti_affinity in view.groups:
        return f"already holds a VM of anti-affinity group {placement.anti_affinity}"
    if view.load.vcpus + need.vcpus > record.vcpus:
        return f"needs {need.vcpus} vCPUs, {max(record.vcpus - view.load.vcpus, 0)} left of {record.vcpus}"
    left = record.memory - view.load.memory
    if need.memory > left:
        return f"needs {_mib(need.memory)} of memory, {_mib(max(left, 0))} left of {_mib(record.memory)}"
    if need.memory > record.free_memory:
        return f"needs {_mib(need.memory)} of memory, {_mib(record.free_memory)} free now"
    return None


def choose(
    fleet: FleetView,
    kind: str,
    need: Load,
    placement: Placement,
    excluded: Iterable[str] = (),
    *,
    pick: Callable[[Sequence[HostView]], HostView] = random.choice,
) -> HostView:
    """Filter, then spread: the fitting hosts with the smallest share of their memory desired after this VM,
    then the fewest VMs; `pick` takes one of those equal best (at random, as Kubernetes' scheduler picks among
    its best-scored nodes): applies made at the same moment then seldom want the same host and retry."""
    skip = set(excluded)
    reasons: list[str] = []
    fitting: list[HostView] = []
    for name in sorted(fleet.hosts):
        view = fleet.hosts[name]
        if name in skip:
            continue
        reason = refusal(view, kind, need, placement)
        if reason is None:
            fitting.append(view)
        else:
            reasons.append(f"{name}: {reason}")
    if not fitting:
        down = sorted(set(fleet.members) - set(fleet.hosts) - skip)
        reasons += [f"{name}: down" for name in down]
        raise NoHost("no host can take it: " + ("; ".join(reasons) if reasons else "the fleet has no live host"))

    def score(view: HostView) -> tuple[float, int]:
        return (view.load.memory + need.memory) / max(view.record.memory, 1), view.load.vms

    best = min(score(view) for view in fitting)
    return pick([view for view in fitting if score(view) == best])


def _mib(size: int) -> str:
    return f"{size // (1 << 20)} MiB"
