"""This host's part of the fleet: it keeps its host record alive on a lease, lists the VMs desired here and then
watches from the listed revision, and brings each VM to what is desired through the same engine as the CLI and
API. Level-based: every pass compares what etcd wants with what the host has, so a repeated or missed event
never applies anything twice, and a relist (after a compaction or an outage) is always safe.

What it remembers of its own (data_dir/fleet.json): which VMs the fleet put here and the generation of each that
was applied. After an agent restart it resumes from that and etcd without recreating or restarting VMs that are
already right; while etcd is unreachable nothing is deleted, and the VMs run on as they are.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmhost.config import FleetConfig, HostConfig
from vmhost.drivers.multi import CONTAINER_DRIVER
from vmhost.engine import Engine
from vmhost.engine.events import VmEvent
from vmhost.engine.peer import MigrationRequest
from vmhost.engine.states import VmState
from vmhost.errors import NotFound, VmhostError
from vmhost.fleet.etcd import Compacted, Etcd, EtcdUnavailable, delete_op, put_op, unchanged
from vmhost.fleet.failover import Failover
from vmhost.fleet.model import Desired, HostRecord, Keys, Load, Status, dump
from vmhost.host.files import atomic_write

log = logging.getLogger("vmhost.fleet")
RESYNC_INTERVAL = 30.0
"""Every VM is reconciled again this often: the safety net under the watch and the engine's events."""
RETRY_DELAY = 1.0
"""Seconds between attempts to reach etcd again (list, watch, lease)."""
HOST_REFRESH = 30.0
"""The host record (free memory) is rewritten at most this often: each write is a new revision of the key the
placement transactions compare."""
WORKERS = 4
FAILOVER_INTERVAL = 1.0

LIVE = (VmState.RUNNING.value, VmState.PAUSED.value)
BUSY = tuple(
    s.value for s in (VmState.PROVISIONING, VmState.STARTING, VmState.STOPPING, VmState.MIGRATING, VmState.INCOMING)
)
"""States an operation holds the VM in: its state event brings the VM back once it is done."""


def merge_diff(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns old into new: removed keys become null, lists are replaced."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value)
    return patch


@dataclass
class Managed:
    """The VMs the fleet put on this host: name -> uuid and the generation applied (and one that failed)."""

    path: Path
    vms: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, path: Path) -> "Managed":
        try:
            return cls(path, dict(json.loads(path.read_text())["vms"]))
        except FileNotFoundError:
            return cls(path)

    def get(self, name: str) -> dict[str, Any] | None:
        with self.lock:
            entry = self.vms.get(name)
            return dict(entry) if entry else None

    def names(self) -> set[str]:
        with self.lock:
            return set(self.vms)

    def put(self, name: str, **entry: Any) -> None:
        with self.lock:
            self.vms[name] = {**self.vms.get(name, {}), **entry}
            self._save()

    def pop(self, name: str) -> None:
        with self.lock:
            if self.vms.pop(name, None) is not None:
                self._save()

    def _save(self) -> None:
        atomic_write(self.path, json.dumps({"vms": self.vms}, sort_keys=True))


class Reconciler:
    def __init__(self, engine: Engine, config: HostConfig, fleet: FleetConfig, etcd: Etcd | None = None):
        self.engine = engine
        self.config = config
        self.fleet = fleet
        self.etcd = etcd or Etcd(fleet)
        self.keys = Keys(fleet.prefix)
        self.host = fleet.host_name
        self.managed = Managed.load(config.data_dir / "fleet.json")
        self.desired: dict[str, tuple[Desired, int]] = {}
        self.listed = threading.Event()
        """Set once the desired keys were listed: before that nothing is deleted for lack of a key."""
        self.stopping = threading.Event()
        self._watch_stop = threading.Event()
        """Ends the current watch stream: on close, and when the host fences itself."""
        self.last_renewal = time.monotonic()
        self.fenced = False
        self._lock = threading.Condition()
        self._queue: list[str] = []
        self._running: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.reconciled = 0
        """Passes done (tests and benches wait on it)."""

    # ---- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.engine.events.subscribe(self._on_event)
        loops = [("fleet-lease", self._keep_lease), ("fleet-watch", self._watch), ("fleet-resync", self._resync)]
        loops += [("fleet-worker", self._work)] * WORKERS
        if self.fleet.fence == "lease":
            loops.append(("fleet-failover", self._fail_over))
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """The lease is left to expire rather than revoked: an agent restarting within its TTL is never seen down."""
        self.stopping.set()
        self._watch_stop.set()
        if self._unsubscribe:
            self._unsubscribe()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(5)

    def manages(self, name: str) -> bool:
        return name in self.managed.names() or name in self.desired

    # ---- lease -----------------------------------------------------------------------------------

    def _record(self) -> HostRecord:
        report = self.engine.driver.host_info()
        capabilities = self.engine.driver.capability_matrix()
        return HostRecord(
            name=self.host,
            url=self.config.agent_url or "",
            labels=dict(self.fleet.labels),
            drivers=list(capabilities),
            kinds=sorted({"container" if driver == CONTAINER_DRIVER else "vm" for driver in capabilities}),
            capabilities=capabilities,
            vcpus=int(report.cpus * self.fleet.cpu_overcommit),
            memory=max(report.memory_total - self.config.memory_reserve, 0),
            free_memory=max(report.memory_available - self.config.memory_reserve, 0),
            fence=self.fleet.fence,
            fence_after=self.fleet.fence_after,
            started_at=time.time(),
        )

    def _keep_lease(self) -> None:
        lease: int | None = None
        written = 0.0
        while not self.stopping.is_set():
            self._fence_if_cut_off()  # an agent frozen past fence_after fences before it renews (README)
            try:
                if lease is not None and not self.etcd.keep_alive(lease):
                    log.warning("fleet lease expired: registering again", extra={"host": self.host})
                    lease = None
                if lease is None:
                    self._fence_if_cut_off()  # the renewal itself may have hung past fence_after
                    lease = self.etcd.grant(self.fleet.lease_ttl)
                    written = 0.0
                if time.monotonic() - written > HOST_REFRESH:
                    record = dump(self._record())
                    self.etcd.put(self.keys.host(self.host), record, lease=lease)
                    member = {k: record[k] for k in ("name", "url", "labels", "fence", "fence_after")}
                    self.etcd.put(self.keys.member(self.host), member)
                    written = time.monotonic()
                self.last_renewal = time.monotonic()
                self.fenced = False
            except EtcdUnavailable as exc:
                log.warning("fleet lease not renewed", extra={"host": self.host, "error": exc.message})
            except VmhostError as exc:
                log.warning("fleet lease refused", extra={"host": self.host, "error": exc.message})
                lease = None
            self._fence_if_cut_off()
            self.stopping.wait(self.fleet.lease_ttl / 3)

    def _fence_if_cut_off(self) -> None:
        """fence = "lease": a host that could not renew for fence_after seconds stops its VMs, because other
        hosts may start them once its lease is gone (README: failure rules)."""
        if self.fleet.fence != "lease" or self.fenced:
            return
        if time.monotonic() - self.last_renewal < self.fleet.fence_after:
            return
        self.fenced = True
        self.listed.clear()  # what was desired may be another host's by the time etcd answers again
        self._watch_stop.set()
        for name in sorted(self.managed.names()):
            try:
                self.engine.stop(name, force=True)
                self._note(name, "fenced: stopped, the fleet lease could not be renewed")
            except VmhostError as exc:
                log.error("fence could not stop a VM", extra={"vm": name, "error": exc.message})

    # ---- desired state ---------------------------------------------------------------------------

    def _watch(self) -> None:
        prefix = self.keys.desired(self.host)
        while not self.stopping.is_set():
            self._watch_stop.set()  # releases the previous stream's closer
            self._watch_stop = threading.Event()
            if self.fenced:
                self.stopping.wait(RETRY_DELAY)
                continue
            try:
                entries, revision = self.etcd.range(prefix)
                fresh = {Keys.last(e.key): (Desired.model_validate(e.value), e.mod_revision) for e in entries}
                gone = set(self.desired) - set(fresh)
                self.desired = fresh
                self.listed.set()
                self._enqueue(set(fresh) | gone | self.managed.names())
                for change in self.etcd.watch(prefix, revision + 1, self._watch_stop):
                    name = Keys.last(change.key)
                    if change.kind == "put" and change.value is not None:
                        self.desired[name] = (Desired.model_validate(change.value), change.revision)
                    else:
                        self.desired.pop(name, None)
                    self._enqueue({name})
            except Compacted as exc:
                log.info("fleet watch compacted: listing again", extra={"host": self.host, "revision": exc.revision})
            except VmhostError as exc:
                log.warning("fleet watch lost: listing again", extra={"host": self.host, "error": exc.message})
                self.stopping.wait(RETRY_DELAY)

    def _fail_over(self) -> None:
        failover = Failover(self.etcd, self.keys)
        while not self.stopping.wait(FAILOVER_INTERVAL):
            if self.fenced:
                continue
            try:
                failover.run_once()
            except VmhostError as exc:
                log.info("fleet failover pass skipped", extra={"host": self.host, "error": exc.message})

    def _resync(self) -> None:
        while not self.stopping.wait(RESYNC_INTERVAL):
            if self.listed.is_set():
                self._enqueue(set(self.desired) | self.managed.names())

    def _on_event(self, event: VmEvent) -> None:
        """A state change of a fleet VM (by anyone: the guest, a crash, an operator outside vmhost) is looked at
        again: the fleet wants what it wants."""
        if event.type == "state" and self.manages(event.vm):
            self._enqueue({event.vm})

    # ---- the work queue: one pass per VM at a time -------------------------------------------------

    def _enqueue(self, names: set[str]) -> None:
        with self._lock:
            for name in sorted(names):
                if name not in self._queue:
                    self._queue.append(name)
            self._lock.notify_all()

    def _next(self) -> str | None:
        with self._lock:
            while not self.stopping.is_set():
                for name in self._queue:
                    if name not in self._running:
                        self._queue.remove(name)
                        self._running.add(name)
                        return name
                self._lock.wait(1.0)
        return None

    def _work(self) -> None:
        while (name := self._next()) is not None:
            try:
                self.reconcile(name)
            except Exception:
                log.exception("fleet reconcile failed", extra={"vm": name})
            finally:
                with self._lock:
                    self._running.discard(name)
                    self.reconciled += 1
                    self._lock.notify_all()

    # ---- one VM ----------------------------------------------------------------------------------

    def reconcile(self, name: str) -> None:
        found = self.desired.get(name)
        if not self.listed.is_set() or self.fenced:
            return
        if found is None:
            self._remove(name)
            return
        desired, revision = found
        if desired.migrate_to:
            self._move(name, desired, revision)
            return
        try:
            record = self.engine.record(name)
        except NotFound:
            record = None
        error = ""
        try:
            if record is None:
                # recorded first: a VM whose start fails is still the fleet's, and goes when its key does
                self.managed.put(name, uuid=desired.spec["uuid"], generation=desired.generation)
                running = desired.state == "running"
                self.engine.create(desired.spec, start=running)  # one operation, as POST /v1/vms?start=true
                if running:
                    self.managed.put(name, started=True)
                self._note(name, f"created from the fleet (generation {desired.generation})")
            elif record.uuid != desired.spec["uuid"]:
                self._status(name, desired, f"a VM named {name} that is not the fleet's exists on {self.host}")
                return
            elif record.state in BUSY:
                return  # an operation is under way; its state event brings this VM back
            else:
                error = self._update(name, desired, record.state)
            self._converge(name, desired)
        except VmhostError as exc:
            error = exc.message
        self._status(name, desired, error)

    def _update(self, name: str, desired: Desired, state: str) -> str:
        """Bring the spec to the desired generation (once: a refused generation is not retried until the next)."""
        managed = self.managed.get(name)
        if managed is None:  # adopted: it migrated here, or fleet.json was lost
            self.managed.put(name, uuid=desired.spec["uuid"], generation=0)
            managed = {"generation": 0}
        if managed.get("generation") == desired.generation or managed.get("failed") == desired.generation:
            return str(managed.get("error", ""))
        patch = merge_diff(self.engine.record(name).spec, desired.spec)
        if patch:
            try:
                result = self.engine.update(name, patch, live=state in LIVE)
            except VmhostError as exc:
                self.managed.put(name, failed=desired.generation, error=exc.message)
                return exc.message
            if result.refused:
                why = "; ".join(f"{c.path}: {c.reason}" for c in result.refused)
                self.managed.put(name, failed=desired.generation, error=why)
                return why
            self._note(name, f"updated to generation {desired.generation}: {result.message}")
        self.managed.put(name, generation=desired.generation, failed=None, error="")
        return ""

    def _converge(self, name: str, desired: Desired) -> None:
        """Start or stop to the desired state; a start of a VM the fleet had started before is drift undone."""
        state = self.engine.record(name).state
        started = bool((self.managed.get(name) or {}).get("started"))
        if desired.state == "running" and state not in LIVE and state not in BUSY:
            self.engine.start(name)
            if started:
                self._note(name, f"started again: the fleet wants it running (it was {state})")
            else:
                self.managed.put(name, started=True)
        elif desired.state == "stopped":
            if state in LIVE:
                self.engine.stop(name)
                self._note(name, "stopped: the fleet wants it stopped")
            if started:
                self.managed.put(name, started=False)

    def _remove(self, name: str) -> None:
        """No longer desired here: a VM the fleet put here goes (a drained one already left)."""
        managed = self.managed.get(name)
        if managed is None:
            return
        try:
            record = self.engine.record(name)
        except NotFound:
            record = None
        if record is not None and record.uuid == managed.get("uuid"):
            if record.state in LIVE:
                self.engine.stop(name, force=True)
            self.engine.delete(name)
        self.managed.pop(name)
        self._quietly(lambda: self.etcd.delete(self.keys.status(self.host, name)))

    # ---- moves (drain) -----------------------------------------------------------------------------

    def _move(self, name: str, desired: Desired, revision: int) -> None:
        """Migrate to migrate_to, then hand the desired key over in one transaction. A VM already gone from here
        (an agent restart after its migration) only has its key handed over."""
        target = str(desired.migrate_to)
        try:
            record = self.engine.record(name)
        except NotFound:
            record = None
        if record is not None:
            peer = self.etcd.get(self.keys.host(target))
            if peer is None:
                self._cancel_move(name, desired, revision, f"{target} is down; the VM stays on {self.host}")
                return
            url = HostRecord.model_validate(peer.value).url
            try:
                offline = record.state not in LIVE
                self.engine.migrate(name, url, MigrationRequest(offline=offline))
            except VmhostError as exc:
                self._cancel_move(name, desired, revision, f"could not move to {target}: {exc.message}")
                return
        self._hand_over(name, desired, revision, target)

    def _hand_over(self, name: str, desired: Desired, revision: int, target: str) -> None:
        arrived = desired.model_copy(update={"migrate_to": None})
        for _attempt in range(10):
            load = self.etcd.get(self.keys.load(self.host))
            here = Load.model_validate(load.value) if load else Load()
            if self.etcd.txn(
                [
                    unchanged(self.keys.desired(self.host, name), revision),
                    unchanged(self.keys.load(self.host), load.mod_revision if load else 0),
                ],
                [
                    delete_op(self.keys.desired(self.host, name)),
                    delete_op(self.keys.status(self.host, name)),
                    put_op(self.keys.desired(target, name), dump(arrived)),
                    put_op(self.keys.placement(name), {"host": target}),
                    put_op(self.keys.load(self.host), dump(here.plus(desired.need, -1))),
                ],
            ):
                self.managed.pop(name)
                return
            entry = self.etcd.get(self.keys.desired(self.host, name))
            if entry is None:
                self.managed.pop(name)
                return
            revision = entry.mod_revision
        raise VmhostError(f"{name}: its desired key kept changing while it was handed over to {target}")

    def _cancel_move(self, name: str, desired: Desired, revision: int, why: str) -> None:
        """The VM stays: migrate_to cleared, the target's load given back, the reason in its status."""
        target = str(desired.migrate_to)
        load = self.etcd.get(self.keys.load(target))
        there = Load.model_validate(load.value) if load else Load()
        self.etcd.txn(
            [
                unchanged(self.keys.desired(self.host, name), revision),
                unchanged(self.keys.load(target), load.mod_revision if load else 0),
            ],
            [
                put_op(self.keys.desired(self.host, name), dump(desired.model_copy(update={"migrate_to": None}))),
                put_op(self.keys.load(target), dump(there.plus(desired.need, -1))),
            ],
        )
        self._status(name, desired, why)

    # ---- status ----------------------------------------------------------------------------------

    def _status(self, name: str, desired: Desired, error: str) -> None:
        try:
            record = self.engine.record(name)
            state, reason = record.state, record.reason
        except NotFound:
            state, reason = "absent", ""
        managed = self.managed.get(name) or {}
        status = Status(
            state=state,
            reason=reason,
            observed_generation=int(managed.get("generation") or 0),
            error=error,
            updated_at=time.time(),
        )
        self._quietly(lambda: self.etcd.put(self.keys.status(self.host, name), dump(status)))

    def _note(self, name: str, reason: str) -> None:
        record = self.managed.get(name) or {}
        self.engine.events.publish(
            VmEvent(vm=name, uuid=str(record.get("uuid", "")), type="fleet", state="", reason=reason)
        )

    def _quietly(self, write: Callable[[], object]) -> None:
        """Status is best effort: the next pass writes it again once etcd answers."""
        try:
            write()
        except VmhostError as exc:
            log.info("fleet status not written", extra={"host": self.host, "error": exc.message})
