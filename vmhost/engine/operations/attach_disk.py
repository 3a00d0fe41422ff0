"""attach-disk: add a disk to the definition, and plug it in live when the VM runs."""

from collections.abc import Set
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability
from vmhost.engine import resources
from vmhost.engine.core import Core, stored
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import define_from_store, remove_unrecorded_disks
from vmhost.spec import SpecError, VMSpec, parse_spec
from vmhost.store.sqlite import OperationRecord


class AttachDisk(Declared):
    kind = "attach-disk"
    complete_after = "defined"

    def __init__(self, core: Core, name: str, uuid: str, *, spec: VMSpec, plan: resources.Plan, live: bool):
        super().__init__(core, name, uuid)
        self.spec, self.plan, self.live = spec, plan, live
        self.target = str(spec.disks[-1].target)
        self.created: list[Path] = []

    def journal_data(self) -> dict[str, Any]:
        return {"disk": self.spec.disks[-1].model_dump(mode="json")}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        disk = op.data.get("disk")
        if record is None or disk is None:
            return None
        current = [d for d in record.spec["disks"] if d.get("target") != disk.get("target")]
        spec = parse_spec({**record.spec, "disks": [*current, disk]})
        plan = resources.plan(spec, core.config, known=core.spec_of(record))
        live = core.observe(record) in (VmState.RUNNING, VmState.PAUSED)
        restored = cls(core, record.name, record.uuid, spec=spec, plan=plan, live=live)
        image = plan.resources.disk_paths.get(restored.target)
        restored.created = [image] if image is not None else []  # unrecorded: removed once it is unplugged
        return restored

    def completes(self, journaled: Set[str]) -> bool:
        """The store is written last: once it has the disk, the attach happened."""
        record = self.core.store.get_vm(self.name)
        in_store = record is not None and any(d.get("target") == self.target for d in record.spec["disks"])
        return in_store or super().completes(journaled)

    def steps(self) -> tuple[Step, ...]:
        return (
            Step(
                "disks-created", self.allocate, undo=lambda: remove_unrecorded_disks(self.core, self.name, self.created)
            ),
            Step("plugged", self.plug, undo=self.unplug, when=lambda: self.live),
            Step("defined", self.define, undo=lambda: define_from_store(self.core, self.name)),
        )

    def allocate(self) -> None:
        record = self.core.record(self.name)
        keep = frozenset(Path(p) for p in record.owned_paths)
        self.created = [p for p in self.plan.resources.disk_paths.values() if p not in keep and not p.exists()]
        with Rollback() as partial:
            resources.allocate(self.plan, partial, keep=keep)

    def plug(self) -> None:
        self.core.driver.attach_disk(self.spec, self.plan.resources, self.target)

    def unplug(self) -> None:
        if self.live:
            self.core.driver.detach_disk(self.spec, self.plan.resources, self.target)

    def define(self) -> None:
        self.core.driver.define(self.spec, self.plan.resources)
        paths = sorted(str(p) for p in self.plan.resources.disk_paths.values())
        self.core.store.update_vm(self.name, spec=stored(self.spec), owned_paths=paths)


def attach_disk(core: Core, name: str, disk: dict[str, Any]) -> str:
    """Returns the new disk's target."""
    with core.locked(name) as record:
        old = core.spec_of(record)
        spec = parse_spec({**record.spec, "disks": [*record.spec["disks"], disk]})
        live = core.observe(record) in (VmState.RUNNING, VmState.PAUSED)
        if live:
            core.driver.require(record.name, Capability.DISK_HOTPLUG)
        plan = core.host_problems(spec, known=old)
        if plan.problems:
            raise SpecError([p for p in plan.problems if p.path.startswith(f"disks.{len(old.disks)}")] or plan.problems)
        op = AttachDisk(core, record.name, record.uuid, spec=spec, plan=plan, live=live)
        run(op)
        return op.target
