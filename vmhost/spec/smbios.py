"""SMBIOS strings the guest reads from its firmware tables (dmidecode), e.g. the serial a licence is tied to."""

from typing import Annotated

from pydantic import Field

from vmhost.spec.base import SpecModel

SmbiosText = Annotated[str, Field(min_length=1, max_length=255)]


class Smbios(SpecModel):
    """System, chassis and OEM strings; the rest of the tables stay the hypervisor's own."""

    serial: SmbiosText | None = Field(None, description="System serial number (type 1).")
    chassis_asset_tag: SmbiosText | None = Field(None, description="Chassis asset tag (type 3).")
    oem_strings: list[SmbiosText] = Field(default_factory=list, description="OEM strings (type 11).")

    def is_empty(self) -> bool:
        return self.serial is None and self.chassis_asset_tag is None and not self.oem_strings
