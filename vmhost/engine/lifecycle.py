"""Engine: the one facade the API, CLI, plugins and tests use. Each call delegates to its own module:
operations/ (one per operation, declared steps), supervisor.py (events, restart policies, reconciliation),
recovery.py (journal replay and adoption at start), views.py (reads)."""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vmhost.config import HostConfig
from vmhost.drivers.base import ConsoleStream, DomainEvent, Driver
from vmhost.drivers.multi import DriverSet
from vmhost.engine import evacuate, host_shutdown, image_pull, images, recovery, snapshots, steps, views
from vmhost.engine.core import GONE, Core, Progress, log, quiet
from vmhost.engine.events import EventBus
from vmhost.engine.hooks import Hook
from vmhost.engine.locks import VmLocks
from vmhost.engine.operations import (
    attach_disk,
    create,
    delete,
    detach_disk,
    incoming,
    kill,
    migrate,
    pause,
    reboot,
    resume,
    snapshot_create,
    snapshot_delete,
    snapshot_revert,
    start,
    stop,
    update,
)
from vmhost.engine.operations.stop import StopResult
from vmhost.engine.peer import IncomingOffer, IncomingStatus, IncomingTicket, MigrationRequest, Peer
from vmhost.engine.plan import UpdateResult
from vmhost.engine.restore import Restore
from vmhost.engine.router import Router
from vmhost.engine.states import VmState
from vmhost.engine.supervisor import Supervisor
from vmhost.host import files
from vmhost.spec import VMSpec
from vmhost.store.sqlite import ImageRecord, OperationRecord, Store, VmRecord

__all__ = ["GONE", "Engine", "Progress", "StopResult"]


class Engine:
    def __init__(
        self,
        config: HostConfig,
        driver: Driver | DriverSet,
        store: Store | None = None,
        hooks: Sequence[Hook] = (),
        progress: Progress = quiet,
        *,
        peers: Callable[[str], Peer] | None = None,
    ):
        config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o711)
        _make_vms_dir(config)
        self.config = config
        self.core = Core(
            config=config,
            driver=DriverSet.of(driver, locate=self._driver_of),
            store=store or Store(config.db_path),
            locks=VmLocks(config.data_dir / "locks"),
            hooks=list(hooks),
            progress=progress,
            peers=peers,
        )
        self.supervisor = Supervisor(self.core)
        self.restore = Restore()

    def _driver_of(self, name: str) -> str | None:
        record = self.core.store.get_vm(name)
        return record.driver if record else None

    # ---- what the engine shares, as attributes ---------------------------------------------------

    @property
    def driver(self) -> Router:
        return self.core.driver

    @property
    def store(self) -> Store:
        return self.core.store

    @store.setter
    def store(self, store: Store) -> None:
        self.core.store = store

    @property
    def locks(self) -> VmLocks:
        return self.core.locks

    @property
    def hooks(self) -> list[Hook]:
        """Plugins' lifecycle hooks, in the order they run (the plugin loader sorts them by priority)."""
        return self.core.hooks

    @property
    def events(self) -> EventBus:
        return self.core.events

    @property
    def progress(self) -> Progress:
        return self.core.progress

    @progress.setter
    def progress(self, progress: Progress) -> None:
        self.core.progress = progress

    def record(self, name_or_uuid: str) -> VmRecord:
        return self.core.record(name_or_uuid)

    @staticmethod
    def spec_of(record: VmRecord) -> VMSpec:
        return Core.spec_of(record)

    # ---- operations --------------------------------------------------------------------------

    def create(self, document: Any, start: bool = False) -> VmRecord:
        return create.create(self.core, document, start)

    def validate(self, document: Any, *, offline: bool = False) -> VMSpec:
        """What create would refuse, without creating: the same spec and host checks (none with offline)."""
        return create.checked_spec(self.core, document, offline=offline, host=True)

    def start(self, name: str) -> VmRecord:
        return start.start(self.core, name)

    def stop(self, name: str, force: bool = False, timeout: float | None = None) -> StopResult:
        return stop.stop(self.core, name, force, timeout)

    def kill(self, name: str) -> None:
        kill.kill(self.core, name)

    def reboot(self, name: str, force: bool = False) -> None:
        reboot.reboot(self.core, name, force)

    def delete(self, name: str) -> None:
        delete.delete(self.core, name)

    def update(self, name: str, patch: dict[str, Any], *, live: bool = False, dry_run: bool = False) -> UpdateResult:
        return update.update(self.core, name, patch, live=live, dry_run=dry_run)

    def pause(self, name: str) -> None:
        pause.pause(self.core, name)

    def resume(self, name: str) -> None:
        resume.resume(self.core, name)

    def attach_disk(self, name: str, disk: dict[str, Any]) -> str:
        return attach_disk.attach_disk(self.core, name, disk)

    def detach_disk(self, name: str, target: str) -> None:
        detach_disk.detach_disk(self.core, name, target)

    # ---- snapshots (engine/snapshots.py, operations/snapshot_*.py) ------------------------------

    def create_snapshot(
        self, name: str, snapshot: str, *, disk_only: bool = False, quiesce: bool = False
    ) -> dict[str, Any]:
        return snapshot_create.create_snapshot(self.core, name, snapshot, disk_only, quiesce)

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        return snapshots.list_snapshots(self.core, name)

    def revert_snapshot(self, name: str, snapshot: str) -> dict[str, Any]:
        return snapshot_revert.revert_snapshot(self.core, name, snapshot)

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        snapshot_delete.delete_snapshot(self.core, name, snapshot)

    # ---- image store (engine/images.py) --------------------------------------------------------

    def import_image(
        self,
        source: str,
        name: str,
        *,
        sha256: str | None = None,
        fmt: str = "auto",
        uuid: str | None = None,
        progress: images.ImportProgress | None = None,
    ) -> ImageRecord:
        return images.import_image(self.core, source, name, sha256=sha256, fmt=fmt, uuid=uuid, progress=progress)

    def list_images(self) -> list[ImageRecord]:
        return self.core.store.list_images()

    def get_image(self, name_or_uuid: str) -> ImageRecord:
        return images.get_image(self.core.store, name_or_uuid)

    def delete_image(self, name: str) -> None:
        images.delete_image(self.core, name)

    def pull_image(self, reference: str, name: str | None = None, progress: Progress | None = None) -> ImageRecord:
        """An OCI image from a registry into the store (engine/image_pull.py)."""
        return image_pull.pull(self.core, reference, name, progress)

    # ---- migration ---------------------------------------------------------------------------

    def migrate(self, name: str, to: str, request: MigrationRequest) -> None:
        """Move `name` to the agent at `to` (operations/migrate.py); it stays here on any failure before the
        hypervisor moved it."""
        migrate.migrate(self.core, name, request, to)

    def evacuate(
        self, to: Sequence[str], request: MigrationRequest, concurrency: int | None = None
    ) -> list[evacuate.Evacuated]:
        return evacuate.evacuate(self.core, to, request, concurrency)

    def accept_incoming(self, offer: IncomingOffer) -> IncomingTicket:
        return incoming.accept(self.core, offer)

    def finish_incoming(self, migration_id: str) -> None:
        incoming.finish(self.core, migration_id)

    def abort_incoming(self, migration_id: str) -> None:
        incoming.abort(self.core, migration_id)

    def incoming_status(self, migration_id: str) -> IncomingStatus:
        return incoming.status(self.core, migration_id)

    def incoming_disk(self, migration_id: str, target: str) -> Path:
        """The placeholder an offline upload of disk `target` writes into."""
        return incoming.disk_placeholder(self.core, migration_id, target)

    def incoming_upload_limit(self, migration_id: str, target: str) -> int:
        return incoming.upload_limit(self.core, migration_id, target)

    def check_incoming_upload(self, migration_id: str, target: str) -> None:
        incoming.check_upload(self.core, migration_id, target)

    # ---- supervision and recovery ------------------------------------------------------------

    def on_domain_event(self, event: DomainEvent) -> None:
        self.supervisor.on_domain_event(event)

    def list_vms(self) -> list[tuple[VmRecord, VmState]]:
        """Reconciles with the hypervisor (one bulk query) and stores what it says: the supervisor's job; and
        settles incoming migrations whose source did not come back."""
        incoming.sweep(self.core)
        return self.supervisor.reconcile()

    def list_vms_cached(self) -> list[tuple[VmRecord, VmState]]:
        """The store's view, no hypervisor call: for hot paths while something else keeps it fresh."""
        return [(record, VmState(record.state)) for record in self.core.store.list_vms()]

    def recover(self, *, background: bool = False) -> None:
        """Recovery, then the restore of the VMs that should run (in a thread of its own with background: the
        agent serves meanwhile, `self.restore` shows how far it got)."""
        self.restore.run(self.core, recovery.recover(self.core, self.supervisor), background=background)

    def shutdown_host(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop every live VM in reverse startup order; the next agent start restores them (host_shutdown.py)."""
        return host_shutdown.shutdown(self.core, self.supervisor, self.restore, timeout)

    def prune_history(self) -> None:
        steps.prune_history(self.core)

    def operations_of_request(self, request: str) -> list[OperationRecord]:
        """The journaled operations an API operation ran: its id answers after an agent restart."""
        return self.core.store.operations_of_request(request)

    def recent_requests(self, limit: int) -> list[str]:
        return self.core.store.recent_requests(limit)

    # ---- reads -------------------------------------------------------------------------------

    def get(self, name: str) -> dict[str, Any]:
        return views.record_view(self.core, name)

    def info(self, name: str) -> dict[str, Any]:
        return views.info_view(self.core, name)

    def runtime_facts(self, name: str) -> dict[str, Any]:
        return views.runtime_facts(self.core, name)

    def console_log_path(self, name: str) -> Path:
        return views.console_log_path(self.core, name)

    def follow_console_log(self, name: str) -> Iterator[bytes]:
        return views.follow_console_log(self.core, name)

    def open_console(self, name: str) -> ConsoleStream:
        return views.open_console(self.core, name)


def _make_vms_dir(config: HostConfig) -> None:
    """Only root and QEMU's group get through to the VM directories (their UUIDs, disks and logs)."""
    mode, gid = files.hypervisor_access(config.hypervisor_group)
    if config.hypervisor_group and gid is None:
        log.warning(
            "hypervisor_group does not exist on this host: VM directories are traversable by every user",
            extra={"group": config.hypervisor_group},
        )
    files.private_dir(config.data_dir / "vms", mode, gid)
