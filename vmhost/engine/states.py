"""The VM state model and the transitions vmhost allows: the one source of truth, enforced on every write.

provisioning -> stopped            create: disks made, domain defined
stopped      -> starting -> running
running      -> stopping -> stopped
running      -> paused -> running  (pause/resume, or paused from outside)
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


class IllegalTransition(RuntimeError):
    """A bug in vmhost, never an operator error: the API answers 500 and tests fail."""


TRANSIENT = {VmState.PROVISIONING, VmState.STARTING, VmState.STOPPING}

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
    VmState.STOPPED: OBSERVABLE | {VmState.STARTING},
    VmState.STARTING: OBSERVABLE,
    VmState.RUNNING: OBSERVABLE,
    VmState.STOPPING: OBSERVABLE,
    VmState.PAUSED: OBSERVABLE,
    VmState.CRASHED: OBSERVABLE | {VmState.STARTING},
    VmState.FAILED: OBSERVABLE | {VmState.STARTING},
}


def is_legal(source: VmState, target: VmState) -> bool:
    return source == target or target in LEGAL[source]


def check_transition(name: str, source: VmState, target: VmState) -> None:
    if not is_legal(source, target):
        raise IllegalTransition(f"illegal state transition of {name}: {source.value} -> {target.value}")
