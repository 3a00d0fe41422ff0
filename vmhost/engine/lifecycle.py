"""Engine: create, start (two-phase), stop, reboot, kill, delete and update VMs, one VM lock at a time."""

import contextlib
import contextvars
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vmhost.config import HostConfig
from vmhost.drivers import processes
from vmhost.drivers.base import ConsoleStream, DomainEvent, DomainEventKind, DomainInfo, DomainState, Driver
from vmhost.drivers.multi import DriverSet
from vmhost.engine import faults, logs, resources
from vmhost.engine.events import EventBus, VmEvent
from vmhost.engine.hooks import Hook, HookContext, HookFailed, Phase, PostHookFailed, failure_text
from vmhost.engine.locks import VmLocks
from vmhost.engine.merge import merge_patch
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import OBSERVED, TRANSIENT, VmState, is_legal
from vmhost.errors import Conflict, HostResourceError, HypervisorError, NotFound, Unavailable, VmhostError
from vmhost.host import files
from vmhost.spec import Problem, SpecError, VMSpec, parse_spec
from vmhost.spec.disk import NewDisk, OverlayDisk
from vmhost.spec.graphics import REVEAL_SECRETS
from vmhost.spec.units import format_size
from vmhost.store.sqlite import OperationRecord, Store, VmRecord

GONE = {DomainState.SHUTOFF, DomainState.CRASHED, DomainState.ABSENT}
"""No process left: off, off after a crash, or not defined at all."""
POLL_INTERVAL = 0.1
FORCED_STOP_WAIT = 30.0
DESTROY_ATTEMPTS = 3
PRUNE_EVERY = 100
"""Finished operations between two prunings of the history (also pruned at agent start)."""
STABLE_SECONDS = 60.0
"""A VM that ran this long before it stopped gets its restart count reset."""
MASKED_SECRET = "********"
VIEW_ONLY_KEYS = ("state", "state_reason", "driver", "created_at", "updated_at", "runtime", "restart_status")
MISSING_DEFINITION = "the hypervisor has no definition for this VM"
EVENT_STATES = {
    DomainEventKind.STARTED: VmState.RUNNING,
    DomainEventKind.RESUMED: VmState.RUNNING,
    DomainEventKind.PAUSED: VmState.PAUSED,
    DomainEventKind.SHUTTING_DOWN: VmState.STOPPING,
    DomainEventKind.STOPPED: VmState.STOPPED,
    DomainEventKind.CRASHED: VmState.CRASHED,
    DomainEventKind.UNDEFINED: VmState.FAILED,
}
EVENT_REASONS = {
    "guest-poweroff": "the guest powered off",
    "destroyed": "destroyed outside vmhost",
    "qemu-died": "the QEMU process died",
    "guest-crash": "the guest crashed",
    "guest-panic": "the guest panicked",
    "undefined": "undefined outside vmhost",
    "io-error": "paused on a disk I/O error",
    "watchdog": "paused by the watchdog",
}

Progress = Callable[[str], None]
_journal: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("journal", default=None)
log = logging.getLogger("vmhost.engine")


def _quiet(_message: str) -> None:
    """Default progress sink."""


@dataclass(frozen=True)
class StopResult:
    method: str
    seconds: float


class Engine:
    def __init__(
        self,
        config: HostConfig,
        driver: Driver | DriverSet,
        store: Store | None = None,
        hooks: Sequence[Hook] = (),
        progress: Progress = _quiet,
    ):
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._make_vms_dir(config)
        self.config = config
        self._finished_operations = 0
        self.driver = DriverSet.of(driver)
        self.driver.locate = self._driver_of
        self.store = store or Store(config.db_path)
        self.locks = VmLocks(config.data_dir / "locks")
        self.hooks = list(hooks)
        """Plugins' lifecycle hooks, in the order they run (the plugin loader sorts them by priority)."""
        self.progress = progress
        self.events = EventBus()
        self._gone: dict[str, threading.Event] = {}
        self._restarts: dict[str, threading.Timer] = {}
        self._timers_lock = threading.Lock()

    # ---- lookups -------------------------------------------------------------------------

    def _driver_of(self, name: str) -> str | None:
        record = self.store.get_vm(name)
        return record.driver if record else None

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
    def _locked(self, name_or_uuid: str) -> Iterator[VmRecord]:
        name = self.record(name_or_uuid).name
        with self.locks.hold(name):
            yield self.record(name)

    @contextmanager
    def _operation(self, kind: str, record: VmRecord | VMSpec) -> Iterator[None]:
        """Journaled: if this process dies inside, the next agent start completes or rolls back the operation."""
        name = record.name
        op = self.store.begin_operation(name, str(record.uuid), kind)
        outer = _journal.set((op, kind))
        try:
            yield
        except Exception as exc:
            self.store.finish_operation(op, "failed", error=str(exc))
            raise
        else:
            self.store.finish_operation(op, "succeeded")
        finally:
            _journal.reset(outer)
            self._finished_operations += 1
            if self._finished_operations % PRUNE_EVERY == 0:
                self.prune_history()

    def prune_history(self) -> None:
        """Keep the operation history (and its journal) bounded: config history_max_age_days/_operations."""
        self.store.prune_operations(self.config.history_max_age_days, self.config.history_max_operations)

    @staticmethod
    def _make_vms_dir(config: HostConfig) -> None:
        """Only root and QEMU's group get through to the VM directories (their UUIDs, disks and logs)."""
        mode, gid = files.hypervisor_access(config.hypervisor_group)
        if config.hypervisor_group and gid is None:
            log.warning(
                "hypervisor_group does not exist on this host: VM directories are traversable by every user",
                extra={"group": config.hypervisor_group},
            )
        files.private_dir(config.data_dir / "vms", mode, gid)

    def _step(self, step: str, **data: Any) -> None:
        """Journal a step of the current operation (with what a recovery needs), then pass a fault point."""
        current = _journal.get()
        if current is not None:
            op, kind = current
            self.store.journal(op, step, **data)
            faults.point(f"{kind}:{step}")

    def _set_state(self, name: str, state: VmState, reason: str = "", **columns: Any) -> None:
        """Record a state (and any other columns); publish an event when the state or its reason changed.

        The hypervisor's word is final, so an unexpected transition is logged, not refused.
        """
        before = self.store.get_vm(name)
        if before is not None and not is_legal(VmState(before.state), state):
            log.warning("unexpected transition", extra={"vm": name, "from": before.state, "to": state.value})
        self.store.update_vm(name, state=state.value, reason=reason, **columns)
        if before is not None and (before.state, before.reason) != (state.value, reason):
            self.events.publish(VmEvent(vm=name, uuid=before.uuid, type="state", state=state.value, reason=reason))

    def _observe(self, record: VmRecord) -> VmState:
        return self._store_observed(record, OBSERVED[self.driver.state(record.name)])

    def _store_observed(self, record: VmRecord, state: VmState) -> VmState:
        """The hypervisor's view wins; store it so the record stays true."""
        if state.value != record.state:
            self._set_state(record.name, state, MISSING_DEFINITION if state == VmState.FAILED else "")
        return state

    # ---- hooks -----------------------------------------------------------------------------

    def _hook_context(self, hook: Hook, spec: VMSpec) -> HookContext:
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

    def _hooks(self, phase: Phase) -> list[Hook]:
        return [hook for hook in self.hooks if hook.phase == phase]

    def _pre_hooks(self, phase: Phase, spec: VMSpec) -> None:
        """The first refusal aborts the operation: HookFailed names the plugin."""
        for hook in self._hooks(phase):
            self.progress(f"{phase.value}: plugin {hook.owner}")
            try:
                hook.call(self._hook_context(hook, spec))
            except Exception as exc:
                raise HookFailed(f"{failure_text(hook, exc)}; {spec.name} was left as it was before") from exc

    def _post_hooks(self, phases: Sequence[Phase], spec: VMSpec) -> None:
        """Every post-hook runs even when one fails; the failures are then raised together."""
        failures = []
        for phase in phases:
            for hook in self._hooks(phase):
                try:
                    hook.call(self._hook_context(hook, spec))
                except Exception as exc:
                    log.warning("post-hook failed", extra={"vm": spec.name, "plugin": hook.owner})
                    failures.append(failure_text(hook, exc))
        if failures:
            done = ", ".join(phase.value.removeprefix("after-") for phase in phases)
            raise PostHookFailed(f"{spec.name}: {done} done, but " + "; ".join(failures))

    # ---- create ----------------------------------------------------------------------------

    def _host_problems(self, spec: VMSpec, known: VMSpec | None = None) -> resources.Plan:
        """Host checks of `spec`; `known` is the VM's stored spec, whose recorded image formats are reused."""
        plan = resources.plan(spec, self.config, known)
        plan.problems += [Problem(path, message) for path, message in self.driver.host_problems(spec)]
        return plan

    def create(self, document: Any, start: bool = False) -> VmRecord:
        """Validate, allocate disks, define. With start, a failed start undoes the create too."""
        spec = parse_spec(document)
        try:
            record = self._create_locked(spec, start)
        except Exception:
            if self.store.get_vm(spec.name) is None:
                self.locks.discard(spec.name)
            raise
        self._post_hooks([Phase.AFTER_CREATE, Phase.AFTER_START] if start else [Phase.AFTER_CREATE], spec)
        return record

    def _create_locked(self, spec: VMSpec, start: bool) -> VmRecord:
        with self.locks.hold(spec.name):
            if self.store.get_vm(spec.name) is not None:
                raise Conflict(f"a VM named {spec.name} already exists")
            if self.store.uuid_in_use(str(spec.uuid)):
                raise Conflict(f"a VM with uuid {spec.uuid} already exists")
            driver = self.driver.for_spec(spec)
            if driver.state(spec.name) != DomainState.ABSENT:
                raise Conflict(f"{driver.kind} already has a domain named {spec.name} that vmhost does not manage")
            plan = self._host_problems(spec)
            if plan.problems:
                raise SpecError(plan.problems)
            self._pre_hooks(Phase.BEFORE_CREATE, spec)
            with self._operation("create", spec), Rollback() as rollback:
                self._step("begin", name=spec.name, uuid=str(spec.uuid))
                self.store.insert_vm(
                    spec.name,
                    uuid=str(spec.uuid),
                    driver=driver.kind,
                    spec=_stored(spec),
                    state=VmState.PROVISIONING.value,
                    owned_paths=[str(p) for p in plan.resources.disk_paths.values()],
                )
                rollback.add("forget the VM record", lambda: self.store.delete_vm(spec.name))
                self._step("recorded")
                self.progress(f"creating disks for {spec.name}")
                resources.allocate(plan, rollback)
                self._step("disks-created")
                self.driver.define(spec, plan.resources)
                rollback.add(f"undefine {spec.name}", lambda: self.driver.undefine(spec.name))
                self._step("defined")
                self._set_state(spec.name, VmState.STOPPED)
                if start:
                    self._start_locked(self.record(spec.name))
        return self.record(spec.name)

    # ---- start ----------------------------------------------------------------------------

    def start(self, name: str) -> VmRecord:
        with self._locked(name) as record:
            self._cancel_restart(record.name)
            self.store.update_vm(record.name, restart_count=0, next_retry_at=None)
            started = self._start_locked(record)
        if started:
            self._post_hooks([Phase.AFTER_START], self.spec_of(record))
        return self.record(record.name)

    def _start_locked(self, record: VmRecord) -> bool:
        """True when the VM was started from off (not already running, not merely resumed)."""
        current = self._observe(record)
        if current == VmState.RUNNING:
            self.store.update_vm(record.name, desired_state="running")
            return False
        if current == VmState.PAUSED:
            self.driver.resume(record.name)
            self._set_state(record.name, VmState.RUNNING, desired_state="running")
            return False
        spec = self.spec_of(record)
        self._check_startable(spec)
        with self._operation("start", record):
            self._set_state(record.name, VmState.STARTING)
            try:
                self._two_phase_start(spec)
            except Exception as exc:
                self._set_state(record.name, VmState.STOPPED, reason=f"start failed: {exc}")
                raise
            self._set_state(record.name, VmState.RUNNING, desired_state="running", started_at=time.time())
        return True

    def _check_startable(self, spec: VMSpec) -> None:
        plan = self._host_problems(spec)
        if plan.problems:
            raise HostResourceError(f"cannot start {spec.name}: " + "; ".join(map(str, plan.problems)))
        if plan.resolved:  # stored before image formats were recorded: record them now, once
            self.store.update_vm(spec.name, spec=_stored(spec))
        available = self.driver.for_spec(spec).host_info().memory_available
        if spec.memory.size > available:
            raise HostResourceError(
                f"not enough host memory to start {spec.name}: it needs {format_size(spec.memory.size)}, "
                f"the host has {available // 2**20}MiB available"
            )

    def _two_phase_start(self, spec: VMSpec) -> None:
        """Create paused, run the start-paused hooks, then resume; any failure destroys what started."""
        name = spec.name
        with Rollback() as rollback:
            for device in spec.passthrough.pci:
                if not device.managed:
                    self.driver.reserve_pci(device.address)
                    rollback.add(f"release {device.address}", partial(self.driver.release_pci, device.address))
            self.progress(f"creating {name} paused")
            self.driver.create_paused(name)
            rollback.add(f"destroy {name}", lambda: self.driver.destroy(name))
            self._step("created-paused")
            self._pre_hooks(Phase.START_PAUSED, spec)
            self._step("activated")
            self.driver.resume(name)
            self._step("resumed")

    # ---- stop, reboot, kill ----------------------------------------------------------------

    def stop(self, name: str, force: bool = False, timeout: float | None = None) -> StopResult:
        """Graceful: ACPI power button, wait until gone, force-destroy at the deadline. Idempotent.

        A paused guest cannot hear the power button, so it is forced at once.
        """
        deadline = self.config.stop_timeout if timeout is None else timeout
        with self._locked(name) as record:
            self._observe(record)
            if self.driver.state(record.name) in GONE:
                self._cancel_restart(record.name)
                self.store.update_vm(record.name, desired_state="stopped", next_retry_at=None)
                return StopResult("already-stopped", 0.0)
            spec = self.spec_of(record)
            self._pre_hooks(Phase.BEFORE_STOP, spec)
            began = time.monotonic()
            paused = self.driver.state(record.name) == DomainState.PAUSED
            with self._operation("stop", record):
                self._set_state(record.name, VmState.STOPPING)
                method = self._stop_domain(record.name, force or paused, deadline)
                self._after_stop(record)
            result = StopResult(method, time.monotonic() - began)
        self._post_hooks([Phase.AFTER_STOP], spec)
        return result

    def _stop_domain(self, name: str, force: bool, deadline: float) -> str:
        """ACPI first (unless forced), then destroy, retried; if libvirt cannot, SIGKILL the process itself."""
        self._gone_signal(name).clear()
        if not force:
            try:
                self.driver.request_shutdown(name)
            except VmhostError:
                if self.driver.state(name) in GONE:
                    return "acpi"
                raise
            self._step("shutdown-requested")
            if self._wait_gone(name, deadline, "waiting for the guest to power off"):
                return "acpi"
        failure: VmhostError | None = None
        for attempt in range(DESTROY_ATTEMPTS):
            try:
                self.driver.destroy(name)
            except Unavailable:
                raise  # libvirt is away: killing QEMU behind its back would only make things worse
            except VmhostError as exc:
                failure = exc
                time.sleep(0.5 * 2**attempt)
                continue
            self._step("destroyed")
            if self._wait_gone(name, FORCED_STOP_WAIT, "waiting for the forced stop"):
                return "forced"
        if self.driver.kill_process(name) and self._wait_gone(name, FORCED_STOP_WAIT, "waiting for the killed process"):
            return "killed-process"
        raise HypervisorError(
            f"{name} is still running after {DESTROY_ATTEMPTS} forced stops and a kill",
            (failure.detail or failure.message) if failure else None,
        )

    def _gone_signal(self, name: str) -> threading.Event:
        with self._timers_lock:
            return self._gone.setdefault(name, threading.Event())

    def _wait_gone(self, name: str, seconds: float, what: str) -> bool:
        """Woken by the stop event when an event source runs; checks the hypervisor every 0.1 s regardless."""
        signal = self._gone_signal(name)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.driver.state(name) in GONE:
                return True
            self.progress(f"{what} ({end - time.monotonic():.0f}s left)")
            signal.wait(POLL_INTERVAL)
        return self.driver.state(name) in GONE

    def _release_unmanaged_pci(self, record: VmRecord) -> None:
        """Give unmanaged PCI devices back to the host once no QEMU holds them (idempotent)."""
        for device in self.spec_of(record).passthrough.pci:
            if not device.managed:
                try:
                    self.driver.release_pci(device.address)
                except VmhostError as exc:
                    log.warning(
                        "could not release a PCI device", extra={"device": device.address, "error": exc.message}
                    )

    def _after_stop(self, record: VmRecord) -> None:
        """A stop through vmhost is what the operator wants: no restart policy undoes it."""
        self._cancel_restart(record.name)
        self._release_unmanaged_pci(record)
        self._set_state(record.name, VmState.STOPPED, desired_state="stopped", next_retry_at=None)

    def kill(self, name: str) -> None:
        """The emergency stop: no pre-hook can hold it up; after-stop hooks still run."""
        with self._locked(name) as record, self._operation("kill", record):
            self._stop_domain(record.name, force=True, deadline=0)
            self._after_stop(record)
        self._post_hooks([Phase.AFTER_STOP], self.spec_of(record))

    def reboot(self, name: str, force: bool = False) -> None:
        with self._locked(name) as record:
            if self._observe(record) != VmState.RUNNING:
                raise Conflict(f"{record.name} is not running")
            with self._operation("reboot", record):
                if force:
                    self.driver.reset(record.name)
                else:
                    self.driver.request_reboot(record.name)

    # ---- delete, update --------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Stop at once, undefine, remove the disks vmhost created. User-supplied paths are never touched."""
        with self._locked(name) as record:
            spec = self._readable_spec(record)
            if spec is not None:
                self._pre_hooks(Phase.BEFORE_DELETE, spec)
            self._delete_locked(record)
        if spec is not None:
            self._post_hooks([Phase.AFTER_DELETE], spec)

    def _readable_spec(self, record: VmRecord) -> VMSpec | None:
        """A VM whose stored spec no longer validates (e.g. its plugin was removed) can still be deleted, with
        no hooks: they would need the spec."""
        try:
            return self.spec_of(record)
        except VmhostError as exc:
            log.warning("deleting without hooks", extra={"vm": record.name, "error": exc.message})
            return None

    def _delete_locked(self, record: VmRecord) -> None:
        with self._operation("delete", record):
            self._step("begin", name=record.name, uuid=record.uuid, owned=record.owned_paths)
            if self.driver.state(record.name) not in GONE:
                self._stop_domain(record.name, force=True, deadline=0)
            self._cancel_restart(record.name)
            self._release_unmanaged_pci(record)
            self.driver.undefine(record.name)
            self._step("undefined")
            resources.release(
                resources.vm_dir(self.config.data_dir, record.uuid), [Path(p) for p in record.owned_paths]
            )
            self._step("disks-removed")
            self._cancel_restart(record.name)
            self.store.delete_vm(record.name)
            self.locks.discard(record.name)
            self.events.publish(VmEvent(vm=record.name, uuid=record.uuid, type="deleted", state="deleted"))

    def update(self, name: str, patch: dict[str, Any]) -> VmRecord:
        """Offline changes as a JSON merge patch on the stored spec; validated like a new spec."""
        if not isinstance(patch, dict):
            raise SpecError([Problem("", f"an update must be a JSON object, got {type(patch).__name__}")])
        with self._locked(name) as record:
            if self._observe(record) not in (VmState.STOPPED, VmState.CRASHED, VmState.FAILED):
                raise Conflict(f"{record.name} must be stopped to be updated (changes are applied offline)")
            old = self.spec_of(record)
            spec = parse_spec(merge_patch(record.spec, _editable(patch)))
            plan = self._host_problems(spec, known=old)
            problems = _identity_changes(old, spec) + _resized_disks(old, spec)
            if problems + plan.problems:
                raise SpecError(problems + plan.problems)
            old_paths = {Path(p) for p in record.owned_paths}
            new_paths = set(plan.resources.disk_paths.values())
            with self._operation("update", record), Rollback() as rollback:
                self._step("begin")
                resources.allocate(plan, rollback, keep=frozenset(old_paths & new_paths))
                self._step("disks-created")
                self.driver.define(spec, plan.resources)
                self._step("defined")
                rollback.add(
                    f"restore the definition of {old.name}",
                    lambda: self.driver.define(old, resources.plan(old, self.config).resources),
                )
                self.store.update_vm(record.name, spec=_stored(spec), owned_paths=sorted(map(str, new_paths)))
            for path in old_paths - new_paths:
                path.unlink(missing_ok=True)
            return self.record(record.name)

    def pause(self, name: str) -> None:
        with self._locked(name) as record:
            if self._observe(record) == VmState.PAUSED:
                return
            if self._observe(record) != VmState.RUNNING:
                raise Conflict(f"{record.name} is not running")
            with self._operation("pause", record):
                self.driver.pause(record.name)
                self._set_state(record.name, VmState.PAUSED)

    def resume(self, name: str) -> None:
        with self._locked(name) as record:
            state = self._observe(record)
            if state == VmState.RUNNING:
                return
            if state != VmState.PAUSED:
                raise Conflict(f"{record.name} is not paused")
            with self._operation("resume", record):
                self.driver.resume(record.name)
                self._set_state(record.name, VmState.RUNNING)

    def attach_disk(self, name: str, disk: dict[str, Any]) -> str:
        """Add a disk to the definition, and plug it in live when the VM runs; returns its target."""
        with self._locked(name) as record:
            old = self.spec_of(record)
            spec = parse_spec({**record.spec, "disks": [*record.spec["disks"], disk]})
            target = str(spec.disks[-1].target)
            plan = self._host_problems(spec, known=old)
            if plan.problems:
                raise SpecError(
                    [p for p in plan.problems if p.path.startswith(f"disks.{len(old.disks)}")] or plan.problems
                )
            running = self._observe(record) in (VmState.RUNNING, VmState.PAUSED)
            with self._operation("attach-disk", record), Rollback() as rollback:
                resources.allocate(plan, rollback, keep=frozenset(Path(p) for p in record.owned_paths))
                if running:
                    self.driver.attach_disk(spec, plan.resources, target)
                    rollback.add(f"unplug {target}", lambda: self.driver.detach_disk(spec, plan.resources, target))
                self._redefine(record, spec, plan)
            return target

    def detach_disk(self, name: str, target: str) -> None:
        """Remove a disk from the definition (unplugging it live first); an owned disk's image is deleted."""
        with self._locked(name) as record:
            old = self.spec_of(record)
            remaining = [d for d in record.spec["disks"] if d.get("target") != target]
            if len(remaining) == len(record.spec["disks"]):
                raise NotFound(f"{record.name} has no disk {target}")
            spec = parse_spec({**record.spec, "disks": remaining})
            plan = resources.plan(old, self.config)
            with self._operation("detach-disk", record):
                if self._observe(record) in (VmState.RUNNING, VmState.PAUSED):
                    self.driver.detach_disk(old, plan.resources, target)
                self._redefine(record, spec, resources.plan(spec, self.config, known=old))
            removed = plan.resources.disk_paths.get(target)
            if removed:
                removed.unlink(missing_ok=True)

    def _redefine(self, record: VmRecord, spec: VMSpec, plan: resources.Plan) -> None:
        self.driver.define(spec, plan.resources)
        self.store.update_vm(
            record.name, spec=_stored(spec), owned_paths=sorted(str(p) for p in plan.resources.disk_paths.values())
        )

    # ---- what happens without being asked -----------------------------------------------------

    def on_domain_event(self, event: DomainEvent) -> None:
        """Follow the hypervisor: record the new state, publish it, apply the restart policy.

        While an operation holds the VM's lock it owns the state; the event is only passed on.
        """
        if event.kind in (DomainEventKind.STOPPED, DomainEventKind.CRASHED):
            self._gone_signal(event.name).set()
        record = self.store.get_vm(event.name)
        if record is None or event.kind not in EVENT_STATES:
            return
        reason = EVENT_REASONS.get(event.reason, "")
        try:
            with self.locks.hold(record.name, timeout=0):
                self._apply_event(self.record(record.name), event, reason)
        except Conflict:
            self.events.publish(
                VmEvent(vm=record.name, uuid=record.uuid, type=event.kind.value, state=record.state, reason=reason)
            )

    def _apply_event(self, record: VmRecord, event: DomainEvent, reason: str) -> None:
        """The state comes from asking the hypervisor again, so a late event cannot write a stale state."""
        state = OBSERVED[self.driver.state(record.name)]
        if event.kind == DomainEventKind.UNDEFINED and state == VmState.FAILED:
            self._set_state(record.name, state, reason)
            return
        exited = state in (VmState.STOPPED, VmState.CRASHED) and event.kind in (
            DomainEventKind.STOPPED,
            DomainEventKind.CRASHED,
        )
        self._set_state(
            record.name,
            state,
            reason if exited or state != VmState.RUNNING else "",
            **({"last_exit_reason": reason} if exited else {}),
        )
        if exited:
            self._release_unmanaged_pci(record)
            if not self._maybe_restart(record, event):
                self.store.update_vm(record.name, desired_state="stopped")

    def _maybe_restart(self, record: VmRecord, event: DomainEvent) -> bool:
        """Schedule a restart if the policy asks for one; False means the VM is meant to stay down."""
        policy = self.spec_of(record).restart_policy
        crashed = event.kind == DomainEventKind.CRASHED
        powered_off = event.kind == DomainEventKind.STOPPED and event.reason == "guest-poweroff"
        wanted = (policy == "on-crash" and crashed) or (policy == "always" and (crashed or powered_off))
        if not (wanted and record.desired_state == "running"):
            return False
        stable = record.started_at is not None and time.time() - record.started_at > STABLE_SECONDS
        return self._schedule_restart(record.name, 0 if stable else record.restart_count)

    def _schedule_restart(self, name: str, done: int) -> bool:
        """Restart number done+1, after a delay that doubles with each one; give up past max_retries."""
        record = self.record(name)
        backoff = self.spec_of(record).restart_backoff
        if done >= backoff.max_retries:
            self.store.update_vm(name, next_retry_at=None, desired_state="stopped")
            self.events.publish(
                VmEvent(
                    vm=name,
                    uuid=record.uuid,
                    type="restart-gave-up",
                    state=record.state,
                    reason=f"{done} restarts in a row; giving up",
                )
            )
            return False
        delay = min(backoff.initial_seconds * 2**done, backoff.max_seconds)
        self.store.update_vm(name, next_retry_at=time.time() + delay)
        self.events.publish(
            VmEvent(
                vm=name,
                uuid=record.uuid,
                type="restart-scheduled",
                state=record.state,
                reason=f"restart {done + 1} of {backoff.max_retries} in {delay:.1f}s",
            )
        )
        timer = threading.Timer(delay, self._restart, args=(name, done + 1))
        timer.daemon = True
        with self._timers_lock:
            self._restarts[name] = timer
        timer.start()
        return True

    def _report_post_hooks(self, phase: Phase, spec: VMSpec) -> None:
        """For work nobody waits on (a restart by policy): a post-hook failure becomes an event."""
        try:
            self._post_hooks([phase], spec)
        except PostHookFailed as exc:
            self.events.publish(
                VmEvent(vm=spec.name, uuid=str(spec.uuid), type="hook-failed", state="", reason=exc.message)
            )

    def _cancel_restart(self, name: str) -> None:
        with self._timers_lock:
            timer = self._restarts.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _restart(self, name: str, attempt: int) -> None:
        with self._timers_lock:
            self._restarts.pop(name, None)
        try:
            with self._locked(name) as record:
                if record.desired_state != "running" or self._observe(record) == VmState.RUNNING:
                    return
                self.store.update_vm(name, restart_count=attempt, next_retry_at=None)
                self._start_locked(self.record(name))
            self._report_post_hooks(Phase.AFTER_START, self.spec_of(record))
            self.events.publish(
                VmEvent(
                    vm=name,
                    uuid=record.uuid,
                    type="restarted",
                    state=VmState.RUNNING.value,
                    reason=f"restart {attempt} after: {record.last_exit_reason}",
                )
            )
        except NotFound:
            return
        except Exception as exc:
            log.warning("restart failed", extra={"vm": name, "attempt": attempt, "error": str(exc)})
            with contextlib.suppress(VmhostError):
                self._schedule_restart(name, attempt)

    def recover(self) -> None:
        """At agent start: adopt vmhost domains the store lost, reconcile every state, and start the VMs that
        should run (autostart, or running when the agent last saw them, e.g. before a host reboot)."""
        self._finish_interrupted()
        self.prune_history()
        self._adopt_unknown_domains()
        self._remove_orphan_directories()
        for record, state in self.list_vms():
            try:
                should_run = self.spec_of(record).autostart or record.desired_state == "running"
                if should_run and state in (VmState.STOPPED, VmState.CRASHED):
                    self.start(record.name)
            except VmhostError as exc:
                log.warning("could not start at recovery", extra={"vm": record.name, "error": exc.message})

    def _finish_interrupted(self) -> None:
        """Operations a dead process left running: roll back creates, complete stops and deletes, and make
        every other VM's definition and state match the store again."""
        for op in self.store.unfinished_operations():
            if self.locks.is_held(op.vm_name):
                continue  # a live process (e.g. a CLI) is still on it
            with self.locks.hold(op.vm_name):
                try:
                    outcome = self._recover_operation(op)
                except VmhostError as exc:
                    outcome = f"recovery failed: {exc.message}"
                    log.error(
                        "could not recover an operation",
                        extra={"vm": op.vm_name, "kind": op.kind, "error": exc.message},
                    )
            self.store.finish_operation(
                op.id, "failed", error=f"interrupted after {op.steps or ['nothing']}; {outcome}"
            )
            self.events.publish(
                VmEvent(vm=op.vm_name, uuid="", type="recovered", state="", reason=f"{op.kind}: {outcome}")
            )

    def _recover_operation(self, op: OperationRecord) -> str:
        if op.kind == "create":
            return self._roll_back_create(op)
        record = self.store.get_vm(op.vm_name)
        if op.kind == "delete":
            return self._complete_delete(op, record)
        if record is None:
            return "nothing left to recover"
        if op.kind in ("stop", "kill"):
            self._stop_domain(record.name, force=True, deadline=0)
            self._after_stop(record)
            return "completed (forced off)"
        if self.driver.state(record.name) == DomainState.PAUSED and "resumed" not in op.steps:
            self.driver.destroy(record.name)
            self._set_state(record.name, VmState.STOPPED, reason="start interrupted; rolled back")
            return "rolled back the half-done start"
        spec = self.spec_of(record)
        plan = resources.plan(spec, self.config)
        self.driver.define(spec, plan.resources)
        if plan.resolved:  # stored before image formats were recorded: record them now, once
            self.store.update_vm(record.name, spec=_stored(spec))
        self._remove_unrecorded_disks(record)
        return "definition matched to the store"

    def _roll_back_create(self, op: OperationRecord) -> str:
        name, uuid = op.data.get("name"), op.data.get("uuid")
        if not name or not uuid:
            return "nothing was created"
        self._remove_domain_if_its(name, uuid)
        record = self.store.get_vm(name)
        if record is not None and record.uuid == uuid:
            self.store.delete_vm(name)
        resources.release(resources.vm_dir(self.config.data_dir, uuid), [])
        return "rolled back"

    def _complete_delete(self, op: OperationRecord, record: VmRecord | None) -> str:
        name, uuid = op.data.get("name"), op.data.get("uuid")
        if not name or not uuid:
            return "nothing left to delete"
        self._remove_domain_if_its(name, uuid)
        resources.release(resources.vm_dir(self.config.data_dir, uuid), [Path(p) for p in op.data.get("owned", [])])
        if record is not None and record.uuid == uuid:
            self.store.delete_vm(name)
        return "completed"

    def _remove_domain_if_its(self, name: str, uuid: str) -> None:
        """Destroy and undefine the domain `name` only if it is the one with this UUID."""
        try:
            info = self.driver.info(name)
        except NotFound:
            return
        if info.uuid != uuid:
            return
        if info.state not in GONE:
            self._stop_domain(name, force=True, deadline=0)
        self.driver.undefine(name)

    def _remove_unrecorded_disks(self, record: VmRecord) -> None:
        """Images in a stopped VM's disk directory that its record does not own are leftovers of an interrupted
        change (a running VM may hold a hot-plugged one open, so it keeps them until it stops)."""
        if self.driver.state(record.name) not in GONE:
            return
        directory = resources.vm_dir(self.config.data_dir, record.uuid) / "disks"
        owned = set(record.owned_paths)
        for image in directory.glob("*") if directory.is_dir() else []:
            if str(image) not in owned:
                image.unlink()

    def _remove_orphan_directories(self) -> None:
        """A VM directory with neither a VM record nor a domain is what an interrupted create or delete left
        behind (a create records the VM before it makes the directory; a delete removes the directory first)."""
        vms = self.config.data_dir / "vms"
        defined = {info.uuid for info in self.driver.list_owned()}
        for directory in vms.iterdir() if vms.is_dir() else []:
            if directory.name not in defined and self.store.find_vm(directory.name) is None:
                resources.release(directory, [])

    def _adopt_unknown_domains(self) -> None:
        """A domain carrying vmhost's metadata but missing from the store gets its record back, untouched."""
        known = {record.name for record in self.store.list_vms()}
        for info in self.driver.list_owned():
            if info.name in known:
                continue
            try:
                self._adopt(info)
            except (VmhostError, SpecError, sqlite3.IntegrityError) as exc:
                log.warning("could not adopt a domain", extra={"vm": info.name, "error": str(exc)})

    def _adopt(self, info: DomainInfo) -> None:
        recorded = self.driver.recorded_by(info)
        if recorded is None or recorded.owner != str(self.config.data_dir):
            return  # not vmhost's, or another vmhost instance's (another data directory) on the same host
        spec = parse_spec(recorded.spec)
        owned = sorted(str(p) for p in resources.plan(spec, self.config).resources.disk_paths.values())
        state = OBSERVED[info.state]
        self.store.insert_vm(
            spec.name,
            uuid=str(spec.uuid),
            driver=info.driver,
            spec=_stored(spec),
            state=state.value,
            owned_paths=owned,
        )
        self.store.update_vm(
            spec.name,
            reason="adopted from the hypervisor",
            desired_state="running" if state == VmState.RUNNING else "stopped",
        )
        self.events.publish(VmEvent(vm=spec.name, uuid=str(spec.uuid), type="adopted", state=state.value))

    # ---- views -----------------------------------------------------------------------------

    def list_vms(self) -> list[tuple[VmRecord, VmState]]:
        """One bulk hypervisor query for all VMs; VMs with an operation in flight keep their stored state."""
        records = self.store.list_vms()  # before the snapshot: an operation finishing in between then wins
        live = self.driver.states()
        return [(record, self._reconciled(record, live.get(record.name, DomainState.ABSENT))) for record in records]

    def list_vms_cached(self) -> list[tuple[VmRecord, VmState]]:
        """The store's view, no hypervisor call: for hot paths while something else keeps it fresh."""
        return [(record, VmState(record.state)) for record in self.store.list_vms()]

    def _reconciled(self, record: VmRecord, live: DomainState) -> VmState:
        if VmState(record.state) in TRANSIENT and self.locks.is_held(record.name):
            return VmState(record.state)
        return self._store_observed(record, OBSERVED[live])

    def get(self, name: str) -> dict[str, Any]:
        """The VM as operators see it: its spec (secrets masked), state on top, runtime facts."""
        record = self.record(name)
        info = self._info_or_none(record.name)
        state = self._reconciled(record, info.state if info else DomainState.ABSENT)
        view = self.spec_of(record).model_dump(mode="json")
        view.update(  # keep in step with VIEW_ONLY_KEYS
            state=state.value,
            state_reason=self.record(record.name).reason,
            driver=record.driver,
            created_at=record.created_at,
            updated_at=record.updated_at,
            runtime=_runtime(info) if state in (VmState.RUNNING, VmState.PAUSED) and info else None,
            restart_status=_restart_status(self.record(record.name)),
        )
        return view

    def info(self, name: str) -> dict[str, Any]:
        record = self.record(name)
        info = self._info_or_none(record.name)
        return {
            "name": record.name,
            "uuid": record.uuid,
            "state": self._reconciled(record, info.state if info else DomainState.ABSENT).value,
            "runtime": _runtime(info) if info else None,
            "console_log": str(self.console_log_path(record.name)),
            "owned_paths": record.owned_paths,
            "operations": [
                {
                    "kind": op.kind,
                    "state": op.state,
                    "started_at": op.started_at,
                    "finished_at": op.finished_at,
                    "error": op.error,
                }
                for op in self.store.operations(record.name, limit=10)
            ],
        }

    def _info_or_none(self, name: str) -> DomainInfo | None:
        try:
            return self.driver.info(name)
        except NotFound:
            return None

    def console_log_path(self, name: str) -> Path:
        record = self.record(name)
        spec = self.spec_of(record)
        return spec.console.log_file or resources.vm_dir(self.config.data_dir, str(spec.uuid)) / "console.log"

    def follow_console_log(self, name: str) -> Iterator[bytes]:
        """The console log (a container's output) as it grows, until the VM is gone."""
        record = self.record(name)
        return logs.follow(self.console_log_path(name), lambda: self.driver.state(record.name) not in GONE)

    def open_console(self, name: str) -> ConsoleStream:
        record = self.record(name)
        if self.driver.state(record.name) in GONE:
            raise Conflict(f"{record.name} is not running")
        return self.driver.open_console(record.name)


def _stored(spec: VMSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", context={REVEAL_SECRETS: True})


def _editable(patch: dict[str, Any]) -> dict[str, Any]:
    """A patch may be edited `get` output: drop the view-only keys and keep the stored password for a masked one."""
    patch = {key: value for key, value in patch.items() if key not in VIEW_ONLY_KEYS}
    graphics = patch.get("graphics")
    if isinstance(graphics, dict) and graphics.get("password") == MASKED_SECRET:
        patch = {**patch, "graphics": {k: v for k, v in graphics.items() if k != "password"}}
    return patch


def _identity_changes(old: VMSpec, new: VMSpec) -> list[Problem]:
    problems = []
    if old.name != new.name:
        problems.append(Problem("name", "cannot be changed by update"))
    if old.uuid != new.uuid:
        problems.append(Problem("uuid", "cannot be changed by update"))
    return problems


def _resized_disks(old: VMSpec, new: VMSpec) -> list[Problem]:
    """An owned disk kept under the same target must keep its source; resizing is not supported."""
    before = {d.target: d.source for d in old.disks if isinstance(d.source, NewDisk | OverlayDisk)}
    problems = []
    for index, disk in enumerate(new.disks):
        previous = before.get(disk.target)
        if previous is not None and isinstance(disk.source, NewDisk | OverlayDisk) and previous != disk.source:
            problems.append(
                Problem(
                    f"disks.{index}.source",
                    f"the disk vmhost created as {disk.target} cannot be changed or resized; "
                    "remove it and add a new one under another target",
                )
            )
    return problems


def _restart_status(record: VmRecord) -> dict[str, Any]:
    return {
        "desired_state": record.desired_state,
        "restart_count": record.restart_count,
        "last_exit_reason": record.last_exit_reason,
        "next_retry_at": record.next_retry_at,
    }


def _runtime(info: DomainInfo) -> dict[str, Any]:
    return {
        "vcpus": info.vcpus,
        "memory": format_size(info.memory_bytes),
        "cpu_time_seconds": round(info.cpu_time_ns / 1e9, 3),
        "pid": info.pid,
        "uptime_seconds": _uptime(info.pid),
    }


def _uptime(pid: int | None) -> float | None:
    """Seconds since the VM's QEMU process started (from /proc; the agent runs on the host)."""
    fields = processes.stat_fields(pid) if pid is not None else None
    if fields is None:
        return None
    try:
        started = processes.start_ticks(fields) / os.sysconf("SC_CLK_TCK")
        return round(float(Path("/proc/uptime").read_text().split()[0]) - started, 1)
    except (OSError, IndexError, ValueError):
        return None
