"""A container's /etc/resolv.conf from container.network.dns: a file in the bundle, bind-mounted read-only."""

from pathlib import Path
from typing import Any

from vmhost.spec.container import Container

TARGET = "/etc/resolv.conf"


def resolv_conf(container: Container) -> str | None:
    """The file's text; None when the spec says nothing (the image's own resolv.conf stays)."""
    dns = container.network.dns
    if dns is None or not (dns.nameservers or dns.search):
        return None
    lines = [f"nameserver {server}" for server in dns.nameservers]
    lines += [f"search {' '.join(dns.search)}"] if dns.search else []
    return "\n".join(lines) + "\n"


def resolv_mount(source: Path) -> dict[str, Any]:
    return {"destination": TARGET, "type": "bind", "source": str(source), "options": ["rbind", "rprivate", "ro"]}
