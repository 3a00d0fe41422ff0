"""Host configuration (TOML): which hypervisor, where state lives, defaults for operations."""

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from vmhost.errors import VmhostError

DEFAULT_CONFIG_PATH = Path("/etc/vmhost/config.toml")
CONFIG_ENV = "VMHOST_CONFIG"
CHOICES = {
    "accel": ("kvm", "tcg"),
    "vm_driver": ("libvirt", "xen", "smartos"),
    "vmadm_brand": ("bhyve", "kvm"),
    "migration_transport": ("tls", "tcp"),
}


def _per_cpu_workers() -> int:
    """16 per CPU, from 16 to 64: operations mostly wait on libvirt, QEMU or a guest, not on this process's CPU."""
    return min(64, max(16, 16 * (os.cpu_count() or 1)))


NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""Host names of the fleet: they are path segments of etcd keys."""


@dataclass(frozen=True)
class FleetConfig:
    """`[fleet]`: this agent reconciles the VMs etcd says should run on this host (vmhost/fleet/)."""

    etcd_endpoints: tuple[str, ...]
    host_name: str
    ca_file: Path | None = None
    """CA of etcd's certificates (https endpoints); unset: the system's."""
    cert_file: Path | None = None
    """Client certificate etcd checks (with key_file); unset: none sent."""
    key_file: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    lease_ttl: int = 10
    """Seconds after which a host that stopped renewing its lease counts as down."""
    fence: Literal["none", "lease"] = "none"
    """none: a down host's VMs stay where they are (unknown); lease: this host stops its VMs once it could not
    renew its lease for fence_after seconds, and the fleet may then start them on another host (shared storage)."""
    fence_after: float = 20.0
    cpu_overcommit: float = 4.0
    """vCPUs the scheduler may place on this host per host CPU."""
    prefix: str = "/vmhost"


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
    trusted_proxies: tuple[str, ...] = ()
    """Addresses/CIDRs of reverse proxies whose X-Forwarded-For is believed; none (proxy headers off) by default."""
    max_body_bytes: int = 1 << 20
    """Largest request body the agent reads (413 beyond it)."""
    zstack_console_listen: str = "127.0.0.1"
    zstack_task_limit: int = 64
    """ZStack tasks in flight at once (planned, running or sending their reply); more are answered 503."""
    callback_networks: tuple[str, ...] | None = None
    """Networks callback URLs may point into; unset: loopback and zstack_trusted_sources."""
    max_stop_timeout: float = 600.0
    """Ceiling of a stop's `timeout` (native and ZStack): a longer one is refused, naming the field."""
    hypervisor_group: str = "libvirt-qemu"
    """The group QEMU runs as (libvirt's qemu.conf `group`): the only one let through to the VM directories;
    "" when QEMU runs as root."""
    history_max_age_days: float = 30.0
    """Finished operations (and their journal) older than this are pruned; unfinished ones never are."""
    history_max_operations: int = 10000
    """At most this many finished operations are kept, the newest."""
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """`[plugins.<name>]` tables: `enabled = false` disables a plugin; other keys are the plugin's settings."""

    allowed_paths: tuple[Path, ...] | None = None
    """Directories under which a spec may name host files (disks, base and backing images, ISOs, kernels, console
    logs, container rootfs/layouts/mounts); unset: data_dir/images."""
    allowed_block_devices: tuple[str, ...] = ()
    """Block devices a spec may name: exact paths, or prefixes ending in '*' (e.g. /dev/vg0/*); none by default."""
    image_max_bytes: int = 64 << 30
    """Largest image `vmhost image import` takes (a URL download is cut off beyond it); 64 GiB."""
    image_download_timeout: float = 30.0
    """Seconds an image download waits to connect, and for each read."""
    allowed_image_hosts: tuple[str, ...] | None = None
    """Hosts (`host` or `host:port`) `image import URL` may fetch from, redirects included; unset: any. A token
    holder makes the agent GET whatever URL it names: list the hosts on agents others can reach."""
    skopeo_command: str = "skopeo"
    insecure_registries: tuple[str, ...] = ()
    """Registries (`host` or `host:port`) `image pull` may reach without TLS verification; literal loopback addresses
    (127.0.0.0/8, ::1) always may. None by default: every other registry needs a certificate the host trusts."""
    allowed_registries: tuple[str, ...] | None = None
    """Registries (`host` or `host:port`) `image pull` may contact; unset: any. A token holder makes the agent
    connect wherever a reference points: list the registries on agents others can reach."""
    image_pull_max_bytes: int = 4 << 30
    """Largest OCI image `image pull` stores (its blobs on disk); a bigger one is aborted and nothing is kept."""
    image_pull_timeout: float = 1800.0
    """Seconds an `image pull` may take in all."""
    restore_concurrency: int = field(default_factory=_per_cpu_workers)
    """VMs the restore at agent start (host boot) starts at once, within a `startup.order` group; default as
    operation_workers (16 per CPU, 16 to 64): a restore at 4 per CPU took 2.5× as long as 100 raw parallel
    starts here (bench row 12a), and admission control still refuses the starts the host cannot hold. The host
    shutdown stops a whole group at once."""
    shutdown_on_sigterm: bool = False
    """When the agent stops on SIGTERM (or Ctrl-C), first stop its VMs as `vmhost host shutdown` does; they are
    restored at the next start. Off by default: restarting the agent leaves VMs running."""
    operation_workers: int = field(default_factory=_per_cpu_workers)
    """Agent operations (API and ZStack) that run at once; more wait in a queue. Default 16 per CPU, from 16 to 64:
    operations mostly wait on libvirt, QEMU or a guest shutting down, not on this process's CPU."""
    memory_reserve: int = 512 << 20
    """Bytes of the host's free memory no start may use (kept for the host itself); 512 MiB."""
    vm_memory_overhead: int | None = None
    """Bytes a VM's hypervisor process needs beyond the guest's memory, counted at each start; unset: 64 MiB for a
    KVM guest, 192 MiB under TCG (QEMU's translated-code cache: a booted 128 MiB TCG guest's QEMU holds ~210 MiB)."""

    migration_address: str | None = None
    """The address other hosts reach this host's hypervisor and migration streams at; unset: this host takes in
    no live migration (a prepare is refused, naming this setting)."""
    migration_transport: Literal["tls", "tcp"] = "tls"
    """tls: qemu+tls:// between the hypervisors and encrypted QEMU streams (VIR_MIGRATE_TLS); tcp: plain text,
    for test beds on private links only."""
    migration_timeout: float = 3600.0
    """Seconds a migration may take in all unless the request says otherwise; then it is aborted."""
    migration_stall_timeout: float = 30.0
    """Seconds without progress after which a migration is aborted (the VM keeps running here)."""
    migration_concurrency: int = 2
    """Migrations `vmhost evacuate` runs at once."""
    incoming_timeout: float = 3600.0
    """Seconds a prepared incoming migration waits for its source; then this host finishes it itself if the VM
    arrived, and drops it otherwise."""
    peer_token_files: Mapping[str, Path] = field(default_factory=dict)
    """Agent URL -> file holding the token this agent sends to that peer (migration); key "*": any other peer."""
    peer_ca_file: Path | None = None
    """CA bundle that peers' TLS certificates are checked against; unset: the system's."""
    fleet: FleetConfig | None = None
    """`[fleet]`: the etcd this host takes its desired VMs from; unset: a stand-alone host."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.db"

    @property
    def image_store_dir(self) -> Path:
        """The image store's files; overlays may be backed by them, nothing else may name them."""
        return self.data_dir / "images-store"

    @property
    def path_roots(self) -> tuple[Path, ...]:
        return (self.data_dir / "images",) if self.allowed_paths is None else self.allowed_paths


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
    _coerce_host_paths(values, source)
    _coerce_bounds(values, source)
    _coerce_http(values, source)
    plugins = values.get("plugins", {})
    if not isinstance(plugins, dict) or not all(isinstance(table, dict) for table in plugins.values()):
        raise VmhostError(f"{source}: plugins must be tables, one per plugin: [plugins.<name>]")
    if "stop_timeout" in values:
        values["stop_timeout"] = float(values["stop_timeout"])
    if not isinstance(values.get("hypervisor_group", ""), str):
        raise VmhostError(
            f"{source}: hypervisor_group must be a group name (a string); got {values['hypervisor_group']!r}"
        )
    _coerce_registries(values, source)
    _coerce_host_lifecycle(values, source)
    _coerce_admission(values, source)
    _coerce_migration(values, source)
    if "fleet" in values:
        values["fleet"] = _fleet(values["fleet"], source)
    for key, kind in (
        ("history_max_age_days", float),
        ("history_max_operations", int),
        ("image_max_bytes", int),
        ("image_download_timeout", float),
    ):
        if key in values:
            values[key] = _positive(values[key], kind, key, source)
    return values


def _coerce_registries(values: dict[str, Any], source: Path) -> None:
    """insecure_registries, allowed_registries and allowed_image_hosts are `host` or `host:port` strings; the
    pull bounds are positive."""
    for key in ("insecure_registries", "allowed_registries", "allowed_image_hosts"):
        if key not in values:
            continue
        items = values[key]
        if not isinstance(items, list) or not all(isinstance(i, str) and i and "/" not in i for i in items):
            raise VmhostError(f"{source}: {key} must be a list of host or host:port; got {items!r}")
        values[key] = tuple(items)
    for key, kind in (("image_pull_max_bytes", int), ("image_pull_timeout", float)):
        if key in values:
            values[key] = _positive(values[key], kind, key, source)


def _coerce_host_lifecycle(values: dict[str, Any], source: Path) -> None:
    """restore_concurrency is a positive count; shutdown_on_sigterm a true boolean (not a truthy string)."""
    if "restore_concurrency" in values:
        values["restore_concurrency"] = _positive(values["restore_concurrency"], int, "restore_concurrency", source)
    if not isinstance(values.get("shutdown_on_sigterm", False), bool):
        raise VmhostError(f"{source}: shutdown_on_sigterm must be true or false; got {values['shutdown_on_sigterm']!r}")


def _coerce_admission(values: dict[str, Any], source: Path) -> None:
    """operation_workers is a positive count; memory_reserve and vm_memory_overhead whole bytes, 0 allowed."""
    if "operation_workers" in values:
        values["operation_workers"] = _positive(values["operation_workers"], int, "operation_workers", source)
    for key in ("memory_reserve", "vm_memory_overhead"):
        value = values.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise VmhostError(f"{source}: {key} must be a whole number of bytes (0 or more); got {value!r}")


def _coerce_migration(values: dict[str, Any], source: Path) -> None:
    """Timeouts positive seconds, concurrency a positive count, peer token files a table of paths."""
    for key, kind in (
        ("migration_timeout", float),
        ("migration_stall_timeout", float),
        ("incoming_timeout", float),
        ("migration_concurrency", int),
    ):
        if key in values:
            values[key] = _positive(values[key], kind, key, source)
    tokens = values.get("peer_token_files", {})
    if not isinstance(tokens, dict) or not all(isinstance(v, str) and v.startswith("/") for v in tokens.values()):
        raise VmhostError(f"{source}: peer_token_files must map agent URLs to absolute file paths; got {tokens!r}")
    values["peer_token_files"] = {url: Path(path) for url, path in tokens.items()}
    if "peer_ca_file" in values:
        values["peer_ca_file"] = Path(values["peer_ca_file"])


def _fleet(table: Any, source: Path) -> FleetConfig:
    """The `[fleet]` table: etcd endpoints are http(s) URLs, the host name a key segment, the TTLs positive."""
    where = f"{source}: fleet"
    if not isinstance(table, dict):
        raise VmhostError(f"{where} must be a table: [fleet]")
    known = {f.name for f in fields(FleetConfig)}
    if unknown := set(table) - known:
        raise VmhostError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    values = dict(table)
    endpoints = values.get("etcd_endpoints")
    if (
        not isinstance(endpoints, list)
        or not endpoints
        or not all(isinstance(e, str) and re.match(r"^https?://[^/]+/?$", e) for e in endpoints)
    ):
        raise VmhostError(f"{where}.etcd_endpoints must list http:// or https:// URLs (host:port); got {endpoints!r}")
    values["etcd_endpoints"] = tuple(e.rstrip("/") for e in endpoints)
    _fleet_identity(values, where)
    for key in ("ca_file", "cert_file", "key_file"):
        if key in values:
            values[key] = Path(values[key])
    if ("cert_file" in values) != ("key_file" in values):
        raise VmhostError(f"{where}: a client certificate needs both cert_file and key_file")
    if values.get("fence", "none") not in ("none", "lease"):
        raise VmhostError(f"{where}.fence must be one of none, lease; got {values['fence']!r}")
    if "lease_ttl" in values:
        values["lease_ttl"] = _positive(values["lease_ttl"], int, "fleet.lease_ttl", source)
    for key in ("fence_after", "cpu_overcommit"):
        if key in values:
            values[key] = _positive(values[key], float, f"fleet.{key}", source)
    prefix = values.get("prefix", "/vmhost")
    if not isinstance(prefix, str) or not re.match(r"^(/[a-z0-9][a-z0-9-]*)+$", prefix):
        raise VmhostError(f"{where}.prefix must be an absolute key path such as /vmhost; got {prefix!r}")
    return FleetConfig(**values)


def _fleet_identity(values: dict[str, Any], where: str) -> None:
    """host_name (default: this machine's short hostname) and labels, both safe as key segments."""
    name = values.get("host_name", socket.gethostname().split(".")[0].lower())
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise VmhostError(f"{where}.host_name must be lower-case letters, digits and '-' (at most 63); got {name!r}")
    values["host_name"] = name
    labels = values.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) and NAME_PATTERN.match(k) for k, v in labels.items()):
        raise VmhostError(f"{where}.labels must map names to strings; got {labels!r}")


def _positive(value: Any, kind: type[float] | type[int], key: str, source: Path) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise VmhostError(f"{source}: {key} must be a positive {kind.__name__}; got {value!r}")
    if value <= 0:
        raise VmhostError(f"{source}: {key} must be positive; got {value!r}")
    return kind(value)


def _coerce_host_paths(values: dict[str, Any], source: Path) -> None:
    """allowed_paths are absolute directories; allowed_block_devices absolute paths or '*'-ended prefixes."""
    for key in ("allowed_paths", "allowed_block_devices"):
        if key not in values:
            continue
        items = values[key]
        if not isinstance(items, list) or not all(isinstance(i, str) and i.startswith("/") for i in items):
            raise VmhostError(f"{source}: {key} must be a list of absolute paths; got {items!r}")
        values[key] = tuple(Path(i) for i in items) if key == "allowed_paths" else tuple(items)


def _coerce_http(values: dict[str, Any], source: Path) -> None:
    if "trusted_proxies" in values:
        values["trusted_proxies"] = _networks(values["trusted_proxies"], "trusted_proxies", source)
    if "max_body_bytes" in values:
        values["max_body_bytes"] = _positive(values["max_body_bytes"], int, "max_body_bytes", source)


def _networks(value: Any, key: str, source: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise VmhostError(f"{source}: {key} must be a list of addresses or CIDRs; got {value!r}")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise VmhostError(f"{source}: {key}: {item!r} is not an IP address or CIDR") from None
    return tuple(value)


def _coerce_bounds(values: dict[str, Any], source: Path) -> None:
    """Callback networks and the ceilings of ZStack tasks and stop timeouts; stop_timeout must fit the ceiling."""
    if "callback_networks" in values:
        values["callback_networks"] = _networks(values["callback_networks"], "callback_networks", source)
    for key, kind in (("zstack_task_limit", int), ("max_stop_timeout", float)):
        if key in values:
            values[key] = _positive(values[key], kind, key, source)
    stop, ceiling = float(values.get("stop_timeout", 60.0)), values.get("max_stop_timeout", 600.0)
    if stop > ceiling:
        raise VmhostError(f"{source}: stop_timeout ({stop:g} s) is above max_stop_timeout ({ceiling:g} s)")


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
