"""Guest memory: size, hotplug ceiling, balloon and hugepages."""

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.units import ByteSize, MiB


class Memory(SpecModel):
    """Guest memory."""

    size: ByteSize = Field(description="Memory at boot, e.g. '512MiB'. At least 16MiB, a multiple of 1MiB.")
    max_size: ByteSize | None = Field(None, description="Ceiling for memory hotplug (needs slots).")
    slots: int | None = Field(None, ge=1, le=255, description="Hotplug DIMM slots.")
    balloon: bool = Field(True, description="Attach a virtio balloon device.")
    balloon_stats_period: int = Field(0, ge=0, le=3600, description="Seconds between balloon stats; 0 = off.")
    hugepages: bool = Field(False, description="Back guest memory with host hugepages.")
    access: Literal["private", "shared"] = Field(
        "private", description="shared: guest memory the host can map too, which vhost-user devices need."
    )
    merge_pages: bool = Field(True, description="false: the host's KSM never merges this guest's pages.")

    @model_validator(mode="before")
    @classmethod
    def _accept_bare_size(cls, value: Any) -> Any:
        """`memory: "512MiB"` is shorthand for `memory: {size: "512MiB"}`."""
        if isinstance(value, str | int) and not isinstance(value, bool):
            return {"size": value}
        return value

    @field_validator("size", "max_size")
    @classmethod
    def _whole_mebibytes(cls, value: int | None) -> int | None:
        if value is None:
            return value
        if value < 16 * MiB:
            raise ValueError(f"must be at least 16MiB, got {value} bytes")
        if value % MiB:
            raise ValueError("must be a whole number of MiB")
        return value
