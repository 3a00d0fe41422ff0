"""Guest networking per NIC (addresses, gateways, routes, DNS): what the guest configures inside, handed to it
through cloud-init's network-config (VMs) or set on the veth by the runtime (containers)."""

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from vmhost.spec.base import SpecModel
from vmhost.spec.errors import Problem

MAX_NAMESERVERS = 3
"""glibc's resolver reads at most MAXNS (3) nameserver lines; more would be silently ignored."""
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)

Interface = IPv4Interface | IPv6Interface
Address = IPv4Address | IPv6Address


def cidr(value: object) -> object:
    """An address with its prefix length (10.0.0.5/24): without one the guest cannot know its subnet."""
    if isinstance(value, str):
        if "/" not in value:
            raise ValueError(f"must be an address in CIDR form (like 192.0.2.10/24), got {value!r}")
        try:
            return ipaddress.ip_interface(value)
        except ValueError:
            raise ValueError(f"must be an address in CIDR form (like 192.0.2.10/24), got {value!r}") from None
    return value


Cidr = Annotated[Interface, BeforeValidator(cidr)]


class Route(SpecModel):
    """A static route in the guest."""

    to: str = Field(description="Destination network in CIDR form, or `default`.")
    via: Address = Field(description="Next hop.")
    metric: int | None = Field(None, ge=0, le=2**32 - 1, description="Route metric.")

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        if value == "default":
            return value
        try:
            return str(ipaddress.ip_network(value, strict=True))
        except ValueError:
            raise ValueError(
                f"must be a network in CIDR form (like 198.51.100.0/24) or 'default', got {value!r}"
            ) from None


class Dns(SpecModel):
    """Resolver settings for the guest."""

    nameservers: list[Address] = Field(default_factory=list, description=f"At most {MAX_NAMESERVERS} addresses.")
    search: list[str] = Field(default_factory=list, description="Search domains.")

    @field_validator("nameservers")
    @classmethod
    def _at_most_three(cls, value: list[Address]) -> list[Address]:
        if len(value) > MAX_NAMESERVERS:
            raise ValueError(f"at most {MAX_NAMESERVERS} nameservers (the resolver reads no more), got {len(value)}")
        return value

    @field_validator("search")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not DNS_NAME.match(name)]
        if bad:
            raise ValueError(f"must be DNS domain names, got {', '.join(map(repr, bad))}")
        return value


class GuestNetwork(SpecModel):
    """The guest side of an interface. Empty: the guest is told nothing about it."""

    addresses: list[Cidr] = Field(
        default_factory=list, description="Static addresses in CIDR form (192.0.2.10/24, 2001:db8::10/64)."
    )
    dhcp: bool = Field(False, description="The guest asks for an IPv4 address by DHCP.")
    dhcp6: bool = Field(False, description="The guest asks for an IPv6 address by DHCPv6.")
    gateway4: IPv4Address | None = Field(None, description="IPv4 default gateway; inside a static address's subnet.")
    gateway6: IPv6Address | None = Field(None, description="IPv6 default gateway; inside a static address's subnet.")
    routes: list[Route] = Field(default_factory=list, description="Static routes.")
    dns: Dns | None = Field(None, description="Nameservers and search domains.")

    guest_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
        description="Interface name inside the guest (network-config set-name); default: the guest's own naming.",
    )

    def configures_guest(self) -> bool:
        """Whether any guest-side setting is given (then vmhost tells the guest about this interface)."""
        settings = (self.addresses, self.dhcp, self.dhcp6, self.gateway4, self.gateway6, self.routes, self.dns)
        return any(setting not in (None, False, []) for setting in settings) or self.guest_name is not None


def network_problems(where: str, net: GuestNetwork) -> Iterator[Problem]:
    """Gateways must be reachable on a static address's subnet."""
    for name, gateway in (("gateway4", net.gateway4), ("gateway6", net.gateway6)):
        if gateway is not None and not any(gateway in address.network for address in net.addresses):
            networks = dict.fromkeys(str(a.network) for a in net.addresses if a.version == gateway.version)
            subnets = ", ".join(networks) or "none"
            yield Problem(f"{where}.{name}", f"{gateway} is outside every static address's subnet ({subnets})")
    for index, address in enumerate(net.addresses):
        if address.ip in (address.network.network_address, address.network.broadcast_address) and (
            address.network.num_addresses > 2
        ):
            yield Problem(f"{where}.addresses.{index}", f"{address} is the subnet's network or broadcast address")


def duplicate_addresses(owners: Sequence[tuple[str, GuestNetwork]]) -> Iterator[Problem]:
    """An address given twice (on one NIC or on two) makes the guest answer ARP for it twice."""
    entries = [(f"{where}.addresses.{i}", a.ip) for where, net in owners for i, a in enumerate(net.addresses)]
    counts = Counter(ip for _, ip in entries)
    for path, ip in entries:
        if counts[ip] > 1:
            yield Problem(path, f"address {ip} is given more than once")


def guest_problems(owners: Sequence[tuple[str, GuestNetwork]]) -> Iterator[Problem]:
    """Every interface's own rules, and addresses unique across all of them."""
    for where, net in owners:
        yield from network_problems(where, net)
    yield from duplicate_addresses(owners)


def container_problems(net: GuestNetwork, mode: str) -> Iterator[Problem]:
    """A container has no DHCP client; addresses and routes go on the veth, which only mode bridge makes."""
    where = "container.network"
    for name in ("dhcp", "dhcp6"):
        if getattr(net, name):
            yield Problem(f"{where}.{name}", "containers get static addresses only (no DHCP client runs in them)")
    if mode != "bridge":
        for name in ("addresses", "gateway4", "gateway6", "routes", "guest_name"):
            if getattr(net, name):
                yield Problem(f"{where}.{name}", "needs mode bridge (vmhost configures only the veth it makes)")
