"""The restore at agent start (after a host boot): the VMs that should run start group by group in
`startup.order` (unordered last), in parallel within a group up to `restore_concurrency`, each group waiting for
its VMs to be up (running, or guest-ready) and for its delay before the next one starts.

It runs after recovery, in its own thread, so the agent answers (and shows the restore's progress) while it
works. One VM that fails is recorded and reported; it never stops the others. An operator's stop of a VM still
waiting is respected: only VMs whose desired state is still `running` are started.
"""

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vmhost.engine.core import Core
from vmhost.engine.events import VmEvent
from vmhost.engine.hooks import PostHookFailed
from vmhost.engine.operations.start import start
from vmhost.errors import VmhostError
from vmhost.spec.startup import Startup
from vmhost.store.sqlite import VmRecord

log = logging.getLogger("vmhost.engine")
READY_POLL = 1.0
"""Seconds between two asks of a guest's addresses while a group waits for guest-ready."""

PENDING, STARTING, RUNNING, READY = "pending", "starting", "running", "ready"
FAILED, SKIPPED, TIMED_OUT = "failed", "skipped", "wait-timed-out"
STATUSES = (PENDING, STARTING, RUNNING, READY, FAILED, SKIPPED, TIMED_OUT)
"""What a VM of the restore is at, in the order of its life."""
UP = {RUNNING, READY, TIMED_OUT}
"""A VM in one of these states does not hold its group back any more."""


@dataclass
class Member:
    name: str
    uuid: str
    startup: Startup
    status: str = PENDING
    error: str = ""
    running_at: float | None = None


@dataclass
class Group:
    order: int | None
    members: list[Member]
    started_at: float | None = None
    finished_at: float | None = None

    def view(self) -> dict[str, Any]:
        running = [m.running_at for m in self.members if m.running_at is not None]
        return {
            "order": self.order,
            "vms": {m.name: m.status for m in self.members},
            "started_at": self.started_at,
            "first_running_at": min(running, default=None),
            "finished_at": self.finished_at,
        }


def plan(core: Core, records: Iterable[VmRecord]) -> list[Group]:
    """Groups by startup.order, lowest first, unordered (None) last; names sorted within a group."""
    by_order: dict[int | None, list[Member]] = {}
    for record in sorted(records, key=lambda r: r.name):
        try:
            startup = core.spec_of(record).startup
        except VmhostError:
            startup = Startup()  # its start reports the stored spec's problem; the order must not fail them all
        by_order.setdefault(startup.order, []).append(Member(record.name, record.uuid, startup))
    keys = sorted(by_order, key=lambda order: (order is None, order or 0))
    return [Group(order, by_order[order]) for order in keys]


@dataclass
class Restore:
    """One restore's progress (the agent's `GET /v1/host/restore`), and the switch that stops it early."""

    state: str = "idle"
    """idle (nothing to restore yet), running, done, or cancelled (the agent stopped first)."""
    groups: list[Group] = field(default_factory=list)
    began_at: float | None = None
    finished_at: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view(self) -> dict[str, Any]:
        with self._lock:
            members = [m for g in self.groups for m in g.members]
            counts = {status: sum(m.status == status for m in members) for status in STATUSES}
            return {
                "state": self.state,
                "total": len(members),
                **counts,
                "began_at": self.began_at,
                "finished_at": self.finished_at,
                "groups": [g.view() for g in self.groups],
                "errors": {m.name: m.error for m in members if m.error},
            }

    def run(self, core: Core, records: list[VmRecord], *, background: bool) -> None:
        """Restore `records` (stopped VMs that should run); in a thread of its own with background."""
        groups = plan(core, records)
        with self._lock:
            self.groups, self.state, self.began_at = groups, "running", time.time()
        if background:
            self._thread = threading.Thread(target=self._run, args=(core,), name="restore", daemon=True)
            self._thread.start()
        else:
            self._run(core)

    def cancel(self) -> None:
        """No VM starts after this (the rest are `skipped`); starts under way finish, and a guest-ready wait or a
        delay ends at once. Returns when the restore thread has ended."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, core: Core) -> None:
        total = sum(len(g.members) for g in self.groups)
        host_event(core, "restore-started", f"{total} VMs in {len(self.groups)} groups")
        log.info("restore started", extra={"vms": total, "groups": len(self.groups)})
        for group in self.groups:
            if self._cancel.is_set():
                self._set_all(group, SKIPPED, "the agent stopped before this group")
                continue
            self._restore_group(core, group)
        with self._lock:
            self.state = "cancelled" if self._cancel.is_set() else "done"
            self.finished_at = time.time()
        summary = self.view()
        reason = f"{summary[RUNNING] + summary[READY] + summary[TIMED_OUT]} of {total} up, {summary[FAILED]} failed"
        host_event(core, "restore-done", reason)
        log.info("restore done", extra={k: summary[k] for k in ("state", "total", *STATUSES)})

    def _restore_group(self, core: Core, group: Group) -> None:
        group.started_at = time.time()
        core.progress(f"restore: starting group {label(group.order)} ({len(group.members)} VMs)")
        workers = max(1, min(core.config.restore_concurrency, len(group.members)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="restore") as pool:
            for member in group.members:
                pool.submit(self._start, core, member)
        self._wait_ready(core, [m for m in group.members if m.status == RUNNING and m.startup.wait_for != "running"])
        group.finished_at = time.time()
        host_event(core, "restore-group", f"group {label(group.order)}: {_tally(group)}")
        delay = max((m.startup.delay for m in group.members if m.status in UP), default=0.0)
        self._cancel.wait(delay)

    def _start(self, core: Core, member: Member) -> None:
        """Never raises: one VM's failure is its own."""
        if self._cancel.is_set():
            self._set(member, SKIPPED, "the agent stopped before its start")
            return
        record = core.store.get_vm(member.name)
        if record is None or record.uuid != member.uuid or record.desired_state != "running":
            self._set(member, SKIPPED, "deleted or stopped by an operator during the restore")
            return
        self._set(member, STARTING)
        note = ""
        try:
            start(core, member.name)
        except PostHookFailed as exc:
            note = exc.message  # it runs; a plugin's after-start hook failed, which the VM's events also show
            core.events.publish(VmEvent(member.name, member.uuid, "hook-failed", RUNNING, note))
        except Exception as exc:
            message = exc.message if isinstance(exc, VmhostError) else f"{type(exc).__name__}: {exc}"
            self._set(member, FAILED, message)
            log.warning("could not start at restore", extra={"vm": member.name, "error": message})
            core.events.publish(VmEvent(member.name, member.uuid, "restore-failed", "", message))
            return
        member.running_at = time.time()
        self._set(member, RUNNING, note)
        core.events.publish(VmEvent(member.name, member.uuid, "restored", RUNNING))

    def _wait_ready(self, core: Core, waiting: list[Member]) -> None:
        """Poll the guests' addresses until each has one or its wait_timeout passed."""
        began = time.monotonic()
        while waiting and not self._cancel.is_set():
            for member in list(waiting):
                if _has_address(core, member.name):
                    self._set(member, READY)
                    core.events.publish(VmEvent(member.name, member.uuid, "guest-ready", RUNNING))
                elif time.monotonic() - began >= member.startup.wait_timeout:
                    self._set(member, TIMED_OUT, f"no guest address after {member.startup.wait_timeout:g} s")
                    core.events.publish(
                        VmEvent(member.name, member.uuid, "restore-wait-timeout", RUNNING, member.error)
                    )
                else:
                    continue
                waiting.remove(member)
            if waiting:
                self._cancel.wait(READY_POLL)

    def _set(self, member: Member, status: str, error: str = "") -> None:
        with self._lock:
            member.status, member.error = status, error

    def _set_all(self, group: Group, status: str, error: str) -> None:
        for member in group.members:
            self._set(member, status, error)


def _has_address(core: Core, name: str) -> bool:
    try:
        return bool(core.driver.guest_addresses(name))
    except VmhostError:
        return False  # not answering yet (or gone: its wait then times out)


def label(order: int | None) -> str:
    """How a group is named in events, progress and the CLI."""
    return "unordered" if order is None else str(order)


def _tally(group: Group) -> str:
    statuses = [m.status for m in group.members]
    return ", ".join(f"{statuses.count(s)} {s}" for s in STATUSES if s in statuses)


def host_event(core: Core, kind: str, reason: str) -> None:
    """An event about the host, not one VM (vm and uuid empty), on the same stream as the VMs' events."""
    core.events.publish(VmEvent(vm="", uuid="", type=kind, state="", reason=reason))
