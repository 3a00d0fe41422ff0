"""Network interfaces: how they attach to the host, their identity and QoS."""

import re
import secrets
from ipaddress import IPv4Address
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.guest_net import GuestNetwork
from vmhost.spec.passthrough import pci_address
from vmhost.spec.smartos import SmartosNic

MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
RESERVED_TAP_PREFIXES = ("vnet", "macvtap", "macvlan")


def generate_mac() -> str:
    """A locally administered unicast MAC in QEMU's 52:54:00 range."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def interface_name(value: str) -> str:
    if not IFNAME_RE.match(value):
        raise ValueError(f"must be a host interface name (1-15 of A-Z a-z 0-9 _ . : -), got {value!r}")
    return value


class Rate(SpecModel):
    """A traffic shaping rate."""

    average_kib_s: int = Field(ge=1, description="Average rate in KiB/s.")
    peak_kib_s: int | None = Field(None, ge=1, description="Peak rate in KiB/s.")
    burst_kib: int | None = Field(None, ge=1, description="Burst size in KiB at peak rate.")


class Bandwidth(SpecModel):
    """QoS limits per direction."""

    inbound: Rate | None = Field(None, description="Traffic towards the guest.")
    outbound: Rate | None = Field(None, description="Traffic from the guest.")


class Nic(GuestNetwork):
    """One network interface; the guest_net fields say how the guest configures it (cloud-init)."""

    type: Literal["bridge", "network", "direct", "hostdev"] = Field(
        description="bridge: a host bridge; network: a libvirt network; direct: macvtap on a host NIC; "
        "hostdev: an SR-IOV virtual function of a host NIC, given to the guest (vfio)."
    )
    source: str = Field(description="Bridge, libvirt network or host NIC name; for hostdev the VF's PCI address.")
    direct_mode: Literal["bridge", "vepa", "private", "passthrough"] = Field(
        "bridge", description="macvtap mode (type direct only)."
    )
    mac: str = Field(default_factory=generate_mac, description="Generated (52:54:00:xx:xx:xx) if omitted.")
    model: Literal["virtio", "e1000", "rtl8139"] = Field("virtio", description="Emulated NIC model.")
    tap: str | None = Field(None, description="Host tap device name.")
    mtu: int | None = Field(None, ge=68, le=65535, description="MTU in bytes.")
    bandwidth: Bandwidth | None = Field(None, description="Inbound/outbound QoS.")
    allowed_ips: list[IPv4Address] = Field(
        default_factory=list,
        description="IPv4 addresses; if set, libvirt's clean-traffic filter drops traffic from any other IP or MAC.",
    )
    queues: int | None = Field(None, ge=1, le=256, description="virtio multiqueue pairs.")
    boot_order: int | None = Field(None, ge=1, le=255, description="Per-device boot priority (PXE).")
    vlan: int | None = Field(None, ge=1, le=4094, description="hostdev only: the VLAN tag the VF adds.")
    smartos: SmartosNic | None = Field(None, description="SmartOS-only filtering (DHCP client ids).")

    @field_validator("source")
    @classmethod
    def _source(cls, value: str, info: ValidationInfo) -> str:
        return pci_address(value) if info.data.get("type") == "hostdev" else interface_name(value)

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mac = value.lower().replace("-", ":")
        if not MAC_RE.match(mac):
            raise ValueError(f"must be six hex pairs like 52:54:00:12:34:56, got {value!r}")
        if int(mac[:2], 16) & 1:
            raise ValueError(f"must be a unicast address (first octet even), got {value!r}")
        return mac

    @field_validator("tap")
    @classmethod
    def _tap(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith(RESERVED_TAP_PREFIXES):
            raise ValueError(f"must not start with {', '.join(RESERVED_TAP_PREFIXES)} (libvirt reserves them)")
        return interface_name(value)
