"""update: offline changes as a JSON merge patch on the stored spec, validated like a new spec.

Recovery rolls an interrupted update back to what the store says (the store is written last)."""

from collections.abc import Set
from pathlib import Path
from typing import Any

from vmhost.engine import resources
from vmhost.engine.core import Core, stored
from vmhost.engine.merge import merge_patch
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import define_from_store, remove_unrecorded_disks
from vmhost.errors import Conflict
from vmhost.spec import Problem, SpecError, VMSpec, parse_spec
from vmhost.spec.disk import NewDisk, OverlayDisk
from vmhost.store.sqlite import VmRecord

MASKED_SECRET = "********"
VIEW_ONLY_KEYS = ("state", "state_reason", "driver", "created_at", "updated_at", "runtime", "restart_status")


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
        old_paths: Set[Path] = frozenset(),
    ):
        super().__init__(core, name, uuid)
        self.spec, self.plan, self.old_paths = spec, plan, old_paths
        self.created: list[Path] = []

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("disks-created", self.allocate, undo=self.remove_new_disks),
            Step("defined", self.define, undo=lambda: define_from_store(self.core, self.name)),
            Step("recorded", self.record),
            Step("old-disks-removed", self.remove_old_disks, redo=self.remove_new_disks),
        )

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
        self.core.store.update_vm(self.name, spec=stored(self.spec), owned_paths=paths)

    def remove_old_disks(self) -> None:
        assert self.plan is not None
        for path in self.old_paths - set(self.plan.resources.disk_paths.values()):
            path.unlink(missing_ok=True)


def update(core: Core, name: str, patch: dict[str, Any]) -> VmRecord:
    if not isinstance(patch, dict):
        raise SpecError([Problem("", f"an update must be a JSON object, got {type(patch).__name__}")])
    with core.locked(name) as record:
        if core.observe(record) not in (VmState.STOPPED, VmState.CRASHED, VmState.FAILED):
            raise Conflict(f"{record.name} must be stopped to be updated (changes are applied offline)")
        old = core.spec_of(record)
        spec = parse_spec(merge_patch(record.spec, _editable(patch)))
        plan = core.host_problems(spec, known=old)
        problems = _identity_changes(old, spec) + _resized_disks(old, spec)
        if problems + plan.problems:
            raise SpecError(problems + plan.problems)
        old_paths = frozenset(Path(p) for p in record.owned_paths)
        run(Update(core, record.name, record.uuid, spec=spec, plan=plan, old_paths=old_paths))
        return core.record(record.name)


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
