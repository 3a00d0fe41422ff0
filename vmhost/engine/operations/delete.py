"""delete: stop at once, undefine, remove the disks vmhost created. User-supplied paths are never touched.

An interrupted delete is completed: the journal holds the name, UUID and owned paths, so nothing is lost even
once the record is gone."""

import logging
from pathlib import Path
from typing import Any, Self

from vmhost.engine import resources
from vmhost.engine.core import GONE, Core
from vmhost.engine.events import VmEvent
from vmhost.engine.hooks import Phase
from vmhost.engine.operations import incoming
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import force_off, remove_domain_if_its
from vmhost.errors import VmhostError
from vmhost.spec import VMSpec
from vmhost.store.sqlite import OperationRecord, VmRecord

log = logging.getLogger("vmhost.engine")


class Delete(Declared):
    kind = "delete"
    complete_after = ""

    def __init__(self, core: Core, name: str, uuid: str, owned: list[str]):
        super().__init__(core, name, uuid)
        self.owned = owned

    def journal_data(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid, "owned": self.owned}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        name, uuid = op.data.get("name"), op.data.get("uuid")
        if not name or not uuid:
            record = core.store.get_vm(op.vm_name)
            return None if record is None else cls(core, record.name, record.uuid, record.owned_paths)
        return cls(core, name, uuid, list(op.data.get("owned", [])))

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("destroyed", self.force_off, redo=self.remove_domain, when=self.running),
            Step("undefined", self.undefine, redo=self.remove_domain),
            Step("disks-removed", self.remove_disks, redo=self.remove_disks),
            Step("forgotten", self.forget, redo=self.forget),
        )

    def force_off(self) -> None:
        force_off(self.core, self.name)

    def running(self) -> bool:
        return self.core.driver.state(self.name) not in GONE

    def remove_domain(self) -> None:
        remove_domain_if_its(self.core, self.name, self.uuid)

    def undefine(self) -> None:
        self.core.timers.cancel(self.name)
        record = self.core.store.get_vm(self.name)
        if record is not None:
            self.core.release_unmanaged_pci(record)
        self.core.driver.undefine(self.name)

    def remove_disks(self) -> None:
        directory = resources.vm_dir(self.core.config.data_dir, self.uuid)
        resources.release(directory, [Path(p) for p in self.owned])

    def forget(self) -> None:
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid == self.uuid:
            self.core.forget(record)
            self.core.events.publish(VmEvent(vm=self.name, uuid=self.uuid, type="deleted", state="deleted"))

    def settle(self) -> None:
        """A completed delete leaves nothing to settle."""


def delete(core: Core, name: str) -> None:
    """A VM still migrating into this host is only dropped here (its source keeps it; refused once arrived)."""
    found = core.record(name)
    if found.state == VmState.INCOMING.value:
        incoming.abort(core, found.migration["id"])
        return
    with core.locked(name, deleting=True) as record:
        spec = _readable_spec(core, record)
        if spec is not None:
            core.pre_hooks(Phase.BEFORE_DELETE, spec)
        run(Delete(core, record.name, record.uuid, record.owned_paths))
    if spec is not None:
        core.post_hooks([Phase.AFTER_DELETE], spec)


def _readable_spec(core: Core, record: VmRecord) -> VMSpec | None:
    """A VM whose stored spec no longer validates (e.g. its plugin was removed) can still be deleted, with
    no hooks: they would need the spec."""
    try:
        return core.spec_of(record)
    except VmhostError as exc:
        log.warning("deleting without hooks", extra={"vm": record.name, "error": exc.message})
        return None
