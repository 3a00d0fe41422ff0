"""vmadm's VM states (vmadm(8) "VM STATES") in vmhost's terms.

- provisioning and ready are on the way to running (the zone boots through ready), so they count as running.
- stopping (HVM, the guest was asked to power down), shutting_down and down are on the way to stopped.
- failed is the one abnormal end vmadm reports (a provision that failed or timed out): CRASHED, so the
  engine treats it as gone and a restart policy may act.
- A guest that crashes or whose bhyve/qemu process dies after provisioning leaves a halted zone, which vmadm
  shows as stopped, exactly like a guest poweroff: this driver cannot tell the two apart.
- configured, incomplete and receiving are installs, uninstalls and migrations in flight: OTHER.
"""

from vmhost.drivers.base import DomainState

STATES = {
    "running": DomainState.RUNNING,
    "provisioning": DomainState.RUNNING,
    "ready": DomainState.RUNNING,
    "stopping": DomainState.SHUTTING_DOWN,
    "shutting_down": DomainState.SHUTTING_DOWN,
    "down": DomainState.SHUTTING_DOWN,
    "stopped": DomainState.SHUTOFF,
    "installed": DomainState.SHUTOFF,
    "failed": DomainState.CRASHED,
}


def mapped(state: str) -> DomainState:
    return STATES.get(state, DomainState.OTHER)
