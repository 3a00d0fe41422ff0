"""stop: ACPI power button, wait until gone, force-destroy at the deadline. Idempotent.

A paused guest cannot hear the power button, nor can a crashed one kept for inspection (on_crash: preserve;
libvirt refuses its shutdown as "not running"), so both are forced at once.
"""

import time
from dataclasses import dataclass

from vmhost.drivers.base import DomainState
from vmhost.engine.core import GONE, Core
from vmhost.engine.hooks import Phase
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.engine.stopping import after_stop, force_off, force_off_if_running, request_shutdown, wait_gone


@dataclass(frozen=True)
class StopResult:
    method: str
    seconds: float


class Stop(Declared):
    kind = "stop"
    complete_after = ""  # an interrupted stop is completed: forced off

    def __init__(self, core: Core, name: str, uuid: str, force: bool = True, deadline: float = 0.0):
        super().__init__(core, name, uuid)
        self.force, self.deadline = force, deadline
        self.method = ""

    def steps(self) -> tuple[Step, ...]:
        return (
            Step("shutdown-requested", self.request_shutdown, when=lambda: not self.force),
            Step("powered-off", self.wait_for_poweroff, when=lambda: not self.force and not self.method),
            Step("destroyed", self.force_off, redo=self.force_off_if_running, when=lambda: not self.method),
            Step("stopped", self.stopped, redo=self.stopped),
        )

    def request_shutdown(self) -> None:
        if request_shutdown(self.core, self.name):
            self.method = "acpi"

    def wait_for_poweroff(self) -> None:
        if wait_gone(self.core, self.name, self.deadline, "waiting for the guest to power off"):
            self.method = "acpi"

    def force_off(self) -> None:
        self.method = force_off(self.core, self.name)

    def force_off_if_running(self) -> None:
        force_off_if_running(self.core, self.name)

    def stopped(self) -> None:
        record = self.core.store.get_vm(self.name)
        if record is not None:
            after_stop(self.core, record)


def stop(core: Core, name: str, force: bool = False, timeout: float | None = None) -> StopResult:
    deadline = core.config.stop_timeout if timeout is None else timeout
    with core.locked(name) as record:
        core.observe(record)
        state = core.driver.state(record.name)
        if state in GONE:
            core.timers.cancel(record.name)
            core.store.update_vm(record.name, desired_state="stopped", next_retry_at=None)
            return StopResult("already-stopped", 0.0)
        spec = core.spec_of(record)
        core.pre_hooks(Phase.BEFORE_STOP, spec)
        began = time.monotonic()
        core.set_state(record.name, VmState.STOPPING)
        deaf = state in (DomainState.PAUSED, DomainState.CRASHED_PRESERVED)
        op = Stop(core, record.name, record.uuid, force or deaf, deadline)
        run(op)
        result = StopResult(op.method, time.monotonic() - began)
    core.post_hooks([Phase.AFTER_STOP], spec)
    return result
