"""snapshot delete: a full snapshot goes with its data (libvirt deletes the internal snapshot from the qcow2
disks); a disk-only one is merged first (block commit: active commit and pivot on a running VM, qemu-img commit
on a stopped one), so the chain is back to what it was before the snapshot, then its overlays and metadata go.
Once begun it is completed: a partly committed overlay cannot be taken back."""

from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability
from vmhost.engine import snapshots
from vmhost.engine.core import Core
from vmhost.engine.events import VmEvent
from vmhost.engine.steps import Declared, Step, run
from vmhost.store.sqlite import OperationRecord


class DeleteSnapshot(Declared):
    kind = "snapshot-delete"
    complete_after = ""

    def __init__(self, core: Core, name: str, uuid: str, *, snapshot: str, layers: dict[str, Path]):
        super().__init__(core, name, uuid)
        self.snapshot, self.layers = snapshot, layers

    def journal_data(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "layers": {target: str(path) for target, path in self.layers.items()}}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        if record is None or record.uuid != op.vm_uuid or "snapshot" not in op.data:
            return None
        layers = {target: Path(path) for target, path in op.data.get("layers", {}).items()}
        return cls(core, record.name, record.uuid, snapshot=op.data["snapshot"], layers=layers)

    def steps(self) -> tuple[Step, ...]:
        merge = Step("merged", self.merge, redo=self.merge, when=lambda: bool(self.layers))
        metadata = Step("metadata-removed", self.forget_in_hypervisor, redo=self.forget_in_hypervisor)
        files = Step("layers-removed", self.drop_layers, redo=self.drop_layers, when=lambda: bool(self.layers))
        return (merge, metadata, files, Step("forgotten", self.forget, redo=self.forget))

    def merge(self) -> None:
        snapshots.merge_down(self.core, self.name, self.layers)

    def forget_in_hypervisor(self) -> None:
        self.core.driver.delete_snapshot(self.name, self.snapshot)

    def drop_layers(self) -> None:
        for directory in {overlay.parent for overlay in self.layers.values()}:
            snapshots.drop_layers(self.core, self.name, directory)

    def forget(self) -> None:
        self.core.store.snapshots.delete(self.uuid, self.snapshot)
        record = self.core.store.get_vm(self.name)
        state = record.state if record else ""
        self.core.events.publish(
            VmEvent(vm=self.name, uuid=self.uuid, type="snapshot-deleted", state=state, reason=self.snapshot)
        )


def delete_snapshot(core: Core, name: str, snapshot: str) -> None:
    snapshots.check_name(snapshot)
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.SNAPSHOTS)
        taken = snapshots.find(core, record, snapshot)
        layers = {target: Path(path) for target, path in taken.layers.items()}
        if layers:
            snapshots.newest_disk_only(core, record, taken, "delete")
        run(DeleteSnapshot(core, record.name, record.uuid, snapshot=snapshot, layers=layers))
