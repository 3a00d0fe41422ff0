"""What every part of the engine shares: config, drivers, store, locks, hooks, events, and the few helpers
(records, enforced state changes, hooks, PCI release) that operations, supervisor and recovery all use."""

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vmhost.config import HostConfig
from vmhost.drivers.base import DomainState
from vmhost.engine import admission, image_pull, images, resources
from vmhost.engine.admission import Admission
from vmhost.engine.events import EventBus, VmEvent
from vmhost.engine.hooks import Hook, HookContext, HookFailed, Phase, PostHookFailed, failure_text
from vmhost.engine.locks import VmLocks
from vmhost.engine.peer import Peer
from vmhost.engine.router import Router
from vmhost.engine.states import OBSERVED, VmState, check_transition
from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.spec import Problem, VMSpec
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.store.sqlite import Store, VmRecord

GONE = {DomainState.SHUTOFF, DomainState.CRASHED, DomainState.ABSENT}
"""No process left: off, off after a crash, or not defined at all."""
MISSING_DEFINITION = "the hypervisor has no definition for this VM"

MOVED_TO = "moved_to"
"""The key of VmRecord.migration that a source sets when a migration failed past its point of no return."""


def moved_away(record: VmRecord) -> bool:
    """Whether the VM may run on another host now: its migration moved it there but was never confirmed."""
    return record.state == VmState.MIGRATING.value and MOVED_TO in record.migration


Progress = Callable[[str], None]
log = logging.getLogger("vmhost.engine")


def quiet(_message: str) -> None:
    """Default progress sink."""


class Timers:
    """Pending restarts by VM name (the supervisor schedules them; any stop or start through vmhost cancels)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timers: dict[str, threading.Timer] = {}
        self._gone: dict[str, threading.Event] = {}

    def put(self, name: str, timer: threading.Timer) -> None:
        with self._lock:
            self._timers[name] = timer

    def pop(self, name: str) -> None:
        with self._lock:
            self._timers.pop(name, None)

    def cancel(self, name: str) -> None:
        with self._lock:
            timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def gone_signal(self, name: str) -> threading.Event:
        """Set by a stop or crash event, so a waiting stop returns at once instead of at its next poll."""
        with self._lock:
            return self._gone.setdefault(name, threading.Event())


@dataclass
class Core:
    config: HostConfig
    driver: Router
    store: Store
    locks: VmLocks
    hooks: list[Hook]
    """Plugins' lifecycle hooks, in the order they run (the plugin loader sorts them by priority)."""
    progress: Progress = quiet
    events: EventBus = field(default_factory=EventBus)
    timers: Timers = field(default_factory=Timers)
    admission: Admission = field(default_factory=Admission)
    """Memory promised to the starts in flight (engine/admission.py)."""
    peers: Callable[[str], Peer] | None = None
    """The other agents of migrations, by URL (the interfaces provide the client: api/peer.py)."""

    def peer(self, url: str) -> Peer:
        if self.peers is None:
            raise VmhostError(f"this agent has no client for other agents; it cannot reach {url}")
        return self.peers(url)

    # ---- records -----------------------------------------------------------------------------

    def record(self, name_or_uuid: str) -> VmRecord:
        record = self.store.find_vm(name_or_uuid)
        if record is None:
            raise NotFound(f"no VM named {name_or_uuid}")
        return record

    @staticmethod
    def spec_of(record: VmRecord) -> VMSpec:
        """A stored spec that no longer validates (e.g. after a spec change) is an operator error, reported
        without the stored values (they may hold a password)."""
        try:
            return VMSpec.model_validate(record.spec)
        except ValidationError as exc:
            paths = sorted({".".join(str(p) for p in error["loc"]) for error in exc.errors()})
            raise VmhostError(f"the stored spec of {record.name} no longer validates at {', '.join(paths)}") from None

    @contextmanager
    def locked(self, name_or_uuid: str, *, deleting: bool = False) -> Iterator[VmRecord]:
        """The VM's lock, for an operation on it: refused (Conflict) while it is migrating into this host, and
        for a VM that migrated away without confirmation (only a delete may take that one)."""
        name = self.record(name_or_uuid).name
        with self.locks.hold(name):
            record = self.record(name)
            if record.state == VmState.INCOMING.value:
                source = record.migration.get("source", "another host")
                raise Conflict(f"{name} is migrating here from {source}; it can be changed once it has arrived")
            if moved_away(record) and not deleting:
                raise Conflict(f"{name}: {record.reason or 'it is being migrated'}")
            yield record

    # ---- states ------------------------------------------------------------------------------

    def set_state(self, name: str, state: VmState, reason: str = "", **columns: Any) -> None:
        """Record a state (and any other columns); publish an event when the state or its reason changed.

        An illegal transition is a bug in vmhost: IllegalTransition, nothing written.
        """
        before = self.store.get_vm(name)
        if before is not None:
            check_transition(name, VmState(before.state), state)
        self.store.update_vm(name, state=state.value, reason=reason, **columns)
        if before is not None and (before.state, before.reason) != (state.value, reason):
            self.events.publish(VmEvent(vm=name, uuid=before.uuid, type="state", state=state.value, reason=reason))

    def observe(self, record: VmRecord) -> VmState:
        """Ask the hypervisor and store its answer: its view wins (operations and the supervisor only)."""
        return self.store_observed(record, OBSERVED[self.driver.state(record.name)])

    def store_observed(self, record: VmRecord, state: VmState) -> VmState:
        if state.value != record.state:
            self.set_state(record.name, state, MISSING_DEFINITION if state == VmState.FAILED else "")
        return state

    def forget(self, record: VmRecord) -> None:
        """The VM is no longer this host's: its record, snapshot records, restart timer and lock go (under the
        lock: a waiter retries on a fresh file). The caller publishes why."""
        self.timers.cancel(record.name)
        self.store.delete_vm(record.name)
        self.store.snapshots.delete(record.uuid)
        self.locks.discard(record.name)

    def awaited_incoming(self) -> int:
        """The memory held for incoming migrations whose VM has no process here yet (engine/admission.py)."""
        held = 0
        for record in self.store.list_vms():
            if record.state == VmState.INCOMING.value and self.driver.state(record.name) == DomainState.ABSENT:
                held += admission.demand(self.spec_of(record), self.config).total
        return held

    # ---- hooks -------------------------------------------------------------------------------

    def _context(self, hook: Hook, spec: VMSpec) -> HookContext:
        def note(message: str) -> None:
            reason = f"{hook.owner} ({hook.phase.value}): {message}"
            self.events.publish(VmEvent(vm=spec.name, uuid=str(spec.uuid), type="hook", state="", reason=reason))

        return HookContext(
            phase=hook.phase,
            spec=spec,
            driver=self.driver.for_spec(spec),
            vm_dir=resources.vm_dir(self.config.data_dir, str(spec.uuid)),
            note=note,
        )

    def pre_hooks(self, phase: Phase, spec: VMSpec) -> None:
        """The first refusal aborts the operation: HookFailed names the plugin."""
        for hook in [hook for hook in self.hooks if hook.phase == phase]:
            self.progress(f"{phase.value}: plugin {hook.owner}")
            try:
                hook.call(self._context(hook, spec))
            except Exception as exc:
                raise HookFailed(f"{failure_text(hook, exc)}; {spec.name} was left as it was before") from exc

    def post_hooks(self, phases: Sequence[Phase], spec: VMSpec) -> None:
        """Every post-hook runs even when one fails; the failures are then raised together."""
        failures = []
        for phase in phases:
            for hook in [hook for hook in self.hooks if hook.phase == phase]:
                try:
                    hook.call(self._context(hook, spec))
                except Exception as exc:
                    log.warning("post-hook failed", extra={"vm": spec.name, "plugin": hook.owner})
                    failures.append(failure_text(hook, exc))
        if failures:
            done = ", ".join(phase.value.removeprefix("after-") for phase in phases)
            raise PostHookFailed(f"{spec.name}: {done} done, but " + "; ".join(failures))

    def report_post_hooks(self, phase: Phase, spec: VMSpec) -> None:
        """For work nobody waits on (a restart by policy): a post-hook failure becomes an event."""
        try:
            self.post_hooks([phase], spec)
        except PostHookFailed as exc:
            self.events.publish(
                VmEvent(vm=spec.name, uuid=str(spec.uuid), type="hook-failed", state="", reason=exc.message)
            )

    # ---- host ------------------------------------------------------------------------------

    def host_problems(self, spec: VMSpec, known: VMSpec | None = None) -> resources.Plan:
        """Host checks of `spec`; `known` is the VM's stored spec, whose recorded image formats are reused."""
        image_problems = images.resolve_disks(spec, self.store)
        image_problems += image_pull.resolve_container_image(spec, self.store)
        plan = resources.plan(spec, self.config, known)
        plan.problems += image_problems
        plan.problems += [Problem(path, message) for path, message in self.driver.host_problems(spec)]
        return plan

    def release_unmanaged_pci(self, record: VmRecord) -> None:
        """Give unmanaged PCI devices back to the host once no QEMU holds them (idempotent)."""
        for device in self.spec_of(record).passthrough.pci:
            if not device.managed:
                try:
                    self.driver.release_pci(device.address)
                except VmhostError as exc:
                    log.warning(
                        "could not release a PCI device", extra={"device": device.address, "error": exc.message}
                    )


def stored(spec: VMSpec) -> dict[str, Any]:
    """The spec as the store keeps it: secrets included (the database is root-only)."""
    return spec.model_dump(mode="json", context={REVEAL_SECRETS: True})
