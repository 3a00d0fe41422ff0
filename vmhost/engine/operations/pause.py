"""pause: freeze the guest's vCPUs; it keeps its memory and devices. Nothing here ever destroys the VM: an
interrupted pause is completed (still paused) or rolled back (resumed)."""

from vmhost.drivers.base import Capability, DomainState
from vmhost.engine.core import Core
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import Conflict


class Pause(Declared):
    kind = "pause"
    complete_after = "paused"

    def steps(self) -> tuple[Step, ...]:
        return (Step("paused", self.pause, undo=self.resume_if_paused),)

    def pause(self) -> None:
        self.core.driver.pause(self.name)
        self.core.set_state(self.name, VmState.PAUSED)

    def resume_if_paused(self) -> None:
        if self.core.driver.state(self.name) == DomainState.PAUSED:
            self.core.driver.resume(self.name)


def pause(core: Core, name: str) -> None:
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.PAUSE)
        state = core.observe(record)
        if state == VmState.PAUSED:
            return
        if state != VmState.RUNNING:
            raise Conflict(f"{record.name} is not running")
        run(Pause(core, record.name, record.uuid))
