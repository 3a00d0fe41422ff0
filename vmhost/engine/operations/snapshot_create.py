"""snapshot create: take a full or disk-only snapshot of a running or stopped VM, then record it.

Once the hypervisor has the snapshot, the operation is completed (recorded); before, what an interrupted take
left (an overlay directory, a snapshot libvirt made just before the crash) is taken back."""

import shutil
import time
from collections.abc import Set
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability
from vmhost.engine import resources, snapshots
from vmhost.engine.core import Core
from vmhost.engine.events import VmEvent
from vmhost.engine.snapshot_layers import new_layer_dir
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import Conflict, NotFound
from vmhost.host import files
from vmhost.store.sqlite import OperationRecord, SnapshotRecord

SNAPSHOT_STATES = (VmState.RUNNING, VmState.PAUSED, VmState.STOPPED)


class CreateSnapshot(Declared):
    kind = "snapshot-create"
    complete_after = "taken"

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        snapshot: str,
        disk_only: bool,
        quiesce: bool,
        layers: dict[str, Path],
        vm_state: str,
    ):
        super().__init__(core, name, uuid)
        self.snapshot, self.disk_only, self.quiesce = snapshot, disk_only, quiesce
        self.layers, self.vm_state = layers, vm_state

    def journal_data(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot,
            "disk_only": self.disk_only,
            "quiesce": self.quiesce,
            "layers": {target: str(path) for target, path in self.layers.items()},
            "vm_state": self.vm_state,
        }

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        if record is None or record.uuid != op.vm_uuid or "snapshot" not in op.data:
            return None
        layers = {target: Path(path) for target, path in op.data.get("layers", {}).items()}
        return cls(
            core,
            record.name,
            record.uuid,
            snapshot=op.data["snapshot"],
            disk_only=bool(op.data.get("disk_only")),
            quiesce=bool(op.data.get("quiesce")),
            layers=layers,
            vm_state=str(op.data.get("vm_state", "")),
        )

    def completes(self, journaled: Set[str]) -> bool:
        """The hypervisor's metadata says whether the snapshot was taken (the crash may precede the journal)."""
        return super().completes(journaled) or self.snapshot in self._hypervisor_snapshots()

    def _hypervisor_snapshots(self) -> list[str]:
        try:
            return self.core.driver.snapshot_names(self.name)
        except NotFound:  # no domain any more: nothing of the snapshot either
            return []

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("taken", self.take, undo=self.untake),
            Step("recorded", self.record, undo=self.unrecord, redo=self.record),
        )

    def take(self) -> None:
        record = self.core.record(self.name)
        spec = self.core.spec_of(record)
        plan = resources.plan(spec, self.core.config, known=spec)
        if self.layers:
            directory = next(iter(self.layers.values())).parent
            files.inherited_dir(directory.parent)
            files.inherited_dir(directory)
        self.core.progress(f"taking snapshot {self.snapshot}")
        self.core.driver.create_snapshot(
            spec,
            plan.resources,
            self.snapshot,
            disk_only=self.disk_only,
            layers=self.layers,
            quiesce=self.quiesce,
        )

    def untake(self) -> None:
        """Safe whether or not the hypervisor took it: its overlays merged back, its metadata and files gone."""
        if self.snapshot in self._hypervisor_snapshots():
            if self.layers:
                snapshots.merge_down(self.core, self.name, self.layers)
            self.core.driver.delete_snapshot(self.name, self.snapshot)
        if self.layers:
            shutil.rmtree(next(iter(self.layers.values())).parent, ignore_errors=True)

    def record(self) -> None:
        layers = {target: str(path) for target, path in self.layers.items()}
        digest = snapshots.spec_digest(self.core.record(self.name))
        taken = SnapshotRecord(self.uuid, self.snapshot, self.disk_only, self.vm_state, layers, time.time(), digest)
        self.core.store.snapshots.insert(taken)
        kind = "disk-only" if self.disk_only else "full"
        self.core.events.publish(
            VmEvent(vm=self.name, uuid=self.uuid, type="snapshot-created", state=self.vm_state, reason=self.snapshot)
        )
        self.core.progress(f"{kind} snapshot {self.snapshot} taken")

    def unrecord(self) -> None:
        self.core.store.snapshots.delete(self.uuid, self.snapshot)


def create_snapshot(core: Core, name: str, snapshot: str, disk_only: bool, quiesce: bool) -> dict[str, Any]:
    """Everything is checked before anything is touched; returns the snapshot as `snapshot list` shows it."""
    snapshots.check_name(snapshot)
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.SNAPSHOTS)
        snapshots.refuse_existing(core, record, snapshot)
        state = core.observe(record)
        if state not in SNAPSHOT_STATES:
            raise Conflict(f"cannot snapshot {record.name}: it is {state.value}")
        spec = core.spec_of(record)
        if quiesce:
            snapshots.check_quiesce(spec, disk_only, state)
        layers: dict[str, Path] = {}
        if snapshots.overlays_managed(core, record.name):
            existing = core.store.snapshots.of_vm(record.uuid)
            problems = snapshots.refusals(spec, disk_only, existing)
            if problems:
                raise Conflict(f"cannot snapshot {record.name}: " + "; ".join(problems))
            if disk_only:
                directory = new_layer_dir(resources.vm_dir(core.config.data_dir, record.uuid), snapshot)
                layers = dict(snapshots.overlay_paths(directory, snapshots.snapshot_targets(spec)))
        vm_state = VmState.STOPPED.value if state == VmState.STOPPED else VmState.RUNNING.value
        op = CreateSnapshot(
            core,
            record.name,
            record.uuid,
            snapshot=snapshot,
            disk_only=disk_only,
            quiesce=quiesce,
            layers=layers,
            vm_state=vm_state,
        )
        run(op)
        return snapshots.view(snapshots.find(core, record, snapshot))
