"""spec (+ the image's defaults) → an OCI runtime-spec config.json document, as a dict."""

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmhost.render.hooks import DocumentHook, apply_document_hooks
from vmhost.render.oci import defaults
from vmhost.render.oci.resolv import resolv_mount
from vmhost.spec import VMSpec
from vmhost.spec.container import Container

CPU_PERIOD_US = 100_000
"""CFS period; the quota is cpu.vcpus periods, so vcpus: 2 allows two CPUs' worth of time."""
NETNS_DIR = Path("/var/run/netns")
ANNOTATION_PREFIX = "org.vmhost."


@dataclass(frozen=True)
class ImageConfig:
    """The defaults an OCI image's config carries (Entrypoint, Cmd, Env, WorkingDir); the spec's values win."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str = ""


def process_args(container: Container, image: ImageConfig) -> list[str]:
    """Like `docker run`: a command given in the spec replaces the image's entrypoint and drops its Cmd."""
    command = container.command or image.entrypoint
    args = container.args or ([] if container.command else image.cmd)
    return [*command, *args]


def _env(container: Container, image: ImageConfig) -> list[str]:
    merged = dict(entry.split("=", 1) for entry in image.env if "=" in entry)
    merged.setdefault("PATH", defaults.DEFAULT_PATH)
    merged.update(container.env)
    return [f"{key}={value}" for key, value in merged.items()]


def _process(container: Container, image: ImageConfig) -> dict[str, Any]:
    capabilities = list(defaults.CAPABILITIES)
    return {
        "terminal": False,
        "user": {"uid": container.uid, "gid": container.gid},
        "args": process_args(container, image),
        "env": _env(container, image),
        "cwd": str(container.workdir or image.workdir or "/"),
        "capabilities": {kind: capabilities for kind in ("bounding", "effective", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    }


def _mounts(container: Container) -> list[dict[str, Any]]:
    binds = [
        {
            "destination": str(mount.target),
            "type": "bind",
            "source": str(mount.source),
            "options": ["rbind", "rprivate", *(["ro"] if mount.read_only else [])],
        }
        for mount in container.mounts
    ]
    return [*copy.deepcopy(defaults.MOUNTS), *binds]


def _namespaces(container: Container) -> list[dict[str, str]]:
    """Every namespace new, except the network one when the spec joins a named namespace (by its path)."""
    namespaces = []
    for kind in defaults.NAMESPACES:
        namespace = {"type": kind}
        if kind == "network" and container.network.netns is not None:
            namespace["path"] = str(NETNS_DIR / container.network.netns)
        namespaces.append(namespace)
    return namespaces


def _resources(spec: VMSpec) -> dict[str, Any]:
    cpu: dict[str, Any] = {"quota": spec.cpu.vcpus * CPU_PERIOD_US, "period": CPU_PERIOD_US}
    if spec.cpu.shares is not None:
        cpu["shares"] = spec.cpu.shares
    return {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": spec.memory.size},
        "cpu": cpu,
    }


def render_config(
    spec: VMSpec,
    rootfs: Path,
    image: ImageConfig | None = None,
    oci_version: str = "1.0.2-dev",
    hooks: Sequence[DocumentHook] = (),
    *,
    resolv_conf: Path | None = None,
) -> dict[str, Any]:
    """The bundle's config.json for a `kind: container` spec whose root filesystem is at `rootfs`, after the
    plugins' render_oci hooks (the result must still be JSON). `resolv_conf`: the bundle's resolv.conf (see
    vmhost.render.oci.resolv), bind-mounted read-only over /etc/resolv.conf."""
    container = spec.container
    if container is None:
        raise ValueError(f"{spec.name} is not a container spec")
    image = image or ImageConfig()
    document = {
        "ociVersion": oci_version,
        "process": _process(container, image),
        "root": {"path": str(rootfs), "readonly": container.read_only},
        "hostname": container.hostname or spec.name,
        "mounts": _mounts(container) + ([resolv_mount(resolv_conf)] if resolv_conf else []),
        "annotations": {f"{ANNOTATION_PREFIX}name": spec.name, f"{ANNOTATION_PREFIX}uuid": str(spec.uuid)},
        "linux": {
            "cgroupsPath": f"vmhost/{spec.uuid}",
            "resources": _resources(spec),
            "namespaces": _namespaces(container),
            "maskedPaths": list(defaults.MASKED_PATHS),
            "readonlyPaths": list(defaults.READONLY_PATHS),
        },
    }
    apply_document_hooks(spec, document, hooks, "OCI config", json.dumps)
    return document
