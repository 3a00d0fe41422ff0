"""Where a VM comes in the restore at agent start (host boot) and in the host's shutdown, like Proxmox's startup
order: groups by `order`, started one group after the other, in parallel within a group; stopped in reverse."""

from typing import Literal

from pydantic import Field

from vmhost.spec.base import SpecModel


class Startup(SpecModel):
    """A VM without an order comes after every ordered group at restore (and is stopped first at host shutdown),
    as in Proxmox: give an order only to the VMs others depend on."""

    order: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="Restore group: lower starts first; VMs of one order start together, in parallel. "
        "Unset: after every ordered group. Host shutdown stops the groups in reverse.",
    )
    delay: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="Seconds the restore waits after this VM's group is up before it starts the next group "
        "(the longest delay in a group counts).",
    )
    wait_for: Literal["running", "guest-ready"] = Field(
        "running",
        description="When this VM counts as up for its group: running (started), or guest-ready (the guest has an "
        "address on a NIC, as `vmhost get` shows it: guest agent, DHCP lease or ARP).",
    )
    wait_timeout: float = Field(
        300.0,
        ge=1,
        le=3600,
        description="Seconds a guest-ready wait lasts at most; then the restore goes on (event "
        "`restore-wait-timeout`), the VM keeps running.",
    )
