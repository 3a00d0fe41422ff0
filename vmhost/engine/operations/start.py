"""start, in two phases: create paused, run the start-paused hooks, then resume; a failure destroys what started."""

import functools
import time
from collections.abc import Set

from vmhost.drivers.base import DomainState
from vmhost.engine import logs, resources
from vmhost.engine.core import Core, stored
from vmhost.engine.hooks import Phase
from vmhost.engine.rollback import Rollback
from vmhost.engine.states import OBSERVED, VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import HostResourceError
from vmhost.spec import VMSpec
from vmhost.store.sqlite import VmRecord


class Start(Declared):
    kind = "start"
    complete_after = "resumed"

    def __init__(self, core: Core, name: str, uuid: str, spec: VMSpec | None = None):
        super().__init__(core, name, uuid)
        self._spec = spec

    @property
    def spec(self) -> VMSpec:
        if self._spec is None:
            self._spec = self.core.spec_of(self.core.record(self.name))
        return self._spec

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("created-paused", self.create_paused, undo=self.destroy),
            Step("activated", lambda: self.core.pre_hooks(Phase.START_PAUSED, self.spec)),
            Step("resumed", lambda: self.core.driver.resume(self.name)),
            Step("running", self.running, redo=self.running),
        )

    def completes(self, journaled: Set[str]) -> bool:
        """Once resumed, the guest has run: recovery keeps it running rather than destroying it."""
        return super().completes(journaled) or self.core.driver.state(self.name) == DomainState.RUNNING

    def create_paused(self) -> None:
        self.core.set_state(self.name, VmState.STARTING)
        with Rollback() as partial:
            for device in self.spec.passthrough.pci:
                if not device.managed:
                    self.core.driver.reserve_pci(device.address)
                    partial.add(
                        f"release {device.address}", functools.partial(self.core.driver.release_pci, device.address)
                    )
            self.core.progress(f"creating {self.name} paused")
            if self.spec.kind == "vm":
                logs.mark_boot(resources.console_log(self.spec, self.core.config.data_dir), self.name)
            self.core.driver.create_paused(self.name)

    def destroy(self) -> None:
        """Unconditional (destroy is idempotent): a driver may report its created-paused domain as off."""
        self.core.driver.destroy(self.name)
        record = self.core.store.get_vm(self.name)
        if record is not None:
            self.core.release_unmanaged_pci(record)

    def running(self) -> None:
        """A fresh boot runs the stored spec: no change is pending any more (engine/plan.py)."""
        self.core.set_state(self.name, VmState.RUNNING, desired_state="running", started_at=time.time(), since_boot={})

    def settle(self) -> None:
        record = self.core.store.get_vm(self.name)
        if record is not None and record.state == VmState.STARTING.value:
            state = OBSERVED[self.core.driver.state(self.name)]
            self.core.set_state(self.name, state, "start interrupted; recovered" if state != VmState.RUNNING else "")
        super().settle()

    def failed(self, error: Exception) -> None:
        self.core.set_state(self.name, VmState.STOPPED, reason=f"start failed: {error}")


def start(core: Core, name: str) -> VmRecord:
    with core.locked(name) as record:
        core.timers.cancel(record.name)
        core.store.update_vm(record.name, restart_count=0, next_retry_at=None)
        started = start_locked(core, record)
    if started:
        core.post_hooks([Phase.AFTER_START], core.spec_of(record))
    return core.record(record.name)


def start_locked(core: Core, record: VmRecord) -> bool:
    """True when the VM was started from off (not already running, not merely resumed)."""
    current = core.observe(record)
    if current == VmState.RUNNING:
        core.store.update_vm(record.name, desired_state="running")
        return False
    if current == VmState.PAUSED:
        core.driver.resume(record.name)
        core.set_state(record.name, VmState.RUNNING, desired_state="running")
        return False
    spec = core.spec_of(record)
    _check_startable(core, spec)
    with core.admission.admitted(spec, core.driver.for_spec(spec).host_info, core.config, core.awaited_incoming()):
        run(Start(core, record.name, record.uuid, spec))
    return True


def _check_startable(core: Core, spec: VMSpec) -> None:
    plan = core.host_problems(spec)
    if plan.problems:
        raise HostResourceError(f"cannot start {spec.name}: " + "; ".join(map(str, plan.problems)))
    if plan.resolved:  # stored before image formats were recorded: record them now, once
        core.store.update_vm(spec.name, spec=stored(spec))
