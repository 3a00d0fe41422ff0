"""An isolated test network: a bridge for the VM's NIC and a network namespace holding the client.

    bridge vmhtb-XXXX (no address, no uplink) ── veth vmhtv-XXXX ══ vmhtp-XXXX in netns vmhtn-XXXX (client)
        └── the VM's tap

The client's address is in the guest's subnet, so the test talks to the guest over the bridge only: nothing is
routed, no address is added on the host side and IPv6 is off on the host-side links (no router solicitations).
Everything is removed when the context ends, also after a failure.
"""

import contextlib
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path


@dataclass(frozen=True)
class IsolatedNetwork:
    """Names and addresses of one isolated network."""

    bridge: str
    namespace: str
    client: IPv4Interface
    """The client's address inside the namespace (also a usable gateway for the guest: it is on the subnet)."""

    def guest_address(self, host: int) -> IPv4Interface:
        """Address number `host` of the client's subnet, with its prefix (e.g. 10.213.7.10/24)."""
        return IPv4Interface(f"{self.client.network[host]}/{self.client.network.prefixlen}")

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace (no check: callers assert on the result)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _no_ipv6(interface: str) -> None:
    Path(f"/proc/sys/net/ipv6/conf/{interface}/disable_ipv6").write_text("1")


@contextlib.contextmanager
def isolated_network(client: str = "10.213.7.1/24") -> Iterator[IsolatedNetwork]:
    """Create the bridge, the namespace and the veth pair; yield their names; remove what it made afterwards
    (only that: a name that already existed belongs to someone else)."""
    tag = secrets.token_hex(2)
    net = IsolatedNetwork(bridge=f"vmhtb-{tag}", namespace=f"vmhtn-{tag}", client=IPv4Interface(client))
    outside, inside = f"vmhtv-{tag}", f"vmhtp-{tag}"
    made: list[list[str]] = []
    try:
        _ip("netns", "add", net.namespace)
        made.append(["netns", "del", net.namespace])  # takes the veth pair with it
        _ip("link", "add", net.bridge, "type", "bridge")
        made.append(["link", "del", net.bridge])
        _no_ipv6(net.bridge)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", net.namespace)
        made.append(["link", "del", outside])
        _no_ipv6(outside)
        _ip("link", "set", outside, "master", net.bridge, "up")
        _ip("link", "set", net.bridge, "up")
        _ip("-n", net.namespace, "link", "set", "lo", "up")
        _ip("-n", net.namespace, "addr", "add", str(net.client), "dev", inside)
        _ip("-n", net.namespace, "link", "set", inside, "up")
        yield net
    finally:
        for argv in reversed(made):
            subprocess.run(["ip", *argv], capture_output=True, check=False)  # gone already (with the netns) is fine


def leftovers(net: IsolatedNetwork) -> list[str]:
    """What of `net` still exists on the host (empty once the context has ended)."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    tag = net.bridge.removeprefix("vmhtb-")
    found = [name for name in (net.bridge, f"vmhtv-{tag}") if f" {name}:" in links or f" {name}@" in links]
    return found + [net.namespace] * (net.namespace in namespaces.split())
