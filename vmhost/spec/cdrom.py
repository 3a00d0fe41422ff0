"""CD-ROM drives: an ISO image (a host file or a Ceph RBD image) or an empty tray."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.disk import RbdImage, absolute_path


class Cdrom(SpecModel):
    """A CD-ROM drive; always read-only."""

    iso: Path | None = Field(None, description="ISO image path; omit for an empty drive.")
    rbd: RbdImage | None = Field(None, description="An ISO stored as a Ceph RBD image, instead of `iso`.")
    bus: Literal["sata", "ide", "scsi"] = Field("sata", description="ide needs a pc (i440fx) machine.")
    target: str | None = Field(
        None, pattern=r"^(sd|hd)[a-z]{1,2}$", description="Guest device name; assigned when omitted."
    )
    boot_order: int | None = Field(None, ge=1, le=255, description="Per-device boot priority (bootable CD).")

    @field_validator("iso")
    @classmethod
    def _abs(cls, value: Path | None) -> Path | None:
        return None if value is None else absolute_path(value)

    @model_validator(mode="after")
    def _one_medium(self) -> Self:
        if self.iso is not None and self.rbd is not None:
            raise ValueError("a drive holds one medium: give iso or rbd, not both")
        return self
