"""The destination side of a migration (the source's is operations/migrate.py).

accept: check the VM against this host (spec, bridges, images, paths, capability, memory), then record it as
        `incoming` and make its directory, seed and disk placeholders (operation `incoming`, rolled back if
        interrupted); answer where to send it.
finish: take it in (operation `incoming-finish`, always completed): a live VM arrived paused, so the
        start-paused hooks run and it resumes; an offline one is defined. From then on it is this host's VM.
abort:  drop everything the migration made here; refused once a live VM has arrived (then only finishing is
        right: its source has it shut off).
sweep:  an incoming migration whose source never came back (past incoming_timeout) is finished if the VM is
        here, dropped otherwise.
Every call is idempotent: the source repeats them after its own crashes.
"""

import logging
import time
from pathlib import Path
from typing import Any, Self

from vmhost.drivers.base import Capability, DomainState
from vmhost.engine import resources
from vmhost.engine.core import Core, stored
from vmhost.engine.events import VmEvent
from vmhost.engine.hooks import Phase
from vmhost.engine.operations.create import checked_spec
from vmhost.engine.peer import IncomingOffer, IncomingStatus, IncomingTicket
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import OBSERVED, VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import remove_domain_if_its
from vmhost.errors import Conflict, HostResourceError, NotFound, VmhostError
from vmhost.spec import VMSpec
from vmhost.storage import qemu_img
from vmhost.store.sqlite import OperationRecord, VmRecord

log = logging.getLogger("vmhost.engine")
FINISHED = "finished"
ARRIVAL_WAIT = 5.0
"""Seconds take_in waits for the hypervisor to end the incoming job of a domain that has arrived."""
UPLOAD_METADATA = 64 << 20
"""Bytes beyond a disk's virtual size its uploaded file may have (qcow2 tables of a fully written image)."""


class Incoming(Declared):
    """The prepare: record, directory and placeholders."""

    kind = "incoming"
    complete_after = None  # interrupted: rolled back (the source then hears "unknown" and keeps its VM)

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        offer: IncomingOffer | None = None,
        spec: VMSpec | None = None,
        plan: resources.Plan | None = None,
    ):
        super().__init__(core, name, uuid)
        self.offer, self.spec, self.plan = offer, spec, plan

    def journal_data(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        return cls(core, op.data.get("name", op.vm_name), op.data.get("uuid") or op.vm_uuid or "")

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("recorded", self.insert, undo=self.forget),
            Step("placeholders", self.allocate, undo=self.remove_directory),
        )

    def insert(self) -> None:
        assert self.offer is not None and self.spec is not None and self.plan is not None
        offer = self.offer
        self.core.store.insert_vm(
            self.name,
            uuid=self.uuid,
            driver=self.core.driver.for_spec(self.spec).kind,
            spec=stored(self.spec),
            state=VmState.INCOMING.value,
            owned_paths=[str(path) for path in self.plan.resources.disk_paths.values()],
        )
        migration = {
            "id": offer.migration_id,
            "source": offer.source_url,
            "offline": offer.offline,
            "copy_disks": sorted(offer.disks),
            "sizes": {target: disk.size for target, disk in offer.disks.items()},
            "deadline": time.time() + self.core.config.incoming_timeout,
            "state": "prepared",
        }
        self.core.store.update_vm(self.name, migration=migration, reason=f"migrating here from {offer.source_url}")

    def forget(self) -> None:
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid == self.uuid and record.state == VmState.INCOMING.value:
            self.core.store.delete_vm(self.name)

    def allocate(self) -> None:
        """Directory, seed and every owned disk; a copied disk grown to the source's size (it may have been
        resized since it was made)."""
        assert self.offer is not None and self.plan is not None
        with Rollback() as partial:
            resources.allocate(self.plan, partial)
            for target, disk in self.offer.disks.items():
                path = self.plan.resources.disk_paths[target]
                if qemu_img.image_info(path, disk.format).virtual_size < disk.size:
                    qemu_img.resize_image(path, disk.format, disk.size)

    def remove_directory(self) -> None:
        if self.uuid:
            resources.release(resources.vm_dir(self.core.config.data_dir, self.uuid), [])

    def settle(self) -> None:
        """A rolled-back prepare leaves nothing to settle."""


class IncomingFinish(Declared):
    """The take-over; the source asked for it past its point of no return, so a crash is always completed."""

    kind = "incoming-finish"
    complete_after = ""

    def steps(self) -> tuple[Step, ...]:
        record = self.core.record(self.name)
        first = (
            Step("defined", self.define, redo=self.define)
            if record.migration.get("offline")
            else Step("resumed", self.resume, redo=self.resume)
        )
        return (first, Step("owned", self.own, redo=self.own))

    def resume(self) -> None:
        record = self.core.record(self.name)
        state = self.core.driver.state(self.name)
        if state == DomainState.RUNNING:
            return
        if state != DomainState.PAUSED or not arrived(self.core, record):
            raise Conflict(f"{self.name} has not arrived here (the hypervisor says {state.value}); not finished")
        self.core.pre_hooks(Phase.START_PAUSED, self.core.spec_of(record))
        self.core.driver.resume(self.name)

    def define(self) -> None:
        record = self.core.record(self.name)
        spec = self.core.spec_of(record)
        self.core.driver.define(spec, resources.plan(spec, self.core.config).resources)

    def own(self) -> None:
        record = self.core.record(self.name)
        if record.migration.get("state") == FINISHED:
            return
        source = record.migration.get("source", "")
        state = OBSERVED[self.core.driver.state(self.name)]
        running = state in (VmState.RUNNING, VmState.PAUSED)
        self.core.set_state(
            self.name,
            state,
            f"migrated here from {source}",
            desired_state="running" if running else "stopped",
            started_at=time.time() if running else None,
            migration={"id": record.migration.get("id"), "source": source, "state": FINISHED},
        )
        self.core.events.publish(
            VmEvent(vm=self.name, uuid=self.uuid, type="migrated", state=state.value, reason=f"from {source}")
        )


def accept(core: Core, offer: IncomingOffer) -> IncomingTicket:
    """Check, then prepare; a repeated offer (the source retrying) gets the same answer."""
    known = core.store.find_migration(offer.migration_id)
    if known is not None:
        return ticket(core, known)
    spec = checked_spec(core, offer.spec, host=True)
    with core.locks.hold(spec.name):
        _check_acceptable(core, spec, offer)
        plan = core.host_problems(spec)
        _check_disks(spec, plan, offer)
        run(Incoming(core, spec.name, str(spec.uuid), offer=offer, spec=spec, plan=plan))
    return ticket(core, core.record(spec.name))


def _check_acceptable(core: Core, spec: VMSpec, offer: IncomingOffer) -> None:
    config = core.config
    core.driver.require(spec, Capability.OFFLINE_MIGRATION if offer.offline else Capability.LIVE_MIGRATION)
    if not offer.offline and not config.migration_address:
        raise HostResourceError("this host takes in no live migration: set migration_address in its config")
    if core.store.get_vm(spec.name) is not None:
        raise Conflict(f"this host already has a VM named {spec.name}")
    if core.store.uuid_in_use(str(spec.uuid)):
        raise Conflict(f"this host already has a VM with uuid {spec.uuid}")
    if core.driver.for_spec(spec).state(spec.name) != DomainState.ABSENT:
        raise Conflict(f"this host's hypervisor already has a domain named {spec.name}")
    if not offer.offline:
        with core.admission.admitted(spec, core.driver.for_spec(spec).host_info, config, core.awaited_incoming()):
            pass  # room for it now; the source's memory is not counted twice: it leaves that host


def _check_disks(spec: VMSpec, plan: resources.Plan, offer: IncomingOffer) -> None:
    owned = set(plan.resources.disk_paths)
    if set(offer.disks) != owned:
        raise Conflict(
            f"{spec.name}: the offered disks ({', '.join(sorted(offer.disks)) or 'none'}) are not its own disks "
            f"here ({', '.join(sorted(owned)) or 'none'}); copy_storage must bring every owned disk"
        )


def ticket(core: Core, record: VmRecord) -> IncomingTicket:
    migration = record.migration
    copy_disks = tuple(migration.get("copy_disks", ()))
    if migration.get("offline"):
        return IncomingTicket(migration_id=migration["id"], copy_disks=copy_disks)
    config = core.config
    assert config.migration_address, "accept refuses live migrations without it"
    host = f"[{config.migration_address}]" if ":" in config.migration_address else config.migration_address
    spec = core.spec_of(record)
    return IncomingTicket(
        migration_id=migration["id"],
        hypervisor_uri=f"qemu+{config.migration_transport}://{host}/system",
        stream_uri=f"tcp://{host}",
        definition=core.driver.incoming_definition(spec, resources.plan(spec, config).resources),
        tls=config.migration_transport == "tls",
        copy_disks=copy_disks,
    )


def arrived(core: Core, record: VmRecord) -> bool:
    """A live VM is here once the hypervisor has its domain and no incoming job is moving it any more."""
    state = core.driver.state(record.name)
    return state in (DomainState.PAUSED, DomainState.RUNNING) and core.driver.migration_progress(record.name) is None


def status(core: Core, migration_id: str) -> IncomingStatus:
    record = core.store.find_migration(migration_id)
    if record is None:
        return "unknown"
    if record.migration.get("state") == FINISHED:
        return "finished"
    if not record.migration.get("offline") and arrived(core, record):
        return "arrived"
    return "prepared"


def finish(core: Core, migration_id: str) -> None:
    record = _incoming(core, migration_id)
    if record.migration.get("state") == FINISHED:
        return
    with core.locks.hold(record.name):
        current = core.record(record.name)
        if current.migration.get("state") != FINISHED:
            run(IncomingFinish(core, current.name, current.uuid))


def take_in(core: Core, migration_id: str) -> None:
    """Finish a live VM as soon as it has arrived (its domain paused here), without waiting for the source's
    finish: libvirt sends that only after it stopped the source's QEMU, ~250 ms of the guest's downtime. Safe:
    once arrived the migration can only be finished. Not arrived yet (the job still closing): the source's
    finish call does it."""
    record = core.store.find_migration(migration_id)
    if record is None or record.migration.get("offline") or record.migration.get("state") == FINISHED:
        return
    deadline = time.monotonic() + ARRIVAL_WAIT
    try:
        while not arrived(core, record):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        finish(core, migration_id)
    except VmhostError as exc:
        log.info("the source finishes the migration instead", extra={"vm": record.name, "error": exc.message})


def abort(core: Core, migration_id: str) -> None:
    """Unknown: nothing to do (aborted already, or never prepared)."""
    record = core.store.find_migration(migration_id)
    if record is None:
        return
    with core.locks.hold(record.name):
        current = core.store.get_vm(record.name)
        if current is None or current.migration.get("id") != migration_id:
            return
        if current.migration.get("state") == FINISHED:
            raise Conflict(f"the migration of {current.name} has finished here: it is this host's VM now")
        if not current.migration.get("offline") and arrived(core, current):
            raise Conflict(f"{current.name} has arrived here; its migration can only be finished now")
        _drop(core, current)


def _drop(core: Core, record: VmRecord) -> None:
    """A half-arrived domain is destroyed (the source's migration then fails and its VM runs on there)."""
    remove_domain_if_its(core, record.name, record.uuid)
    owned = [Path(path) for path in record.owned_paths]
    resources.release(resources.vm_dir(core.config.data_dir, record.uuid), owned)
    core.forget(record)
    core.events.publish(
        VmEvent(vm=record.name, uuid=record.uuid, type="migration", state="", reason="incoming migration dropped")
    )


def disk_placeholder(core: Core, migration_id: str, target: str) -> Path:
    """Where an offline upload of disk `target` goes; NotFound unless this migration copies that disk."""
    record = _incoming(core, migration_id)
    if target not in record.migration.get("copy_disks", ()) or record.migration.get("state") == FINISHED:
        raise NotFound(f"the incoming migration {migration_id} takes no disk {target}")
    spec = core.spec_of(record)
    return resources.plan(spec, core.config).resources.disk_paths[target]


def upload_limit(core: Core, migration_id: str, target: str) -> int:
    """Bytes an upload of disk `target` may bring: its offered virtual size and room for qcow2's metadata."""
    size = int(_incoming(core, migration_id).migration.get("sizes", {}).get(target, 0))
    return size + max(UPLOAD_METADATA, size // 64)


def check_upload(core: Core, migration_id: str, target: str) -> None:
    """An uploaded disk must be an image of the offered format with no backing file (the source sends only
    disks vmhost made from nothing); otherwise it is emptied again and refused."""
    path = disk_placeholder(core, migration_id, target)
    record = _incoming(core, migration_id)
    fmt = path.suffix.lstrip(".")
    size = int(record.migration.get("sizes", {}).get(target, 0))
    try:
        info = qemu_img.image_info(path, fmt)
    except VmhostError:
        info = None
    if info is None or info.backing_file or info.data_file or info.virtual_size != size:
        path.unlink(missing_ok=True)
        qemu_img.create_image(path, fmt, size)
        raise HostResourceError(f"the upload of disk {target} is not a {fmt} image of {size} bytes on its own")


def sweep(core: Core) -> None:
    """Incoming migrations past their deadline: finished if the VM is here, dropped otherwise."""
    now = time.time()
    for record in core.store.list_vms():
        if record.state != VmState.INCOMING.value or record.migration.get("deadline", now) > now:
            continue
        if core.driver.migration_progress(record.name) is not None:
            continue  # still moving in: a long migration is not cut off by the deadline
        migration_id, source = record.migration["id"], record.migration.get("source")
        try:
            taken = status(core, migration_id) == "arrived"
            log.warning("an incoming migration's source did not come back", extra={"vm": record.name, "source": source})
            (finish if taken else abort)(core, migration_id)
        except VmhostError as exc:
            log.warning("could not settle an incoming migration", extra={"vm": record.name, "error": exc.message})


def _incoming(core: Core, migration_id: str) -> VmRecord:
    record = core.store.find_migration(migration_id)
    if record is None:
        raise NotFound(f"this host has no incoming migration {migration_id}")
    return record
