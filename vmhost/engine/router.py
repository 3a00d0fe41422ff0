"""What the engine needs from the host's drivers: one router that sends each call to the VM's own driver.

`vmhost.drivers.multi.DriverSet` is the implementation; the engine is typed against this protocol only.
"""

from collections.abc import Mapping
from typing import Protocol

from vmhost.drivers.base import Capability, DomainCalls, DomainInfo, Driver, Recorded
from vmhost.spec import VMSpec


class Router(DomainCalls, Protocol):
    """The drivers' calls, each routed by VM name or spec, plus what only a router knows."""

    @property
    def drivers(self) -> Mapping[str, Driver]:
        """Each driver by kind."""
        ...

    def for_spec(self, spec: VMSpec) -> Driver: ...

    def for_name(self, name: str) -> Driver: ...

    def recorded_by(self, info: DomainInfo) -> Recorded | None: ...

    def capabilities_of(self, name: str) -> frozenset[Capability]: ...

    def capability_matrix(self) -> dict[str, list[str]]: ...

    def require(self, target: VMSpec | str, capability: Capability) -> None:
        """Unsupported (naming driver and capability) unless the driver of `target` declares it."""
        ...
