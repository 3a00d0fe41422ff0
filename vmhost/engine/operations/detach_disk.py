"""detach-disk: remove a disk from the definition (unplugging it live first); an owned disk's image is deleted."""

from collections.abc import Set
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability
from vmhost.engine import resources
from vmhost.engine.core import Core, stored
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import define_from_store
from vmhost.errors import NotFound
from vmhost.spec import VMSpec, parse_spec
from vmhost.store.sqlite import OperationRecord


class DetachDisk(Declared):
    kind = "detach-disk"
    complete_after = "defined"

    def __init__(self, core: Core, name: str, uuid: str, *, old: VMSpec, target: str, live: bool):
        super().__init__(core, name, uuid)
        self.old, self.target, self.live = old, target, live
        self.spec = _without(old, target)
        self.old_plan = resources.plan(old, core.config)
        removed = self.old_plan.resources.disk_paths.get(target)
        self.image = str(removed) if removed else ""

    def journal_data(self) -> dict[str, Any]:
        return {"target": self.target, "image": self.image}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        if record is None or "target" not in op.data:
            return None
        op_self = cls(core, record.name, record.uuid, old=core.spec_of(record), target=op.data["target"], live=False)
        op_self.image = op.data.get("image", "")
        return op_self

    def completes(self, journaled: Set[str]) -> bool:
        """The store is written last: once it lacks the disk, the detach happened."""
        record = self.core.store.get_vm(self.name)
        gone = record is not None and all(d.get("target") != self.target for d in record.spec["disks"])
        return gone or super().completes(journaled)

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("unplugged", self.unplug, when=lambda: self.live),
            Step("defined", self.define, undo=lambda: define_from_store(self.core, self.name)),
            Step("image-removed", self.remove_image, redo=self.remove_image),
        )

    def unplug(self) -> None:
        self.core.driver.detach_disk(self.old, self.old_plan.resources, self.target)

    def define(self) -> None:
        plan = resources.plan(self.spec, self.core.config, known=self.old)
        self.core.driver.define(self.spec, plan.resources)
        paths = sorted(str(p) for p in plan.resources.disk_paths.values())
        self.core.store.update_vm(self.name, spec=stored(self.spec), owned_paths=paths)

    def remove_image(self) -> None:
        if self.image:
            Path(self.image).unlink(missing_ok=True)


def _without(spec: VMSpec, target: str) -> VMSpec:
    """Validated before anything is unplugged: a spec that cannot lose this disk refuses at once."""
    document = stored(spec)
    return parse_spec({**document, "disks": [d for d in document["disks"] if d.get("target") != target]})


def detach_disk(core: Core, name: str, target: str) -> None:
    with core.locked(name) as record:
        if all(d.get("target") != target for d in record.spec["disks"]):
            raise NotFound(f"{record.name} has no disk {target}")
        live = core.observe(record) in (VmState.RUNNING, VmState.PAUSED)
        if live:
            core.driver.require(record.name, Capability.DISK_HOTPLUG)
        run(DetachDisk(core, record.name, record.uuid, old=core.spec_of(record), target=target, live=live))
