"""At agent start: finish what a dead process left half done, adopt lost domains, clean orphans, and bring
back the VMs that should run.

An interrupted operation is replayed with its own declared steps (engine/operations/): the journal names the
operation's kind (one registry lookup) and the steps it completed; the operation says whether it is completed
(each missing step's redo) or rolled back (every step's undo, newest first).
"""

import logging
import sqlite3

from vmhost.drivers.base import DomainInfo
from vmhost.engine import host_shutdown, resources
from vmhost.engine.core import Core, moved_away, stored
from vmhost.engine.events import VmEvent
from vmhost.engine.operations import OPERATIONS, incoming
from vmhost.engine.states import OBSERVED, VmState
from vmhost.engine.steps import COMPLETED_BY_RECOVERY, ROLLED_BACK_BY_RECOVERY, prune_history, undo
from vmhost.engine.supervisor import FOUND_CRASHED, Supervisor
from vmhost.errors import VmhostError
from vmhost.spec import SpecError, parse_spec
from vmhost.store.sqlite import OperationRecord, VmRecord

log = logging.getLogger("vmhost.engine")


def recover(core: Core, supervisor: Supervisor) -> list[VmRecord]:
    """Adopt vmhost domains the store lost, reconcile every state, and give a VM found crashed its policy.
    Returns the VMs to restore (engine/restore.py): found shut off (e.g. after a host reboot) while they should
    run (autostart, running when the agent last saw them, or stopped by `vmhost host shutdown`); their desired
    state is now `running`."""
    finish_interrupted(core)
    incoming.sweep(core)
    prune_history(core)
    if _anything_unknown(core):
        owned = core.driver.list_owned()
        adopt_unknown_domains(core, owned)
        remove_orphan_directories(core, owned)
    to_restore: list[VmRecord] = []
    host_stopped = set(host_shutdown.stopped_for_host(core))
    for record, state in supervisor.refresh():
        try:
            if state == VmState.CRASHED and record.desired_state == "running":
                with core.locked(record.name) as current:
                    supervisor.exited(current, state, crashed=True, powered_off=False, reason=FOUND_CRASHED)
            elif state == VmState.STOPPED and _should_run(core, record, host_stopped):
                core.store.update_vm(record.name, desired_state="running")
                to_restore.append(record)
        except VmhostError as exc:
            log.warning("could not recover a VM", extra={"vm": record.name, "error": exc.message})
    host_shutdown.forget_stopped_for_host(core)
    return to_restore


def _should_run(core: Core, record: VmRecord, host_stopped: set[str]) -> bool:
    """Running when the agent last saw it, stopped by the last host shutdown, or autostart; never one that may
    run on another host now (a migration that did not confirm)."""
    if moved_away(record):
        return False
    return record.desired_state == "running" or record.uuid in host_stopped or core.spec_of(record).autostart


def _anything_unknown(core: Core) -> bool:
    """Whether adoption or orphan cleanup may have work: a domain or a VM directory the store does not know.
    Both need every owned domain's details (a few hypervisor calls per domain: ~0.1 s at 100 VMs), while this
    costs one bulk state call; on a host with only this agent's VMs an agent restart skips them."""
    records = core.store.list_vms()
    vms = core.config.data_dir / "vms"
    directories = {directory.name for directory in vms.iterdir()} if vms.is_dir() else set()
    unknown_domains = set(core.driver.states()) - {record.name for record in records}
    return bool(unknown_domains or directories - {record.uuid for record in records})


def finish_interrupted(core: Core) -> None:
    for op in core.store.unfinished_operations():
        if core.locks.is_held(op.vm_name):
            continue  # a live process (e.g. a CLI) is still on it
        with core.locks.hold(op.vm_name):
            try:
                state, error = recover_operation(core, op)
            except VmhostError as exc:
                state, error = "failed", f"interrupted after {op.steps or ['nothing']}; recovery failed: {exc.message}"
                log.error("could not recover an operation", extra={"vm": op.vm_name, "kind": op.kind, "error": error})
        core.store.finish_operation(op.id, state, result=f"interrupted after {op.steps or ['nothing']}", error=error)
        core.events.publish(
            VmEvent(vm=op.vm_name, uuid=op.vm_uuid or "", type="recovered", state="", reason=f"{op.kind}: {state}")
        )


def recover_operation(core: Core, op: OperationRecord) -> tuple[str, str]:
    """Complete or roll back `op` with its own steps; returns which, and what could not be undone."""
    kind = OPERATIONS.get(op.kind)
    declared = kind.restored(core, op) if kind is not None else None
    if declared is None:
        return ROLLED_BACK_BY_RECOVERY, ""  # nothing of it is left (its VM went with an earlier rollback)
    journaled = set(op.steps)
    steps = declared.steps()
    notes: list[str] = []
    if declared.completes(journaled):
        for step in steps:
            if step.name not in journaled and step.redo is not None:
                step.redo()
        outcome = COMPLETED_BY_RECOVERY
    else:
        notes = undo(reversed(steps))  # every undo is safe on a step that never ran
        outcome = ROLLED_BACK_BY_RECOVERY
    declared.settle()
    return outcome, "; ".join(notes)


def remove_orphan_directories(core: Core, owned: list[DomainInfo]) -> None:
    """A VM directory with neither a VM record nor a domain is what an interrupted create or delete left
    behind (a create records the VM before it makes the directory; a delete removes the directory first)."""
    vms = core.config.data_dir / "vms"
    defined = {info.uuid for info in owned}
    for directory in vms.iterdir() if vms.is_dir() else []:
        if directory.name not in defined and core.store.find_vm(directory.name) is None:
            resources.release(directory, [])


def adopt_unknown_domains(core: Core, owned: list[DomainInfo]) -> None:
    """A domain carrying vmhost's metadata but missing from the store gets its record back, untouched."""
    known = {record.name for record in core.store.list_vms()}
    for info in owned:
        if info.name in known:
            continue
        try:
            _adopt(core, info)
        except (VmhostError, SpecError, sqlite3.IntegrityError) as exc:
            log.warning("could not adopt a domain", extra={"vm": info.name, "error": str(exc)})


def _adopt(core: Core, info: DomainInfo) -> None:
    recorded = core.driver.recorded_by(info)
    if recorded is None or recorded.owner != str(core.config.data_dir):
        return  # not vmhost's, or another vmhost instance's (another data directory) on the same host
    spec = parse_spec(resources.with_seed_secrets(recorded.spec, resources.vm_dir(core.config.data_dir, info.uuid)))
    owned = sorted(str(p) for p in resources.plan(spec, core.config).resources.disk_paths.values())
    state = OBSERVED[info.state]
    core.store.insert_vm(
        spec.name, uuid=str(spec.uuid), driver=info.driver, spec=stored(spec), state=state.value, owned_paths=owned
    )
    core.store.update_vm(
        spec.name,
        reason="adopted from the hypervisor",
        desired_state="running" if state == VmState.RUNNING else "stopped",
    )
    core.events.publish(VmEvent(vm=spec.name, uuid=str(spec.uuid), type="adopted", state=state.value))
