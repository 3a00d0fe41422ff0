"""The VM state model and the transitions vmhost allows.

provisioning -> stopped            create: disks made, domain defined
stopped      -> starting -> running
running      -> stopping -> stopped
running      -> paused -> running  (paused from outside, or inside a two-phase start)
any          -> crashed | failed   (observed: the hypervisor says so, or a definition went missing)
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


TRANSIENT = {VmState.PROVISIONING, VmState.STARTING, VmState.STOPPING}

LEGAL: dict[VmState, set[VmState]] = {
    VmState.PROVISIONING: {VmState.STOPPED, VmState.FAILED},
    VmState.STOPPED: {VmState.STARTING, VmState.RUNNING, VmState.PAUSED},
    VmState.STARTING: {VmState.RUNNING, VmState.STOPPED, VmState.PAUSED},
    VmState.RUNNING: {VmState.STOPPING, VmState.STOPPED, VmState.PAUSED},
    VmState.STOPPING: {VmState.STOPPED, VmState.RUNNING},
    VmState.PAUSED: {VmState.RUNNING, VmState.STOPPING, VmState.STOPPED},
    VmState.CRASHED: {VmState.STARTING, VmState.STOPPED, VmState.RUNNING},
    VmState.FAILED: {VmState.STARTING, VmState.STOPPED, VmState.RUNNING},
}
for _source in LEGAL:
    LEGAL[_source] |= {VmState.CRASHED, VmState.FAILED}


def is_legal(source: VmState, target: VmState) -> bool:
    return source == target or target in LEGAL[source]


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
