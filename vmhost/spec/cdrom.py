"""CD-ROM drives: an ISO image or an empty tray."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.disk import absolute_path


class Cdrom(SpecModel):
    """A CD-ROM drive; always read-only."""

    iso: Path | None = Field(None, description="ISO image path; omit for an empty drive.")
    bus: Literal["sata", "ide", "scsi"] = Field("sata", description="ide needs a pc (i440fx) machine.")
    target: str | None = Field(
        None, pattern=r"^(sd|hd)[a-z]{1,2}$", description="Guest device name; assigned when omitted."
    )
    boot_order: int | None = Field(None, ge=1, le=255, description="Per-device boot priority (bootable CD).")

    @field_validator("iso")
    @classmethod
    def _abs(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)
