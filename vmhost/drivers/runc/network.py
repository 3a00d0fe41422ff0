"""A container's veth pair into a host bridge, plugged in and configured (addresses, routes) while the
container is created but not yet running; its resolv.conf, a file in the bundle."""

from pathlib import Path

from vmhost.errors import HypervisorError, VmhostError
from vmhost.host import commands
from vmhost.host.files import atomic_write
from vmhost.render.oci.resolv import resolv_conf
from vmhost.spec.container import Container, ContainerNetwork

IP_TIMEOUT = 10.0
GUEST_END = "eth0"
RESOLV_CONF = "resolv.conf"
WORLD_READABLE = 0o644
"""The workload may run as any uid and must read its resolver settings."""


def veth_name(uuid_hex: str) -> str:
    """The host end's name: unique per VM and within IFNAMSIZ (15)."""
    return f"vh{uuid_hex[:12]}"


def _run(argv: list[str], what: str) -> None:
    commands.run(
        argv,
        IP_TIMEOUT,
        translate=lambda done: HypervisorError(f"could not {what}", done.stderr.strip()),
        missing=f"could not {what}: {argv[0]} is not installed on this host",
        timed_out=lambda: HypervisorError(f"could not {what}", f"{argv[0]} did not finish within {IP_TIMEOUT:g}s"),
    )


def plug(host_end: str, bridge: str, pid: int, net: ContainerNetwork | None = None) -> None:
    """Create the pair with its container end in the netns of `pid`, up, and the host end in `bridge`; then give
    the container end the spec's addresses and routes."""
    net = net or ContainerNetwork(mode="bridge", bridge=bridge)
    inside = net.guest_name or GUEST_END
    _run(
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", inside, "netns", str(pid)],
        f"create veth {host_end}",
    )
    try:
        _run(["ip", "link", "set", host_end, "master", bridge, "up"], f"attach {host_end} to bridge {bridge}")
        for argv, what in _inside_commands(net, inside):
            _run(["nsenter", "--target", str(pid), "--net", *argv], what)
    except VmhostError:
        unplug(host_end)
        raise


def _inside_commands(net: ContainerNetwork, inside: str) -> list[tuple[list[str], str]]:
    """`ip` commands run in the container's netns, in order: the link, its addresses, then routes over them."""
    commands_: list[tuple[list[str], str]] = [(["ip", "link", "set", inside, "up"], f"bring up {inside}")]
    for address in net.addresses:
        flags = ["nodad"] if address.version == 6 else []  # usable at once, before the workload starts
        commands_.append((["ip", "addr", "add", str(address), "dev", inside, *flags], f"add address {address}"))
    for gateway in (net.gateway4, net.gateway6):
        if gateway is not None:
            family = f"-{gateway.version}"
            default = ["ip", family, "route", "add", "default", "via", str(gateway), "dev", inside]
            commands_.append((default, f"add default route via {gateway}"))
    for route in net.routes:
        metric = ["metric", str(route.metric)] if route.metric is not None else []
        family = f"-{route.via.version}"
        argv = ["ip", family, "route", "add", route.to, "via", str(route.via), "dev", inside, *metric]
        commands_.append((argv, f"add route to {route.to} via {route.via}"))
    return commands_


def unplug(host_end: str) -> None:
    """Idempotent: the pair goes by itself when the container's netns goes."""
    commands.run(["ip", "link", "del", host_end], IP_TIMEOUT)


def write_resolv_conf(container: Container, bundle: Path) -> Path | None:
    """The bundle's resolv.conf for container.network.dns (None, and no file, when the spec sets none)."""
    path = bundle / RESOLV_CONF
    text = resolv_conf(container)
    if text is None:
        path.unlink(missing_ok=True)
        return None
    atomic_write(path, text, WORLD_READABLE)
    return path
