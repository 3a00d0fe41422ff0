"""What a migration's source and destination agents say to each other, and the peer as the source's engine sees
it. The engine is written against `Peer`; the HTTP client that serves it lives in the interfaces (api/peer.py),
so the engine never imports an HTTP layer.

The source coordinates: it asks the destination to prepare (an offer, answered with a ticket), moves the VM,
then asks it to finish, or to abort. Every call is idempotent, so a source that crashed can repeat any of them.
"""

from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

IncomingStatus = Literal["prepared", "arrived", "finished", "unknown"]
"""prepared: placeholders and record made; arrived: a live VM is here, paused, not finished yet; finished: the
destination owns the VM; unknown: the destination has nothing of this migration (never prepared, aborted, or
rolled back by its recovery)."""


class MigrationRequest(BaseModel):
    """The source side's options (CLI flags, API body)."""

    model_config = ConfigDict(extra="forbid")

    offline: bool = False
    """Move a stopped VM: spec and disks, no memory."""
    copy_storage: bool = False
    """Copy the VM's owned disks to the destination (else they must be on storage both hosts see)."""
    bandwidth_mib: int | None = Field(default=None, gt=0)
    timeout: float | None = Field(default=None, gt=0)
    """Seconds in all before the migration is aborted; unset: config migration_timeout."""
    stall_timeout: float | None = Field(default=None, gt=0)
    """Seconds without progress before it is aborted; unset: config migration_stall_timeout."""
    auto_converge: bool = False
    post_copy: bool = False


class DiskOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0)
    """Virtual size in bytes (the placeholder's size)."""
    format: str
    """qcow2 or raw."""


class IncomingOffer(BaseModel):
    """Source -> destination at prepare. The spec carries its secrets (agent to agent over TLS only)."""

    model_config = ConfigDict(extra="forbid")

    migration_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    spec: dict[str, Any]
    source_url: str
    offline: bool = False
    copy_storage: bool = False
    disks: dict[str, DiskOffer] = Field(default_factory=dict)
    """Target -> size and format of each owned disk whose contents are copied (copy_storage), else empty."""


class IncomingTicket(BaseModel):
    """Destination -> source: where to send the VM."""

    model_config = ConfigDict(extra="forbid")

    migration_id: str
    hypervisor_uri: str = ""
    """Live only: the destination hypervisor as the source's hypervisor reaches it."""
    stream_uri: str = ""
    definition: str = ""
    """Live only: the destination's own definition of the domain."""
    tls: bool = True
    copy_disks: tuple[str, ...] = ()
    """Targets whose placeholders the destination made (copied by the hypervisor, or uploaded when offline)."""


class Peer(Protocol):
    """The destination agent. Errors are VmhostErrors whose message says which agent answered what."""

    url: str

    def prepare(self, offer: IncomingOffer) -> IncomingTicket: ...

    def upload_disk(self, migration_id: str, target: str, source: Path) -> None:
        """Offline copy: stream the file's contents into the destination's placeholder of `target`."""
        ...

    def finish(self, migration_id: str) -> None:
        """The destination takes the VM over (resumes a live one, records it, emits events); idempotent."""
        ...

    def abort(self, migration_id: str) -> None:
        """The destination drops everything it made for this migration; idempotent (unknown: nothing to do)."""
        ...

    def status(self, migration_id: str) -> IncomingStatus: ...

    def close(self) -> None:
        """Release the connection; the migration that made this peer is over."""
        ...
