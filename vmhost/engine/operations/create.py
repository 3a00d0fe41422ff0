"""create: validate, record, allocate disks, define; with start, a failed start undoes the create too."""

from typing import Any, Self

from vmhost.drivers.base import DomainState
from vmhost.engine import resources
from vmhost.engine.core import Core, stored
from vmhost.engine.hooks import Phase
from vmhost.engine.operations.start import start_locked
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import remove_domain_if_its
from vmhost.errors import Conflict
from vmhost.spec import SpecError, VMSpec
from vmhost.spec.load import check_spec
from vmhost.store.sqlite import OperationRecord, VmRecord


class Create(Declared):
    kind = "create"
    complete_after = None  # an interrupted create is always rolled back

    def __init__(
        self,
        core: Core,
        name: str,
        uuid: str,
        *,
        spec: VMSpec | None = None,
        plan: resources.Plan | None = None,
        start: bool = False,
    ):
        super().__init__(core, name, uuid)
        self.spec, self.plan, self.start = spec, plan, start

    def journal_data(self) -> dict[str, Any]:
        return {"name": self.name, "uuid": self.uuid}

    @classmethod
    def restored(cls, core: Core, op: OperationRecord) -> Self | None:
        return cls(core, op.data.get("name", op.vm_name), op.data.get("uuid") or op.vm_uuid or "")

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("recorded", self.insert, undo=self.forget),
            Step("disks-created", self.allocate, undo=self.remove_directory),
            Step("defined", self.define, undo=lambda: remove_domain_if_its(self.core, self.name, self.uuid)),
            Step("stopped", lambda: self.core.set_state(self.name, VmState.STOPPED)),
            Step("started", self.start_now, when=lambda: self.start),
        )

    def insert(self) -> None:
        assert self.spec is not None and self.plan is not None
        self.core.store.insert_vm(
            self.name,
            uuid=self.uuid,
            driver=self.core.driver.for_spec(self.spec).kind,
            spec=stored(self.spec),
            state=VmState.PROVISIONING.value,
            owned_paths=[str(p) for p in self.plan.resources.disk_paths.values()],
        )

    def forget(self) -> None:
        record = self.core.store.get_vm(self.name)
        if record is not None and record.uuid == self.uuid:
            self.core.store.delete_vm(self.name)

    def allocate(self) -> None:
        assert self.plan is not None
        self.core.progress(f"creating disks for {self.name}")
        with Rollback() as partial:
            resources.allocate(self.plan, partial)

    def remove_directory(self) -> None:
        if self.uuid:
            resources.release(resources.vm_dir(self.core.config.data_dir, self.uuid), [])

    def define(self) -> None:
        assert self.spec is not None and self.plan is not None
        self.core.driver.define(self.spec, self.plan.resources)

    def start_now(self) -> None:
        start_locked(self.core, self.core.record(self.name))

    def settle(self) -> None:
        """A rolled-back create leaves nothing to settle."""


def checked_spec(core: Core, document: Any, *, offline: bool = False, host: bool = False) -> VMSpec:
    """Every problem of a document in one answer: schema, cross-field and host checks together (host checks
    skip the fields the schema refused). A spec with no other problem is host-checked only when `host` is asked
    for (create checks it later, with the plan it keeps); `offline` skips host checks altogether."""
    check = check_spec(document)
    problems = list(check.problems)
    if check.spec is not None and not offline and (problems or host):
        problems += check.without_invalid(core.host_problems(check.spec).problems)
    if problems or check.spec is None:
        raise SpecError(sorted(set(problems)))
    return check.spec


def create(core: Core, document: Any, start: bool = False) -> VmRecord:
    """Validate, allocate disks, define. With start, a failed start undoes the create too."""
    spec = checked_spec(core, document)
    with core.locks.hold(spec.name):
        try:
            record = _create_locked(core, spec, start)
        except Exception:
            if core.store.get_vm(spec.name) is None:
                core.locks.discard(spec.name)  # while we hold it: a waiter then retries on a fresh file
            raise
    core.post_hooks([Phase.AFTER_CREATE, Phase.AFTER_START] if start else [Phase.AFTER_CREATE], spec)
    return record


def _create_locked(core: Core, spec: VMSpec, start: bool) -> VmRecord:
    if core.store.get_vm(spec.name) is not None:
        raise Conflict(f"a VM named {spec.name} already exists")
    if core.store.uuid_in_use(str(spec.uuid)):
        raise Conflict(f"a VM with uuid {spec.uuid} already exists")
    driver = core.driver.for_spec(spec)
    if driver.state(spec.name) != DomainState.ABSENT:
        raise Conflict(f"{driver.kind} already has a domain named {spec.name} that vmhost does not manage")
    plan = core.host_problems(spec)
    if plan.problems:
        raise SpecError(plan.problems)
    core.pre_hooks(Phase.BEFORE_CREATE, spec)
    run(Create(core, spec.name, str(spec.uuid), spec=spec, plan=plan, start=start))
    return core.record(spec.name)
