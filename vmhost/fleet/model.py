"""The fleet's data in etcd: where each kind of record lives (the key layout, a contract README documents) and
what it holds. Pure data: no etcd calls here."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vmhost.config import NAME_PATTERN
from vmhost.errors import VmhostError

DesiredState = Literal["running", "stopped"]


class Keys:
    """Every key of one fleet, under its prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def host(self, host: str = "") -> str:
        """On the host's lease: present while its agent renews it."""
        return f"{self.prefix}/hosts/{host}"

    def member(self, host: str = "") -> str:
        """Never expires: every host that ever joined, so a down host is still listed."""
        return f"{self.prefix}/members/{host}"

    def cordon(self, host: str = "") -> str:
        return f"{self.prefix}/cordon/{host}"

    def load(self, host: str = "") -> str:
        """The sum of what is desired on the host, written in the same transaction as every desired change."""
        return f"{self.prefix}/load/{host}"

    def desired(self, host: str, vm: str = "") -> str:
        return f"{self.prefix}/desired/{host}/{vm}"

    def status(self, host: str, vm: str = "") -> str:
        return f"{self.prefix}/status/{host}/{vm}"

    def placement(self, vm: str = "") -> str:
        """Which host a VM is desired on: makes VM names unique across the fleet."""
        return f"{self.prefix}/placement/{vm}"

    @staticmethod
    def last(key: str) -> str:
        return key.rsplit("/", 1)[-1]


def check_host_name(host: str) -> str:
    if not NAME_PATTERN.match(host):
        raise VmhostError(f"host {host!r} is not a fleet host name (lower-case letters, digits and '-')")
    return host


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class HostRecord(Record):
    name: str
    url: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    drivers: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    """Spec kinds it runs: vm (its VM driver), container (runc)."""
    capabilities: dict[str, list[str]] = Field(default_factory=dict)
    vcpus: int = 0
    memory: int = 0
    free_memory: int = 0
    fence: Literal["none", "lease"] = "none"
    fence_after: float = 20.0
    started_at: float = 0.0


class Load(Record):
    vms: int = 0
    vcpus: int = 0
    memory: int = 0

    def plus(self, other: "Load", sign: int = 1) -> "Load":
        return Load(
            vms=self.vms + sign * other.vms,
            vcpus=self.vcpus + sign * other.vcpus,
            memory=self.memory + sign * other.memory,
        )


class Placement(BaseModel):
    """What a VM asks of its host, beyond room for it (`placement` of `fleet apply`)."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict)
    """The host must carry each of these labels with this value."""
    capabilities: list[str] = Field(default_factory=list)
    """The host's driver for the VM must have each (e.g. live-migration, snapshots)."""
    anti_affinity: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    """No two VMs of this group on one host."""


class Desired(Record):
    """One VM the fleet wants on one host."""

    spec: dict[str, Any]
    """Validated and complete (defaults filled in, uuid fixed at the first apply), secrets included."""
    state: DesiredState = "running"
    generation: int = 1
    migrate_to: str | None = None
    """Set by a drain: the owning agent live-migrates the VM there, then moves this key."""
    placement: Placement | None = None
    need: Load = Field(default_factory=Load)
    """What the VM counts for in its host's load (one VM, its vCPUs and memory)."""


class Status(Record):
    state: str = "unknown"
    reason: str = ""
    observed_generation: int = 0
    error: str = ""
    addresses: list[str] = Field(default_factory=list)
    updated_at: float = 0.0


def dump(record: Record) -> dict[str, Any]:
    return record.model_dump(mode="json")
