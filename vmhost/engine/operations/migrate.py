"""migrate: move a VM to another host's agent. This side coordinates; the destination (engine/incoming.py)
prepares, takes the VM in and finishes when asked.

Live:    prepared (the destination made its record and placeholders) -> transferred (the hypervisor moved the
         memory, and the disks with copy_storage: the VM is paused at the destination) -> finished (the
         destination resumed it and owns it) -> cleaned (this host's definition, files and record are gone).
Offline: prepared -> copied (owned disks uploaded into the placeholders) -> finished (the destination defined
         it) -> cleaned.

The point of no return is the transfer (offline: the finish). Before it, a failure or a recovery rolls back:
the destination drops what it made and the VM stays here as it was. After it, only forward. A recovery that
cannot tell on which side of it the crash fell asks the destination (`Peer.status`), after cancelling a
hypervisor job that may still be moving the VM.
"""

import contextlib
import contextvars
import logging
import threading
import time
import uuid as uuids
from collections.abc import Callable, Set
from pathlib import Path
from typing import Any, Self, TypeVar

from vmhost.drivers.base import Capability, DomainState, MigrationOptions, MigrationProgress, MigrationTarget
from vmhost.engine import plan, resources
from vmhost.engine.core import GONE, MOVED_TO, Core, stored
from vmhost.engine.events import VmEvent
from vmhost.engine.peer import DiskOffer, IncomingOffer, IncomingTicket, MigrationRequest, Peer
from vmhost.engine.states import OBSERVED, VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import Conflict, HypervisorError, PeerUnreachable, Unavailable, VmhostError
from vmhost.spec import VMSpec
from vmhost.spec.disk import ImageDisk, OverlayDisk
from vmhost.storage import qemu_img
from vmhost.store.sqlite import OperationRecord, VmRecord

log = logging.getLogger("vmhost.engine")
T = TypeVar("T")

WATCH_INTERVAL = 0.5
"""Seconds between two looks of the watchdog at the hypervisor's migration job."""
REPORT_INTERVAL = 1.0
"""Seconds between two progress events."""
JOB_END_WAIT = 30.0
"""Seconds recovery waits for an aborted migration job to end."""
PEER_PATIENCE = 120.0
"""Seconds a call the migration cannot do without (finish after the transfer, abort before it, status in
recovery) is retried while the peer does not answer (an agent or its hypervisor restarting)."""


class Migrate(Declared):
    kind = "migrate"

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        peer_url: str,
        migration_id: str,
        request: MigrationRequest,
    ):
        super().__init__(core, name, uuid)
        self.peer_url, self.migration_id, self.request = peer_url, migration_id, request
        self._peer: Peer | None = None
        self.ticket: IncomingTicket | None = None
        self.moved = False
        """Past the point of no return in this process: the transfer ended (offline: the finish was asked for).
        From then on nothing is undone, whatever fails."""

    @property
    def peer(self) -> Peer:
        if self._peer is None:
            self._peer = self.core.peer(self.peer_url)
        return self._peer

    def journal_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uuid": self.uuid,
            "peer": self.peer_url,
            "migration_id": self.migration_id,
            "request": self.request.model_dump(),
        }

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        """Also without a record: a crash between forgetting the VM and journaling `cleaned` is finished."""
        if "migration_id" not in op.data:
            return None  # the crash came before the begin entry was journaled: nothing was done
        return cls(
            core,
            op.data["name"],
            op.data["uuid"],
            peer_url=op.data["peer"],
            migration_id=op.data["migration_id"],
            request=MigrationRequest.model_validate(op.data["request"]),
        )

    def steps(self) -> tuple[Step, ...]:
        move = Step("copied", self.upload_disks) if self.request.offline else Step("transferred", self.transfer)
        return (
            Step("prepared", self.prepare, undo=self.abort_remote),
            move,
            Step("finished", self.finish_remote, redo=self.finish_remote),
            Step("cleaned", self.clean_up, redo=self.clean_up),
        )

    def completes(self, journaled: Set[str]) -> bool:
        """Forward once past the point of no return; where the journal cannot say, the destination does."""
        if {"finished", "cleaned"} & journaled or (not self.request.offline and "transferred" in journaled):
            return True
        if self.core.store.get_vm(self.name) is None:
            return True  # forgotten here already: only the journal entry was missing
        if not self.request.offline:
            self._cancel_hypervisor_job()
            if self.core.driver.state(self.name) == DomainState.RUNNING:
                return False  # the job is over and the VM runs here: it did not move
        status = patiently(lambda: self.peer.status(self.migration_id))
        return status == "finished" or (status == "arrived" and not self.request.offline)

    # ---- steps -------------------------------------------------------------------------------

    def prepare(self) -> None:
        record = self.core.record(self.name)
        spec = self.core.spec_of(record)
        self.core.set_state(self.name, VmState.MIGRATING, f"migrating to {self.peer_url}")
        self._publish("migration", f"preparing {self.peer_url}")
        offer = IncomingOffer(
            migration_id=self.migration_id,
            spec=stored(spec),
            source_url=self.core.config.agent_url or f"{self.core.config.listen_host}:{self.core.config.listen_port}",
            offline=self.request.offline,
            copy_storage=self.request.copy_storage,
            disks=copied_disks(self.core, spec) if self.request.copy_storage else {},
        )
        try:
            self.ticket = self.peer.prepare(offer)
        except VmhostError:
            with contextlib.suppress(VmhostError):  # it may have prepared before the answer was lost
                self.abort_remote()
            raise

    def abort_remote(self) -> None:
        """Retried while the destination cannot answer (its agent or hypervisor restarting): an abort that is
        given up leaves its record there until incoming_timeout. Never once the VM has moved."""
        if not self.moved:
            patiently(lambda: self.peer.abort(self.migration_id))

    def transfer(self) -> None:
        ticket = self._ticket()
        target = MigrationTarget(ticket.hypervisor_uri, ticket.stream_uri, ticket.definition, ticket.tls)
        options = MigrationOptions(
            copy_disks=ticket.copy_disks,
            bandwidth_mib=self.request.bandwidth_mib,
            auto_converge=self.request.auto_converge,
            post_copy=self.request.post_copy,
        )
        config = self.core.config
        watchdog = Watchdog(
            self,
            timeout=self.request.timeout or config.migration_timeout,
            stall=self.request.stall_timeout or config.migration_stall_timeout,
        )
        with watchdog:
            try:
                self.core.driver.migrate(self.name, target, options)
            except VmhostError as exc:
                if watchdog.reason:
                    raise HypervisorError(
                        f"the migration of {self.name} to {self.peer_url} was aborted: {watchdog.reason}; "
                        f"{self.name} keeps running here",
                        exc.detail or exc.message,
                    ) from exc
                raise
        self.moved = True
        self._publish("migration", f"transferred to {self.peer_url}")

    def upload_disks(self) -> None:
        ticket = self._ticket()
        record = self.core.record(self.name)
        paths = resources.plan(self.core.spec_of(record), self.core.config).resources.disk_paths
        for target in ticket.copy_disks:
            self._publish("migration", f"copying disk {target} to {self.peer_url}")
            self.peer.upload_disk(self.migration_id, target, paths[target])

    def finish_remote(self) -> None:
        self.moved = True  # offline: the destination may define it from this call on
        patiently(lambda: self.peer.finish(self.migration_id))

    def clean_up(self) -> None:
        """This host's definition, owned files, record and lock go; the VM lives at the destination now."""
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid != self.uuid:
            return  # a VM of the same name made here since: not ours to remove
        try:
            info = self.core.driver.info(self.name)
        except VmhostError:
            info = None
        if info is not None and info.uuid == self.uuid:
            if info.state not in GONE:
                raise Conflict(f"{self.name} still runs here although {self.peer_url} finished it; not removed")
            self.core.driver.undefine(self.name)
        owned = [Path(path) for path in record.owned_paths] if record is not None else []
        resources.release(resources.vm_dir(self.core.config.data_dir, self.uuid), owned)
        if record is not None:
            self.core.forget(record)
        self._publish("migrated", f"migrated to {self.peer_url}")

    # ---- outcome -----------------------------------------------------------------------------

    def failed(self, error: Exception) -> None:
        """Before the point of no return the VM is here again as the hypervisor says; after it, its record stays
        `migrating` (never started here: start and restore refuse it) until an operator deletes it here."""
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid == self.uuid and self.moved:
            reason = f"moved to {self.peer_url}, which did not confirm ({error}); delete it here once it runs there"
            migration = {MOVED_TO: self.peer_url}
            self.core.set_state(self.name, VmState.MIGRATING, reason, desired_state="stopped", migration=migration)
        elif record is not None and record.uuid == self.uuid:
            try:
                state = OBSERVED[self.core.driver.state(self.name)]
            except Unavailable:
                return  # the supervisor's reconcile reads it once the hypervisor answers again
            self.core.set_state(self.name, state, f"migration to {self.peer_url} failed: {error}")

    # ---- helpers -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._peer is not None:
            self._peer.close()

    def _ticket(self) -> IncomingTicket:
        assert self.ticket is not None, "prepare runs first in-process; recovery never redoes the move"
        return self.ticket

    def _cancel_hypervisor_job(self) -> None:
        """A migration job the dead agent started may still run: stop it and wait until it is over (the
        hypervisor has then told the destination too), so that the destination's answer cannot change after."""
        deadline = time.monotonic() + JOB_END_WAIT
        try:
            self.core.driver.abort_migration(self.name)
            while self.core.driver.migration_progress(self.name) is not None and time.monotonic() < deadline:
                time.sleep(WATCH_INTERVAL)
        except VmhostError as exc:
            log.warning("could not abort a migration job", extra={"vm": self.name, "error": exc.message})

    def _publish(self, kind: str, reason: str) -> None:
        self.core.progress(reason)
        self.core.events.publish(VmEvent(vm=self.name, uuid=self.uuid, type=kind, state="", reason=reason))


class Watchdog:
    """Follows the hypervisor's migration job from a thread of its own: progress events, and an abort when the
    job made no progress for `stall` seconds or ran past `timeout`."""

    def __init__(self, migration: Migrate, *, timeout: float, stall: float):
        self.migration, self.timeout, self.stall = migration, timeout, stall
        self.reason = ""
        self._done = threading.Event()
        context = contextvars.copy_context()  # the operation's progress sink follows it into the thread
        self._thread = threading.Thread(
            target=context.run, args=(self._watch,), name=f"migrate-{migration.name}", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        core, name = self.migration.core, self.migration.name
        started = last_move = last_report = time.monotonic()
        processed = -1
        while not self._done.wait(WATCH_INTERVAL):
            now = time.monotonic()
            try:
                progress = core.driver.migration_progress(name)
            except VmhostError:
                progress = None
            if progress is not None and progress.processed_bytes > processed:
                processed, last_move = progress.processed_bytes, now
            if progress is not None and now - last_report >= REPORT_INTERVAL:
                self.migration._publish("migration", progress_text(progress))
                last_report = now
            if now - started > self.timeout:
                self._abort(f"it took longer than {self.timeout:g} s")
            elif now - last_move > self.stall:
                self._abort(f"no progress for {self.stall:g} s")
            if self.reason:
                return

    def _abort(self, reason: str) -> None:
        self.reason = reason
        try:
            self.migration.core.driver.abort_migration(self.migration.name)
        except VmhostError as exc:
            log.warning("could not abort a migration", extra={"vm": self.migration.name, "error": exc.message})


def progress_text(progress: MigrationProgress) -> str:
    text = f"phase {progress.phase} {progress.percent:.0f}% remaining {progress.remaining_bytes >> 20} MiB"
    if progress.expected_downtime_ms is not None:
        text += f" downtime {progress.expected_downtime_ms} ms"
    return text


def patiently(call: Callable[[], T]) -> T:
    """Retry `call` while the peer is unreachable, up to PEER_PATIENCE seconds (then its error)."""
    deadline, delay = time.monotonic() + PEER_PATIENCE, 0.2
    while True:
        try:
            return call()
        except PeerUnreachable:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def copied_disks(core: Core, spec: VMSpec) -> dict[str, DiskOffer]:
    """The VM's owned disks (the ones vmhost made in its directory): their contents go with copy_storage."""
    offers = {}
    for target, path in resources.plan(spec, core.config).resources.disk_paths.items():
        info = qemu_img.image_info(path, path.suffix.lstrip("."))  # named by its format (resources.plan)
        offers[target] = DiskOffer(size=info.virtual_size, format=info.format)
    return offers


def migratable(core: Core, record: VmRecord, request: MigrationRequest) -> VMSpec:
    """Everything that would make the migration fail, refused before anything is touched."""
    spec = core.spec_of(record)
    core.driver.require(record.name, Capability.OFFLINE_MIGRATION if request.offline else Capability.LIVE_MIGRATION)
    state = core.observe(record)
    if request.offline and state != VmState.STOPPED:
        raise Conflict(f"{record.name} is {state.value}: only a stopped VM migrates offline (leave out --offline)")
    if not request.offline and state not in (VmState.RUNNING, VmState.PAUSED):
        raise Conflict(f"{record.name} is {state.value}: a live migration needs it running (or use --offline)")
    snapshots = core.store.snapshots.of_vm(record.uuid)
    if snapshots:
        names = ", ".join(snapshot.name for snapshot in snapshots)
        raise Conflict(f"{record.name} has snapshots ({names}); they do not migrate: delete them first")
    pending = plan.pending(record.since_boot)
    if pending and not request.offline:
        raise Conflict(f"{record.name} has changes waiting for its next boot ({', '.join(pending)}); restart it first")
    if spec.passthrough.pci:
        raise Conflict(f"{record.name} has PCI passthrough devices (passthrough.pci); they cannot migrate")
    if request.offline and request.copy_storage:
        layered = [disk.target for disk in spec.disks if isinstance(disk.source, ImageDisk | OverlayDisk)]
        if layered:
            raise Conflict(
                f"{record.name}'s disks {', '.join(map(str, layered))} are overlays on images: an offline "
                "migration copies only disks made from nothing (migrate it live with --copy-storage)"
            )
    if not request.copy_storage:
        owned = sorted(resources.plan(spec, core.config).resources.disk_paths)
        if owned:
            raise Conflict(
                f"{record.name}'s disks {', '.join(owned)} are files of this host (made by vmhost); "
                "copy them with --copy-storage"
            )
    return spec


def migrate(core: Core, name: str, request: MigrationRequest, peer_url: str) -> None:
    """Move `name` to the agent at `peer_url`; on any failure before the point of no return it stays here."""
    with core.locked(name) as record:
        migratable(core, record, request)
        migration = Migrate(
            core, record.name, record.uuid, peer_url=peer_url, migration_id=uuids.uuid4().hex, request=request
        )
        try:
            run(migration)
        finally:
            migration.close()
