"""The migration calls of a driver without Capability.LIVE_MIGRATION: each refuses, with the driver's own hint."""

from typing import ClassVar

from vmhost.drivers.base import Capability, MigrationOptions, MigrationProgress, MigrationTarget, Resources
from vmhost.errors import Unsupported
from vmhost.spec import VMSpec


class NoMigration:
    kind: str
    migration_hint: ClassVar[str]
    """Why this driver cannot move a VM to another host, in one line."""

    def _refuse_migration(self) -> Unsupported:
        return Unsupported(self.kind, Capability.LIVE_MIGRATION, self.migration_hint)

    def migrate(self, name: str, target: MigrationTarget, options: MigrationOptions) -> None:
        raise self._refuse_migration()

    def migration_progress(self, name: str) -> MigrationProgress | None:
        raise self._refuse_migration()

    def abort_migration(self, name: str) -> None:
        raise self._refuse_migration()

    def incoming_definition(self, spec: VMSpec, resources: Resources) -> str:
        raise self._refuse_migration()
