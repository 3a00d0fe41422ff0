"""IOThreads: QEMU threads that do disk I/O apart from the vCPUs, optionally pinned to host CPUs."""

from typing import Self

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.cpu import check_cpuset

MAX_IOTHREADS = 64


class IoThreadPin(SpecModel):
    """One IOThread by id, with the host CPUs it may run on."""

    id: int = Field(ge=1, description="IOThread id; disks name it in `iothread`.")
    host_cpus: str = Field(description="Host CPU list, e.g. '0-1'.")

    _check = field_validator("host_cpus")(check_cpuset)


class IoThreads(SpecModel):
    """How many IOThreads the VM has; pinned ones keep their ids, the others take the lowest free ids."""

    count: int = Field(0, ge=0, le=MAX_IOTHREADS, description="Number of IOThreads; 0: none.")
    pins: list[IoThreadPin] = Field(default_factory=list, description="IOThreads pinned to host CPUs, by id.")

    @model_validator(mode="after")
    def _pins_fit(self) -> Self:
        ids = [pin.id for pin in self.pins]
        if len(set(ids)) != len(ids):
            raise ValueError(f"pins name an IOThread id twice: {ids}")
        if len(ids) > self.count:
            raise ValueError(f"{len(ids)} pinned IOThreads but count is {self.count}")
        return self

    @property
    def ids(self) -> list[int]:
        """Every IOThread id, ascending: the pinned ids, then the lowest free ids up to `count` (as libvirt fills
        them); the renderer writes them all, so no id is left to libvirt."""
        ids = {pin.id for pin in self.pins}
        candidate = 1
        while len(ids) < self.count:
            ids.add(candidate)
            candidate += 1
        return sorted(ids)
