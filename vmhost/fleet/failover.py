"""fence = "lease": the VMs of a host that is gone are started elsewhere, but only once that host has certainly
stopped them. The host stops its own VMs when it could not renew its lease for fence_after seconds; its lease is
gone from etcd no earlier than its last renewal; so fence_after (plus a margin for the stop itself) after another
agent first saw the lease gone, the host's fence has run, and a VM never runs on two hosts.

Only VMs whose disks every host reaches (files, block devices, iSCSI, RBD named in the spec, on shared storage)
can be taken over: a disk vmhost made on the dead host lives there. Any agent of such a fleet may take a VM over;
the transaction (its desired key unchanged, the dead host's lease still absent) lets exactly one win."""

import logging
import time

from vmhost.errors import VmhostError
from vmhost.fleet.etcd import Etcd, absent, delete_op, put_op, unchanged
from vmhost.fleet.model import Desired, Keys, Placement, dump
from vmhost.fleet.scheduler import FleetView, choose

log = logging.getLogger("vmhost.fleet")
SHARED_SOURCES = ("file", "block", "iscsi", "rbd")
FENCE_MARGIN = 2.0
"""Seconds beyond fence_after for the dead host's forced stops to have finished."""


def local_disks(desired: Desired) -> list[str]:
    """Targets of the disks only the VM's host has (made, overlaid or copied from an image there)."""
    return [
        str(disk.get("target") or index)
        for index, disk in enumerate(desired.spec.get("disks", []))
        if disk.get("source", {}).get("type") not in SHARED_SOURCES
    ]


class Failover:
    def __init__(self, etcd: Etcd, keys: Keys):
        self.etcd = etcd
        self.keys = keys
        self.absent_since: dict[str, float] = {}
        """Host -> when this agent first saw its lease gone (monotonic)."""

    def view(self) -> FleetView:
        entries, revision = self.etcd.range(self.keys.prefix + "/")
        return FleetView.read(self.keys, entries, revision)

    def run_once(self) -> list[tuple[str, str, str]]:
        """Take over what may be taken over now: (vm, from host, to host) of each VM moved."""
        fleet = self.view()
        moved: list[tuple[str, str, str]] = []
        now = time.monotonic()
        for name, member in sorted(fleet.members.items()):
            if name in fleet.hosts or member.fence != "lease":
                self.absent_since.pop(name, None)
                continue
            since = self.absent_since.setdefault(name, now)
            if now - since < member.fence_after + FENCE_MARGIN:
                continue
            for vm in sorted(vm for (host, vm) in fleet.desired if host == name):
                target = self._take_over(name, vm)
                if target:
                    moved.append((vm, name, target))
        return moved

    def _take_over(self, dead: str, vm: str) -> str | None:
        fleet = self.view()
        found = fleet.desired.get((dead, vm))
        if found is None or dead in fleet.hosts:
            return None
        desired, revision = found
        if local := local_disks(desired):
            log.warning("fleet VM not taken over: its disks are on its host", extra={"vm": vm, "disks": local})
            return None
        try:
            target = choose(
                fleet, desired.spec.get("kind", "vm"), desired.need, desired.placement or Placement(), excluded=[dead]
            )
        except VmhostError as exc:
            log.warning("fleet VM not taken over", extra={"vm": vm, "error": exc.message})
            return None
        here, here_revision = fleet.load_of(dead)
        there, there_revision = fleet.load_of(target.name)
        moved = desired.model_copy(update={"migrate_to": None})
        if self.etcd.txn(
            [
                unchanged(self.keys.desired(dead, vm), revision),
                absent(self.keys.host(dead)),
                unchanged(self.keys.host(target.name), target.revision),
                unchanged(self.keys.load(dead), here_revision),
                unchanged(self.keys.load(target.name), there_revision),
            ],
            [
                delete_op(self.keys.desired(dead, vm)),
                delete_op(self.keys.status(dead, vm)),
                put_op(self.keys.desired(target.name, vm), dump(moved)),
                put_op(self.keys.placement(vm), {"host": target.name}),
                put_op(self.keys.load(dead), dump(here.plus(desired.need, -1))),
                put_op(self.keys.load(target.name), dump(there.plus(desired.need))),
            ],
        ):
            log.warning("fleet VM taken over from a fenced host", extra={"vm": vm, "from": dead, "to": target.name})
            return target.name
        return None
