"""Host facts a libvirt rendering needs that are not part of the spec itself."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vmhost.render.libvirt.hooks import RenderHook

METADATA_NS = "https://vmhost.dev/xmlns/domain/1"
METADATA_PREFIX = "vmhost"


@dataclass(frozen=True)
class RenderContext:
    """Resolved by the lifecycle engine before rendering, so rendering stays pure and deterministic.

    accel: domain type to use (kvm or tcg).
    console_log: where virtlogd keeps the serial console output when the spec names no log file.
    disk_paths: target -> image path for disks vmhost creates (source types new and overlay).
    disk_formats: target -> format for file disks whose spec still says 'auto' (the engine never leaves one:
        it records the format in the spec when the disk is added, so that it is never probed again).
    disk_layers: target -> the disk-only snapshot overlays on top of the disk's image, oldest first.
    owner: which vmhost instance (its data directory) manages the domain; another one must not adopt it.
    hooks: plugins' render hooks, applied in order after vmhost's own rendering.
    seed_iso: the VM's NoCloud seed ISO, attached as one more read-only CD-ROM; None: no seed.
    """

    accel: Literal["kvm", "tcg"]
    console_log: Path
    disk_paths: Mapping[str, Path] = field(default_factory=dict)
    disk_formats: Mapping[str, str] = field(default_factory=dict)
    disk_layers: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    owner: str = ""
    hooks: tuple[RenderHook, ...] = ()
    seed_iso: Path | None = None
