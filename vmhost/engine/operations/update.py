"""update: a JSON merge patch on the stored spec, validated like a new spec, planned (engine/plan.py), then
applied as one operation: owned disks made or grown, the live changes made to a running VM through its driver,
the new persistent definition, the store last.

Recovery completes an interrupted update once the store has the new spec; otherwise it puts the host back to what
the store says: the definition redefined, new disks removed, live changes taken back (a grown disk stays grown:
nothing was lost, and a later growth to that size is a no-op).
"""

from collections.abc import Callable, Set
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Resources
from vmhost.engine import plan as planning
from vmhost.engine import resources
from vmhost.engine.core import GONE, Core, stored
from vmhost.engine.events import VmEvent
from vmhost.engine.merge import merge_patch
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import OBSERVED, VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import define_from_store, remove_unrecorded_disks
from vmhost.errors import Conflict
from vmhost.spec import Problem, SpecError, VMSpec, parse_spec
from vmhost.spec.cloud_init import keep_masked_secrets
from vmhost.spec.disk import NewDisk
from vmhost.storage import qemu_img
from vmhost.store.sqlite import OperationRecord, VmRecord

MASKED_SECRET = "********"
VIEW_ONLY_KEYS = (
    "state",
    "state_reason",
    "driver",
    "created_at",
    "updated_at",
    "runtime",
    "restart_status",
    "pending",
    "plan",
)
NIC_DETACH_TIMEOUT = 30.0
"""Seconds the guest has to release a NIC being unplugged (as disk detach waits for the guest)."""
LIVE_STATES = (VmState.RUNNING, VmState.PAUSED)
OFFLINE_STATES = (VmState.STOPPED, VmState.CRASHED, VmState.FAILED)


class Update(Declared):
    kind = "update"
    complete_after = "recorded"

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        spec: VMSpec | None = None,
        plan: resources.Plan | None = None,
        old: VMSpec | None = None,
        old_paths: Set[Path] = frozenset(),
        actions: tuple[planning.Action, ...] = (),
        since_boot: dict[str, Any] | None = None,
    ):
        super().__init__(core, name, uuid)
        self.spec, self.plan, self.old, self.old_paths = spec, plan, old, old_paths
        self.actions, self.since_boot = actions, since_boot
        self.created: list[Path] = []
        self.journaled: Set[str] | None = None
        """Recovery: the steps the journal shows done (an unplug is only taken back where a plug happened)."""

    def journal_data(self) -> dict[str, Any]:
        """What recovery needs: the new spec (the disks it adds are removed on a rollback) and the live actions
        (taken back or finished)."""
        if self.spec is None:
            return {}
        return {"spec": stored(self.spec), "actions": [action.view() for action in self.actions]}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        if record is None:
            return None
        if "spec" not in op.data:
            return cls(core, record.name, record.uuid)
        spec, old = parse_spec(op.data["spec"]), core.spec_of(record)
        actions = tuple(planning.Action(**action) for action in op.data["actions"])
        plan = resources.plan(spec, core.config, known=old)
        restored = cls(core, record.name, record.uuid, spec=spec, plan=plan, old=old, actions=actions)
        restored.journaled = set(op.steps)
        restored.created = sorted(set(plan.resources.disk_paths.values()) - {Path(p) for p in record.owned_paths})
        return restored

    def completes(self, journaled: Set[str]) -> bool:
        """The store is written last: once it has the new spec, the update happened."""
        record = self.core.store.get_vm(self.name)
        recorded = self.spec is not None and record is not None and record.spec == stored(self.spec)
        return recorded or super().completes(journaled)

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("disks-created", self.allocate, undo=self.remove_new_disks),
            *(self._step(action) for action in self.actions),
            Step("defined", self.define, undo=lambda: define_from_store(self.core, self.name)),
            Step("recorded", self.record),
            Step("old-disks-removed", self.remove_old_disks, redo=self.remove_new_disks),
        )

    # ---- owned disks, definition, store ----------------------------------------------------------

    def allocate(self) -> None:
        assert self.plan is not None
        new = set(self.plan.resources.disk_paths.values())
        self.created = [path for path in new - self.old_paths if not path.exists()]
        with Rollback() as partial:
            resources.allocate(self.plan, partial, keep=frozenset(self.old_paths & new))

    def remove_new_disks(self) -> None:
        remove_unrecorded_disks(self.core, self.name, self.created)

    def define(self) -> None:
        assert self.spec is not None and self.plan is not None
        self.core.driver.define(self.spec, self.plan.resources)

    def record(self) -> None:
        assert self.spec is not None and self.plan is not None
        paths = sorted(str(p) for p in self.plan.resources.disk_paths.values())
        columns: dict[str, Any] = {"since_boot": self.since_boot} if self.since_boot is not None else {}
        self.core.store.update_vm(self.name, spec=stored(self.spec), owned_paths=paths, **columns)

    def remove_old_disks(self) -> None:
        assert self.plan is not None
        for path in self.old_paths - set(self.plan.resources.disk_paths.values()):
            path.unlink(missing_ok=True)

    # ---- one step per live change or offline growth ----------------------------------------------

    def _step(self, action: planning.Action) -> Step:
        act, key = action.act, action.key
        do: dict[str, tuple[str, Callable[[planning.Action], None], Callable[[planning.Action], None] | None]] = {
            "attach-nic": (f"nic-attached:{key}", self._attach_nic, self._detach_new_nic),
            "detach-nic": (f"nic-detached:{key}", self._detach_nic, self._attach_old_nic),
            "vcpus": ("vcpus-set", self._set_vcpus, self._old_vcpus),
            "memory": ("memory-set", self._set_memory, self._old_memory),
            "grow-disk": (f"disk-grown:{key}", self._grow_disk, None),
            "media": (f"media-changed:{key}", self._change_media, self._old_media),
            "resize-offline": (f"disk-resized:{key}", self._resize_offline, self._shrink_back),
        }
        name, step, undo = do[act]
        return Step(name, partial(step, action), undo=partial(self._take_back, name, undo, action) if undo else None)

    def _take_back(self, step: str, undo: Callable[[planning.Action], None], action: planning.Action) -> None:
        """Offline growth is always taken back; a live change only on a VM still running and, in recovery, only
        where the journal shows it made (plugging back a NIC that was never unplugged would fail)."""
        if action.act != "resize-offline":
            if self.core.driver.state(self.name) in GONE:
                return
            if self.journaled is not None and step not in self.journaled:
                return
        undo(action)

    def _new(self) -> tuple[VMSpec, Resources]:
        assert self.spec is not None and self.plan is not None
        return self.spec, self.plan.resources

    def _old(self) -> tuple[VMSpec, Resources]:
        assert self.old is not None
        return self.old, resources.plan(self.old, self.core.config).resources

    def _attach_nic(self, action: planning.Action) -> None:
        self.core.driver.attach_nic(*self._new(), action.key)

    def _detach_new_nic(self, action: planning.Action) -> None:
        self.core.driver.detach_nic(*self._new(), action.key, NIC_DETACH_TIMEOUT)

    def _detach_nic(self, action: planning.Action) -> None:
        self.core.driver.detach_nic(*self._old(), action.key, NIC_DETACH_TIMEOUT)

    def _attach_old_nic(self, action: planning.Action) -> None:
        self.core.driver.attach_nic(*self._old(), action.key)

    def _set_vcpus(self, action: planning.Action) -> None:
        self.core.driver.set_vcpus(self.name, action.value)

    def _old_vcpus(self, action: planning.Action) -> None:
        self.core.driver.set_vcpus(self.name, action.before)

    def _set_memory(self, action: planning.Action) -> None:
        self.core.driver.set_memory(*self._new(), action.value)

    def _old_memory(self, action: planning.Action) -> None:
        self.core.driver.set_memory(*self._old(), action.before)

    def _grow_disk(self, action: planning.Action) -> None:
        self.core.driver.resize_disk(self.name, action.key, action.value)

    def _change_media(self, action: planning.Action) -> None:
        self.core.driver.change_media(*self._new(), action.key)

    def _old_media(self, action: planning.Action) -> None:
        self.core.driver.change_media(*self._old(), action.key)

    def _disk_image(self, action: planning.Action) -> tuple[Path, str]:
        spec, owned = self._new()
        disk = next(d for d in spec.disks if d.target == action.key)
        return owned.disk_paths[action.key], disk.source.format if isinstance(disk.source, NewDisk) else "qcow2"

    def _resize_offline(self, action: planning.Action) -> None:
        qemu_img.resize_image(*self._disk_image(action), action.value)

    def _shrink_back(self, action: planning.Action) -> None:
        """The VM stayed stopped since the growth, so nothing has written past the old end."""
        path, fmt = self._disk_image(action)
        if path.exists() and qemu_img.image_info(path, fmt).virtual_size > action.before:
            qemu_img.resize_image(path, fmt, action.before, shrink=True)


@dataclass(frozen=True)
class Planned:
    old: VMSpec
    spec: VMSpec
    plan: resources.Plan
    changes: list[planning.Change]
    running: bool


def update(
    core: Core, name: str, patch: dict[str, Any], *, live: bool = False, dry_run: bool = False
) -> planning.UpdateResult:
    """Plan the patch; unless a dry run, apply it as one operation. A plan with a refused change applies nothing
    (SpecError naming each path); one without changes says so and journals nothing."""
    if not isinstance(patch, dict):
        raise SpecError([Problem("", f"an update must be a JSON object, got {type(patch).__name__}")])
    if dry_run:
        record = core.record(name)
        planned = plan_update(core, record, patch, live, OBSERVED[core.driver.state(record.name)])
        return planning.UpdateResult(record.name, planned.changes, dry_run=True)
    with core.locked(name) as record:
        planned = plan_update(core, record, patch, live, core.observe(record))
        refused = [change for change in planned.changes if change.how == "refused"]
        if refused:
            raise SpecError([Problem(change.path, change.reason) for change in refused])
        if not planned.changes:
            return planning.UpdateResult(record.name)
        since_boot = planning.since_boot(planned.changes, record.since_boot) if planned.running else None
        op = Update(
            core,
            record.name,
            record.uuid,
            spec=planned.spec,
            plan=planned.plan,
            old=planned.old,
            old_paths=frozenset(Path(p) for p in record.owned_paths),
            actions=tuple(change.action for change in planned.changes if change.action is not None),
            since_boot=since_boot,
        )
        run(op)
    for change in planned.changes:
        reason = f"{change.path}: {change.how}"
        core.events.publish(VmEvent(vm=record.name, uuid=record.uuid, type="changed", state="", reason=reason))
    return planning.UpdateResult(record.name, planned.changes, applied=True)


def plan_update(core: Core, record: VmRecord, patch: dict[str, Any], live: bool, state: VmState) -> Planned:
    """Validate the patched spec like a new one (host checks included), then classify each change."""
    if state not in LIVE_STATES + OFFLINE_STATES:
        raise Conflict(f"{record.name} is {state.value}: update it once it is running or stopped")
    old = core.spec_of(record)
    spec = parse_spec(keep_masked_secrets(merge_patch(record.spec, _editable(patch)), record.spec))
    plan = core.host_problems(spec, known=old)
    if plan.problems:
        raise SpecError(plan.problems)
    running = state in LIVE_STATES
    context = planning.Context(
        running=running,
        live=live,
        driver=core.driver.for_name(record.name).kind,
        capabilities=core.driver.capabilities_of(record.name),
        since_boot=record.since_boot,
        disk_size=partial(_virtual_size, plan),
    )
    changes = planning.build(stored(old), stored(spec), context)
    return Planned(old=old, spec=spec, plan=plan, changes=changes, running=running)


def _virtual_size(plan: resources.Plan, target: str) -> int | None:
    """An owned image's size as qemu-img reads it (-U: a running VM may hold it)."""
    path = plan.resources.disk_paths.get(target)
    if path is None or not path.exists():
        return None
    return qemu_img.image_info(path, "qcow2").virtual_size


def _editable(patch: dict[str, Any]) -> dict[str, Any]:
    """A patch may be edited `get` output: drop the view-only keys and keep the stored password for a masked one."""
    patch = {key: value for key, value in patch.items() if key not in VIEW_ONLY_KEYS}
    graphics = patch.get("graphics")
    if isinstance(graphics, dict) and graphics.get("password") == MASKED_SECRET:
        patch = {**patch, "graphics": {k: v for k, v in graphics.items() if k != "password"}}
    return patch
