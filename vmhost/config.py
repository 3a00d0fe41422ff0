"""Host configuration (TOML): which hypervisor, where state lives, defaults for operations."""

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from vmhost.errors import VmhostError

DEFAULT_CONFIG_PATH = Path("/etc/vmhost/config.toml")
CONFIG_ENV = "VMHOST_CONFIG"
CHOICES = {"accel": ("kvm", "tcg"), "vm_driver": ("libvirt", "xen", "smartos"), "vmadm_brand": ("bhyve", "kvm")}


@dataclass(frozen=True)
class HostConfig:
    """accel defaults to kvm; hosts without usable KVM (e.g. nested CI machines) set accel = "tcg"."""

    vm_driver: Literal["libvirt", "xen", "smartos"] = "libvirt"
    """Which hypervisor runs `kind: vm` specs; `kind: container` specs always run on runc."""
    libvirt_uri: str = "qemu:///system"
    xl_command: str = "xl"
    vmadm_command: str = "vmadm"
    vmadm_brand: Literal["bhyve", "kvm"] = "bhyve"
    runc_command: str = "runc"
    data_dir: Path = Path("/var/lib/vmhost")
    accel: Literal["kvm", "tcg"] = "kvm"
    stop_timeout: float = 60.0
    listen_host: str = "127.0.0.1"
    listen_port: int = 7070
    tls_cert: Path | None = None
    tls_key: Path | None = None
    agent_url: str | None = None
    zstack_trusted_sources: tuple[str, ...] = ()
    zstack_console_listen: str = "127.0.0.1"
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """`[plugins.<name>]` tables: `enabled = false` disables a plugin; other keys are the plugin's settings."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"


def _coerce(values: dict[str, Any], source: Path) -> dict[str, Any]:
    known = {f.name for f in fields(HostConfig)}
    unknown = set(values) - known
    if unknown:
        raise VmhostError(
            f"{source}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    for key, allowed in CHOICES.items():
        if key in values and values[key] not in allowed:
            raise VmhostError(f"{source}: {key} must be one of {', '.join(allowed)}; got {values[key]!r}")
    for key in ("data_dir", "tls_cert", "tls_key"):
        if key in values:
            values[key] = Path(values[key])
    if "zstack_trusted_sources" in values:
        values["zstack_trusted_sources"] = tuple(values["zstack_trusted_sources"])
    plugins = values.get("plugins", {})
    if not isinstance(plugins, dict) or not all(isinstance(table, dict) for table in plugins.values()):
        raise VmhostError(f"{source}: plugins must be tables, one per plugin: [plugins.<name>]")
    if "stop_timeout" in values:
        values["stop_timeout"] = float(values["stop_timeout"])
    return values


def load_config(path: Path | None = None) -> HostConfig:
    """An explicit path must exist; otherwise $VMHOST_CONFIG, then /etc/vmhost/config.toml if present."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = Path(os.environ[CONFIG_ENV])
    if path is None:
        if not DEFAULT_CONFIG_PATH.exists():
            return HostConfig()
        path = DEFAULT_CONFIG_PATH
    try:
        values = tomllib.loads(path.read_text())
    except OSError as exc:
        raise VmhostError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise VmhostError(f"config {path} is not valid TOML: {exc}") from None
    return replace(HostConfig(), **_coerce(values, path))
