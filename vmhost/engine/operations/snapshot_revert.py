"""snapshot revert: bring a snapshot back, on a running or a stopped VM.

A full snapshot is the hypervisor's to revert (libvirt revertToSnapshot: disks, memory and the running state
it was taken in). libvirt 9.0 cannot revert an external (disk-only) snapshot, so vmhost does: the VM is forced
off (its state since the snapshot is what is being thrown away), each disk's top overlay is replaced by a new
empty one on the same image below it (the snapshot point), and a VM that ran is started again (a step of the
revert). Interrupted, the revert is completed: recovery forces the VM off if it still runs, makes the new overlays
and starts it again if it ran."""

from collections.abc import Set
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability
from vmhost.engine import snapshots
from vmhost.engine.core import Core
from vmhost.engine.events import VmEvent
from vmhost.engine.operations.start import start_locked
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import define_from_store, force_off
from vmhost.storage import qemu_img
from vmhost.store.sqlite import OperationRecord


class RevertSnapshot(Declared):
    kind = "snapshot-revert"
    complete_after = ""

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        snapshot: str,
        layers: dict[str, Path],
        was_running: bool,
        spec_changed: bool = True,
    ):
        super().__init__(core, name, uuid)
        self.snapshot, self.layers, self.was_running, self.spec_changed = snapshot, layers, was_running, spec_changed

    def journal_data(self) -> dict[str, Any]:
        layers = {target: str(path) for target, path in self.layers.items()}
        return {"snapshot": self.snapshot, "layers": layers, "was_running": self.was_running}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        record = core.store.get_vm(op.vm_name)
        if record is None or record.uuid != op.vm_uuid or "snapshot" not in op.data:
            return None
        layers = {target: Path(path) for target, path in op.data.get("layers", {}).items()}
        was_running = bool(op.data.get("was_running"))
        return cls(core, record.name, record.uuid, snapshot=op.data["snapshot"], layers=layers, was_running=was_running)

    def completes(self, journaled: Set[str]) -> bool:
        """A full revert is the hypervisor's one call: done once journaled. A disk-only one is always completed."""
        return bool(self.layers) or "reverted" in journaled

    def steps(self) -> tuple[Step, ...]:
        if not self.layers:
            return (
                Step("reverted", lambda: self.core.driver.revert_snapshot(self.name, self.snapshot)),
                Step("redefined", self.redefine, redo=self.redefine, when=lambda: self.spec_changed),
            )
        return (
            Step("stopped", self.force_off, redo=self.force_off_if_running, when=self.vm_runs),
            Step("reverted", self.new_overlays, redo=self.new_overlays),
            Step("started", self.start_again, redo=self.start_again, when=lambda: self.was_running),
        )

    def vm_runs(self) -> bool:
        return snapshots.running(self.core, self.name)

    def redefine(self) -> None:
        """libvirt put back the definition the snapshot was taken with; the store's spec stays the truth (a change
        made since applies at the next boot, as an offline update does). Skipped when the spec is unchanged."""
        define_from_store(self.core, self.name)

    def force_off(self) -> None:
        """The state since the snapshot is what a revert throws away: no graceful shutdown for it."""
        force_off(self.core, self.name)

    def force_off_if_running(self) -> None:
        """Recovery, killed before the VM was off: its overlays must not be replaced under a running QEMU."""
        if self.vm_runs():
            self.force_off()

    def start_again(self) -> None:
        """A VM that ran before the revert runs after it; under the revert's lock (in recovery too), so the stop
        event of its forced-off QEMU cannot mark it as meant to stay off before it is started again."""
        if self.was_running:
            start_locked(self.core, self.core.record(self.name))

    def new_overlays(self) -> None:
        """Each top overlay replaced by an empty one on the same image below it, at the same path (so the
        definition does not change)."""
        spec = self.core.spec_of(self.core.record(self.name))
        for target, overlay in self.layers.items():
            below, fmt = snapshots.image_below(self.core, spec, target, overlay)
            overlay.unlink(missing_ok=True)
            qemu_img.create_overlay(overlay, below, fmt, None)

    def settle(self) -> None:
        super().settle()
        _desired_after(self.core, self.name)


def _desired_after(core: Core, name: str) -> VmState:
    """What the VM is after the revert is what it should be (the supervisor must not restart or stop it)."""
    state = core.observe(core.record(name))
    core.store.update_vm(name, desired_state="running" if state == VmState.RUNNING else "stopped")
    return state


def revert_snapshot(core: Core, name: str, snapshot: str) -> dict[str, Any]:
    """Returns the VM's name and state after the revert."""
    snapshots.check_name(snapshot)
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.SNAPSHOTS)
        taken = snapshots.find(core, record, snapshot)
        layers = {target: Path(path) for target, path in taken.layers.items()}
        if layers:
            snapshots.newest_disk_only(core, record, taken, "revert to")
        was_running = core.observe(record) in (VmState.RUNNING, VmState.PAUSED)
        core.timers.cancel(record.name)
        changed = snapshots.spec_digest(record) != taken.spec_digest
        op = RevertSnapshot(
            core,
            record.name,
            record.uuid,
            snapshot=snapshot,
            layers=layers,
            was_running=was_running,
            spec_changed=changed,
        )
        run(op)
        if not snapshots.overlays_managed(core, record.name):
            _forget_newer_if_native(core, record.name, record.uuid)
        state = _desired_after(core, record.name)
    core.events.publish(
        VmEvent(vm=record.name, uuid=record.uuid, type="snapshot-reverted", state=state.value, reason=snapshot)
    )
    return {"name": record.name, "snapshot": snapshot, "state": state.value}


def _forget_newer_if_native(core: Core, name: str, uuid: str) -> None:
    """vmadm's rollback deletes every newer snapshot (zfs rollback -r): the store forgets what the hypervisor lost."""
    kept = set(core.driver.snapshot_names(name))
    for taken in core.store.snapshots.of_vm(uuid):
        if taken.name not in kept:
            core.store.snapshots.delete(uuid, taken.name)
