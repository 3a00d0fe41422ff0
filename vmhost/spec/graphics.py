"""Remote display (VNC or SPICE), video adapter and SPICE sound."""

from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from pydantic import Field, SecretStr, SerializationInfo, field_serializer, model_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.sound import SoundModel

REVEAL_SECRETS = "reveal_secrets"


class QxlMemory(SpecModel):
    """Memory of each qxl adapter, in KiB as libvirt takes it; larger framebuffers allow larger screens."""

    ram_kib: int = Field(ge=1024, le=2**22, description="Primary bar (KiB).")
    vram_kib: int = Field(ge=1024, le=2**22, description="Secondary bar (KiB).")
    vgamem_kib: int = Field(ge=1024, le=2**22, description="VGA framebuffer (KiB).")


class Graphics(SpecModel):
    """A remote display."""

    type: Literal["vnc", "spice"] = Field(description="Display protocol.")
    listen: IPv4Address | IPv6Address = Field(IPv4Address("127.0.0.1"), description="Default: loopback only.")
    port: int | None = Field(None, ge=5900, le=65535, description="Omit for an automatically chosen port.")
    password: SecretStr | None = Field(None, description="Never logged and never returned by get/list.")
    video: Literal["virtio", "qxl", "vga", "cirrus", "bochs"] | None = Field(
        None, description="Video adapter; default: the hypervisor's choice."
    )
    sound: bool | SoundModel = Field(
        False, description="SPICE only: true for an ich9 sound card, or the card's model (ich6, ac97, usb...)."
    )
    monitors: int = Field(1, ge=1, le=4, description="video qxl only: one qxl adapter per guest monitor.")
    qxl: QxlMemory | None = Field(None, description="video qxl only: adapter memory; default: libvirt's.")
    tablet: bool = Field(False, description="A USB tablet, so the viewer's pointer is absolute (no mouse lag).")
    streaming: Literal["off", "all", "filter"] | None = Field(
        None, description="SPICE only: video streaming detection; default: the SPICE server's (filter)."
    )

    @model_validator(mode="after")
    def _qxl_and_spice_settings(self) -> "Graphics":
        if (self.monitors > 1 or self.qxl) and self.video != "qxl":
            raise ValueError("monitors and qxl need video: qxl")
        if self.streaming and self.type != "spice":
            raise ValueError("streaming is a SPICE setting")
        return self

    @field_serializer("password")
    def _mask(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        if info.context and info.context.get(REVEAL_SECRETS):
            return value.get_secret_value()
        return "********"
