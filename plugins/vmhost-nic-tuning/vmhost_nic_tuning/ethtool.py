"""ethtool, the host's switch for NIC features: its commands, and reading what `ethtool -k` lists."""

import subprocess
from collections.abc import Sequence

from vmhost.errors import HostResourceError
from vmhost.plugins.api import run_command

TIMEOUT = 10.0
ALIASES = {
    "sg": "scatter-gather",
    "tso": "tcp-segmentation-offload",
    "ufo": "udp-fragmentation-offload",
    "gso": "generic-segmentation-offload",
    "gro": "generic-receive-offload",
    "lro": "large-receive-offload",
    "rx": "rx-checksumming",
    "tx": "tx-checksumming",
    "rxvlan": "rx-vlan-offload",
    "txvlan": "tx-vlan-offload",
    "ntuple": "ntuple-filters",
    "rxhash": "receive-hashing",
}
"""`ethtool -K`'s short names → the names `ethtool -k` lists the features under."""


def listed_name(feature: str) -> str:
    return ALIASES.get(feature, feature)


def disable_argv(ethtool: str, device: str, features: Sequence[str]) -> list[str]:
    """`ethtool -K <dev> <feature> off ...`: every feature in one call, so a device is changed all or nothing."""
    return [ethtool, "-K", device, *(word for feature in features for word in (feature, "off"))]


def show_argv(ethtool: str, device: str) -> list[str]:
    return [ethtool, "-k", device]


def parse_features(listing: str) -> dict[str, bool]:
    """`ethtool -k` output → {feature: on}; '[fixed]' and '[requested on]' notes are dropped."""
    features: dict[str, bool] = {}
    for line in listing.splitlines():
        name, colon, value = line.strip().partition(":")
        if colon and value.split():
            features[name] = value.split()[0] == "on"
    return features


def run(argv: list[str]) -> str:
    """ethtool's stdout; a failure (unknown device or feature, a fixed feature) names the command and its words."""
    return run_command(
        argv,
        TIMEOUT,
        translate=_failed,
        missing=f"{argv[0]} is not installed (Debian package ethtool)",
        timed_out=lambda: HostResourceError(f"{' '.join(argv)} did not finish within {TIMEOUT:g}s"),
    ).stdout


def _failed(done: "subprocess.CompletedProcess[str]") -> HostResourceError:
    words = (done.stderr or done.stdout).strip().replace("\n", "; ")
    return HostResourceError(f"{' '.join(done.args)} failed (exit {done.returncode}): {words}", detail=done.stderr)


def features_of(ethtool: str, device: str) -> dict[str, bool]:
    return parse_features(run(show_argv(ethtool, device)))
