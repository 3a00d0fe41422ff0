"""The VM state model and the transitions vmhost allows: the one source of truth, enforced on every write.

provisioning -> stopped            create: disks made, domain defined
stopped      -> starting -> running
running      -> stopping -> stopped
running      -> paused -> running  (pause/resume, or paused from outside)
running | paused | stopped -> migrating   migrate: the record goes with the VM, or back to what is observed
incoming     -> running | paused | stopped   the destination's record of a migration, until it finishes
any          -> crashed | failed   (observed: the hypervisor says so, or a definition went missing)

The hypervisor's view always wins, and vmhost cannot see every step it takes: events are lost while libvirtd
restarts, and a VM may be started, paused or shut down from outside between two reconciles. So from every
settled or transitional state, every state the hypervisor can report (OBSERVABLE) is legal; what the table
forbids are moves only vmhost itself makes wrongly: into provisioning, into starting from a live VM, out of
provisioning into a live state (a create never runs the VM before it is stopped and recorded).
"""

from enum import StrEnum

from vmhost.drivers.base import DomainState


class VmState(StrEnum):
    PROVISIONING = "provisioning"
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    PAUSED = "paused"
    CRASHED = "crashed"
    FAILED = "failed"
    MIGRATING = "migrating"
    """Being moved to another host by this agent's migrate operation (it holds the VM's lock meanwhile)."""
    INCOMING = "incoming"
    """Being moved here by another host's agent; this host owns it once the source asked it to finish."""


class IllegalTransition(RuntimeError):
    """A bug in vmhost, never an operator error: the API answers 500 and tests fail."""


TRANSIENT = {VmState.PROVISIONING, VmState.STARTING, VmState.STOPPING, VmState.MIGRATING}

OBSERVED: dict[DomainState, VmState] = {
    DomainState.RUNNING: VmState.RUNNING,
    DomainState.PAUSED: VmState.PAUSED,
    DomainState.SHUTOFF: VmState.STOPPED,
    DomainState.SHUTTING_DOWN: VmState.STOPPING,
    DomainState.CRASHED: VmState.CRASHED,
    DomainState.CRASHED_PRESERVED: VmState.CRASHED,
    DomainState.ABSENT: VmState.FAILED,
    DomainState.OTHER: VmState.FAILED,
}
OBSERVABLE = frozenset(OBSERVED.values())

LEGAL: dict[VmState, frozenset[VmState]] = {
    VmState.PROVISIONING: frozenset({VmState.STOPPED, VmState.CRASHED, VmState.FAILED}),
    VmState.STOPPED: OBSERVABLE | {VmState.STARTING, VmState.MIGRATING},
    VmState.STARTING: OBSERVABLE,
    VmState.RUNNING: OBSERVABLE | {VmState.MIGRATING},
    VmState.STOPPING: OBSERVABLE,
    VmState.PAUSED: OBSERVABLE | {VmState.MIGRATING},
    VmState.CRASHED: OBSERVABLE | {VmState.STARTING},
    VmState.FAILED: OBSERVABLE | {VmState.STARTING},
    VmState.MIGRATING: OBSERVABLE,
    VmState.INCOMING: OBSERVABLE,
}


def is_legal(source: VmState, target: VmState) -> bool:
    return source == target or target in LEGAL[source]


def check_transition(name: str, source: VmState, target: VmState) -> None:
    if not is_legal(source, target):
        raise IllegalTransition(f"illegal state transition of {name}: {source.value} -> {target.value}")


def keeps_recorded(state: VmState, locked: bool, moved_away: bool) -> bool:
    """Whether the record, not the hypervisor, says the state: an operation in flight (`locked`) owns its
    transitional state; a migration its records (incoming until the source has it finished; migrating when the
    migration failed past its point of no return, `moved_away`: the VM may run on the other host)."""
    return state == VmState.INCOMING or moved_away or (state in TRANSIENT and locked)
