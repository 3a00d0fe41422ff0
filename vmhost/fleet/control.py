"""The fleet's operations as any agent serves them (`/v1/fleet/...`, `vmhost fleet ...`): they write desired
state in etcd transactions and read the fleet back; the owning hosts' reconcilers make it so."""

import time
from dataclasses import dataclass
from typing import Any

from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.fleet.etcd import Etcd, absent, delete_op, put_op, unchanged
from vmhost.fleet.model import Desired, DesiredState, Keys, Load, Placement, check_host_name, dump
from vmhost.fleet.scheduler import FleetView, choose
from vmhost.spec import VMSpec, parse_spec
from vmhost.spec.graphics import REVEAL_SECRETS

ATTEMPTS = 20
"""Placement transactions retried with fresh data before giving up: each failure means another writer won."""
DRAIN_POLL = 0.5


@dataclass(frozen=True)
class Applied:
    vm: str
    host: str
    generation: int
    changed: bool

    def view(self) -> dict[str, Any]:
        body: dict[str, Any] = {"vm": self.vm, "host": self.host, "generation": self.generation}
        body["changed"] = self.changed
        if not self.changed:
            body["message"] = "nothing to change"
        return body


def need_of(spec: VMSpec) -> Load:
    return Load(vms=1, vcpus=spec.cpu.vcpus, memory=spec.memory.size)


def complete(spec: VMSpec) -> dict[str, Any]:
    """The spec as the fleet keeps it: every default filled in, so each host renders the same VM."""
    return spec.model_dump(mode="json", context={REVEAL_SECRETS: True})


class Fleet:
    def __init__(self, etcd: Etcd, keys: Keys):
        self.etcd = etcd
        self.keys = keys

    def view(self) -> FleetView:
        entries, revision = self.etcd.range(self.keys.prefix + "/")
        return FleetView.read(self.keys, entries, revision)

    # ---- apply -----------------------------------------------------------------------------------

    def apply(
        self,
        document: Any,
        host: str | None = None,
        state: DesiredState = "running",
        placement: Placement | None = None,
    ) -> Applied:
        """A new VM is placed (on `host`, or where the scheduler says); a known one is changed where it is."""
        if host is not None:
            check_host_name(host)
        for _attempt in range(ATTEMPTS):
            fleet = self.view()
            name = _name_of(document)
            where = self._placed(fleet, name)
            if where is not None:
                result = self._change(fleet, where, document, wanted_host=host, state=state, placement=placement)
            else:
                result = self._place(fleet, document, host, state, placement)
            if result is not None:
                return result
        raise Conflict("the fleet changed under every placement attempt; try again")

    @staticmethod
    def _placed(fleet: FleetView, name: str) -> str | None:
        return fleet.placements.get(name)

    def _place(
        self, fleet: FleetView, document: Any, host: str | None, state: DesiredState, placement: Placement | None
    ) -> Applied | None:
        spec = parse_spec(document)
        need = need_of(spec)
        wants = placement or Placement()
        if host is not None:
            if host not in fleet.hosts:
                raise NotFound(f"no live fleet host named {host}")
            target = fleet.hosts[host]
        else:
            target = choose(fleet, spec.kind, need, wants)
        desired = Desired(spec=complete(spec), state=state, generation=1, placement=placement, need=need)
        load, load_revision = fleet.load_of(target.name)
        done = self.etcd.txn(
            [
                absent(self.keys.placement(spec.name)),
                unchanged(self.keys.host(target.name), target.revision),
                unchanged(self.keys.load(target.name), load_revision),
                absent(self.keys.cordon(target.name)),
            ],
            [
                put_op(self.keys.placement(spec.name), {"host": target.name}),
                put_op(self.keys.desired(target.name, spec.name), dump(desired)),
                put_op(self.keys.load(target.name), dump(load.plus(need))),
            ],
        )
        return Applied(spec.name, target.name, 1, True) if done else None

    def _change(
        self,
        fleet: FleetView,
        host: str,
        document: Any,
        *,
        wanted_host: str | None,
        state: DesiredState,
        placement: Placement | None,
    ) -> Applied | None:
        name = _name_of(document)
        if wanted_host is not None and wanted_host != host:
            raise Conflict(f"{name} is desired on {host}; `vmhost fleet drain` moves VMs between hosts")
        found = fleet.desired.get((host, name))
        if found is None:
            return None  # the placement moved meanwhile (a drain): read again
        current, revision = found
        if current.migrate_to:
            raise Conflict(f"{name} is being moved to {current.migrate_to}; apply again once it has arrived")
        if isinstance(document, dict) and "uuid" not in document:
            document = {**document, "uuid": current.spec["uuid"]}
        spec = parse_spec(document)
        if str(spec.uuid) != current.spec["uuid"]:
            raise Conflict(f"{name} exists in the fleet with uuid {current.spec['uuid']}; a spec cannot change it")
        wants = placement if placement is not None else current.placement
        updated = current.model_copy(
            update={"spec": complete(spec), "state": state, "placement": wants, "need": need_of(spec)}
        )
        if (updated.spec, updated.state, updated.placement) == (current.spec, current.state, current.placement):
            return Applied(name, host, current.generation, False)
        updated.generation = current.generation + 1
        load, load_revision = fleet.load_of(host)
        done = self.etcd.txn(
            [unchanged(self.keys.desired(host, name), revision), unchanged(self.keys.load(host), load_revision)],
            [
                put_op(self.keys.desired(host, name), dump(updated)),
                put_op(self.keys.load(host), dump(load.plus(current.need, -1).plus(updated.need))),
            ],
        )
        return Applied(name, host, updated.generation, True) if done else None

    # ---- delete ----------------------------------------------------------------------------------

    def delete(self, name: str) -> dict[str, Any]:
        for _attempt in range(ATTEMPTS):
            fleet = self.view()
            host = self._placed(fleet, name)
            if host is None:
                raise NotFound(f"the fleet has no VM named {name}")
            found = fleet.desired.get((host, name))
            if found is None:
                continue
            current, revision = found
            load, load_revision = fleet.load_of(host)
            if self.etcd.txn(
                [unchanged(self.keys.desired(host, name), revision), unchanged(self.keys.load(host), load_revision)],
                [
                    delete_op(self.keys.desired(host, name)),
                    delete_op(self.keys.placement(name)),
                    put_op(self.keys.load(host), dump(load.plus(current.need, -1))),
                ],
            ):
                return {"vm": name, "host": host}
        raise Conflict(f"{name} kept changing while it was being deleted; try again")

    # ---- reads -----------------------------------------------------------------------------------

    def vms(self) -> list[dict[str, Any]]:
        fleet = self.view()
        return [_vm_row(fleet, host, vm) for (host, vm) in sorted(fleet.desired, key=lambda hv: (hv[1], hv[0]))]

    def vm(self, name: str) -> dict[str, Any]:
        fleet = self.view()
        host = self._placed(fleet, name)
        if host is None or (host, name) not in fleet.desired:
            raise NotFound(f"the fleet has no VM named {name}")
        spec = VMSpec.model_validate(fleet.desired[(host, name)][0].spec)
        placement = fleet.desired[(host, name)][0].placement
        return {
            **_vm_row(fleet, host, name),
            "spec": spec.model_dump(mode="json"),
            "placement": placement.model_dump() if placement else None,
        }

    def hosts(self) -> list[dict[str, Any]]:
        fleet = self.view()
        rows = []
        for name in sorted(set(fleet.members) | set(fleet.hosts)):
            live = fleet.hosts.get(name)
            record = live.record if live else fleet.members[name]
            load, _ = fleet.load_of(name)
            rows.append(
                {
                    "name": name,
                    "alive": live is not None,
                    "schedulable": live is not None and not live.cordoned,
                    "cordoned": name in fleet.cordons,
                    "url": record.url,
                    "labels": record.labels,
                    "drivers": record.drivers,
                    "vcpus": record.vcpus,
                    "memory": record.memory,
                    "free_memory": record.free_memory,
                    "fence": record.fence,
                    "load": dump(load),
                }
            )
        return rows

    # ---- drain -----------------------------------------------------------------------------------

    def uncordon(self, host: str) -> dict[str, Any]:
        check_host_name(host)
        self.etcd.delete(self.keys.cordon(host))
        return {"host": host, "schedulable": True}

    def drain(self, host: str, wait: float | None = None) -> dict[str, Any]:
        """Cordon the host, then give each of its VMs a target (`migrate_to`, its memory counted there at once);
        its agent moves them. With wait, return once none is left there or the time is up."""
        check_host_name(host)
        fleet = self.view()
        if host not in fleet.members and host not in fleet.hosts:
            raise NotFound(f"no fleet host named {host}")
        self.etcd.put(self.keys.cordon(host), {"since": time.time()})
        moves: list[dict[str, str]] = []
        unplaced: list[dict[str, str]] = []
        for vm in sorted(vm for (h, vm) in fleet.desired if h == host):
            try:
                target = self._give_target(host, vm)
            except VmhostError as exc:
                unplaced.append({"vm": vm, "reason": exc.message})
                continue
            if target:
                moves.append({"vm": vm, "to": target})
        result: dict[str, Any] = {"host": host, "moves": moves, "unplaced": unplaced}
        if wait:
            result["left"] = self._wait_empty(host, wait)
        return result

    def _give_target(self, host: str, vm: str) -> str | None:
        for _attempt in range(ATTEMPTS):
            fleet = self.view()
            found = fleet.desired.get((host, vm))
            if found is None:
                return None  # gone meanwhile
            current, revision = found
            if current.migrate_to:
                return current.migrate_to
            spec = VMSpec.model_validate(current.spec)
            target = choose(fleet, spec.kind, current.need, current.placement or Placement(), excluded=[host])
            load, load_revision = fleet.load_of(target.name)
            if self.etcd.txn(
                [
                    unchanged(self.keys.desired(host, vm), revision),
                    unchanged(self.keys.load(target.name), load_revision),
                    unchanged(self.keys.host(target.name), target.revision),
                ],
                [
                    put_op(self.keys.desired(host, vm), dump(current.model_copy(update={"migrate_to": target.name}))),
                    put_op(self.keys.load(target.name), dump(load.plus(current.need))),
                ],
            ):
                return target.name
        raise Conflict(f"{vm}: the fleet changed under every attempt to place it")

    def _wait_empty(self, host: str, timeout: float) -> list[dict[str, Any]]:
        """The VMs still desired on the host when it is empty (none) or the time is up; a VM whose move failed
        (its migrate_to cleared, an error in its status) ends the wait too."""
        deadline = time.monotonic() + timeout
        while True:
            fleet = self.view()
            left = [_vm_row(fleet, h, vm) for (h, vm) in fleet.desired if h == host]
            moving = [row for row in left if row["migrate_to"]]
            if not moving or time.monotonic() > deadline:
                return left
            time.sleep(DRAIN_POLL)


def _name_of(document: Any) -> str:
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str) or not name:
        parse_spec(document)  # the spec's own error names the field
        raise VmhostError("the spec has no name")
    return name


def _vm_row(fleet: FleetView, host: str, vm: str) -> dict[str, Any]:
    desired, _revision = fleet.desired[(host, vm)]
    status = fleet.status.get((host, vm), {})
    alive = host in fleet.hosts
    return {
        "name": vm,
        "host": host,
        "host_alive": alive,
        "desired_state": desired.state,
        "generation": desired.generation,
        "observed_generation": int(str(status.get("observed_generation", 0))),
        "state": str(status.get("state", "pending")) if alive else "unknown",
        "reason": str(status.get("reason", "")) if alive else f"host {host} is down (its lease expired)",
        "error": str(status.get("error", "")),
        "migrate_to": desired.migrate_to,
    }
