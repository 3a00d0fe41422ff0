"""What happens without being asked: hypervisor events, restart policies and their timers, reconciliation.

An event that arrives while an operation holds the VM's lock is published at once and applied once the lock is
free: a crash during a detach still gets its restart policy.
"""

import contextlib
import logging
import threading
import time
from collections import defaultdict

from vmhost.drivers.base import DomainEvent, DomainEventKind, DomainState
from vmhost.drivers.polling import TRANSITIONS
from vmhost.engine.core import Core, moved_away
from vmhost.engine.events import VmEvent
from vmhost.engine.hooks import Phase
from vmhost.engine.operations import incoming
from vmhost.engine.operations.start import start_locked
from vmhost.engine.states import OBSERVED, VmState, keeps_recorded
from vmhost.errors import Conflict, NotFound, VmhostError
from vmhost.store.sqlite import VmRecord

EVENT_GRACE = 2.0
"""How long a reconcile that found a VM down leaves its exit to the event before handling it itself."""
STABLE_SECONDS = 60.0
"""A VM that ran this long before it stopped gets its restart count reset."""
EVENT_KINDS = {
    DomainEventKind.STARTED,
    DomainEventKind.RESUMED,
    DomainEventKind.PAUSED,
    DomainEventKind.SHUTTING_DOWN,
    DomainEventKind.STOPPED,
    DomainEventKind.CRASHED,
    DomainEventKind.UNDEFINED,
}
EVENT_REASONS = {
    "guest-poweroff": "the guest powered off",
    "destroyed": "destroyed outside vmhost",
    "qemu-died": "the QEMU process died",
    "guest-crash": "the guest crashed",
    "crashed": "QEMU or the guest crashed",
    "guest-panic": "the guest panicked",
    "undefined": "undefined outside vmhost",
    "io-error": "paused on a disk I/O error",
    "watchdog": "paused by the watchdog",
    "migrated": "migrated to another host",
}
FOUND_CRASHED = "crashed while the agent was not running"
EXITS = (DomainEventKind.STOPPED, DomainEventKind.CRASHED)
DOWN = (VmState.STOPPED, VmState.CRASHED)
UP = (VmState.RUNNING, VmState.PAUSED, VmState.STOPPING)
log = logging.getLogger("vmhost.engine")


class Supervisor:
    def __init__(self, core: Core):
        self.core = core
        self._lock = threading.Lock()
        self._deferred: dict[str, list[DomainEvent]] = defaultdict(list)
        self._awaited: set[str] = set()
        """VMs found down while recorded up, whose exit event is awaited (reconcile)."""
        self._appliers = 0

    # ---- events ------------------------------------------------------------------------------

    def on_domain_event(self, event: DomainEvent) -> None:
        """Follow the hypervisor: record the new state, publish it, apply the restart policy."""
        core = self.core
        if event.kind in EXITS:
            core.timers.gone_signal(event.name).set()
        record = core.store.get_vm(event.name)
        if record is not None and record.state == VmState.INCOMING.value:
            self._incoming(record, event)  # an incoming migration's domain is the migration's until it finished
            return
        if record is None or event.kind not in EVENT_KINDS:
            return
        try:
            with core.locks.hold(record.name, timeout=0):
                self.apply(core.record(record.name), event)
        except Conflict:
            reason = EVENT_REASONS.get(event.reason, "")
            core.events.publish(
                VmEvent(vm=record.name, uuid=record.uuid, type=event.kind.value, state=record.state, reason=reason)
            )
            self._defer(event)

    def _incoming(self, record: VmRecord, event: DomainEvent) -> None:
        """A live VM that arrived (paused here, or running after post-copy) is taken in at once, off the event
        thread (operations/incoming.py take_in)."""
        if event.kind in (DomainEventKind.PAUSED, DomainEventKind.RESUMED) and "id" in record.migration:
            threading.Thread(
                target=incoming.take_in, args=(self.core, record.migration["id"]), name="take-in", daemon=True
            ).start()

    def _defer(self, event: DomainEvent) -> None:
        """The operation holding the lock owns the state until it ends; then this event is applied in order."""
        with self._lock:
            waiting = bool(self._deferred[event.name])
            self._deferred[event.name].append(event)
            if not waiting:
                self._appliers += 1
        if not waiting:
            threading.Thread(target=self._apply_deferred, args=(event.name,), daemon=True).start()

    def idle(self) -> bool:
        """No deferred event waits for its VM's lock or is being applied, and no found exit for its event."""
        with self._lock:
            return self._appliers == 0

    def _apply_deferred(self, name: str) -> None:
        try:
            with self.core.locks.hold(name):
                with self._lock:
                    events = self._deferred.pop(name, [])
                for event in events:
                    record = self.core.store.get_vm(name)
                    if record is None:
                        return
                    if event.kind in EXITS and record.desired_state != "running":
                        continue  # the operation that held the lock stopped it on purpose
                    self.apply(record, event)
        except Exception:
            log.exception("could not apply a deferred event", extra={"vm": name})
        finally:
            with self._lock:
                self._appliers -= 1

    def apply(self, record: VmRecord, event: DomainEvent) -> None:
        """Under the VM's lock. The state comes from asking the hypervisor again, so a late event cannot
        write a stale state; an exit is one only if the VM is still down."""
        core, reason = self.core, EVENT_REASONS.get(event.reason, "")
        state = OBSERVED[core.driver.state(record.name)]
        if event.kind == DomainEventKind.UNDEFINED and state == VmState.FAILED:
            core.set_state(record.name, state, reason)
            return
        if state in DOWN and event.kind not in EXITS:
            return  # gone since this event: its exit's own event says why
        if state in DOWN and VmState(record.state) in DOWN:
            return  # recorded already: by a reconcile that found it, or the operation that had the lock
        if state in DOWN:
            self.exited(record, state, event.kind == DomainEventKind.CRASHED, event.reason == "guest-poweroff", reason)
            return
        core.set_state(record.name, state, "" if state == VmState.RUNNING else reason)

    def exited(self, record: VmRecord, state: VmState, crashed: bool, powered_off: bool, reason: str) -> None:
        """The VM went down by itself (seen live, or found so at agent start): record why, then the policy."""
        core = self.core
        core.set_state(record.name, state, reason, last_exit_reason=reason)
        core.release_unmanaged_pci(record)
        if not self._maybe_restart(core.record(record.name), crashed, powered_off):
            core.store.update_vm(record.name, desired_state="stopped")

    # ---- restart policies --------------------------------------------------------------------

    def _maybe_restart(self, record: VmRecord, crashed: bool, powered_off: bool) -> bool:
        """Schedule a restart if the policy asks for one; False means the VM is meant to stay down."""
        policy = self.core.spec_of(record).restart_policy
        wanted = (policy == "on-crash" and crashed) or (policy == "always" and (crashed or powered_off))
        if not (wanted and record.desired_state == "running"):
            return False
        stable = record.started_at is not None and time.time() - record.started_at > STABLE_SECONDS
        return self.schedule_restart(record.name, 0 if stable else record.restart_count)

    def schedule_restart(self, name: str, done: int) -> bool:
        """Restart number done+1, after a delay that doubles with each one; give up past max_retries."""
        core = self.core
        record = core.record(name)
        backoff = core.spec_of(record).restart_backoff
        if done >= backoff.max_retries:
            core.store.update_vm(name, next_retry_at=None, desired_state="stopped")
            reason = f"{done} restarts in a row; giving up"
            core.events.publish(
                VmEvent(vm=name, uuid=record.uuid, type="restart-gave-up", state=record.state, reason=reason)
            )
            return False
        delay = min(backoff.initial_seconds * 2**done, backoff.max_seconds)
        core.store.update_vm(name, next_retry_at=time.time() + delay)
        reason = f"restart {done + 1} of {backoff.max_retries} in {delay:.1f}s"
        core.events.publish(
            VmEvent(vm=name, uuid=record.uuid, type="restart-scheduled", state=record.state, reason=reason)
        )
        timer = threading.Timer(delay, self._restart, args=(name, done + 1))
        timer.daemon = True
        core.timers.put(name, timer)
        timer.start()
        return True

    def _restart(self, name: str, attempt: int) -> None:
        core = self.core
        core.timers.pop(name)
        try:
            with core.locked(name) as record:
                if record.desired_state != "running" or core.observe(record) == VmState.RUNNING:
                    return
                core.store.update_vm(name, restart_count=attempt, next_retry_at=None)
                start_locked(core, core.record(name))
            core.report_post_hooks(Phase.AFTER_START, core.spec_of(record))
            reason = f"restart {attempt} after: {record.last_exit_reason}"
            core.events.publish(
                VmEvent(vm=name, uuid=record.uuid, type="restarted", state=VmState.RUNNING.value, reason=reason)
            )
        except NotFound:
            return
        except Exception as exc:
            log.warning("restart failed", extra={"vm": name, "attempt": attempt, "error": str(exc)})
            with contextlib.suppress(VmhostError):
                self.schedule_restart(name, attempt)

    # ---- reconciliation ----------------------------------------------------------------------

    def refresh(self) -> list[tuple[VmRecord, VmState]]:
        """Store what the hypervisor says of every VM, whatever it means: for recovery, which judges a VM found
        down itself (it went down while no agent watched)."""
        return [(record, self._stored(record, live)) for record, live in self._live_states()]

    def reconcile(self) -> list[tuple[VmRecord, VmState]]:
        """Like refresh, but a VM found down that is recorded up is reported down and its record left alone for
        now: its exit is its event's to explain (the event names the cause; libvirt's state says only "crashed"
        for a killed QEMU and a panicked guest alike), and the event follows within milliseconds. If none came
        EVENT_GRACE later (events are lost while libvirtd restarts), the exit is handled as found: reason,
        restart policy."""
        found = []
        for record, live in self._live_states():
            if VmState(record.state) in UP and OBSERVED[live] in DOWN:
                self._await_exit_event(record.name)
                found.append((record, OBSERVED[live]))
            else:
                found.append((record, self._stored(record, live)))
        return found

    def _live_states(self) -> list[tuple[VmRecord, DomainState]]:
        """One bulk hypervisor query for all VMs."""
        records = self.core.store.list_vms()  # before the snapshot: an operation finishing in between then wins
        live = self.core.driver.states()
        return [(record, live.get(record.name, DomainState.ABSENT)) for record in records]

    def _stored(self, record: VmRecord, live: DomainState) -> VmState:
        """VMs with an operation in flight keep their state."""
        if keeps_recorded(VmState(record.state), self.core.locks.is_held(record.name), moved_away(record)):
            return VmState(record.state)
        return self.core.store_observed(record, OBSERVED[live])

    def _await_exit_event(self, name: str) -> None:
        with self._lock:
            if name in self._awaited:
                return
            self._awaited.add(name)
            self._appliers += 1
        timer = threading.Timer(EVENT_GRACE, self._exit_found, args=(name,))
        timer.daemon = True
        timer.start()

    def _exit_found(self, name: str) -> None:
        """An exit no event told: as the hypervisor explains it now (DomainInfo.reason, or the reason a polled
        driver's event gives), under the VM's lock. An operation holding the lock owns the VM and sees it."""
        core = self.core
        try:
            with core.locks.hold(name, timeout=0):
                record = core.store.get_vm(name)
                if record is not None and VmState(record.state) in UP:
                    info = core.driver.info(name)
                    kind, polled_reason = TRANSITIONS.get(info.state, (DomainEventKind.STOPPED, ""))
                    self.apply(record, DomainEvent(name, kind, info.reason or polled_reason))
        except (Conflict, NotFound):
            pass
        except Exception:
            log.exception("could not apply an exit found by the reconcile", extra={"vm": name})
        finally:
            with self._lock:
                self._awaited.discard(name)
                self._appliers -= 1
