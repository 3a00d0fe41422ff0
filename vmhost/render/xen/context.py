"""Host facts an xl.cfg rendering needs that are not part of the spec itself."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vmhost.render.hooks import DocumentHook

Problems = list[tuple[str, str]]
"""(spec path, message) for what xl cannot express."""


@dataclass(frozen=True)
class XenContext:
    """Resolved by the lifecycle engine before rendering, so rendering stays pure.

    disk_paths: target -> image path for disks vmhost creates (source types new and overlay).
    disk_formats: target -> format detected by qemu-img for file disks whose format is 'auto'.
    hooks: plugins' render_xl hooks, applied in order to the settings after vmhost's own rendering.
    seed_iso: the VM's NoCloud seed ISO, attached as one more read-only CD-ROM; None: no seed.
    """

    disk_paths: Mapping[str, Path] = field(default_factory=dict)
    disk_formats: Mapping[str, str] = field(default_factory=dict)
    hooks: Sequence[DocumentHook] = ()
    seed_iso: Path | None = None
