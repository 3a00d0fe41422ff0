"""Remote display (VNC or SPICE), video adapter and SPICE sound."""

from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from pydantic import Field, SecretStr, SerializationInfo, field_serializer

from vmhost.spec.base import SpecModel

REVEAL_SECRETS = "reveal_secrets"


class Graphics(SpecModel):
    """A remote display."""

    type: Literal["vnc", "spice"] = Field(description="Display protocol.")
    listen: IPv4Address | IPv6Address = Field(IPv4Address("127.0.0.1"), description="Default: loopback only.")
    port: int | None = Field(None, ge=5900, le=65535, description="Omit for an automatically chosen port.")
    password: SecretStr | None = Field(None, description="Never logged and never returned by get/list.")
    video: Literal["virtio", "qxl", "vga", "cirrus", "bochs"] | None = Field(
        None, description="Video adapter; default: the hypervisor's choice."
    )
    sound: bool = Field(False, description="SPICE only: an ich9 sound card.")

    @field_serializer("password")
    def _mask(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        if info.context and info.context.get(REVEAL_SECRETS):
            return value.get_secret_value()
        return "********"
