"""A container's veth pair into a host bridge, plugged in while the container is created but not yet running."""

from vmhost.errors import HypervisorError, VmhostError
from vmhost.host import commands

IP_TIMEOUT = 10.0


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


def plug(host_end: str, bridge: str, pid: int) -> None:
    """Create the pair with its container end as eth0 in the netns of `pid`, up, and the host end in `bridge`."""
    _run(
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", str(pid)],
        f"create veth {host_end}",
    )
    try:
        _run(["ip", "link", "set", host_end, "master", bridge, "up"], f"attach {host_end} to bridge {bridge}")
        _run(["nsenter", "--target", str(pid), "--net", "ip", "link", "set", "eth0", "up"], "bring up eth0")
    except VmhostError:
        unplug(host_end)
        raise


def unplug(host_end: str) -> None:
    """Idempotent: the pair goes by itself when the container's netns goes."""
    commands.run(["ip", "link", "del", host_end], IP_TIMEOUT)
