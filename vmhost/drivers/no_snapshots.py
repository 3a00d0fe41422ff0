"""The snapshot calls of a driver without Capability.SNAPSHOTS: each refuses, with the driver's own hint."""

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from vmhost.drivers.base import Capability, Resources
from vmhost.errors import Unsupported
from vmhost.spec import VMSpec


class NoSnapshots:
    kind: str
    snapshot_hint: ClassVar[str]
    """Why this driver has no snapshots, and what to do instead."""

    def _refuse(self) -> Unsupported:
        return Unsupported(self.kind, Capability.SNAPSHOTS, self.snapshot_hint)

    def create_snapshot(
        self,
        spec: VMSpec,
        resources: Resources,
        snapshot: str,
        *,
        disk_only: bool,
        layers: Mapping[str, Path],
        quiesce: bool,
    ) -> None:
        raise self._refuse()

    def snapshot_names(self, name: str) -> list[str]:
        raise self._refuse()

    def revert_snapshot(self, name: str, snapshot: str) -> None:
        raise self._refuse()

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        raise self._refuse()

    def merge_layer(self, name: str, target: str, overlay: Path) -> None:
        raise self._refuse()
