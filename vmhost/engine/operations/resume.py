"""resume: let a paused guest run again. An interrupted resume is completed."""

from vmhost.drivers.base import Capability, DomainState
from vmhost.engine.core import Core
from vmhost.engine.states import VmState
from vmhost.engine.steps import Declared, Step, run
from vmhost.errors import Conflict


class Resume(Declared):
    kind = "resume"
    complete_after = ""

    def steps(self) -> tuple[Step, ...]:
        return (Step("resumed", self.resume, redo=self.resume_if_paused),)

    def resume(self) -> None:
        self.core.driver.resume(self.name)
        self.core.set_state(self.name, VmState.RUNNING)

    def resume_if_paused(self) -> None:
        if self.core.driver.state(self.name) == DomainState.PAUSED:
            self.core.driver.resume(self.name)


def resume(core: Core, name: str) -> None:
    with core.locked(name) as record:
        core.driver.require(record.name, Capability.PAUSE)
        state = core.observe(record)
        if state == VmState.RUNNING:
            return
        if state != VmState.PAUSED:
            raise Conflict(f"{record.name} is not paused")
        run(Resume(core, record.name, record.uuid))
